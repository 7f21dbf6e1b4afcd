//! Opening a user's event stream: where it starts, which channels it shows,
//! and the replay of what a resuming client missed.

use std::collections::{BTreeMap, HashSet};

use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};

use super::{ServiceError, membership};
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
    /// The events after `after` within these spans.
    From { after: i64, spans: Vec<Span> },
    /// What was missed cannot be replayed; the client must reload.
    Resync(&'static str),
}

/// Events `after < id <= upto` of one channel: a stretch of time the user
/// was a member of it (their own join and removal included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub channel_id: i32,
    pub after: i64,
    pub upto: i64,
}

/// `id` in one of the spans (each an index range of `(channel_id, id)`).
fn within(spans: &[Span]) -> Condition {
    spans.iter().fold(Condition::any(), |any, span| {
        any.add(
            Condition::all()
                .add(event::Column::ChannelId.eq(span.channel_id))
                .add(event::Column::Id.gt(span.after))
                .add(event::Column::Id.lte(span.upto)),
        )
    })
}

/// Opens `user`'s stream, resuming after event `after` when given. Reads the
/// newest id, the memberships and the user's own joins and removals since
/// `after` in one snapshot, so they agree with each other. The work is
/// bounded by what the user may see: the events of their channels while they
/// were members (an index range each), at most `max_replay + 1` counted.
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
    let now: HashSet<i32> = membership::list_for_member(&snapshot, user).await?.into_iter().map(|c| c.id).collect();
    let opening = |channels, replay| Ok(Opening { upto, channels, replay });
    let Some(after) = after.filter(|after| *after < upto) else {
        // Live only; an `after` beyond the newest id comes from another database.
        let replay = match after {
            Some(after) if after > upto => Replay::Resync("the stream was reset; reload"),
            _ => Replay::Nothing,
        };
        return opening(now, replay);
    };
    if past_retention(&snapshot, after).await? {
        return opening(now, Replay::Resync("the missed events are past the retention window; reload"));
    }
    // My joins and removals since `after`, oldest first.
    let mine = event::Entity::find()
        .filter(event::Column::UserId.eq(user))
        .filter(event::Column::Id.gt(after))
        .filter(event::Column::Id.lte(upto))
        .order_by_asc(event::Column::Id)
        .all(&snapshot)
        .await?;
    // Undone newest first: the channels I belonged to at `after`.
    let mut then = now.clone();
    for row in mine.iter().rev() {
        match row.kind.as_str() {
            "member_joined" => then.remove(&row.channel_id),
            "member_left" => then.insert(row.channel_id),
            _ => false,
        };
    }
    let spans = spans(&then, &mine, after, upto);
    if spans.is_empty() {
        return opening(now, Replay::Nothing);
    }
    let missed = event::Entity::find().filter(within(&spans)).limit(max_replay + 1).count(&snapshot).await?;
    snapshot.commit().await?;
    if missed > max_replay {
        return opening(now, Replay::Resync("too many missed events to replay; reload"));
    }
    opening(then, Replay::From { after, spans })
}

/// The stretches of `(after, upto]` in which the user was a member of each
/// channel, from the memberships at `after` and their joins and removals since.
fn spans(then: &HashSet<i32>, mine: &[event::Model], after: i64, upto: i64) -> Vec<Span> {
    let mut open: BTreeMap<i32, i64> = then.iter().map(|channel| (*channel, after)).collect();
    let mut spans = Vec::new();
    for row in mine {
        match row.kind.as_str() {
            // The join itself is the first event of the span.
            "member_joined" => {
                open.entry(row.channel_id).or_insert(row.id - 1);
            }
            // The removal is the last one.
            "member_left" => {
                if let Some(from) = open.remove(&row.channel_id) {
                    spans.push(Span { channel_id: row.channel_id, after: from, upto: row.id });
                }
            }
            _ => {}
        }
    }
    spans.extend(open.into_iter().map(|(channel_id, from)| Span { channel_id, after: from, upto }));
    spans
}

/// One page of a replay.
pub struct Page {
    pub events: Vec<Stamped>,
    /// Where the next page starts (the last id read).
    pub next_after: i64,
    /// Whether there may be more.
    pub more: bool,
}

/// The next page of a replay: events after `after` within `spans`.
pub async fn replay_page(
    db: &DatabaseConnection,
    after: i64,
    spans: &[Span],
    limit: u64,
) -> Result<Page, ServiceError> {
    let rows = event::Entity::find()
        .filter(event::Column::Id.gt(after))
        .filter(within(spans))
        .order_by_asc(event::Column::Id)
        .limit(limit)
        .all(db)
        .await?;
    let more = rows.len() as u64 == limit;
    let next_after = rows.last().map_or(after, |row| row.id);
    Ok(Page { events: rows.into_iter().filter_map(outbox::stamped).collect(), next_after, more })
}

/// Whether some event after `after` may have been trimmed (ids below the
/// oldest kept are gone; the newest is always kept).
async fn past_retention(db: &impl sea_orm::ConnectionTrait, after: i64) -> Result<bool, ServiceError> {
    Ok(outbox::oldest(db).await?.is_none_or(|oldest| after < oldest - 1))
}

/// Whether events after `after` were trimmed while they were replayed (the
/// replay may have a hole: the client must reload).
pub async fn trimmed_since(db: &DatabaseConnection, after: i64) -> Result<bool, ServiceError> {
    past_retention(db, after).await
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
