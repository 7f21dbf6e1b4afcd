//! Uploads: presign → the client PUTs straight to S3 → confirm verifies and
//! records; abort; and uploads streamed through the broker.

use aws_sdk_s3::types::CompletedPart;
use bytes::{Bytes, BytesMut};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use tokio::{
    io::{AsyncRead, AsyncReadExt},
    task::{JoinError, JoinSet},
};
use uuid::Uuid;

use super::{
    ServiceError,
    deps::Deps,
    lifecycle, membership, now,
    privacy::{self, Cleaned},
    quota,
};
use crate::{
    domain::{ContentType, FileName, SNIFF_LEN, Sha256Hex, sniff_mismatch},
    entity::{
        file_upload, message,
        pending_upload::{self, UploadState},
    },
    ratelimit::Action,
    storage::{PresignedRequest, StorageError},
};

/// Part size of multipart uploads streamed through the broker; one upload
/// holds at most `PROXY_PARTS_IN_FLIGHT` + 1 of them in memory.
pub const STREAM_PART_SIZE: usize = 8 * 1024 * 1024;

/// Where an upload goes: a channel, optionally a message of the uploader's in it.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub channel_id: Option<i32>,
    pub message_id: Option<i32>,
}

/// A file a client is about to upload.
#[derive(Debug, Clone)]
pub struct UploadRequest {
    pub target: Target,
    pub file_name: FileName,
    pub content_type: ContentType,
    pub size: u64,
    pub sha256: Option<Sha256Hex>,
}

/// A presigned upload: what the client must send, and where.
#[derive(Debug, Clone)]
pub struct Presigned {
    pub upload: pending_upload::Model,
    pub request: PresignedRequest,
    /// When the URL stops working (the upload may be confirmed a grace period longer).
    pub url_expires_at: chrono::NaiveDateTime,
}

/// The result of a confirm.
#[derive(Debug, Clone)]
pub enum Confirmation {
    /// The file was recorded now.
    Created(file_upload::Model),
    /// The upload had been confirmed before: the same file.
    AlreadyConfirmed(file_upload::Model),
}

pub(super) fn rate_limit(deps: &Deps, action: Action, user: i32) -> Result<(), ServiceError> {
    deps.limits.check(action, user).map_err(|l| ServiceError::RateLimited { retry_after_secs: l.retry_after_secs })
}

/// Type and extension rules shared by both upload paths.
fn check_type(deps: &Deps, name: &FileName, content_type: &ContentType) -> Result<(), ServiceError> {
    if !deps.policy.allowed_file_types.allows(content_type.as_str()) {
        return Err(ServiceError::TypeNotAllowed(format!("{} is not an allowed file type", content_type.as_str())));
    }
    if !content_type.agrees_with(name) {
        return Err(ServiceError::invalid(
            "extension_mismatch",
            format!("content type {} does not match the extension of '{}'", content_type.as_str(), name.as_str()),
        ));
    }
    Ok(())
}

fn check_size(deps: &Deps, size: u64) -> Result<(), ServiceError> {
    if size == 0 {
        return Err(ServiceError::invalid("invalid_size", "size must be at least 1 byte"));
    }
    if size > deps.policy.max_file_size_bytes() {
        return Err(too_large(deps));
    }
    Ok(())
}

fn too_large(deps: &Deps) -> ServiceError {
    ServiceError::TooLarge(format!("files may be at most {} MiB", deps.policy.max_file_size_mb))
}

/// The channel (and message) an upload goes to, after checking the caller may
/// post there: member of the channel, author of the message.
async fn resolve_target(
    db: &DatabaseConnection,
    user: i32,
    target: Target,
) -> Result<(i32, Option<i32>), ServiceError> {
    match (target.channel_id, target.message_id) {
        (channel_id, Some(message_id)) => {
            let message =
                message::Entity::find_by_id(message_id).one(db).await?.ok_or(ServiceError::NotFound("message"))?;
            if channel_id.is_some_and(|c| c != message.channel_id) {
                return Err(ServiceError::NotFound("message"));
            }
            if !membership::is_member(db, message.channel_id, user).await? {
                return Err(ServiceError::NotFound("message"));
            }
            if message.user_id != user {
                return Err(ServiceError::Forbidden("files can only be added to your own messages".into()));
            }
            Ok((message.channel_id, Some(message_id)))
        }
        (Some(channel_id), None) => {
            if !membership::is_member(db, channel_id, user).await? {
                return Err(ServiceError::NotFound("channel"));
            }
            Ok((channel_id, None))
        }
        (None, None) => Err(ServiceError::invalid("missing_target", "give channel_id or message_id")),
    }
}

/// The checks every direct upload passes before anything is signed: rate
/// limit, size, type, and where the file goes (channel and message).
pub(super) async fn admit(deps: &Deps, user: i32, req: &UploadRequest) -> Result<(i32, Option<i32>), ServiceError> {
    check_request(deps, user, req)?;
    resolve_target(&deps.db, user, req.target).await
}

/// Rate limit, size and type.
fn check_request(deps: &Deps, user: i32, req: &UploadRequest) -> Result<(), ServiceError> {
    rate_limit(deps, Action::Upload, user)?;
    check_size(deps, req.size)?;
    check_type(deps, &req.file_name, &req.content_type)
}

pub(super) fn object_key(channel_id: i32, upload_id: Uuid, name: &FileName) -> String {
    format!("uploads/{channel_id}/{}/{}", upload_id.simple(), name.key_safe())
}

/// The row of an upload in progress, confirmable for `lifetime_secs` from now.
pub(super) fn pending_row(
    id: Uuid,
    user: i32,
    (channel_id, message_id): (i32, Option<i32>),
    req: &UploadRequest,
    s3_key: String,
    lifetime_secs: u64,
) -> pending_upload::Model {
    let created = now();
    pending_upload::Model {
        id,
        user_id: user,
        channel_id,
        message_id,
        file_name: req.file_name.as_str().to_owned(),
        s3_key,
        content_type: req.content_type.as_str().to_owned(),
        file_size: req.size as i64,
        sha256: req.sha256.as_ref().map(|s| s.as_str().to_owned()),
        state: UploadState::Pending,
        file_id: None,
        multipart_upload_id: None,
        part_size: None,
        created_at: created,
        expires_at: created + chrono::Duration::seconds(lifetime_secs as i64),
    }
}

/// Validates an upload, records it as pending and signs the PUT the client
/// must send: exactly the declared type, size (and SHA-256), and only if no
/// object is there yet (`If-None-Match: *`), so a URL can never replace a
/// stored file.
pub async fn presign(deps: &Deps, user: i32, req: UploadRequest) -> Result<Presigned, ServiceError> {
    check_request(deps, user, &req)?;
    // A channel given alone: the insert of the row checks the membership, in
    // the same statement (a presign costs no store call to undo when it fails).
    let (channel_id, message_id) = match req.target {
        Target { channel_id: Some(channel_id), message_id: None } => (channel_id, None),
        target => resolve_target(&deps.db, user, target).await?,
    };
    let id = Uuid::now_v7();
    let key = object_key(channel_id, id, &req.file_name);
    let ttl = std::time::Duration::from_secs(deps.policy.upload_url_ttl_secs);
    let checksum = req.sha256.as_ref().map(Sha256Hex::to_base64);
    let request =
        deps.storage.presigner().put_object(&key, req.content_type.as_str(), req.size, checksum.as_deref(), ttl)?;
    let lifetime = ttl.as_secs() + deps.policy.upload_confirm_grace_secs;
    let upload = pending_row(id, user, (channel_id, message_id), &req, key, lifetime);
    quota::insert_within_quota(deps, &upload).await?;
    deps.metrics.presigned();
    let url_expires_at = upload.created_at + chrono::Duration::seconds(ttl.as_secs() as i64);
    Ok(Presigned { upload, request, url_expires_at })
}

/// The caller's own upload in a channel they still belong to; anything else
/// looks missing.
pub(super) async fn own_upload(
    db: &DatabaseConnection,
    user: i32,
    upload_id: Uuid,
) -> Result<pending_upload::Model, ServiceError> {
    pending_upload::Entity::find_by_id(upload_id)
        .filter(pending_upload::Column::UserId.eq(user))
        .filter(lifecycle::uploader_is_member())
        .one(db)
        .await?
        .ok_or(ServiceError::NotFound("upload"))
}

/// Verifies the uploaded object and records the file. Idempotent: confirming
/// again returns the same file.
pub async fn confirm(deps: &Deps, user: i32, upload_id: Uuid) -> Result<Confirmation, ServiceError> {
    let result = confirm_inner(deps, user, upload_id).await;
    count_confirm(deps, &result);
    result
}

/// Counts a confirm (or multipart complete) by outcome.
pub(super) fn count_confirm(deps: &Deps, result: &Result<Confirmation, ServiceError>) {
    match result {
        Ok(Confirmation::Created(file)) => deps.metrics.confirmed("created", file.file_size.unwrap_or(0) as u64),
        Ok(Confirmation::AlreadyConfirmed(_)) => deps.metrics.confirmed("already_confirmed", 0),
        Err(
            ServiceError::Unverified { code, .. }
            | ServiceError::Gone { code, .. }
            | ServiceError::Conflict { code, .. },
        ) => deps.metrics.confirmed(code, 0),
        Err(_) => deps.metrics.confirmed("error", 0),
    }
}

/// What a confirm or complete does with an upload in its current state:
/// `None` to go on verifying a pending upload, the recorded file when it was
/// confirmed before, a refusal otherwise.
pub(super) async fn finished(
    db: &DatabaseConnection,
    upload: &pending_upload::Model,
) -> Result<Option<Confirmation>, ServiceError> {
    match upload.state {
        UploadState::Pending if upload.expires_at > now() => Ok(None),
        UploadState::Pending | UploadState::Expired => Err(expired()),
        UploadState::Confirmed => already_confirmed(db, upload).await.map(Some),
        UploadState::Aborted | UploadState::Rejected => Err(not_pending(upload)),
    }
}

/// The refusal for an upload that was aborted or rejected.
pub(super) fn not_pending(upload: &pending_upload::Model) -> ServiceError {
    ServiceError::conflict("upload_not_pending", format!("this upload was {}", upload.state.as_str()))
}

fn expired() -> ServiceError {
    ServiceError::Gone {
        code: "upload_expired",
        message: "this upload expired before it was confirmed; presign again".into(),
    }
}

async fn confirm_inner(deps: &Deps, user: i32, upload_id: Uuid) -> Result<Confirmation, ServiceError> {
    rate_limit(deps, Action::Confirm, user)?;
    let upload = own_upload(&deps.db, user, upload_id).await?;
    if let Some(done) = finished(&deps.db, &upload).await? {
        return Ok(done);
    }
    if upload.multipart_upload_id.is_some() {
        return Err(ServiceError::conflict("upload_is_multipart", "a multipart upload is finished with /complete"));
    }
    verify_and_record(deps, &upload).await
}

/// Verifies the stored object (its size and first KiB in one ranged GET,
/// the declared SHA-256 when there is one) and records the file.
pub(super) async fn verify_and_record(
    deps: &Deps,
    upload: &pending_upload::Model,
) -> Result<Confirmation, ServiceError> {
    let verified = verify_object(deps, upload).await;
    settle(deps, upload, verified).await
}

/// Records the file when it was `verified` (without the metadata of an
/// image, see [`privacy`]); otherwise rejects the upload
/// (deleting the object) unless the object is merely missing. When the upload
/// changed meanwhile, answers as that change decides.
pub(super) async fn settle(
    deps: &Deps,
    upload: &pending_upload::Model,
    verified: Result<Option<Bytes>, ServiceError>,
) -> Result<Confirmation, ServiceError> {
    // An image's metadata goes before it is recorded (and announced).
    let cleaned = match verified {
        Ok(whole) => privacy::clean(deps, upload, whole).await,
        Err(err) => Err(err),
    };
    match cleaned {
        Ok(cleaned) => record(deps, upload, cleaned).await,
        // Missing because an abort or the sweeper deleted it? Then say that.
        Err(err @ ServiceError::Unverified { code: "object_missing", .. }) => unless_changed(deps, upload, err).await,
        Err(err @ ServiceError::Unverified { .. }) => {
            if lifecycle::close(&deps.db, upload.id, UploadState::Rejected).await? {
                lifecycle::discard_objects(&deps.storage, &deps.metrics, std::slice::from_ref(upload)).await;
                return Err(err);
            }
            changed_meanwhile(deps, upload).await
        }
        Err(err) => Err(err),
    }
}

pub(super) async fn already_confirmed(
    db: &DatabaseConnection,
    upload: &pending_upload::Model,
) -> Result<Confirmation, ServiceError> {
    // The file may serve another object than the upload's (a cleaned copy).
    let file = match upload.file_id {
        Some(id) => file_upload::Entity::find_by_id(id).one(db).await?,
        None => file_upload::Entity::find().filter(file_upload::Column::S3Key.eq(&upload.s3_key)).one(db).await?,
    }
    .ok_or(ServiceError::NotFound("file"))?;
    if file.is_deleted == Some(true) {
        return Err(ServiceError::NotFound("file"));
    }
    Ok(Confirmation::AlreadyConfirmed(file))
}

/// One ranged GET of the first KiB gives the object's size (`Content-Range`)
/// and its magic bytes: the object exists with the declared size and type
/// (and the declared SHA-256). For an image that will be cleaned of its
/// metadata the same GET reads all of it: `Some(whole object)`.
async fn verify_object(deps: &Deps, upload: &pending_upload::Model) -> Result<Option<Bytes>, ServiceError> {
    let whole = privacy::reads_whole(deps, upload);
    let read = whole.unwrap_or(SNIFF_LEN as u64);
    // The store's checksum of a declared SHA-256 is asked for at the same time.
    let (head, stored) = tokio::join!(deps.storage.read_head(&upload.s3_key, read), stored_checksum(deps, upload));
    let Some((head, size)) = head.map_err(ServiceError::vanished)? else {
        return Err(ServiceError::object_missing());
    };
    if size != upload.file_size as u64 {
        return Err(ServiceError::unverified(
            "size_mismatch",
            format!("uploaded {size} bytes, {} were declared", upload.file_size),
        ));
    }
    verify_checksum(deps, upload, stored.map_err(ServiceError::vanished)?).await?;
    verify_magic(upload, &head[..head.len().min(SNIFF_LEN)])?;
    Ok(whole.is_some().then_some(head))
}

/// The declared SHA-256 when there is one, and the magic bytes of the first
/// KiB (after a multipart upload, whose size its parts settled).
pub(super) async fn verify_content(deps: &Deps, upload: &pending_upload::Model) -> Result<Option<Bytes>, ServiceError> {
    let stored = stored_checksum(deps, upload).await.map_err(ServiceError::vanished)?;
    verify_checksum(deps, upload, stored).await?;
    let head = deps.storage.read_prefix(&upload.s3_key, SNIFF_LEN as u64).await.map_err(ServiceError::vanished)?;
    verify_magic(upload, &head).map(|()| None)
}

/// The SHA-256 the store verified for an upload that declared one.
async fn stored_checksum(deps: &Deps, upload: &pending_upload::Model) -> Result<Option<String>, StorageError> {
    match upload.sha256 {
        Some(_) => deps.storage.verified_sha256(&upload.s3_key).await,
        None => Ok(None),
    }
}

/// Compares a declared SHA-256 with the one the store verified (`stored`,
/// constant cost) or, when it has none, with the whole object's, read
/// through the broker.
async fn verify_checksum(
    deps: &Deps,
    upload: &pending_upload::Model,
    stored: Option<String>,
) -> Result<(), ServiceError> {
    if let Some(expected) = &upload.sha256 {
        let actual = match stored {
            Some(verified) => verified,
            None => deps.storage.sha256_hex(&upload.s3_key).await.map_err(ServiceError::vanished)?,
        };
        if &actual != expected {
            return Err(ServiceError::unverified(
                "checksum_mismatch",
                "the uploaded bytes do not match the declared sha256",
            ));
        }
    }
    Ok(())
}

fn verify_magic(upload: &pending_upload::Model, head: &[u8]) -> Result<(), ServiceError> {
    let declared = ContentType::parse(&upload.content_type).map_err(|e| ServiceError::invalid(e.code, e.message))?;
    if let Some(found) = sniff_mismatch(&declared, head) {
        return Err(ServiceError::unverified(
            "content_mismatch",
            format!("the file's content ({found}) does not match its declared type {}", upload.content_type),
        ));
    }
    Ok(())
}

/// Records and announces the file (pending → confirmed, conditionally),
/// serving the `cleaned` copy when there is one (the uploaded object then
/// goes). When the upload changed meanwhile (aborted, expired, its uploader
/// removed, or confirmed by a concurrent call), answers as that change decides.
async fn record(
    deps: &Deps,
    upload: &pending_upload::Model,
    cleaned: Option<Cleaned>,
) -> Result<Confirmation, ServiceError> {
    let served = match &cleaned {
        Some(copy) => &pending_upload::Model {
            s3_key: copy.key.clone(),
            file_size: copy.size as i64,
            sha256: Some(copy.sha256.clone()),
            ..upload.clone()
        },
        None => upload,
    };
    let recorded = lifecycle::confirm(&deps.db, served).await;
    // The uploaded object once the copy is recorded; the copy when the
    // recording certainly did not happen. After a database error (which may
    // have hit a commit that went through) nothing is deleted: the sweeper
    // tells by the rows which object no file serves.
    let unused = match (&cleaned, &recorded) {
        (Some(_), Ok(Some(_))) => Some(&upload.s3_key),
        (Some(copy), Ok(None)) => Some(&copy.key),
        _ => None,
    };
    if let Some(key) = unused {
        lifecycle::delete_unused(&deps.storage, &deps.metrics, key).await;
    }
    if let Some(lifecycle::Recorded { file, last_event }) = recorded? {
        deps.events.committed(last_event);
        if file.preview_state.is_some() {
            deps.previews.wake();
        }
        return Ok(Confirmation::Created(file));
    }
    changed_meanwhile(deps, upload).await
}

/// `err` when the upload is still open (pending, in time, its uploader a
/// member); otherwise what closed it meanwhile (an abort, an expiry, a
/// removal from the channel, a concurrent confirm) answers instead: a store
/// error or a missing object is then its consequence, not the cause.
pub(super) async fn unless_changed(
    deps: &Deps,
    upload: &pending_upload::Model,
    err: ServiceError,
) -> Result<Confirmation, ServiceError> {
    let now_is =
        pending_upload::Entity::find_by_id(upload.id).filter(lifecycle::uploader_is_member()).one(&deps.db).await?;
    match now_is {
        Some(row) if row.state == UploadState::Pending && row.expires_at > now() => Err(err),
        _ => changed_meanwhile(deps, upload).await,
    }
}

/// The answer for a confirm whose upload stopped being pending while it
/// verified: the file when a concurrent confirm recorded it, a refusal naming
/// what happened otherwise.
async fn changed_meanwhile(deps: &Deps, upload: &pending_upload::Model) -> Result<Confirmation, ServiceError> {
    // An uploader removed from the channel meanwhile sees what a stranger sees.
    let Some(now_is) =
        pending_upload::Entity::find_by_id(upload.id).filter(lifecycle::uploader_is_member()).one(&deps.db).await?
    else {
        return Err(ServiceError::NotFound("upload"));
    };
    match now_is.state {
        UploadState::Confirmed => already_confirmed(&deps.db, &now_is).await,
        UploadState::Pending if now_is.expires_at <= now() => Err(expired()),
        // Still pending, yet not recorded: the uploader left the channel.
        UploadState::Pending => Err(ServiceError::NotFound("upload")),
        closed @ (UploadState::Aborted | UploadState::Rejected | UploadState::Expired) => {
            // Whoever closed it discarded the object, perhaps before this
            // call's complete or upload created it: no file can own it.
            lifecycle::discard_objects(&deps.storage, &deps.metrics, std::slice::from_ref(upload)).await;
            Err(if closed == UploadState::Expired { expired() } else { not_pending(&now_is) })
        }
    }
}

/// Abandons an unconfirmed upload, deleting whatever was uploaded.
pub async fn abort(deps: &Deps, user: i32, upload_id: Uuid) -> Result<(), ServiceError> {
    let upload = own_upload(&deps.db, user, upload_id).await?;
    let confirmed = || ServiceError::conflict("upload_confirmed", "this upload is confirmed; delete the file instead");
    match upload.state {
        UploadState::Confirmed => Err(confirmed()),
        UploadState::Pending => {
            if lifecycle::close(&deps.db, upload.id, UploadState::Aborted).await? {
                lifecycle::discard_objects(&deps.storage, &deps.metrics, std::slice::from_ref(&upload)).await;
                return Ok(());
            }
            // Changed meanwhile: a concurrent confirm may have won.
            match pending_upload::Entity::find_by_id(upload.id).one(&deps.db).await? {
                Some(now_is) if now_is.state == UploadState::Confirmed => Err(confirmed()),
                _ => Ok(()),
            }
        }
        UploadState::Aborted | UploadState::Rejected | UploadState::Expired => Ok(()),
    }
}

/// A file streamed through the broker (`POST /files/upload`).
pub struct StreamedFile<R> {
    pub target: Target,
    pub file_name: FileName,
    pub content_type: ContentType,
    /// The request's declared length: an upper bound on the file's size.
    pub declared_size: Option<u64>,
    pub body: R,
}

/// Streams a file to S3 without holding more than one part in memory, enforcing
/// the size limit as bytes arrive and sniffing the first KiB before anything is
/// stored; then records it like a confirm.
/// `rest` checks what follows the file (the rest of the form) once the bytes
/// are stored, before anything is recorded; its error abandons the upload.
pub async fn upload_stream<R: AsyncRead + Unpin>(
    deps: &Deps,
    user: i32,
    file: StreamedFile<R>,
    rest: impl Future<Output = Result<(), ServiceError>>,
) -> Result<file_upload::Model, ServiceError> {
    let StreamedFile { target, file_name, content_type, declared_size, body: mut reader } = file;
    rate_limit(deps, Action::Upload, user)?;
    // Each holds up to `PROXY_PARTS_IN_FLIGHT` + 1 parts in memory for as
    // long as its client takes: a user gets a few at once.
    let _streaming = deps
        .streams
        .take(user, deps.policy.proxy_uploads_per_user)
        .ok_or(ServiceError::RateLimited { retry_after_secs: 1 })?;
    check_type(deps, &file_name, &content_type)?;
    let (channel_id, message_id) = resolve_target(&deps.db, user, target).await?;
    let id = Uuid::now_v7();
    let key = object_key(channel_id, id, &file_name);
    let max = deps.policy.max_file_size_bytes();

    // Read into part-sized buffers, reused once their parts are sent (see
    // `stream_parts`): memory stays flat.
    let mut buffer = BytesMut::with_capacity(STREAM_PART_SIZE);
    let idle = deps.policy.proxy_idle_timeout();
    let first = read_chunk(&mut reader, &mut buffer, STREAM_PART_SIZE.min(max as usize + 1), idle).await?;
    check_size(deps, first.len() as u64)?;
    if let Some(found) = sniff_mismatch(&content_type, &first[..first.len().min(SNIFF_LEN)]) {
        return Err(ServiceError::unverified(
            "content_mismatch",
            format!("the file's content ({found}) does not match its declared type {}", content_type.as_str()),
        ));
    }
    // Recorded before any byte is stored, so nothing in the store is ever
    // unknown to the database (and the sweeper cleans up after a crash). It
    // reserves, within the quotas, the file's size when the first read held
    // all of it, else the request's declared length (at most the size limit).
    let reserved =
        if first.len() < STREAM_PART_SIZE { first.len() as u64 } else { declared_size.unwrap_or(max).min(max) };
    let request = UploadRequest {
        target,
        file_name: file_name.clone(),
        content_type: content_type.clone(),
        size: reserved,
        sha256: None,
    };
    let lifetime = deps
        .policy
        .multipart_upload_ttl_secs
        .max(deps.policy.upload_url_ttl_secs + deps.policy.upload_confirm_grace_secs);
    let mut upload = pending_row(id, user, (channel_id, message_id), &request, key.clone(), lifetime);
    quota::insert_within_quota(deps, &upload).await?;
    // A file that fit in the first read stays in memory for the confirm.
    let mut whole = None;
    let stored = if first.len() < STREAM_PART_SIZE {
        // The whole file fit in the first read: one PutObject.
        let size = first.len() as u64;
        whole = Some(first.clone());
        deps.storage.put(&key, content_type.as_str(), first).await.map(|()| size).map_err(ServiceError::from)
    } else {
        match deps.storage.create_multipart(&key, content_type.as_str()).await {
            Ok(multipart) => {
                let streamed = stream_parts(deps, &key, &multipart, first, &mut reader, &mut buffer, max).await;
                if streamed.is_err() {
                    upload.multipart_upload_id = Some(multipart);
                }
                streamed
            }
            Err(err) => Err(err.into()),
        }
    };
    // The file's reader borrows the form: it goes before the rest is read.
    drop(reader);
    let stored = match stored {
        Ok(size) => rest.await.map(|()| size),
        Err(err) => Err(err),
    };
    let size = match stored {
        Ok(size) => size,
        Err(err) => {
            if lifecycle::close(&deps.db, upload.id, UploadState::Aborted).await? {
                lifecycle::discard_objects(&deps.storage, &deps.metrics, std::slice::from_ref(&upload)).await;
            }
            return Err(err);
        }
    };
    upload.file_size = size as i64;
    match settle(deps, &upload, Ok(whole)).await? {
        Confirmation::Created(file) | Confirmation::AlreadyConfirmed(file) => {
            deps.metrics.confirmed("uploaded_through_broker", size);
            Ok(file)
        }
    }
}

/// Sends the parts of a streamed upload, up to `PROXY_PARTS_IN_FLIGHT` at
/// once while the next is read from the client: memory holds at most that
/// many parts plus the one being read.
async fn stream_parts<R: AsyncRead + Unpin>(
    deps: &Deps,
    key: &str,
    multipart: &str,
    first: Bytes,
    body: &mut R,
    buffer: &mut BytesMut,
    max: u64,
) -> Result<u64, ServiceError> {
    let in_flight = deps.policy.proxy_parts_in_flight.max(1);
    let mut sending = JoinSet::new();
    let send = |sending: &mut JoinSet<_>, number: i32, chunk: Bytes| {
        let (storage, key, multipart) = (deps.storage.clone(), key.to_owned(), multipart.to_owned());
        sending.spawn(async move {
            let buffer = chunk.clone();
            storage.upload_part(&key, &multipart, number, chunk).await.map(|part| (part, buffer))
        });
    };
    let mut total = first.len() as u64;
    let mut parts = Vec::new();
    // The buffers of sent parts, read into again: an upload faults in its few
    // part buffers once, not a fresh one for every part.
    let mut spare = Vec::new();
    let mut number = 1;
    send(&mut sending, number, first);
    let streamed = async {
        loop {
            while sending.len() >= in_flight {
                keep(sent(sending.join_next().await)?, &mut parts, &mut spare);
            }
            if buffer.capacity() < STREAM_PART_SIZE
                && let Some(reused) = spare.pop()
            {
                *buffer = reused;
            }
            let chunk = read_chunk(body, buffer, STREAM_PART_SIZE, deps.policy.proxy_idle_timeout()).await?;
            if chunk.is_empty() {
                break;
            }
            total += chunk.len() as u64;
            if total > max {
                return Err(too_large(deps));
            }
            number += 1;
            send(&mut sending, number, chunk);
        }
        while !sending.is_empty() {
            keep(sent(sending.join_next().await)?, &mut parts, &mut spare);
        }
        Ok(())
    }
    .await;
    if let Err(err) = streamed {
        // The parts still being sent finish first: the abort that follows
        // then removes them all (a part stored after it would stay).
        while sending.join_next().await.is_some() {}
        return Err(err);
    }
    parts.sort_by_key(|part| part.part_number());
    deps.storage.complete_multipart(key, multipart, parts).await?;
    Ok(total)
}

/// Keeps a sent part, and its buffer for the next read once no one else holds it.
fn keep((part, buffer): SentPart, parts: &mut Vec<CompletedPart>, spare: &mut Vec<BytesMut>) {
    parts.push(part);
    spare.extend(buffer.try_into_mut().ok());
}

/// A stored part and the buffer it was sent from.
type SentPart = (CompletedPart, Bytes);

/// The part a finished send stored, and the buffer it was sent from.
fn sent(joined: Option<Result<Result<SentPart, StorageError>, JoinError>>) -> Result<SentPart, ServiceError> {
    match joined {
        Some(Ok(part)) => Ok(part?),
        Some(Err(err)) => Err(StorageError::Unavailable(format!("sending a part stopped: {err}")).into()),
        None => Err(StorageError::Unavailable("no part was being sent".into()).into()),
    }
}

/// Reads up to `len` bytes into `buf` (taking back its storage once the last
/// chunk is dropped), fewer only at the end of the body.
/// A client that sends nothing for `idle` has gone: the upload is abandoned
/// (its slot, its parts and its memory go back).
async fn read_chunk<R: AsyncRead + Unpin>(
    body: &mut R,
    buf: &mut BytesMut,
    len: usize,
    idle: std::time::Duration,
) -> Result<Bytes, ServiceError> {
    buf.clear();
    buf.reserve(len);
    while buf.len() < len {
        let mut limited = (&mut *body).take((len - buf.len()) as u64);
        let read = tokio::time::timeout(idle, limited.read_buf(buf))
            .await
            .map_err(|_| {
                ServiceError::invalid(
                    "upload_interrupted",
                    format!("the upload stopped: no bytes arrived for {} s", idle.as_secs()),
                )
            })?
            .map_err(|e| ServiceError::invalid("upload_interrupted", format!("reading the upload failed: {e}")))?;
        if read == 0 {
            break;
        }
    }
    Ok(buf.split().freeze())
}
