//! The event outbox (`events` table): use cases append an event in the
//! transaction of the change it announces, so an event exists if and only if
//! its change committed. Each broker instance runs one reader that delivers
//! new rows, in id order, to its [`EventHub`].
//!
//! Ids are handed out in commit order: on PostgreSQL the append takes a
//! transaction-scoped advisory lock, so the next event's transaction cannot
//! take an id until this one has committed (or rolled back); SQLite has one
//! writer at a time anyway. A reader that has delivered every id up to N can
//! therefore read `id > N` and never miss one committed later with a smaller
//! id. The reader is woken by this process's commits and, on PostgreSQL, by a
//! `pg_notify` sent inside the appending transaction (delivered on commit);
//! after its LISTEN connection is lost it reconnects and reads what it missed,
//! and it reads at least every [`READ_AT_LEAST_EVERY`] in case the connection
//! went silent without closing.

use std::{sync::Arc, time::Duration};

use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Statement, sqlx::postgres::PgListener,
};

use crate::{
    entity::event,
    events::{Event, EventHub, Stamped},
    metrics::Metrics,
};

/// Key of the PostgreSQL advisory lock that orders appends.
const APPEND_LOCK_KEY: i64 = 0x6367_665f_6576;
/// The NOTIFY channel; the payload is the new event's id.
const CHANNEL: &str = "cgf_events";
/// Rows a reader fetches per query.
const PAGE: u64 = 500;
/// Pause after a failed read or LISTEN before trying again.
const RETRY_AFTER: Duration = Duration::from_millis(500);
/// The reader reads at least this often: a LISTEN connection that went
/// silent without closing (an idle connection dropped by a NAT or firewall)
/// delays other instances' events by at most this much.
pub const READ_AT_LEAST_EVERY: Duration = Duration::from_secs(5);

/// Appends `event` in the transaction `db` (which must be the one making the
/// change it announces) and returns its id. On PostgreSQL this also holds the
/// append lock until that transaction ends: append last, then commit.
pub async fn append(db: &impl ConnectionTrait, event: &Event) -> Result<i64, DbErr> {
    let payload = serde_json::to_string(event).expect("events serialise");
    let at = crate::service::now();
    let backend = db.get_database_backend();
    let sql = match backend {
        DatabaseBackend::Postgres => format!(
            "WITH ordered AS (SELECT pg_advisory_xact_lock({APPEND_LOCK_KEY})), \
             appended AS (INSERT INTO events (channel_id, user_id, kind, payload, created_at) \
               SELECT $1, $2, $3, $4, $5 FROM ordered RETURNING id) \
             SELECT id, pg_notify('{CHANNEL}', id::text) IS NULL AS notified FROM appended"
        ),
        _ => "INSERT INTO events (channel_id, user_id, kind, payload, created_at) VALUES (?, ?, ?, ?, ?) RETURNING id"
            .to_owned(),
    };
    let channel_id = event.channel_id().expect("only channel events are stored");
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [channel_id.into(), event.member().into(), event.kind().into(), payload.into(), at.into()],
        ))
        .await?
        .ok_or_else(|| DbErr::RecordNotInserted)?;
    row.try_get("", "id")
}

/// The id of the newest event (0 when there is none yet).
pub async fn newest(db: &impl ConnectionTrait) -> Result<i64, DbErr> {
    let newest: Option<Option<i64>> =
        event::Entity::find().select_only().column_as(event::Column::Id.max(), "newest").into_tuple().one(db).await?;
    Ok(newest.flatten().unwrap_or(0))
}

/// The id of the oldest event still kept (None when there is none).
pub async fn oldest(db: &impl ConnectionTrait) -> Result<Option<i64>, DbErr> {
    let oldest: Option<Option<i64>> =
        event::Entity::find().select_only().column_as(event::Column::Id.min(), "oldest").into_tuple().one(db).await?;
    Ok(oldest.flatten())
}

/// Up to `limit` rows with `id > after`, oldest first.
pub async fn read(db: &impl ConnectionTrait, after: i64, limit: u64) -> Result<Vec<event::Model>, DbErr> {
    event::Entity::find().filter(event::Column::Id.gt(after)).order_by_asc(event::Column::Id).limit(limit).all(db).await
}

/// The event of a row as delivered.
pub fn stamped(row: event::Model) -> Option<Stamped> {
    match serde_json::from_str::<Event>(&row.payload) {
        Ok(event) => Some(Stamped::new(row.id, row.created_at.and_utc(), event)),
        Err(err) => {
            // Written by this service; unreadable only if a later version changed a shape.
            tracing::error!(id = row.id, error = %err, "outbox: event cannot be read; skipped");
            None
        }
    }
}

/// Delivers every event committed from now on to `hub`, in id order, until
/// the process ends. `listen_url`: the PostgreSQL database whose
/// notifications announce other instances' commits (None on SQLite).
/// Failures on the way (a lost LISTEN connection, a failed read, an
/// unreadable event) are logged and counted in `metrics`.
pub async fn start(
    db: DatabaseConnection,
    hub: EventHub,
    listen_url: Option<String>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<()> {
    let cursor = newest(&db).await?;
    if let Some(url) = listen_url {
        let listener = listen(&url).await?;
        tokio::spawn(wake_on_notify(url, listener, hub.clone(), metrics.clone()));
    }
    tokio::spawn(deliver(db, hub, cursor, metrics));
    Ok(())
}

async fn listen(url: &str) -> Result<PgListener, sea_orm::sqlx::Error> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Wakes the reader on every notification (its payload is the event's id)
/// and after every reconnect (what was committed while the LISTEN connection
/// was down is read then).
async fn wake_on_notify(url: String, mut listener: PgListener, hub: EventHub, metrics: Arc<Metrics>) {
    loop {
        let lost = match listener.try_recv().await {
            Ok(Some(notification)) => {
                match notification.payload().parse() {
                    Ok(id) => hub.committed(id),
                    Err(_) => hub.missed(),
                }
                continue;
            }
            Ok(None) => "connection closed".to_owned(),
            Err(err) => err.to_string(),
        };
        tracing::warn!(error = lost, "outbox: LISTEN connection lost; reconnecting");
        metrics.ignored_failure("event_listen");
        listener = loop {
            match listen(&url).await {
                Ok(listener) => break listener,
                Err(err) => {
                    tracing::warn!(error = %err, "outbox: cannot LISTEN yet");
                    tokio::time::sleep(RETRY_AFTER).await;
                }
            }
        };
        hub.missed();
    }
}

/// Reads and delivers what follows `cursor` whenever woken for events it has
/// not delivered (see [`EventHub::committed`]), and every
/// [`READ_AT_LEAST_EVERY`] otherwise; a failed read is retried until it
/// succeeds, so no wake-up is wasted.
async fn deliver(db: DatabaseConnection, hub: EventHub, mut cursor: i64, metrics: Arc<Metrics>) {
    loop {
        let _ = tokio::time::timeout(READ_AT_LEAST_EVERY, hub.woken(cursor)).await;
        loop {
            match read(&db, cursor, PAGE).await {
                Ok(page) => {
                    let full = page.len() as u64 == PAGE;
                    for row in page {
                        cursor = row.id;
                        match stamped(row) {
                            Some(event) => hub.deliver(Arc::new(event)),
                            None => metrics.ignored_failure("event_unreadable"),
                        }
                    }
                    if !full {
                        break;
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "outbox: cannot read new events; retrying");
                    metrics.ignored_failure("event_read");
                    tokio::time::sleep(RETRY_AFTER).await;
                }
            }
        }
    }
}

/// Deletes the events older than `retention`: a prefix of the ids (up to the
/// first one written within the window, whatever the writers' clocks said
/// after it), always keeping the newest one, since a resuming client compares
/// its id with the oldest kept. Returns how many were deleted.
pub async fn trim(db: &impl ConnectionTrait, retention: Duration) -> Result<u64, DbErr> {
    let cutoff = crate::service::now() - chrono::Duration::seconds(retention.as_secs() as i64);
    let first_kept: Option<Option<i64>> = event::Entity::find()
        .select_only()
        .column_as(event::Column::Id.min(), "first_kept")
        .filter(event::Column::CreatedAt.gte(cutoff))
        .into_tuple()
        .one(db)
        .await?;
    let keep_from = match first_kept.flatten() {
        Some(id) => id,
        None => newest(db).await?,
    };
    let deleted = event::Entity::delete_many().filter(event::Column::Id.lt(keep_from)).exec(db).await?;
    Ok(deleted.rows_affected)
}
