//! The writes of the upload state machine ([`UploadState`]). Each is one
//! conditional `UPDATE … WHERE state = 'pending'`: of two racing changes (a
//! confirm and an abort, a late confirm and the sweeper, a confirm and the
//! uploader's removal from the channel) exactly one takes effect, and the
//! loser reads the winner's state. Nobody touches an upload's object before
//! winning the change that closes it.

use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, ExprTrait, QueryFilter, QuerySelect,
    QueryTrait, TransactionTrait,
    sea_query::{Expr, Query},
};
use uuid::Uuid;

use super::{OnConflict, ServiceError, messages, now};
use crate::{
    entity::{
        channel_member, file_upload,
        pending_upload::{self, UploadState},
    },
    events::{Event, FileUploadComplete},
    metrics::Metrics,
    storage::Storage,
};

/// `EXISTS (a membership of the upload's uploader in the upload's channel)`,
/// for filters on `pending_uploads`.
pub fn uploader_is_member() -> sea_orm::sea_query::SimpleExpr {
    Expr::exists(
        Query::select()
            .expr(Expr::val(1))
            .from(channel_member::Entity)
            .and_where(
                Expr::col((channel_member::Entity, channel_member::Column::ChannelId))
                    .equals((pending_upload::Entity, pending_upload::Column::ChannelId)),
            )
            .and_where(
                Expr::col((channel_member::Entity, channel_member::Column::UserId))
                    .equals((pending_upload::Entity, pending_upload::Column::UserId)),
            )
            .to_owned(),
    )
}

/// Closes a pending upload as `to` (aborted, rejected); false when it was no
/// longer pending (someone else changed it first).
pub async fn close(db: &impl ConnectionTrait, id: Uuid, to: UploadState) -> Result<bool, DbErr> {
    let changed = pending_upload::Entity::update_many()
        .col_expr(pending_upload::Column::State, Expr::value(to))
        .filter(pending_upload::Column::Id.eq(id))
        .filter(pending_upload::Column::State.eq(UploadState::Pending))
        .exec(db)
        .await?;
    Ok(changed.rows_affected == 1)
}

/// Records the file of a verified upload: inserts it, moves the upload from
/// pending to confirmed and appends `file_upload_complete` (and
/// `message_updated` when it went onto a message) in one transaction,
/// provided the upload is still pending, not expired, and its uploader still
/// a member of the channel. `None` when one of those no longer held (nothing
/// was written).
pub async fn confirm(
    db: &DatabaseConnection,
    upload: &pending_upload::Model,
) -> Result<Option<Recorded>, ServiceError> {
    let txn = db.begin().await?;
    let file = match new_file(upload).insert(&txn).await.on_unique_violation("already_confirmed", "already confirmed") {
        Ok(file) => file,
        // A concurrent confirm of the same upload recorded it first.
        Err(ServiceError::Conflict { .. }) => return Ok(None),
        Err(err) => return Err(err),
    };
    let claimed = pending_upload::Entity::update_many()
        .col_expr(pending_upload::Column::State, Expr::value(UploadState::Confirmed))
        .col_expr(pending_upload::Column::FileId, Expr::value(file.id))
        .col_expr(pending_upload::Column::FileSize, Expr::value(upload.file_size))
        .filter(pending_upload::Column::Id.eq(upload.id))
        .filter(pending_upload::Column::State.eq(UploadState::Pending))
        .filter(pending_upload::Column::ExpiresAt.gt(now()))
        .filter(uploader_is_member())
        .exec(&txn)
        .await?;
    if claimed.rows_affected != 1 {
        txn.rollback().await?;
        return Ok(None);
    }
    // Announced in the same transaction: a confirm that committed always has
    // its event, and a retry answering "already confirmed" never adds one.
    let complete =
        FileUploadComplete { channel_id: file.channel_id, message_id: file.message_id, file: file.clone().into() };
    let last_event = messages::append_file_event(&txn, &Event::FileUploadComplete(complete), file.message_id).await?;
    txn.commit().await?;
    Ok(Some(Recorded { file, last_event }))
}

/// A file [`confirm`] recorded, and the id of the last event it appended.
pub struct Recorded {
    pub file: file_upload::Model,
    pub last_event: i64,
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
        preview_state: Set(super::previews::previewable(&upload.content_type).then(|| "pending".to_owned())),
        ..Default::default()
    }
}

/// Aborts every pending upload of `user` in `channel` (they are no longer a
/// member), returning them so their objects can be discarded. Run it in the
/// transaction that removes the membership.
pub async fn abort_member_uploads(
    db: &impl ConnectionTrait,
    channel: i32,
    user: i32,
) -> Result<Vec<pending_upload::Model>, DbErr> {
    pending_upload::Entity::update_many()
        .col_expr(pending_upload::Column::State, Expr::value(UploadState::Aborted))
        .filter(pending_upload::Column::ChannelId.eq(channel))
        .filter(pending_upload::Column::UserId.eq(user))
        .filter(pending_upload::Column::State.eq(UploadState::Pending))
        .exec_with_returning(db)
        .await
}

/// Claims up to `limit` pending uploads whose time ran out (pending → expired),
/// returning them so their objects can be discarded.
pub async fn expire_due(db: &impl ConnectionTrait, limit: u64) -> Result<Vec<pending_upload::Model>, DbErr> {
    let due = pending_upload::Entity::find()
        .select_only()
        .column(pending_upload::Column::Id)
        .filter(pending_upload::Column::State.eq(UploadState::Pending))
        .filter(pending_upload::Column::ExpiresAt.lte(now()))
        .limit(limit)
        .into_query();
    pending_upload::Entity::update_many()
        .col_expr(pending_upload::Column::State, Expr::value(UploadState::Expired))
        .filter(pending_upload::Column::Id.in_subquery(due))
        .filter(pending_upload::Column::State.eq(UploadState::Pending))
        .exec_with_returning(db)
        .await
}

/// Removes from the store what closed uploads left: the object and, for a
/// multipart upload, its parts. Failures are logged and counted, not
/// returned: the upload is closed already, and the sweeper deletes any object
/// under `uploads/` that no pending upload or file knows.
pub async fn discard_objects(storage: &Storage, metrics: &Metrics, uploads: &[pending_upload::Model]) {
    for upload in uploads {
        if let Some(multipart) = &upload.multipart_upload_id
            && let Err(err) = storage.abort_multipart(&upload.s3_key, multipart).await
            && !err.is_missing()
        {
            tracing::warn!(error = %err, upload_id = %upload.id, "closed upload: multipart abort failed; the sweeper retries");
            metrics.ignored_failure("abort_multipart");
        }
        delete_unused(storage, metrics, &upload.s3_key).await;
    }
}

/// Deletes an object no file serves. A failure is logged and counted, not
/// returned: the sweeper deletes any object under `uploads/` that no pending
/// upload or file owns.
pub async fn delete_unused(storage: &Storage, metrics: &Metrics, key: &str) {
    if let Err(err) = storage.delete(key).await {
        tracing::warn!(error = %err, key, "unused object not deleted; the sweeper retries");
        metrics.ignored_failure("delete_object");
    }
}
