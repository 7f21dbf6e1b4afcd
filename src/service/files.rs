//! Confirmed files: metadata, downloads (short-lived presigned GETs, counted)
//! and deletes (owner only, soft).

use std::time::Duration;

use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, ExprTrait, QueryFilter, QuerySelect,
    QueryTrait, TransactionTrait, sea_query::Expr,
};

use super::{ServiceError, batch::Batcher, messages, now};
use crate::{
    domain::content_disposition,
    entity::{channel_member, file_download, file_upload},
    events::{Event, FileDeleted},
    outbox,
    ratelimit::Action,
    startup::AppState,
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
pub async fn download(state: &AppState, user: i32, file_id: i32, inline: bool) -> Result<DownloadLink, ServiceError> {
    state
        .limits
        .check(Action::Download, user)
        .map_err(|l| ServiceError::RateLimited { retry_after_secs: l.retry_after_secs })?;
    let file = visible_file(&state.db, user, file_id).await?;
    let content_type = file.content_type.clone().unwrap_or_else(|| "application/octet-stream".to_owned());
    if inline && !inline_allowed(&content_type) {
        return Err(ServiceError::invalid(
            "inline_not_allowed",
            format!("{content_type} files are only served as attachments"),
        ));
    }
    let disposition = content_disposition(if inline { "inline" } else { "attachment" }, &file.file_name);
    let ttl = Duration::from_secs(state.config.download_url_ttl_secs);
    let request = state.storage.presigner().get_object(&file.s3_key, &content_type, &disposition, ttl)?;
    state.downloads.record(file.id, user).await?;
    Ok(DownloadLink { url: request.url, expires_at: now() + chrono::Duration::seconds(ttl.as_secs() as i64) })
}

/// Soft-deletes a file: owner only (other members 403, everyone else 404). The
/// object is purged by the sweeper after the retention period.
pub async fn delete(state: &AppState, user: i32, file_id: i32) -> Result<(), ServiceError> {
    let file = visible_file(&state.db, user, file_id).await?;
    if file.uploaded_by != Some(user) {
        return Err(ServiceError::Forbidden("only the uploader may delete a file".into()));
    }
    let txn = state.db.begin().await?;
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
    outbox::append(&txn, &Event::FileDeleted(event)).await?;
    if let Some(message_id) = file.message_id {
        messages::touch(&txn, message_id).await?;
    }
    txn.commit().await?;
    state.events.committed();
    Ok(())
}

/// Download statistics, written in batches off the request path: a log row per
/// download plus `download_count` / `last_downloaded_at` on the file.
#[derive(Clone)]
pub struct DownloadRecorder(Batcher<(i32, i32, chrono::NaiveDateTime), ()>);

impl DownloadRecorder {
    pub fn spawn(db: DatabaseConnection) -> Self {
        // Nobody waits for these rows: gather up to 50 ms of downloads per write.
        Self(Batcher::spawn(
            db,
            4096,
            Duration::from_millis(50),
            |db, rows| async move { write_downloads(&db, rows).await },
        ))
    }

    /// Counts one download of `file_id` by `user` (written within about 50 ms).
    pub async fn record(&self, file_id: i32, user: i32) -> Result<(), ServiceError> {
        Ok(self.0.enqueue((file_id, user, now())).await?)
    }

    /// Returns once every download counted before this call is written.
    pub async fn flush(&self) {
        self.0.flush().await;
    }
}

async fn write_downloads(
    db: &DatabaseConnection,
    rows: Vec<(i32, i32, chrono::NaiveDateTime)>,
) -> Result<Vec<()>, DbErr> {
    let mut per_file: std::collections::BTreeMap<i32, (i64, chrono::NaiveDateTime)> = Default::default();
    for (file_id, _, at) in &rows {
        let entry = per_file.entry(*file_id).or_insert((0, *at));
        entry.0 += 1;
        entry.1 = Ord::max(entry.1, *at);
    }
    let txn = db.begin().await?;
    let logs = rows.iter().map(|(file_id, user_id, at)| file_download::ActiveModel {
        file_id: Set(*file_id),
        user_id: Set(*user_id),
        downloaded_at: Set(*at),
        ..Default::default()
    });
    file_download::Entity::insert_many(logs).exec_without_returning(&txn).await?;
    for (file_id, (count, last)) in per_file {
        file_upload::Entity::update_many()
            .col_expr(file_upload::Column::DownloadCount, Expr::col(file_upload::Column::DownloadCount).add(count))
            .col_expr(file_upload::Column::LastDownloadedAt, Expr::value(last))
            .filter(file_upload::Column::Id.eq(file_id))
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(vec![(); rows.len()])
}
