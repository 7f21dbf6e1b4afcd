//! Events on the production shape (brokers as their own processes on one
//! PostgreSQL database): delivery latency to a subscriber of another
//! instance, the replay rate of a resuming socket, and what ordering appends
//! under the advisory lock costs against the same transactions without it.
//! `cargo bench --bench broker -- events`.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, TransactionTrait};
use serde_json::{Value, json};
use tokio_tungstenite::{
    connect_async,
    tungstenite::{Message, client::IntoClientRequest},
};

use crate::{ms, postgres_database, process::BrokerProcess};

/// Messages timed for the delivery latency.
const MESSAGES: usize = 500;
/// Events replayed to one resuming socket.
const REPLAYED: usize = 10_000;
/// How long each append variant runs.
const APPEND_PHASE: Duration = Duration::from_secs(4);

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn socket(addr: &str, token: &str, after: Option<i64>) -> Socket {
    let query = after.map(|id| format!("?after={id}")).unwrap_or_default();
    let mut req = format!("ws://{addr}/ws{query}").into_client_request().unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    connect_async(req).await.unwrap().0
}

/// The next text frame as JSON.
async fn frame(socket: &mut Socket) -> Value {
    loop {
        match tokio::time::timeout(Duration::from_secs(30), socket.next()).await.expect("a frame within 30 s") {
            Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).unwrap(),
            Some(Ok(_)) => continue,
            other => panic!("socket ended: {other:?}"),
        }
    }
}

/// Reads frames until `ready` (or `resync_required`); returns it and how many came before.
async fn until_ready(socket: &mut Socket) -> (Value, usize) {
    let mut before = 0;
    loop {
        let frame = frame(socket).await;
        if frame["type"] == "ready" || frame["type"] == "resync_required" {
            return (frame, before);
        }
        before += 1;
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

pub async fn run(client: &reqwest::Client) {
    let Some(url) = postgres_database().await else {
        println!("\n(PostgreSQL not reachable on 127.0.0.1:5432: the event benchmarks need it)");
        return;
    };
    let settings = [
        ("DATABASE_URL", url.clone()),
        ("JWT_SECRET", "bench-events-secret-0123456789abcdef01234".to_owned()),
        ("DEV_LOGIN", "true".to_owned()),
        ("SWEEP_INTERVAL_SECS", "0".to_owned()),
        ("EVENTS_REPLAY_MAX", (REPLAYED * 2).to_string()),
    ];
    let binary = env!("CARGO_BIN_EXE_chatgenius-files");
    let first = BrokerProcess::start(binary, &settings).await;
    let second = BrokerProcess::start(binary, &settings).await;
    let (token, channel) = crate::login_and_channel(client, &first.addr).await;
    let post = |i: usize| {
        client
            .post(format!("{}/channels/{channel}/messages", first.base))
            .bearer_auth(&token)
            .json(&json!({ "content": format!("m{i}") }))
            .send()
    };

    // Delivery: one message at a time, posted on the first broker, received on both.
    let mut here = socket(&first.addr, &token, None).await;
    let mut there = socket(&second.addr, &token, None).await;
    until_ready(&mut here).await;
    until_ready(&mut there).await;
    let (mut request, mut same, mut other) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..MESSAGES {
        let start = Instant::now();
        assert_eq!(post(i).await.unwrap().status(), 201);
        request.push(start.elapsed());
        frame(&mut here).await;
        same.push(start.elapsed());
        frame(&mut there).await;
        other.push(start.elapsed());
    }
    println!("\n## Event delivery across instances (2 broker processes, one PostgreSQL)\n");
    println!(
        "Timed from the start of `POST /channels/{{id}}/messages` on broker 1, {MESSAGES} messages one at a time.\n"
    );
    println!("| measured | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|");
    for (name, mut times) in [
        ("request answered (201)", request),
        ("event received on broker 1 (same instance)", same),
        ("event received on broker 2 (other instance)", other),
    ] {
        times.sort();
        println!("| {name} | {} | {} | {} |", ms(pct(&times, 0.5)), ms(pct(&times, 0.99)), ms(*times.last().unwrap()));
    }
    drop((here, there));

    // Replay: a socket resuming after REPLAYED missed events.
    let (opened, _) = until_ready(&mut socket(&second.addr, &token, None).await).await;
    let start_id = opened["id"].as_i64().unwrap();
    let posted = futures_util::stream::iter(0..REPLAYED)
        .map(post)
        .buffer_unordered(16)
        .filter(|r| std::future::ready(r.as_ref().is_ok_and(|r| r.status() == 201)))
        .count()
        .await;
    let start = Instant::now();
    let mut resumed = socket(&second.addr, &token, Some(start_id)).await;
    let (ready, replayed) = until_ready(&mut resumed).await;
    let took = start.elapsed();
    assert_eq!((ready["type"].as_str(), replayed), (Some("ready"), posted));
    println!("\n## Resume: replay to one socket (`GET /ws?after=`, broker 2)\n");
    println!("| events replayed | connect → `ready` ms | events/s |");
    println!("|---:|---:|---:|");
    println!("| {replayed} | {} | {:.0} |", ms(took), replayed as f64 / took.as_secs_f64());
    drop((first, second));

    // The append's ordering lock: the same transactions with and without it.
    let mut options = sea_orm::ConnectOptions::new(url.clone());
    options.max_connections(64).sqlx_logging(false);
    let db = Database::connect(options).await.unwrap();
    println!("\n## Outbox append on PostgreSQL: ordered vs a plain insert\n");
    println!(
        "Transactions of one `INSERT INTO messages` plus the event row, {} s each: `outbox::append` (advisory \
         lock + insert + pg_notify in one statement) against a plain `INSERT INTO events`.\n",
        APPEND_PHASE.as_secs()
    );
    println!("| concurrency | plain insert tx/s | outbox::append tx/s | ratio |");
    println!("|---:|---:|---:|---:|");
    for concurrency in [1, 16, 64] {
        let unordered = appends(&db, channel, concurrency, false).await;
        let ordered = appends(&db, channel, concurrency, true).await;
        println!("| {concurrency} | {unordered:.0} | {ordered:.0} | {:.2} |", ordered / unordered);
    }
}

/// Transactions per second of (message insert + event append) at `concurrency`.
async fn appends(db: &DatabaseConnection, channel: i64, concurrency: usize, ordered: bool) -> f64 {
    let deadline = Instant::now() + APPEND_PHASE;
    let workers = (0..concurrency).map(|_| {
        let db = db.clone();
        tokio::spawn(async move {
            let mut done = 0u64;
            while Instant::now() < deadline {
                let txn = db.begin().await.unwrap();
                txn.execute_unprepared(&format!(
                    "INSERT INTO messages (channel_id, user_id, content, created_at, updated_at) \
                     VALUES ({channel}, 1, 'bench', now(), now())"
                ))
                .await
                .unwrap();
                let event = chatgenius_files::events::Event::MemberJoined(chatgenius_files::events::MemberJoined {
                    channel_id: channel as i32,
                    user_id: 1,
                });
                if ordered {
                    chatgenius_files::outbox::append(&txn, &event).await.unwrap();
                } else {
                    txn.execute_unprepared(&format!(
                        "INSERT INTO events (channel_id, kind, payload, created_at) \
                         VALUES ({channel}, 'bench', '{{}}', now())"
                    ))
                    .await
                    .unwrap();
                }
                txn.commit().await.unwrap();
                done += 1;
            }
            done
        })
    });
    let done: u64 = futures_util::future::join_all(workers).await.into_iter().map(Result::unwrap).sum();
    done as f64 / APPEND_PHASE.as_secs_f64()
}
