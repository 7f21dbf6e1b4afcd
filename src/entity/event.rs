//! `events`: the outbox of channel events, one row per event, written in the
//! transaction of the change it announces. Ids increase in commit order.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "events")]
pub struct Model {
    /// Position in the stream: every committed event has a larger id than
    /// every event committed before it.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The channel whose members see the event.
    pub channel_id: i32,
    /// The member who joined or left, for `member_joined` / `member_left`.
    pub user_id: Option<i32>,
    /// The event's `type`.
    pub kind: String,
    /// The event as JSON, without `id` and `at`.
    #[sea_orm(column_type = "Text")]
    pub payload: String,
    pub created_at: DateTime,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
