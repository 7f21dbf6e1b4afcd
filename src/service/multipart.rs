//! Multipart direct uploads for big files: start (CreateMultipartUpload and a
//! first batch of presigned part URLs) → the client PUTs parts straight to S3,
//! asking for more (or fresh) part URLs as it goes and learning which parts the
//! store already has → complete (CompleteMultipartUpload, then the same
//! verification, record and event as a confirm). Abort and expiry are the
//! single-PUT upload's (`uploads::abort`, the sweeper).

use std::collections::BTreeSet;

use uuid::Uuid;

use super::{
    ServiceError,
    deps::Deps,
    lifecycle, now, quota,
    uploads::{self, Confirmation, UploadRequest},
};
use crate::{
    entity::pending_upload,
    ratelimit::Action,
    storage::{PresignedRequest, StorageError, StoredPart},
};

/// Part URLs handed out with the start of an upload.
pub const FIRST_BATCH: u32 = 20;
/// Part URLs one `parts` request may ask for.
pub const MAX_PARTS_PER_REQUEST: usize = 100;
/// S3's limit on parts per upload.
const MAX_PARTS: u64 = 10_000;
const MIB: u64 = 1024 * 1024;

/// A presigned PUT of one part.
#[derive(Debug, Clone)]
pub struct PartUrl {
    pub part_number: u32,
    pub request: PresignedRequest,
}

/// A multipart upload just started.
#[derive(Debug, Clone)]
pub struct Started {
    pub upload: pending_upload::Model,
    pub layout: Layout,
    pub parts: Vec<PartUrl>,
    /// When the part URLs stop working (the upload itself lives until `upload.expires_at`).
    pub urls_expire_at: chrono::NaiveDateTime,
}

/// Part URLs asked for, and what the store already holds.
#[derive(Debug, Clone)]
pub struct Parts {
    pub layout: Layout,
    pub parts: Vec<PartUrl>,
    pub uploaded: Vec<StoredPart>,
    pub urls_expire_at: chrono::NaiveDateTime,
}

/// How a file is cut into parts: all `part_size` bytes but the last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub size: u64,
    pub part_size: u64,
    pub part_count: u32,
}

impl Layout {
    /// The configured part size, raised (in whole MiB) when the file would
    /// otherwise need more than 10,000 parts.
    pub fn new(size: u64, configured_part_size: u64) -> Self {
        let needed = size.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
        let part_size = configured_part_size.max(needed);
        Self { size, part_size, part_count: size.div_ceil(part_size).max(1) as u32 }
    }

    fn of(upload: &pending_upload::Model) -> Result<Self, ServiceError> {
        match (upload.multipart_upload_id.as_ref(), upload.part_size) {
            (Some(_), Some(part_size)) if part_size > 0 => {
                let size = upload.file_size as u64;
                Ok(Self {
                    size,
                    part_size: part_size as u64,
                    part_count: size.div_ceil(part_size as u64).max(1) as u32,
                })
            }
            _ => Err(ServiceError::conflict("upload_not_multipart", "this upload is a single PUT; confirm it instead")),
        }
    }

    /// Bytes in part `n` (1-based).
    pub fn part_len(&self, n: u32) -> u64 {
        if n < self.part_count { self.part_size } else { self.size - u64::from(self.part_count - 1) * self.part_size }
    }
}

/// Validates like a presign, starts the multipart upload in the store, records
/// it, and signs the first batch of part URLs.
pub async fn start(deps: &Deps, user: i32, req: UploadRequest) -> Result<Started, ServiceError> {
    let (channel_id, message_id) = uploads::admit(deps, user, &req).await?;
    let layout = Layout::new(req.size, deps.policy.multipart_part_size_mb * MIB);
    let id = Uuid::now_v7();
    let key = uploads::object_key(channel_id, id, &req.file_name);
    let multipart_id = deps.storage.create_multipart(&key, req.content_type.as_str()).await?;
    let upload = pending_upload::Model {
        multipart_upload_id: Some(multipart_id.clone()),
        part_size: Some(layout.part_size as i64),
        ..uploads::pending_row(id, user, (channel_id, message_id), &req, key, deps.policy.multipart_upload_ttl_secs)
    };
    let first: Vec<u32> = (1..=layout.part_count.min(FIRST_BATCH)).collect();
    let signed_and_recorded = async {
        let signed = sign_parts(deps, &upload, &layout, &first)?;
        quota::insert_within_quota(deps, &upload).await?;
        Ok::<_, ServiceError>(signed)
    };
    let (parts, urls_expire_at) = match signed_and_recorded.await {
        Ok(signed) => signed,
        Err(err) => {
            // Nothing may outlive a failed start.
            lifecycle::discard_objects(&deps.storage, &deps.metrics, std::slice::from_ref(&upload)).await;
            return Err(err);
        }
    };
    deps.metrics.presigned();
    Ok(Started { upload, layout, parts, urls_expire_at })
}

/// Signs (or signs again) URLs for `part_numbers` and lists the parts the
/// store already has, so a client that lost its state can resume.
pub async fn parts(deps: &Deps, user: i32, upload_id: Uuid, part_numbers: &[u32]) -> Result<Parts, ServiceError> {
    deps.limits
        .check(crate::ratelimit::Action::Parts, user)
        .map_err(|l| ServiceError::RateLimited { retry_after_secs: l.retry_after_secs })?;
    let upload = open_upload(deps, user, upload_id).await?;
    let layout = Layout::of(&upload)?;
    if part_numbers.len() > MAX_PARTS_PER_REQUEST {
        return Err(ServiceError::invalid(
            "too_many_parts",
            format!("ask for at most {MAX_PARTS_PER_REQUEST} part URLs at a time"),
        ));
    }
    let wanted: BTreeSet<u32> = part_numbers.iter().copied().collect();
    if let Some(bad) = wanted.iter().find(|&&n| n == 0 || n > layout.part_count) {
        return Err(ServiceError::invalid(
            "invalid_part_number",
            format!("part {bad} does not exist; this upload has parts 1 to {}", layout.part_count),
        ));
    }
    let wanted: Vec<u32> = wanted.into_iter().collect();
    let (parts, urls_expire_at) = sign_parts(deps, &upload, &layout, &wanted)?;
    let uploaded = deps.storage.list_parts(&upload.s3_key, multipart_id(&upload)).await?;
    Ok(Parts { layout, parts, uploaded, urls_expire_at })
}

/// Completes the upload from the client's part list, then verifies, records
/// and announces the file exactly like a confirm. Idempotent.
pub async fn complete(
    deps: &Deps,
    user: i32,
    upload_id: Uuid,
    parts: &[(u32, String)],
) -> Result<Confirmation, ServiceError> {
    let result = complete_inner(deps, user, upload_id, parts).await;
    uploads::count_confirm(deps, &result);
    result
}

async fn complete_inner(
    deps: &Deps,
    user: i32,
    upload_id: Uuid,
    parts: &[(u32, String)],
) -> Result<Confirmation, ServiceError> {
    uploads::rate_limit(deps, Action::Confirm, user)?;
    let upload = uploads::own_upload(&deps.db, user, upload_id).await?;
    if let Some(done) = uploads::finished(&deps.db, &upload).await? {
        return Ok(done);
    }
    let layout = Layout::of(&upload)?;
    let given = check_part_list(&layout, parts)?;
    match assemble(deps, &upload, &layout, &given).await {
        Ok(Assembled::Parts) => {}
        Ok(Assembled::Earlier) => {
            // Completed in the store by an earlier call that failed afterwards:
            // the object stands on its own and is verified like a single PUT.
            return uploads::verify_and_record(deps, &upload).await;
        }
        // An abort, an expiry or a removal from the channel that won the race
        // leaves the store without the upload: say that instead.
        Err(err) => return uploads::unless_changed(deps, &upload, err).await,
    }
    // Every part had its signed size, so the object has the declared size:
    // no HeadObject, only the content is left to verify.
    let verified = uploads::verify_content(deps, &upload).await;
    uploads::settle(deps, &upload, verified).await
}

/// How the store holds a multipart upload once [`assemble`] is done.
enum Assembled {
    /// Assembled from the client's parts by this call.
    Parts,
    /// Assembled by an earlier call (no parts left, the object is there).
    Earlier,
}

/// Checks the client's part list against the store and completes the
/// multipart upload there.
async fn assemble(
    deps: &Deps,
    upload: &pending_upload::Model,
    layout: &Layout,
    given: &[(u32, String)],
) -> Result<Assembled, ServiceError> {
    let stored = match deps.storage.list_parts(&upload.s3_key, multipart_id(upload)).await {
        Ok(stored) => stored,
        Err(StorageError::Service { code, .. }) if code == "NoSuchUpload" => Vec::new(),
        Err(err) => return Err(err.into()),
    };
    if stored.is_empty() && deps.storage.head(&upload.s3_key).await?.is_some() {
        return Ok(Assembled::Earlier);
    }
    check_against_store(layout, given, &stored)?;
    let completed = given
        .iter()
        .map(|(n, etag)| {
            aws_sdk_s3::types::CompletedPart::builder().part_number(*n as i32).e_tag(format!("\"{etag}\"")).build()
        })
        .collect();
    match deps.storage.complete_multipart(&upload.s3_key, multipart_id(upload), completed).await {
        Ok(()) => Ok(Assembled::Parts),
        // A concurrent complete assembled it first (the store then knows the
        // upload no more): the object stands, verified like a single PUT.
        Err(_) if deps.storage.head(&upload.s3_key).await?.is_some() => Ok(Assembled::Earlier),
        Err(StorageError::Service { code, message }) if is_part_error(&code) => {
            Err(ServiceError::unverified("part_mismatch", format!("the store refused the parts: {message}")))
        }
        Err(err) => Err(err.into()),
    }
}

/// Every part from 1 to the last exactly once, each with an ETag.
fn check_part_list(layout: &Layout, parts: &[(u32, String)]) -> Result<Vec<(u32, String)>, ServiceError> {
    let mut given: Vec<(u32, String)> =
        parts.iter().map(|(n, etag)| (*n, etag.trim().trim_matches('"').to_owned())).collect();
    given.sort_by_key(|(n, _)| *n);
    let numbers: Vec<u32> = given.iter().map(|(n, _)| *n).collect();
    let expected: Vec<u32> = (1..=layout.part_count).collect();
    if numbers != expected {
        return Err(ServiceError::invalid(
            "invalid_part_list",
            format!("list every part from 1 to {} once, each with its ETag", layout.part_count),
        ));
    }
    if given.iter().any(|(_, etag)| etag.is_empty() || etag.len() > 128) {
        return Err(ServiceError::invalid("invalid_part_list", "each part needs the ETag its upload returned"));
    }
    Ok(given)
}

/// Each part is in the store with the signed size and, where the store
/// reports ETags, the ETag the client gave.
fn check_against_store(layout: &Layout, given: &[(u32, String)], stored: &[StoredPart]) -> Result<(), ServiceError> {
    for (n, etag) in given {
        let Some(part) = stored.iter().find(|p| p.part_number == *n) else {
            return Err(ServiceError::unverified("part_missing", format!("part {n} has not been uploaded")));
        };
        if part.etag.as_ref().is_some_and(|stored| stored != etag) {
            return Err(ServiceError::unverified(
                "part_mismatch",
                format!("the ETag given for part {n} is not the uploaded part's"),
            ));
        }
        if part.size != layout.part_len(*n) {
            return Err(ServiceError::unverified(
                "size_mismatch",
                format!("part {n} has {} bytes, {} were signed", part.size, layout.part_len(*n)),
            ));
        }
    }
    Ok(())
}

fn is_part_error(code: &str) -> bool {
    matches!(code, "InvalidPart" | "InvalidPartOrder" | "EntityTooSmall" | "NoSuchUpload")
}

/// The caller's own upload, still pending and within its time.
async fn open_upload(deps: &Deps, user: i32, upload_id: Uuid) -> Result<pending_upload::Model, ServiceError> {
    let upload = uploads::own_upload(&deps.db, user, upload_id).await?;
    match uploads::finished(&deps.db, &upload).await? {
        None => Ok(upload),
        Some(_) => Err(ServiceError::conflict("upload_not_pending", "this upload was confirmed")),
    }
}

fn multipart_id(upload: &pending_upload::Model) -> &str {
    upload.multipart_upload_id.as_deref().unwrap_or_default()
}

fn sign_parts(
    deps: &Deps,
    upload: &pending_upload::Model,
    layout: &Layout,
    numbers: &[u32],
) -> Result<(Vec<PartUrl>, chrono::NaiveDateTime), ServiceError> {
    let ttl = std::time::Duration::from_secs(deps.policy.upload_url_ttl_secs);
    let presigner = deps.storage.presigner();
    let parts = numbers
        .iter()
        .map(|&n| {
            let request = presigner.upload_part(&upload.s3_key, multipart_id(upload), n, layout.part_len(n), ttl)?;
            Ok(PartUrl { part_number: n, request })
        })
        .collect::<Result<_, ServiceError>>()?;
    Ok((parts, now() + chrono::Duration::seconds(ttl.as_secs() as i64)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_the_configured_size_but_the_last() {
        let layout = Layout::new(11 * MIB + 7, 5 * MIB);
        assert_eq!((layout.part_size, layout.part_count), (5 * MIB, 3));
        assert_eq!([layout.part_len(1), layout.part_len(2), layout.part_len(3)], [5 * MIB, 5 * MIB, MIB + 7]);
        assert_eq!(Layout::new(1, 8 * MIB).part_count, 1);
        assert_eq!(Layout::new(8 * MIB, 8 * MIB).part_len(1), 8 * MIB);
    }

    #[test]
    fn huge_files_get_bigger_parts_to_stay_within_ten_thousand() {
        let layout = Layout::new(200 * 1024 * MIB, 8 * MIB);
        assert!(layout.part_count <= 10_000, "{layout:?}");
        assert_eq!(layout.part_size % MIB, 0);
        assert_eq!(layout.part_size, 21 * MIB);
    }
}
