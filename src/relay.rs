//! Cross-instance fan-out on PostgreSQL: every event published here is sent
//! with `pg_notify`, and events NOTIFYed by other instances are delivered to
//! this instance's subscribers (and invalidate its read cache). Payloads over
//! the NOTIFY limit are parked in `event_relay` and announced by id.

use std::sync::Arc;

use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, Statement, sqlx::postgres::PgListener};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::{
    events::{Event, EventHub, Stamped},
    service::cache::ReadCache,
};

const CHANNEL: &str = "cgf_events";
/// PostgreSQL refuses NOTIFY payloads of 8000 bytes or more.
const MAX_NOTIFY_BYTES: usize = 7900;

#[derive(Serialize, Deserialize)]
struct Envelope {
    /// Instance that published the event (it delivered it locally already).
    origin: Uuid,
    /// The event, or the `event_relay` row holding it.
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<Stamped>,
    #[serde(skip_serializing_if = "Option::is_none")]
    relay_id: Option<i64>,
}

/// Starts relaying between `hub` and the other instances on the database at `url`.
pub async fn start(db: DatabaseConnection, url: &str, hub: &EventHub, cache: Arc<ReadCache>) -> anyhow::Result<()> {
    let origin = Uuid::new_v4();
    let mut listener = PgListener::connect(url).await?;
    listener.listen(CHANNEL).await?;

    let (tx, rx) = mpsc::unbounded_channel();
    hub.set_relay(tx);
    tokio::spawn(send_loop(db.clone(), origin, rx));
    tokio::spawn(receive_loop(db, origin, listener, hub.clone(), cache));
    Ok(())
}

async fn send_loop(db: DatabaseConnection, origin: Uuid, mut rx: mpsc::UnboundedReceiver<Arc<Stamped>>) {
    while let Some(stamped) = rx.recv().await {
        if let Err(err) = notify(&db, origin, &stamped).await {
            tracing::warn!(error = %err, "relay: cannot notify other instances");
        }
    }
}

async fn notify(db: &DatabaseConnection, origin: Uuid, stamped: &Stamped) -> Result<(), sea_orm::DbErr> {
    let inline = serde_json::to_string(&Envelope { origin, event: Some(stamped.clone()), relay_id: None })
        .expect("serialisable");
    let payload = if inline.len() <= MAX_NOTIFY_BYTES {
        inline
    } else {
        let parked = db
            .query_one_raw(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "INSERT INTO event_relay (payload) VALUES ($1) RETURNING id",
                [serde_json::to_string(stamped).expect("serialisable").into()],
            ))
            .await?
            .ok_or_else(|| sea_orm::DbErr::Custom("no relay id".into()))?;
        let relay_id: i64 = parked.try_get("", "id")?;
        serde_json::to_string(&Envelope { origin, event: None, relay_id: Some(relay_id) }).expect("serialisable")
    };
    db.execute_raw(Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        "SELECT pg_notify($1, $2)",
        [CHANNEL.into(), payload.into()],
    ))
    .await?;
    Ok(())
}

async fn receive_loop(
    db: DatabaseConnection,
    origin: Uuid,
    mut listener: PgListener,
    hub: EventHub,
    cache: Arc<ReadCache>,
) {
    loop {
        let notification = match listener.recv().await {
            Ok(n) => n,
            Err(err) => {
                tracing::warn!(error = %err, "relay: listener failed; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        let Ok(envelope) = serde_json::from_str::<Envelope>(notification.payload()) else { continue };
        if envelope.origin == origin {
            continue;
        }
        let stamped = match (envelope.event, envelope.relay_id) {
            (Some(event), _) => event,
            (None, Some(id)) => match fetch_parked(&db, id).await {
                Some(event) => event,
                None => continue,
            },
            (None, None) => continue,
        };
        match &stamped.event {
            Event::MemberJoined(e) => cache.forget_membership(e.channel_id, e.user_id),
            Event::MemberLeft(e) => cache.forget_membership(e.channel_id, e.user_id),
            Event::FileDeleted(e) => cache.forget_file(e.file_id),
            _ => {}
        }
        hub.deliver(stamped);
    }
}

async fn fetch_parked(db: &DatabaseConnection, id: i64) -> Option<Stamped> {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "SELECT payload FROM event_relay WHERE id = $1",
            [id.into()],
        ))
        .await
        .ok()??;
    serde_json::from_str(&row.try_get::<String>("", "payload").ok()?).ok()
}
