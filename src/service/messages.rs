//! Messages of a channel: posting (with files attached at once) and paging
//! through them, newest first, each with its live files.

use std::collections::{BTreeSet, HashMap};

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait, TransactionTrait, sea_query::Expr,
};

use super::{ServiceError, deps::Deps, membership, now};
use crate::{
    domain::MessageContent,
    entity::{channel_member, file_upload, message},
    events::{Event, MessageCreated, MessageUpdated},
    outbox,
    wire::MessageInfo,
};

/// Largest page a listing returns.
pub const MAX_PAGE: u64 = 100;
/// Most files one message may carry from `file_ids`.
pub const MAX_FILES_PER_MESSAGE: usize = 20;

/// A message and its live files.
#[derive(Debug, Clone)]
pub struct MessageWithFiles {
    pub message: message::Model,
    pub files: Vec<file_upload::Model>,
}

impl From<MessageWithFiles> for MessageInfo {
    fn from(m: MessageWithFiles) -> Self {
        MessageInfo::new(m.message, m.files)
    }
}

/// Posts a message in a channel the author belongs to, attaching `file_ids`:
/// the author's own confirmed, unattached, live files of that channel. Either
/// every file is attached or the message is not posted.
pub async fn post(
    deps: &Deps,
    channel_id: i32,
    author: i32,
    content: &MessageContent,
    file_ids: &[i32],
) -> Result<MessageWithFiles, ServiceError> {
    let file_ids: BTreeSet<i32> = file_ids.iter().copied().collect();
    if file_ids.len() > MAX_FILES_PER_MESSAGE {
        return Err(ServiceError::invalid(
            "too_many_files",
            format!("at most {MAX_FILES_PER_MESSAGE} files per message"),
        ));
    }
    membership::require_member(&deps.db, channel_id, author).await?;
    let txn = deps.db.begin().await?;
    let at = now();
    let message = message::ActiveModel {
        channel_id: Set(channel_id),
        user_id: Set(author),
        content: Set(content.as_str().to_owned()),
        created_at: Set(at),
        updated_at: Set(at),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    let mut files = Vec::new();
    if !file_ids.is_empty() {
        // The conditions sit on the updated rows themselves: PostgreSQL
        // re-checks them against a concurrent change (a delete committing
        // first) before updating; through a subquery it would not.
        let attached = file_upload::Entity::update_many()
            .col_expr(file_upload::Column::MessageId, Expr::value(message.id))
            .filter(file_upload::Column::Id.is_in(file_ids.iter().copied()))
            .filter(file_upload::Column::UploadedBy.eq(author))
            .filter(file_upload::Column::ChannelId.eq(channel_id))
            .filter(file_upload::Column::MessageId.is_null())
            .filter(file_upload::Column::IsDeleted.eq(false))
            .exec(&txn)
            .await?;
        if attached.rows_affected != file_ids.len() as u64 {
            txn.rollback().await?;
            return Err(not_attachable(&deps.db, author, channel_id, &file_ids).await?);
        }
        files = file_upload::Entity::find()
            .filter(file_upload::Column::MessageId.eq(message.id))
            .order_by_asc(file_upload::Column::Id)
            .all(&txn)
            .await?;
    }
    let posted = MessageWithFiles { message, files };
    let event =
        outbox::append(&txn, &Event::MessageCreated(MessageCreated { channel_id, message: posted.clone().into() }))
            .await?;
    txn.commit().await?;
    deps.events.committed(event);
    Ok(posted)
}

/// Names the first file that could not be attached, and why.
async fn not_attachable(
    db: &DatabaseConnection,
    author: i32,
    channel_id: i32,
    ids: &BTreeSet<i32>,
) -> Result<ServiceError, ServiceError> {
    let found: HashMap<i32, file_upload::Model> = file_upload::Entity::find()
        .filter(file_upload::Column::Id.is_in(ids.iter().copied()))
        .all(db)
        .await?
        .into_iter()
        .map(|f| (f.id, f))
        .collect();
    for id in ids {
        let problem = match found.get(id) {
            None => "does not exist",
            Some(f) if f.is_deleted == Some(true) => "is deleted",
            Some(f) if f.uploaded_by != Some(author) => "is not your upload",
            Some(f) if f.channel_id != channel_id => "belongs to another channel",
            Some(f) if f.message_id.is_some() => "is already attached to a message",
            Some(_) => continue,
        };
        return Ok(ServiceError::conflict("file_not_attachable", format!("file {id} {problem}; nothing was posted")));
    }
    Ok(ServiceError::conflict("file_not_attachable", "a file could not be attached; nothing was posted"))
}

/// One page of a channel's messages with their live files, newest first,
/// older than `before` when given. Two SQL statements whatever the page size:
/// the messages (membership checked in the same query) and their files.
pub async fn page(
    db: &DatabaseConnection,
    channel_id: i32,
    caller: i32,
    before: Option<i32>,
    limit: u64,
) -> Result<Vec<MessageWithFiles>, ServiceError> {
    let membership = channel_member::Entity::find()
        .select_only()
        .column(channel_member::Column::ChannelId)
        .filter(channel_member::Column::ChannelId.eq(channel_id))
        .filter(channel_member::Column::UserId.eq(caller))
        .into_query();
    let mut query = message::Entity::find()
        .filter(message::Column::ChannelId.eq(channel_id))
        .filter(message::Column::ChannelId.in_subquery(membership));
    if let Some(before) = before {
        query = query.filter(message::Column::Id.lt(before));
    }
    let messages = query.order_by_desc(message::Column::Id).limit(limit.clamp(1, MAX_PAGE)).all(db).await?;
    if messages.is_empty() {
        // Empty page or not a member: only now does it matter which.
        membership::require_member(db, channel_id, caller).await?;
        return Ok(Vec::new());
    }
    let mut files = live_files_of(db, messages.iter().map(|m| m.id)).await?;
    Ok(messages
        .into_iter()
        .map(|message| MessageWithFiles { files: files.remove(&message.id).unwrap_or_default(), message })
        .collect())
}

/// A message with its live files (for `message_updated` events).
pub async fn with_files(db: &impl ConnectionTrait, message_id: i32) -> Result<Option<MessageWithFiles>, ServiceError> {
    let Some(message) = message::Entity::find_by_id(message_id).one(db).await? else { return Ok(None) };
    let files = live_files_of(db, [message_id]).await?.remove(&message_id).unwrap_or_default();
    Ok(Some(MessageWithFiles { message, files }))
}

/// Appends `event` (about a file) in `txn` and, when the file is on message
/// `message_id`, that message's `message_updated` after it (see [`touch`]);
/// returns the id of the last event appended.
pub async fn append_file_event(
    txn: &impl ConnectionTrait,
    event: &Event,
    message_id: Option<i32>,
) -> Result<i64, ServiceError> {
    let appended = outbox::append(txn, event).await?;
    let Some(message_id) = message_id else { return Ok(appended) };
    Ok(touch(txn, message_id).await?.unwrap_or(appended))
}

/// Marks a message as changed now and appends `message_updated` with its live
/// files, in `txn` (the transaction that changed its files); returns the
/// event's id (None when the message is gone).
async fn touch(txn: &impl ConnectionTrait, message_id: i32) -> Result<Option<i64>, ServiceError> {
    message::Entity::update_many()
        .col_expr(message::Column::UpdatedAt, Expr::value(now()))
        .filter(message::Column::Id.eq(message_id))
        .exec(txn)
        .await?;
    let Some(updated) = with_files(txn, message_id).await? else { return Ok(None) };
    let channel_id = updated.message.channel_id;
    let event = MessageUpdated { channel_id, message: updated.into() };
    Ok(Some(outbox::append(txn, &Event::MessageUpdated(event)).await?))
}

async fn live_files_of(
    db: &impl ConnectionTrait,
    message_ids: impl IntoIterator<Item = i32>,
) -> Result<HashMap<i32, Vec<file_upload::Model>>, ServiceError> {
    let files = file_upload::Entity::find()
        .filter(file_upload::Column::MessageId.is_in(message_ids))
        .filter(file_upload::Column::IsDeleted.eq(false))
        .order_by_asc(file_upload::Column::Id)
        .all(db)
        .await?;
    let mut by_message: HashMap<i32, Vec<file_upload::Model>> = HashMap::new();
    for file in files {
        if let Some(message_id) = file.message_id {
            by_message.entry(message_id).or_default().push(file);
        }
    }
    Ok(by_message)
}
