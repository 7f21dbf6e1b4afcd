//! Confirmed files: metadata, downloads (short-lived presigned GETs, counted)
//! and deletes (owner only, soft).

use std::time::Duration;

use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect, QueryTrait, TransactionTrait,
    sea_query::Expr,
};

use super::{ServiceError, deps::Deps, messages, now};
use crate::{
    domain::content_disposition,
    entity::{channel_member, file_upload},
    events::{Event, FileDeleted},
    ratelimit::Action,
};

/// A live file of a channel the caller belongs to, in one query; everything
/// else (missing, deleted, not a member) is the same `NotFound`.
pub async fn visible_file(
    db: &DatabaseConnection,
    user: i32,
    file_id: i32,
) -> Result<file_upload::Model, ServiceError> {
    let my_channels = channel_member::Entity::find()
        .select_only()
        .column(channel_member::Column::ChannelId)
        .filter(channel_member::Column::UserId.eq(user))
        .into_query();
    file_upload::Entity::find_by_id(file_id)
        .filter(file_upload::Column::IsDeleted.eq(false))
        .filter(file_upload::Column::ChannelId.in_subquery(my_channels))
        .one(db)
        .await?
        .ok_or(ServiceError::NotFound("file"))
}

/// A presigned download.
#[derive(Debug, Clone)]
pub struct DownloadLink {
    pub url: String,
    pub expires_at: chrono::NaiveDateTime,
}

/// Whether a type may be shown inline in a browser: media and PDF, never
/// HTML, SVG or XML (they can run script).
pub fn inline_allowed(content_type: &str) -> bool {
    let (top, sub) = content_type.split_once('/').unwrap_or(("", ""));
    match top {
        "image" => !sub.contains("svg") && !sub.contains("xml"),
        "audio" | "video" => !sub.contains("xml"),
        _ => content_type == "application/pdf",
    }
}

/// Hands out a short-lived presigned GET for a file the caller may see, with
/// the type from the database and `Content-Disposition: attachment` (or inline
/// for safe media types when asked), and counts the download.
pub async fn download(deps: &Deps, user: i32, file_id: i32, inline: bool) -> Result<DownloadLink, ServiceError> {
    deps.limits
        .check(Action::Download, user)
        .map_err(|l| ServiceError::RateLimited { retry_after_secs: l.retry_after_secs })?;
    let file = visible_file(&deps.db, user, file_id).await?;
    let content_type = file.content_type.clone().unwrap_or_else(|| "application/octet-stream".to_owned());
    if inline && !inline_allowed(&content_type) {
        return Err(ServiceError::invalid(
            "inline_not_allowed",
            format!("{content_type} files are only served as attachments"),
        ));
    }
    let disposition = content_disposition(if inline { "inline" } else { "attachment" }, &file.file_name);
    let ttl = Duration::from_secs(deps.policy.download_url_ttl_secs);
    let request = deps.storage.presigner().get_object(&file.s3_key, &content_type, &disposition, ttl)?;
    deps.downloads.record(file.id, user).await;
    Ok(DownloadLink { url: request.url, expires_at: now() + chrono::Duration::seconds(ttl.as_secs() as i64) })
}

/// A short-lived presigned GET of a file's thumbnail, for members (404
/// `preview` while there is none: not an image, not made yet, or impossible).
pub async fn preview(deps: &Deps, user: i32, file_id: i32) -> Result<DownloadLink, ServiceError> {
    let file = visible_file(&deps.db, user, file_id).await?;
    let (Some(key), Some(content_type)) = (&file.preview_key, &file.preview_content_type) else {
        return Err(ServiceError::NotFound("preview"));
    };
    let stem = file.file_name.rsplit_once('.').map_or(file.file_name.as_str(), |(stem, _)| stem);
    let extension = if content_type == "image/png" { "png" } else { "jpg" };
    let disposition = content_disposition("inline", &format!("{stem}-preview.{extension}"));
    let ttl = Duration::from_secs(deps.policy.download_url_ttl_secs);
    let request = deps.storage.presigner().get_object(key, content_type, &disposition, ttl)?;
    Ok(DownloadLink { url: request.url, expires_at: now() + chrono::Duration::seconds(ttl.as_secs() as i64) })
}

/// Soft-deletes a file: owner only (other members 403, everyone else 404). The
/// object is purged by the sweeper after the retention period.
pub async fn delete(deps: &Deps, user: i32, file_id: i32) -> Result<(), ServiceError> {
    let file = visible_file(&deps.db, user, file_id).await?;
    if file.uploaded_by != Some(user) {
        return Err(ServiceError::Forbidden("only the uploader may delete a file".into()));
    }
    let txn = deps.db.begin().await?;
    // The row as this update leaves it: a message it was attached to
    // meanwhile (a concurrent post) is the one announced.
    let deleted = file_upload::Entity::update_many()
        .col_expr(file_upload::Column::IsDeleted, Expr::value(true))
        .col_expr(file_upload::Column::DeletedAt, Expr::value(now()))
        .filter(file_upload::Column::Id.eq(file.id))
        .filter(file_upload::Column::IsDeleted.eq(false))
        .exec_with_returning(&txn)
        .await?;
    let Some(file) = deleted.into_iter().next() else {
        // Deleted meanwhile by a concurrent call: that one announced it.
        return Err(ServiceError::NotFound("file"));
    };
    let event = FileDeleted { channel_id: file.channel_id, message_id: file.message_id, file_id: file.id };
    let last_event = messages::append_file_event(&txn, &Event::FileDeleted(event), file.message_id).await?;
    txn.commit().await?;
    deps.events.committed(last_event);
    Ok(())
}
