//! Messages of a channel: posting and paging through them, newest first.

use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::{ServiceError, channels, now};
use crate::{domain::MessageContent, entity::message};

/// Largest page a listing returns.
pub const MAX_PAGE: u64 = 100;

/// Posts a message in a channel the author belongs to.
pub async fn post(
    db: &DatabaseConnection,
    channel_id: i32,
    author: i32,
    content: &MessageContent,
) -> Result<message::Model, ServiceError> {
    channels::require_member(db, channel_id, author).await?;
    let at = now();
    Ok(message::ActiveModel {
        channel_id: Set(channel_id),
        user_id: Set(author),
        content: Set(content.as_str().to_owned()),
        created_at: Set(at),
        updated_at: Set(at),
        ..Default::default()
    }
    .insert(db)
    .await?)
}

/// One page of a channel's messages, newest first, older than `before` when given.
pub async fn page(
    db: &DatabaseConnection,
    channel_id: i32,
    caller: i32,
    before: Option<i32>,
    limit: u64,
) -> Result<Vec<message::Model>, ServiceError> {
    channels::require_member(db, channel_id, caller).await?;
    let mut query = message::Entity::find().filter(message::Column::ChannelId.eq(channel_id));
    if let Some(before) = before {
        query = query.filter(message::Column::Id.lt(before));
    }
    Ok(query.order_by_desc(message::Column::Id).limit(limit.clamp(1, MAX_PAGE)).all(db).await?)
}
