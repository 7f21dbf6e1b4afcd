//! Channels and their members. A channel the caller is not a member of is
//! reported exactly like a missing one.

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    TransactionTrait,
};

use super::{OnConflict, ServiceError, deps::Deps, lifecycle, membership::require_member, now, users};
use crate::{
    domain::{ChannelName, Username},
    entity::{channel, channel_member, user},
    events::{Event, MemberJoined, MemberLeft},
    outbox,
};

/// Creates a channel with its creator as first member.
pub async fn create(deps: &Deps, creator: i32, name: &ChannelName) -> Result<channel::Model, ServiceError> {
    let txn = deps.db.begin().await?;
    let created = channel::ActiveModel {
        name: Set(name.as_str().to_owned()),
        created_by: Set(creator),
        created_at: Set(now()),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    channel_member::ActiveModel { channel_id: Set(created.id), user_id: Set(creator), joined_at: Set(now()) }
        .insert(&txn)
        .await?;
    // The creator's open sockets start delivering the new channel's events.
    let event =
        outbox::append(&txn, &Event::MemberJoined(MemberJoined { channel_id: created.id, user_id: creator })).await?;
    txn.commit().await?;
    deps.events.committed(event);
    Ok(created)
}

/// A member of a channel, with the user's name.
#[derive(Debug, Clone)]
pub struct Member {
    pub user: user::Model,
    pub joined_at: chrono::NaiveDateTime,
}

/// The members of a channel the caller belongs to.
pub async fn members(db: &DatabaseConnection, channel_id: i32, caller: i32) -> Result<Vec<Member>, ServiceError> {
    require_member(db, channel_id, caller).await?;
    let rows = channel_member::Entity::find()
        .filter(channel_member::Column::ChannelId.eq(channel_id))
        .find_also_related(user::Entity)
        .order_by_asc(channel_member::Column::JoinedAt)
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(member, user)| user.map(|user| Member { user, joined_at: member.joined_at }))
        .collect())
}

/// Adds the user named `username` to a channel the caller belongs to.
pub async fn add_member(
    deps: &Deps,
    channel_id: i32,
    caller: i32,
    username: &Username,
) -> Result<Member, ServiceError> {
    let db = &deps.db;
    require_member(db, channel_id, caller).await?;
    let user = users::find_by_name(db, username).await?.ok_or(ServiceError::NotFound("user"))?;
    let txn = db.begin().await?;
    let member =
        channel_member::ActiveModel { channel_id: Set(channel_id), user_id: Set(user.id), joined_at: Set(now()) }
            .insert(&txn)
            .await
            .on_unique_violation("already_member", "the user is already a member of this channel")?;
    let event = outbox::append(&txn, &Event::MemberJoined(MemberJoined { channel_id, user_id: user.id })).await?;
    txn.commit().await?;
    deps.events.committed(event);
    Ok(Member { user, joined_at: member.joined_at })
}

/// Removes `user_id` from a channel. Members may remove themselves (leave); only
/// the channel's creator may remove others.
pub async fn remove_member(deps: &Deps, channel_id: i32, caller: i32, user_id: i32) -> Result<(), ServiceError> {
    let db = &deps.db;
    let channel = require_member(db, channel_id, caller).await?;
    if caller != user_id && channel.created_by != caller {
        return Err(ServiceError::Forbidden("only the channel's creator may remove other members".into()));
    }
    // The membership goes and the member's open uploads in the channel are
    // aborted in one transaction: a confirm racing this either committed
    // before (the file stays) or finds its upload aborted.
    let txn = db.begin().await?;
    let removed = channel_member::Entity::delete_by_id((channel_id, user_id)).exec(&txn).await?;
    if removed.rows_affected == 0 {
        return Err(ServiceError::NotFound("member"));
    }
    let aborted = lifecycle::abort_member_uploads(&txn, channel_id, user_id).await?;
    let event = outbox::append(&txn, &Event::MemberLeft(MemberLeft { channel_id, user_id })).await?;
    txn.commit().await?;
    deps.events.committed(event);
    lifecycle::discard_objects(&deps.storage, &deps.metrics, &aborted).await;
    Ok(())
}
