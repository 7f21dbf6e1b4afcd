//! Image previews, made off the request path. A confirmed PNG, JPEG, GIF or
//! WebP file is recorded with `preview_state = 'pending'`: that row is the
//! job. Each instance runs [`run`], which claims one pending file at a time
//! with a lease (PostgreSQL `FOR UPDATE SKIP LOCKED`; a crashed instance's
//! lease runs out and another takes the job over), reads the image (the only
//! bytes that pass through the broker), decodes it under pixel and
//! allocation limits, writes a thumbnail of at most [`THUMBNAIL_EDGE`] pixels
//! under `previews/` (never a presigned PUT's prefix) and records the image's
//! size and the thumbnail in one conditional write with a `file_updated`
//! event. Images over the byte or pixel limit, and images that do not
//! decode, are recorded as `none`: no preview.

use std::{io::Cursor, time::Duration};

use bytes::Bytes;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, metadata::Orientation};
use sea_orm::{
    ColumnTrait, DatabaseBackend, EntityTrait, ExprTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait,
    TransactionTrait,
    sea_query::{Expr, LockBehavior, LockType},
};
use tokio::sync::watch;

use super::{ServiceError, deps::Deps, now};
use crate::{
    config::Config,
    entity::file_upload,
    events::{Event, FileUpdated},
    outbox,
};

/// Longest edge of a thumbnail, in pixels.
pub const THUMBNAIL_EDGE: u32 = 320;
/// How long a claimed job is the claiming instance's.
const LEASE: Duration = Duration::from_secs(60);
/// What reading an image's header may allocate (metadata inflated on the way).
const HEADER_BUDGET: u64 = 8 * 1024 * 1024;
/// Claims of one job before it is given up (recorded as `none`).
const MAX_ATTEMPTS: i32 = 3;
/// How often an idle worker looks for jobs other instances left behind.
const POLL: Duration = Duration::from_secs(5);

/// Content types that get a preview.
pub fn previewable(content_type: &str) -> bool {
    matches!(content_type, "image/png" | "image/jpeg" | "image/gif" | "image/webp")
}

/// The limits of preview work, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct PreviewPolicy {
    /// Jobs this instance runs at once (0: it makes no previews).
    pub workers: u32,
    /// Largest image read, in bytes.
    pub max_source_bytes: u64,
    /// Most pixels decoded (width × height).
    pub max_pixels: u64,
}

impl PreviewPolicy {
    pub fn from_config(config: &Config) -> Self {
        Self {
            workers: config.preview_workers,
            max_source_bytes: config.preview_max_source_mb * 1024 * 1024,
            max_pixels: config.preview_max_megapixels * 1_000_000,
        }
    }
}

/// A thumbnail and the image it was made from.
#[derive(Debug)]
pub struct Rendered {
    pub image_width: u32,
    pub image_height: u32,
    pub thumbnail: Bytes,
    pub thumbnail_type: &'static str,
    pub thumbnail_width: u32,
    pub thumbnail_height: u32,
}

/// Why an image gets no preview.
#[derive(Debug, thiserror::Error)]
pub enum NoPreview {
    #[error("the image is {width}×{height} pixels, over the limit of {limit}")]
    TooManyPixels { width: u32, height: u32, limit: u64 },
    #[error("the image cannot be decoded: {0}")]
    Undecodable(String),
}

/// Runs `policy.workers` preview workers until shutdown starts.
pub async fn run(deps: Deps, policy: PreviewPolicy, closing: watch::Receiver<bool>) {
    let workers: Vec<_> =
        (0..policy.workers).map(|_| tokio::spawn(worker(deps.clone(), policy, closing.clone()))).collect();
    for worker in workers {
        let _ = worker.await;
    }
}

async fn worker(deps: Deps, policy: PreviewPolicy, mut closing: watch::Receiver<bool>) {
    loop {
        loop {
            match process_next(&deps, &policy).await {
                Ok(true) if !*closing.borrow() => continue,
                Ok(_) => break,
                Err(err) => {
                    tracing::warn!(error = %err, "preview job failed; it is retried when its lease runs out");
                    deps.metrics.ignored_failure("preview");
                    break;
                }
            }
        }
        tokio::select! {
            _ = deps.previews.woken() => {}
            _ = tokio::time::sleep(POLL) => {}
            _ = closing.changed() => return,
        }
    }
}

/// Claims and makes one preview; `false` when no job was waiting.
pub async fn process_next(deps: &Deps, policy: &PreviewPolicy) -> Result<bool, ServiceError> {
    let Some(file) = claim(deps).await? else { return Ok(false) };
    let outcome = if file.preview_attempts > MAX_ATTEMPTS {
        Err(NoPreview::Undecodable(format!("given up after {MAX_ATTEMPTS} attempts")))
    } else if Ord::max(file.file_size.unwrap_or(0), 0) as u64 > policy.max_source_bytes {
        Err(NoPreview::Undecodable(format!("larger than {} bytes", policy.max_source_bytes)))
    } else {
        let bytes = deps.storage.read_prefix(&file.s3_key, policy.max_source_bytes).await?;
        let max_pixels = policy.max_pixels;
        tokio::task::spawn_blocking(move || render(&bytes, max_pixels))
            .await
            .map_err(|e| ServiceError::invalid("preview_failed", e.to_string()))?
    };
    match outcome {
        Ok(rendered) => {
            let key = preview_key(&file, rendered.thumbnail_type);
            deps.storage.put(&key, rendered.thumbnail_type, rendered.thumbnail.clone()).await?;
            if !finish(deps, &file, Some((&key, &rendered)), None).await? {
                // Deleted meanwhile: its thumbnail goes too. (A job taken over
                // after its lease ran out leaves the key to the new claim,
                // which writes and records the same one.)
                let row = file_upload::Entity::find_by_id(file.id).one(&deps.db).await?;
                if row.is_none_or(|row| row.is_deleted == Some(true)) {
                    deps.storage.delete(&key).await?;
                }
            }
        }
        Err(reason) => {
            tracing::info!(file_id = file.id, %reason, "no preview");
            let size = match reason {
                NoPreview::TooManyPixels { width, height, .. } => Some((width, height)),
                NoPreview::Undecodable(_) => None,
            };
            finish(deps, &file, None, size).await?;
        }
    }
    Ok(true)
}

/// The oldest pending job whose lease is free, now leased to this instance.
async fn claim(deps: &Deps) -> Result<Option<file_upload::Model>, ServiceError> {
    let at = now();
    let mut next = file_upload::Entity::find()
        .select_only()
        .column(file_upload::Column::Id)
        .filter(file_upload::Column::PreviewState.eq("pending"))
        .filter(file_upload::Column::IsDeleted.eq(false))
        .filter(file_upload::Column::PreviewLeaseUntil.is_null().or(file_upload::Column::PreviewLeaseUntil.lt(at)))
        .order_by_asc(file_upload::Column::Id)
        .limit(1);
    if deps.db.get_database_backend() == DatabaseBackend::Postgres {
        next = next.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    let lease_until = at + chrono::Duration::from_std(LEASE).expect("lease fits");
    let claimed = file_upload::Entity::update_many()
        .col_expr(file_upload::Column::PreviewLeaseUntil, Expr::value(lease_until))
        .col_expr(file_upload::Column::PreviewAttempts, Expr::col(file_upload::Column::PreviewAttempts).add(1))
        .filter(file_upload::Column::Id.in_subquery(next.into_query()))
        .exec_with_returning(&deps.db)
        .await?;
    Ok(claimed.into_iter().next())
}

/// Records the outcome if the job is still this claim's and the file still
/// live, with a `file_updated` event; `false` when it was not.
async fn finish(
    deps: &Deps,
    file: &file_upload::Model,
    preview: Option<(&str, &Rendered)>,
    image_size: Option<(u32, u32)>,
) -> Result<bool, ServiceError> {
    let (width, height) = match (preview, image_size) {
        (Some((_, r)), _) => (Some(r.image_width as i32), Some(r.image_height as i32)),
        (None, Some((w, h))) => (Some(w as i32), Some(h as i32)),
        (None, None) => (None, None),
    };
    let txn = deps.db.begin().await?;
    let updated = file_upload::Entity::update_many()
        .col_expr(file_upload::Column::PreviewState, Expr::value(if preview.is_some() { "ready" } else { "none" }))
        .col_expr(file_upload::Column::PreviewKey, Expr::value(preview.map(|(key, _)| key.to_owned())))
        .col_expr(file_upload::Column::PreviewContentType, Expr::value(preview.map(|(_, r)| r.thumbnail_type)))
        .col_expr(file_upload::Column::PreviewWidth, Expr::value(preview.map(|(_, r)| r.thumbnail_width as i32)))
        .col_expr(file_upload::Column::PreviewHeight, Expr::value(preview.map(|(_, r)| r.thumbnail_height as i32)))
        .col_expr(file_upload::Column::ImageWidth, Expr::value(width))
        .col_expr(file_upload::Column::ImageHeight, Expr::value(height))
        .col_expr(file_upload::Column::PreviewLeaseUntil, Expr::value(Option::<chrono::NaiveDateTime>::None))
        .filter(file_upload::Column::Id.eq(file.id))
        .filter(file_upload::Column::PreviewState.eq("pending"))
        .filter(file_upload::Column::PreviewLeaseUntil.eq(file.preview_lease_until))
        .filter(file_upload::Column::IsDeleted.eq(false))
        .exec_with_returning(&txn)
        .await?;
    let Some(updated) = updated.into_iter().next() else { return Ok(false) };
    let event = FileUpdated { channel_id: updated.channel_id, message_id: updated.message_id, file: updated.into() };
    let event = outbox::append(&txn, &Event::FileUpdated(event)).await?;
    txn.commit().await?;
    deps.events.committed(event);
    Ok(true)
}

/// `previews/<channel>/<file id>.<ext>`: beside, never under, `uploads/`.
fn preview_key(file: &file_upload::Model, content_type: &str) -> String {
    let [jpeg, png] = possible_keys(file.channel_id, file.id);
    if content_type == "image/png" { png } else { jpeg }
}

/// Every key a preview of the file may have: JPEG and PNG.
pub fn possible_keys(channel_id: i32, file_id: i32) -> [String; 2] {
    ["jpg", "png"].map(|extension| format!("previews/{channel_id}/{file_id}.{extension}"))
}

/// Decodes `bytes` (at most `max_pixels` pixels, allocations bounded) and
/// makes a thumbnail whose longest edge is [`THUMBNAIL_EDGE`], turned
/// upright by the image's EXIF orientation; JPEG for opaque images, PNG for
/// those with transparency. The thumbnail is encoded afresh: it carries no
/// metadata.
pub fn render(bytes: &[u8], max_pixels: u64) -> Result<Rendered, NoPreview> {
    let bytes = &*without_compressed_png_metadata(bytes);
    let undecodable = |e: image::ImageError| NoPreview::Undecodable(e.to_string());
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| NoPreview::Undecodable(e.to_string()))?;
    // The header alone, on a small budget: what it claims allocates nothing,
    // and compressed metadata read on the way (a PNG's iCCP profile) cannot
    // inflate past the budget.
    let mut header = Limits::default();
    header.max_alloc = Some(HEADER_BUDGET);
    reader.limits(header);
    let (width, height) = reader.into_dimensions().map_err(undecodable)?;
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(NoPreview::TooManyPixels { width, height, limit: max_pixels });
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| NoPreview::Undecodable(e.to_string()))?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    // Room for the image decoded at up to 4 bytes per pixel (8-bit RGBA) and
    // the thumbnail: a 16-bit image near the pixel limit gets no preview
    // rather than twice the memory.
    limits.max_alloc = Some(max_pixels.saturating_mul(4) + 16 * 1024 * 1024);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(undecodable)?;
    let orientation = decoder.orientation().map_err(undecodable)?;
    let image = DynamicImage::from_decoder(decoder).map_err(undecodable)?;
    // Scaled first, turned upright after: the turn copies the thumbnail, not the image.
    let mut thumbnail = if width <= THUMBNAIL_EDGE && height <= THUMBNAIL_EDGE {
        image // Small already: never enlarged.
    } else {
        image.thumbnail(THUMBNAIL_EDGE, THUMBNAIL_EDGE)
    };
    thumbnail.apply_orientation(orientation);
    let turned = matches!(
        orientation,
        Orientation::Rotate90 | Orientation::Rotate270 | Orientation::Rotate90FlipH | Orientation::Rotate270FlipH
    );
    let (image_width, image_height) = if turned { (height, width) } else { (width, height) };
    let mut out = Cursor::new(Vec::new());
    let thumbnail_type = if thumbnail.color().has_alpha() {
        thumbnail.write_to(&mut out, ImageFormat::Png).map_err(undecodable)?;
        "image/png"
    } else {
        let rgb = DynamicImage::ImageRgb8(thumbnail.to_rgb8());
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80).encode_image(&rgb).map_err(undecodable)?;
        "image/jpeg"
    };
    Ok(Rendered {
        image_width,
        image_height,
        thumbnail: out.into_inner().into(),
        thumbnail_type,
        thumbnail_width: thumbnail.width(),
        thumbnail_height: thumbnail.height(),
    })
}

/// A PNG without its compressed ancillary chunks (`iCCP`, `zTXt`, `iTXt`):
/// a thumbnail needs none of them, and the decoder would inflate them in
/// full before the first pixel (a 5 MB profile inflates to gigabytes).
/// Anything else, and a PNG whose chunks do not parse, is returned as it is.
fn without_compressed_png_metadata(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    const DROPPED: [&[u8]; 3] = [b"iCCP", b"zTXt", b"iTXt"];
    if !bytes.starts_with(SIGNATURE) {
        return bytes.into();
    }
    let mut chunks = Vec::new();
    let mut at = SIGNATURE.len();
    while at + 12 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let Some(end) = at.checked_add(12 + len).filter(|&end| end <= bytes.len()) else { break };
        chunks.push((at, end, &bytes[at + 4..at + 8]));
        at = end;
    }
    if !chunks.iter().any(|(_, _, kind)| DROPPED.contains(kind)) {
        return bytes.into();
    }
    let mut kept = SIGNATURE.to_vec();
    for (start, end, kind) in &chunks {
        if !DROPPED.contains(kind) {
            kept.extend_from_slice(&bytes[*start..*end]);
        }
    }
    kept.extend_from_slice(&bytes[at..]);
    kept.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(image: DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    #[test]
    fn a_wide_photo_becomes_a_320_pixel_jpeg_and_a_transparent_image_a_png() {
        let photo = encode(DynamicImage::new_rgb8(1200, 600), ImageFormat::Jpeg);
        let rendered = render(&photo, 50_000_000).unwrap();
        assert_eq!((rendered.image_width, rendered.image_height), (1200, 600));
        assert_eq!((rendered.thumbnail_width, rendered.thumbnail_height), (320, 160));
        assert_eq!(rendered.thumbnail_type, "image/jpeg");
        assert_eq!(image::guess_format(&rendered.thumbnail).unwrap(), ImageFormat::Jpeg);

        let icon = encode(DynamicImage::new_rgba8(40, 80), ImageFormat::Png);
        let rendered = render(&icon, 50_000_000).unwrap();
        assert_eq!((rendered.thumbnail_width, rendered.thumbnail_height), (40, 80), "never enlarged");
        assert_eq!(rendered.thumbnail_type, "image/png");
    }

    #[test]
    fn too_many_pixels_and_garbage_get_no_preview() {
        let big = encode(DynamicImage::new_rgb8(300, 200), ImageFormat::Png);
        assert!(matches!(render(&big, 50_000), Err(NoPreview::TooManyPixels { width: 300, height: 200, .. })));
        assert!(matches!(render(b"\x89PNG\r\n\x1a\nnot really", 50_000_000), Err(NoPreview::Undecodable(_))));
        // A 1×1 PNG whose header claims 100,000 × 100,000 pixels: refused from the header.
        let mut png = Cursor::new(Vec::new());
        DynamicImage::new_rgb8(1, 1).write_to(&mut png, ImageFormat::Png).unwrap();
        let mut bomb = png.into_inner();
        bomb[16..24].copy_from_slice(&[0, 1, 0x86, 0xA0, 0, 1, 0x86, 0xA0]);
        let crc = crc32fast::hash(&bomb[12..29]);
        bomb[29..33].copy_from_slice(&crc.to_be_bytes());
        let outcome = render(&bomb, 50_000_000);
        assert!(
            matches!(outcome, Err(NoPreview::TooManyPixels { width: 100_000, height: 100_000, .. })),
            "{outcome:?}"
        );
    }

    #[test]
    fn a_png_colour_profile_is_never_inflated() {
        use image::ImageEncoder;
        // 64 MiB of profile, compressed by the encoder to a few dozen KiB.
        let mut out = Vec::new();
        let mut encoder = image::codecs::png::PngEncoder::new(&mut out);
        encoder.set_icc_profile(vec![0; 64 * 1024 * 1024]).unwrap();
        encoder.write_image(&[0; 64 * 64 * 3], 64, 64, image::ExtendedColorType::Rgb8).unwrap();
        assert!(out.len() < 1024 * 1024, "{} bytes", out.len());
        assert!(out.windows(4).any(|w| w == b"iCCP"));
        let hwm = || {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap().to_owned();
            line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap()
        };
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let before = hwm();
        let outcome = render(&out, 50_000_000);
        let added_kib = hwm().saturating_sub(before);
        assert!(added_kib < 32 * 1024, "the profile was inflated: {added_kib} KiB");
        assert_eq!(outcome.unwrap().thumbnail_width, 64, "the image itself still gets its preview");
    }
}
