//! Presign's one write, the `pending_uploads` row, goes through a group-commit
//! writer: one membership query and one multi-row insert per batch.

use std::collections::HashSet;

use sea_orm::{ColumnTrait, Condition, DatabaseConnection, DbErr, EntityTrait, ExprTrait, IntoActiveModel, QueryFilter, QuerySelect};

use super::{ServiceError, batch::Batcher};
use crate::entity::{channel_member, pending_upload};

/// Rows written per batch at most.
const MAX_BATCH: usize = 256;

/// Records pending uploads whose user is a member of their channel.
#[derive(Clone)]
pub struct PendingWriter(Batcher<pending_upload::Model, bool>);

impl PendingWriter {
    pub fn spawn(db: DatabaseConnection) -> Self {
        Self(Batcher::spawn(db, MAX_BATCH, |db, rows| async move { write_batch(&db, rows).await }))
    }

    /// Records `row` if its user is a member of its channel; returns whether it was.
    pub async fn record(&self, row: pending_upload::Model) -> Result<bool, ServiceError> {
        Ok(self.0.submit(row).await?)
    }
}

async fn write_batch(db: &DatabaseConnection, rows: Vec<pending_upload::Model>) -> Result<Vec<bool>, DbErr> {
    let wanted: HashSet<(i32, i32)> = rows.iter().map(|r| (r.channel_id, r.user_id)).collect();
    let condition = wanted.iter().fold(Condition::any(), |any, (channel, user)| {
        any.add(channel_member::Column::ChannelId.eq(*channel).and(channel_member::Column::UserId.eq(*user)))
    });
    let members: HashSet<(i32, i32)> = channel_member::Entity::find()
        .select_only()
        .columns([channel_member::Column::ChannelId, channel_member::Column::UserId])
        .filter(condition)
        .into_tuple()
        .all(db)
        .await?
        .into_iter()
        .collect();
    let recorded: Vec<bool> = rows.iter().map(|r| members.contains(&(r.channel_id, r.user_id))).collect();
    let allowed: Vec<_> =
        rows.into_iter().zip(&recorded).filter(|(_, ok)| **ok).map(|(r, _)| r.into_active_model()).collect();
    if !allowed.is_empty() {
        pending_upload::Entity::insert_many(allowed).exec_without_returning(db).await?;
    }
    Ok(recorded)
}
