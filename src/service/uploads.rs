//! Uploads: presign → the client PUTs straight to S3 → confirm verifies and
//! records; abort; and uploads streamed through the broker.

use bytes::{Bytes, BytesMut};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, TransactionTrait,
    sea_query::Expr,
};
use tokio::io::{AsyncRead, AsyncReadExt};
use uuid::Uuid;

use super::{OnConflict, ServiceError, channels, messages, now};
use crate::{
    domain::{ContentType, FileName, SNIFF_LEN, Sha256Hex, sniff_mismatch},
    entity::{file_upload, message, pending_upload},
    events::{Event, FileUploadComplete},
    ratelimit::Action,
    startup::AppState,
    storage::PresignedRequest,
};

/// Part size of multipart uploads streamed through the broker; also the most
/// one upload holds in memory.
pub const STREAM_PART_SIZE: usize = 8 * 1024 * 1024;

/// States of a `pending_uploads` row.
pub(super) mod state {
    pub const PENDING: &str = "pending";
    pub const CONFIRMED: &str = "confirmed";
    pub const ABORTED: &str = "aborted";
    pub const REJECTED: &str = "rejected";
}

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
}

/// The result of a confirm.
#[derive(Debug, Clone)]
pub enum Confirmation {
    /// The file was recorded now.
    Created(file_upload::Model),
    /// The upload had been confirmed before: the same file.
    AlreadyConfirmed(file_upload::Model),
}

pub(super) fn rate_limit(state: &AppState, action: Action, user: i32) -> Result<(), ServiceError> {
    state.limits.check(action, user).map_err(|l| ServiceError::RateLimited { retry_after_secs: l.retry_after_secs })
}

/// Type and extension rules shared by both upload paths.
fn check_type(state: &AppState, name: &FileName, content_type: &ContentType) -> Result<(), ServiceError> {
    if !state.config.allowed_file_types.allows(content_type.as_str()) {
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

fn check_size(state: &AppState, size: u64) -> Result<(), ServiceError> {
    if size == 0 {
        return Err(ServiceError::invalid("invalid_size", "size must be at least 1 byte"));
    }
    if size > state.config.max_file_size_bytes() {
        return Err(too_large(state));
    }
    Ok(())
}

fn too_large(state: &AppState) -> ServiceError {
    ServiceError::TooLarge(format!("files may be at most {} MiB", state.config.max_file_size_mb))
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
            channels::require_member(db, message.channel_id, user)
                .await
                .map_err(|_| ServiceError::NotFound("message"))?;
            if message.user_id != user {
                return Err(ServiceError::Forbidden("files can only be added to your own messages".into()));
            }
            Ok((message.channel_id, Some(message_id)))
        }
        (Some(channel_id), None) => {
            channels::require_member(db, channel_id, user).await?;
            Ok((channel_id, None))
        }
        (None, None) => Err(ServiceError::invalid("missing_target", "give channel_id or message_id")),
    }
}

/// The checks every direct upload passes before anything is signed: rate
/// limit, size, type, and where the file goes (channel and message).
pub(super) async fn admit(
    state: &AppState,
    user: i32,
    req: &UploadRequest,
) -> Result<(i32, Option<i32>), ServiceError> {
    rate_limit(state, Action::Upload, user)?;
    check_size(state, req.size)?;
    check_type(state, &req.file_name, &req.content_type)?;
    match req.target {
        Target { channel_id: Some(channel_id), message_id: None } => {
            if !channels::is_member_cached(state, channel_id, user).await? {
                return Err(ServiceError::NotFound("channel"));
            }
            Ok((channel_id, None))
        }
        target => resolve_target(&state.db, user, target).await,
    }
}

pub(super) fn object_key(channel_id: i32, upload_id: Uuid, name: &FileName) -> String {
    format!("uploads/{channel_id}/{}/{}", upload_id.simple(), name.key_safe())
}

/// The row of an upload in progress, living `lifetime_secs` from now.
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
        state: state::PENDING.to_owned(),
        file_id: None,
        multipart_upload_id: None,
        part_size: None,
        created_at: created,
        expires_at: created + chrono::Duration::seconds(lifetime_secs as i64),
    }
}

/// Validates an upload, records it as pending and signs the PUT the client must send.
pub async fn presign(state: &AppState, user: i32, req: UploadRequest) -> Result<Presigned, ServiceError> {
    let (channel_id, message_id) = admit(state, user, &req).await?;
    let id = Uuid::now_v7();
    let key = object_key(channel_id, id, &req.file_name);
    let ttl = std::time::Duration::from_secs(state.config.upload_url_ttl_secs);
    let checksum = req.sha256.as_ref().map(Sha256Hex::to_base64);
    let request =
        state.storage.presigner().put_object(&key, req.content_type.as_str(), req.size, checksum.as_deref(), ttl);
    let upload = pending_row(id, user, (channel_id, message_id), &req, key, ttl.as_secs());
    state.pending.record(upload.clone()).await?;
    state.metrics.presigned();
    Ok(Presigned { upload, request })
}

/// The caller's own upload; anyone else's looks missing.
pub(super) async fn own_upload(
    state: &AppState,
    user: i32,
    upload_id: Uuid,
) -> Result<pending_upload::Model, ServiceError> {
    let mut upload = pending_upload::Entity::find_by_id(upload_id).one(&state.db).await?;
    if upload.is_none() && state.pending.writes_behind() {
        // Presigned a moment ago: its row may still be on its way to the table.
        state.pending.flush().await;
        upload = pending_upload::Entity::find_by_id(upload_id).one(&state.db).await?;
    }
    upload.filter(|u| u.user_id == user).ok_or(ServiceError::NotFound("upload"))
}

/// Verifies the uploaded object and records the file. Idempotent: confirming
/// again returns the same file.
pub async fn confirm(state: &AppState, user: i32, upload_id: Uuid) -> Result<Confirmation, ServiceError> {
    let result = confirm_inner(state, user, upload_id).await;
    count_confirm(state, &result);
    result
}

/// Counts a confirm (or multipart complete) by outcome.
pub(super) fn count_confirm(state: &AppState, result: &Result<Confirmation, ServiceError>) {
    match result {
        Ok(Confirmation::Created(file)) => state.metrics.confirmed("created", file.file_size.unwrap_or(0) as u64),
        Ok(Confirmation::AlreadyConfirmed(_)) => state.metrics.confirmed("already_confirmed", 0),
        Err(ServiceError::Unverified { code, .. }) => state.metrics.confirmed(code, 0),
        Err(_) => state.metrics.confirmed("error", 0),
    }
}

/// For a confirm or complete: `None` to go on with a pending upload, the
/// recorded file when it was confirmed before, a conflict otherwise.
pub(super) async fn finished(
    state: &AppState,
    upload: &pending_upload::Model,
) -> Result<Option<Confirmation>, ServiceError> {
    match upload.state.as_str() {
        state::PENDING => Ok(None),
        state::CONFIRMED => already_confirmed(&state.db, upload).await.map(Some),
        _ => Err(not_pending(upload)),
    }
}

/// The refusal for an upload that was aborted, rejected or already recorded.
pub(super) fn not_pending(upload: &pending_upload::Model) -> ServiceError {
    ServiceError::conflict("upload_not_pending", format!("this upload was {}", upload.state))
}

async fn confirm_inner(state: &AppState, user: i32, upload_id: Uuid) -> Result<Confirmation, ServiceError> {
    rate_limit(state, Action::Confirm, user)?;
    let upload = own_upload(state, user, upload_id).await?;
    if let Some(done) = finished(state, &upload).await? {
        return Ok(done);
    }
    if upload.multipart_upload_id.is_some() {
        return Err(ServiceError::conflict("upload_is_multipart", "a multipart upload is finished with /complete"));
    }
    verify_and_record(state, &upload).await
}

/// Verifies the stored object (size by HeadObject, then its content) and
/// records the file.
pub(super) async fn verify_and_record(
    state: &AppState,
    upload: &pending_upload::Model,
) -> Result<Confirmation, ServiceError> {
    let verified = match verify_size(state, upload).await {
        Ok(()) => verify_content(state, upload).await,
        Err(err) => Err(err),
    };
    settle(state, upload, verified).await
}

/// Records the file when it was `verified`; otherwise rejects the upload
/// (deleting the object) unless the object is merely missing.
pub(super) async fn settle(
    state: &AppState,
    upload: &pending_upload::Model,
    verified: Result<(), ServiceError>,
) -> Result<Confirmation, ServiceError> {
    if let Err(err) = verified {
        if let ServiceError::Unverified { code, .. } = &err
            && *code != "object_missing"
        {
            reject(state, upload).await?;
        }
        return Err(err);
    }
    record(state, upload).await
}

pub(super) async fn already_confirmed(
    db: &DatabaseConnection,
    upload: &pending_upload::Model,
) -> Result<Confirmation, ServiceError> {
    let file = file_upload::Entity::find()
        .filter(file_upload::Column::S3Key.eq(&upload.s3_key))
        .one(db)
        .await?
        .ok_or(ServiceError::NotFound("file"))?;
    if file.is_deleted == Some(true) {
        return Err(ServiceError::NotFound("file"));
    }
    Ok(Confirmation::AlreadyConfirmed(file))
}

/// HeadObject: the object exists with the declared size.
async fn verify_size(state: &AppState, upload: &pending_upload::Model) -> Result<(), ServiceError> {
    let Some(object) = state.storage.head(&upload.s3_key).await? else {
        return Err(ServiceError::unverified("object_missing", "no object was uploaded for this upload yet"));
    };
    if object.size != upload.file_size as u64 {
        return Err(ServiceError::unverified(
            "size_mismatch",
            format!("uploaded {} bytes, {} were declared", object.size, upload.file_size),
        ));
    }
    Ok(())
}

/// The declared SHA-256 when there is one, and the magic bytes of the first KiB.
pub(super) async fn verify_content(state: &AppState, upload: &pending_upload::Model) -> Result<(), ServiceError> {
    if let Some(expected) = &upload.sha256 {
        let actual = state.storage.sha256_hex(&upload.s3_key).await?;
        if &actual != expected {
            return Err(ServiceError::unverified(
                "checksum_mismatch",
                "the uploaded bytes do not match the declared sha256",
            ));
        }
    }
    let head = state.storage.read_prefix(&upload.s3_key, SNIFF_LEN as u64).await?;
    let declared = ContentType::parse(&upload.content_type).map_err(|e| ServiceError::invalid(e.code, e.message))?;
    if let Some(found) = sniff_mismatch(&declared, &head) {
        return Err(ServiceError::unverified(
            "content_mismatch",
            format!("the file's content ({found}) does not match its declared type {}", upload.content_type),
        ));
    }
    Ok(())
}

/// Deletes the object of an upload that failed verification and closes the upload.
pub(super) async fn reject(state: &AppState, upload: &pending_upload::Model) -> Result<(), ServiceError> {
    state.storage.delete(&upload.s3_key).await?;
    set_state(&state.db, upload.id, state::REJECTED).await
}

pub(super) async fn set_state(db: &DatabaseConnection, id: Uuid, to: &str) -> Result<(), ServiceError> {
    pending_upload::Entity::update_many()
        .col_expr(pending_upload::Column::State, Expr::value(to))
        .filter(pending_upload::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// Inserts the file and closes the upload in one transaction, then announces it.
pub(super) async fn record(state: &AppState, upload: &pending_upload::Model) -> Result<Confirmation, ServiceError> {
    let txn = state.db.begin().await?;
    let inserted = new_file(upload).insert(&txn).await.on_unique_violation("already_confirmed", "already confirmed");
    let file = match inserted {
        Ok(file) => file,
        // A concurrent confirm recorded it first.
        Err(ServiceError::Conflict { .. }) => {
            txn.rollback().await?;
            return already_confirmed(&state.db, upload).await;
        }
        Err(err) => return Err(err),
    };
    pending_upload::Entity::update_many()
        .col_expr(pending_upload::Column::State, Expr::value(state::CONFIRMED))
        .col_expr(pending_upload::Column::FileId, Expr::value(file.id))
        .filter(pending_upload::Column::Id.eq(upload.id))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    announce(state, &file).await?;
    Ok(Confirmation::Created(file))
}

fn new_file(upload: &pending_upload::Model) -> file_upload::ActiveModel {
    file_upload::ActiveModel {
        message_id: Set(upload.message_id),
        file_name: Set(upload.file_name.clone()),
        s3_key: Set(upload.s3_key.clone()),
        content_type: Set(Some(upload.content_type.clone())),
        file_size: Set(Some(upload.file_size)),
        uploaded_at: Set(Some(now())),
        uploaded_by: Set(Some(upload.user_id)),
        is_deleted: Set(Some(false)),
        channel_id: Set(upload.channel_id),
        sha256: Set(upload.sha256.clone()),
        deleted_at: Set(None),
        download_count: Set(0),
        last_downloaded_at: Set(None),
        ..Default::default()
    }
}

/// Publishes `file_upload_complete`, and `message_updated` when the file went
/// straight onto a message.
async fn announce(state: &AppState, file: &file_upload::Model) -> Result<(), ServiceError> {
    state.events.publish(Event::FileUploadComplete(FileUploadComplete {
        channel_id: file.channel_id,
        message_id: file.message_id,
        file: file.clone().into(),
    }));
    if let Some(message_id) = file.message_id {
        messages::touch_and_announce(state, message_id).await?;
    }
    Ok(())
}

/// Abandons an unconfirmed upload, deleting whatever was uploaded.
pub async fn abort(state: &AppState, user: i32, upload_id: Uuid) -> Result<(), ServiceError> {
    let upload = own_upload(state, user, upload_id).await?;
    match upload.state.as_str() {
        state::CONFIRMED => {
            Err(ServiceError::conflict("upload_confirmed", "this upload is confirmed; delete the file instead"))
        }
        state::PENDING => {
            if let Some(multipart) = &upload.multipart_upload_id {
                state.storage.abort_multipart(&upload.s3_key, multipart).await.ok();
            }
            state.storage.delete(&upload.s3_key).await?;
            set_state(&state.db, upload.id, state::ABORTED).await
        }
        _ => Ok(()),
    }
}

/// A file streamed through the broker (`POST /files/upload`).
pub struct StreamedFile<R> {
    pub target: Target,
    pub file_name: FileName,
    pub content_type: ContentType,
    pub body: R,
}

/// Streams a file to S3 without holding more than one part in memory, enforcing
/// the size limit as bytes arrive and sniffing the first KiB before anything is
/// stored; then records it like a confirm.
pub async fn upload_stream<R: AsyncRead + Unpin>(
    state: &AppState,
    user: i32,
    mut file: StreamedFile<R>,
) -> Result<file_upload::Model, ServiceError> {
    rate_limit(state, Action::Upload, user)?;
    check_type(state, &file.file_name, &file.content_type)?;
    let (channel_id, message_id) = resolve_target(&state.db, user, file.target).await?;
    let id = Uuid::now_v7();
    let key = object_key(channel_id, id, &file.file_name);
    let max = state.config.max_file_size_bytes();

    // One part-sized buffer per upload, reused for every part: memory stays
    // flat and no page is faulted in twice.
    let mut buffer = BytesMut::with_capacity(STREAM_PART_SIZE);
    let first = read_chunk(&mut file.body, &mut buffer, STREAM_PART_SIZE.min(max as usize + 1)).await?;
    check_size(state, first.len() as u64)?;
    if let Some(found) = sniff_mismatch(&file.content_type, &first[..first.len().min(SNIFF_LEN)]) {
        return Err(ServiceError::unverified(
            "content_mismatch",
            format!("the file's content ({found}) does not match its declared type {}", file.content_type.as_str()),
        ));
    }
    let size = if first.len() < STREAM_PART_SIZE {
        // The whole file fit in the first read: one PutObject.
        let size = first.len() as u64;
        state.storage.put(&key, file.content_type.as_str(), first).await?;
        size
    } else {
        let multipart = state.storage.create_multipart(&key, file.content_type.as_str()).await?;
        match stream_parts(state, &key, &multipart, first, &mut file.body, &mut buffer, max).await {
            Ok(size) => size,
            Err(err) => {
                state.storage.abort_multipart(&key, &multipart).await.ok();
                return Err(err);
            }
        }
    };

    let upload = pending_upload::Model {
        id,
        user_id: user,
        channel_id,
        message_id,
        file_name: file.file_name.as_str().to_owned(),
        s3_key: key.clone(),
        content_type: file.content_type.as_str().to_owned(),
        file_size: size as i64,
        sha256: None,
        state: state::CONFIRMED.to_owned(),
        file_id: None,
        multipart_upload_id: None,
        part_size: None,
        created_at: now(),
        expires_at: now(),
    };
    match new_file(&upload).insert(&state.db).await {
        Ok(recorded) => {
            state.metrics.confirmed("uploaded_through_broker", size);
            announce(state, &recorded).await?;
            Ok(recorded)
        }
        Err(err) => {
            state.storage.delete(&key).await.ok();
            Err(err.into())
        }
    }
}

async fn stream_parts<R: AsyncRead + Unpin>(
    state: &AppState,
    key: &str,
    multipart: &str,
    first: Bytes,
    body: &mut R,
    buffer: &mut BytesMut,
    max: u64,
) -> Result<u64, ServiceError> {
    let mut total = first.len() as u64;
    let mut parts = vec![state.storage.upload_part(key, multipart, 1, first).await?];
    loop {
        let chunk = read_chunk(body, buffer, STREAM_PART_SIZE).await?;
        if chunk.is_empty() {
            break;
        }
        total += chunk.len() as u64;
        if total > max {
            return Err(too_large(state));
        }
        let number = parts.len() as i32 + 1;
        parts.push(state.storage.upload_part(key, multipart, number, chunk).await?);
    }
    state.storage.complete_multipart(key, multipart, parts).await?;
    Ok(total)
}

/// Reads up to `len` bytes into `buf` (taking back its storage once the last
/// chunk is dropped), fewer only at the end of the body.
async fn read_chunk<R: AsyncRead + Unpin>(body: &mut R, buf: &mut BytesMut, len: usize) -> Result<Bytes, ServiceError> {
    buf.clear();
    buf.reserve(len);
    while buf.len() < len {
        let read = (&mut *body)
            .take((len - buf.len()) as u64)
            .read_buf(buf)
            .await
            .map_err(|e| ServiceError::invalid("upload_interrupted", format!("reading the upload failed: {e}")))?;
        if read == 0 {
            break;
        }
    }
    Ok(buf.split().freeze())
}
