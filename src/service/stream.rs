//! Opening a user's event stream: where it starts, which channels it shows,
//! and the replay of what a resuming client missed.

use std::collections::{BTreeSet, HashSet};

use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, TransactionTrait,
};

use super::{ServiceError, channels};
use crate::{
    entity::event,
    events::{Event, Stamped},
    outbox,
};

/// Where a stream starts.
#[derive(Debug)]
pub struct Opening {
    /// Newest event committed when the stream opened: replay stops here, live
    /// delivery starts after it.
    pub upto: i64,
    /// Channels the user belonged to at the start of the replay (at `upto`
    /// when there is none); membership events then keep it current.
    pub channels: HashSet<i32>,
    pub replay: Replay,
}

/// What a stream sends before live events.
#[derive(Debug, PartialEq, Eq)]
pub enum Replay {
    /// Nothing to catch up on.
    Nothing,
    /// The events after `after` in these channels (a superset of what the
    /// user may see; [`visible`] decides each).
    From { after: i64, channels: Vec<i32> },
    /// What was missed cannot be replayed; the client must reload.
    Resync(&'static str),
}

/// Opens `user`'s stream, resuming after event `after` when given. Reads the
/// newest id, the memberships and the user's own joins and removals since
/// `after` in one snapshot, so they agree with each other.
pub async fn open(
    db: &DatabaseConnection,
    user: i32,
    after: Option<i64>,
    max_replay: u64,
) -> Result<Opening, ServiceError> {
    // PostgreSQL: one snapshot for the whole transaction. SQLite (WAL): a
    // read transaction is one snapshot already.
    let postgres = db.get_database_backend() == sea_orm::DatabaseBackend::Postgres;
    let snapshot = if postgres {
        db.begin_with_config(Some(sea_orm::IsolationLevel::RepeatableRead), Some(sea_orm::AccessMode::ReadOnly)).await?
    } else {
        db.begin().await?
    };
    let upto = outbox::newest(&snapshot).await?;
    let now: HashSet<i32> = channels::list_for_member(&snapshot, user).await?.into_iter().map(|c| c.id).collect();
    let opening = |channels, replay| Ok(Opening { upto, channels, replay });
    let Some(after) = after.filter(|after| *after < upto) else {
        // Live only; an `after` beyond the newest id comes from another database.
        let replay = match after {
            Some(after) if after > upto => Replay::Resync("the stream was reset; reload"),
            _ => Replay::Nothing,
        };
        return opening(now, replay);
    };
    if outbox::oldest(&snapshot).await?.is_none_or(|oldest| after < oldest - 1) {
        return opening(now, Replay::Resync("the missed events are past the retention window; reload"));
    }
    // My joins and removals since `after`, undone newest first: the channels I
    // belonged to at `after`.
    let mine = event::Entity::find()
        .filter(event::Column::UserId.eq(user))
        .filter(event::Column::Id.gt(after))
        .filter(event::Column::Id.lte(upto))
        .order_by_desc(event::Column::Id)
        .all(&snapshot)
        .await?;
    let mut then = now.clone();
    for row in &mine {
        match row.kind.as_str() {
            "member_joined" => then.remove(&row.channel_id),
            "member_left" => then.insert(row.channel_id),
            _ => false,
        };
    }
    let candidates: Vec<i32> = then
        .iter()
        .copied()
        .chain(mine.iter().map(|row| row.channel_id))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let missed = event::Entity::find()
        .filter(event::Column::Id.gt(after))
        .filter(event::Column::Id.lte(upto))
        .filter(event::Column::ChannelId.is_in(candidates.iter().copied()))
        .count(&snapshot)
        .await?;
    snapshot.commit().await?;
    if missed > max_replay {
        return opening(now, Replay::Resync("too many missed events to replay; reload"));
    }
    opening(then, Replay::From { after, channels: candidates })
}

/// One page of a replay.
pub struct Page {
    pub events: Vec<Stamped>,
    /// Where the next page starts (the last id read).
    pub next_after: i64,
    /// Whether there may be more.
    pub more: bool,
}

/// The next page of a replay: events after `after` up to `upto` in `channels`.
pub async fn replay_page(
    db: &DatabaseConnection,
    after: i64,
    upto: i64,
    channels: &[i32],
    limit: u64,
) -> Result<Page, ServiceError> {
    let rows = outbox::read(db, after, Some(upto), Some(channels), limit).await?;
    let more = rows.len() as u64 == limit;
    let next_after = rows.last().map_or(upto, |row| row.id);
    Ok(Page { events: rows.into_iter().filter_map(outbox::stamped).collect(), next_after, more })
}

/// Whether events after `after` were trimmed while they were replayed (the
/// replay may have a hole: the client must reload).
pub async fn trimmed_since(db: &DatabaseConnection, after: i64) -> Result<bool, ServiceError> {
    Ok(outbox::oldest(db).await?.is_none_or(|oldest| after < oldest - 1))
}

/// Whether `me` may see the event; keeps `channels` (the user's channels as
/// of the event) current.
pub fn visible(event: &Event, me: i32, channels: &mut HashSet<i32>) -> bool {
    match event {
        Event::MemberJoined(e) if e.user_id == me => {
            channels.insert(e.channel_id);
            true
        }
        // The user sees their own removal, then nothing more of that channel.
        Event::MemberLeft(e) if e.user_id == me => channels.remove(&e.channel_id),
        event => event.channel_id().is_some_and(|channel| channels.contains(&channel)),
    }
}
