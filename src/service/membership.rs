//! Who belongs to which channel: the membership checks every use case makes.
//! A channel the caller is not a member of is reported exactly like a missing one.

use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder};

use super::ServiceError;
use crate::entity::{channel, channel_member};

/// The channel, when `user_id` is one of its members.
pub async fn require_member(
    db: &DatabaseConnection,
    channel_id: i32,
    user_id: i32,
) -> Result<channel::Model, ServiceError> {
    channel::Entity::find_by_id(channel_id)
        .inner_join(channel_member::Entity)
        .filter(channel_member::Column::UserId.eq(user_id))
        .one(db)
        .await?
        .ok_or(ServiceError::NotFound("channel"))
}

/// Whether `user_id` belongs to the channel.
pub async fn is_member(db: &DatabaseConnection, channel_id: i32, user_id: i32) -> Result<bool, ServiceError> {
    Ok(channel_member::Entity::find_by_id((channel_id, user_id)).one(db).await?.is_some())
}

/// The channels `user_id` belongs to, oldest first.
pub async fn list_for_member(db: &impl ConnectionTrait, user_id: i32) -> Result<Vec<channel::Model>, ServiceError> {
    Ok(channel::Entity::find()
        .inner_join(channel_member::Entity)
        .filter(channel_member::Column::UserId.eq(user_id))
        .order_by_asc(channel::Column::Id)
        .all(db)
        .await?)
}
