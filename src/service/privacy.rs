//! Photo privacy on confirm: before an image is recorded its metadata,
//! location included, is removed ([`photo_metadata`]). The cleaned copy goes
//! under a key of its own inside the upload's prefix, which no presigned URL
//! can write; the file serves that copy and the uploaded object is deleted.
//! While the upload is pending it owns every key under its prefix, so the
//! sweeper never takes a copy a confirm is about to record.

use bytes::Bytes;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{ServiceError, deps::Deps};
use crate::{
    entity::pending_upload,
    photo_metadata::{self, Stripped},
};

/// The object a file serves in place of the uploaded one.
#[derive(Debug, Clone)]
pub struct Cleaned {
    pub key: String,
    pub size: u64,
    /// Of the cleaned bytes, which are what downloads get.
    pub sha256: String,
}

/// Images up to this size are read whole by the confirm's verification, in
/// the same GET as their first KiB (larger ones are read under a slot).
const READ_WITH_VERIFICATION: u64 = 256 * 1024;

/// Whether an upload's object is checked for metadata: an image of a
/// strippable type, removal on.
fn checked(deps: &Deps, upload: &pending_upload::Model) -> bool {
    deps.privacy.strip && photo_metadata::strippable(&upload.content_type)
}

/// The size to read of a small upload's object when it will be cleaned (all
/// of it); `None` otherwise.
pub(super) fn reads_whole(deps: &Deps, upload: &pending_upload::Model) -> Option<u64> {
    let size = upload.file_size as u64;
    (checked(deps, upload) && size <= READ_WITH_VERIFICATION.min(deps.privacy.max_bytes)).then_some(size)
}

/// Removes the metadata of an uploaded image, storing the cleaned copy;
/// `None` when the file is served as uploaded (not an image with metadata,
/// cleaning off, or over the size limit). `whole` is the object when the
/// verification read all of it already.
pub(super) async fn clean(
    deps: &Deps,
    upload: &pending_upload::Model,
    whole: Option<Bytes>,
) -> Result<Option<Cleaned>, ServiceError> {
    let privacy = &deps.privacy;
    if !checked(deps, upload) {
        return Ok(None);
    }
    let size = upload.file_size as u64;
    if size > privacy.max_bytes {
        tracing::info!(upload_id = %upload.id, size, "photo metadata kept: the image is over STRIP_PHOTO_METADATA_MAX_MB");
        deps.metrics.photo_metadata("over_limit");
        return Ok(None);
    }
    // The semaphore is never closed: a slot always comes.
    let _slot = privacy.slots.acquire().await.ok();
    let original = match whole {
        Some(bytes) => bytes,
        None => deps.storage.read_prefix(&upload.s3_key, size).await.map_err(ServiceError::vanished)?,
    };
    // One pass over the bytes (a few milliseconds for a camera photo).
    let bytes = match photo_metadata::strip(&upload.content_type, original) {
        Stripped::Cleaned(bytes) => bytes,
        Stripped::Unchanged => {
            deps.metrics.photo_metadata("none_found");
            return Ok(None);
        }
        Stripped::Malformed(reason) => {
            deps.metrics.photo_metadata("malformed");
            return Err(ServiceError::unverified(
                "image_malformed",
                format!("the image's metadata cannot be removed: {reason}"),
            ));
        }
    };
    let cleaned = Cleaned {
        key: cleaned_key(&upload.s3_key),
        size: bytes.len() as u64,
        sha256: hex::encode(Sha256::digest(&bytes)),
    };
    deps.storage.put(&cleaned.key, &upload.content_type, bytes).await?;
    deps.metrics.photo_metadata("removed");
    Ok(Some(cleaned))
}

/// A new key beside `original` (`uploads/{channel}/{upload}/{name}`), one
/// level deeper than any presigned key: `uploads/{channel}/{upload}/clean-{n}/{name}`.
/// Each confirm attempt writes its own, so a losing attempt never touches
/// the copy the winner recorded.
fn cleaned_key(original: &str) -> String {
    let (prefix, name) = original.rsplit_once('/').unwrap_or(("uploads", original));
    format!("{prefix}/clean-{}/{name}", Uuid::new_v4().simple())
}

/// The upload a key under `uploads/` belongs to: `uploads/{channel}/{upload}/…`.
pub fn upload_of_key(key: &str) -> Option<Uuid> {
    let mut parts = key.strip_prefix("uploads/")?.split('/');
    let _channel = parts.next()?;
    Uuid::try_parse(parts.next()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cleaned_key_is_under_its_upload_and_never_a_presignable_key() {
        let id = Uuid::now_v7();
        let original = format!("uploads/7/{}/photo.jpg", id.simple());
        let cleaned = cleaned_key(&original);
        assert!(cleaned.starts_with(&format!("uploads/7/{}/clean-", id.simple())), "{cleaned}");
        assert!(cleaned.ends_with("/photo.jpg"));
        assert_eq!(cleaned.matches('/').count(), original.matches('/').count() + 1);
        assert_ne!(cleaned, cleaned_key(&original));
        assert_eq!(upload_of_key(&cleaned), Some(id));
        assert_eq!(upload_of_key(&original), Some(id));
        assert_eq!(upload_of_key("previews/7/1.jpg"), None);
        assert_eq!(upload_of_key("uploads/7/not-a-uuid/x"), None);
    }
}
