//! Events across broker processes sharing one PostgreSQL database: a broker
//! SIGKILLed under load and database connections cut mid-stream lose no
//! event, and deliver none twice. (PostgreSQL only: a SQLite file serves one
//! instance.)

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures_util::StreamExt;
use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::{helpers::fresh_database_url, process::BrokerProcess, ws::connect_to};

/// Brokers on one fresh PostgreSQL database, with one secret so a token
/// works on all of them.
struct Cluster {
    brokers: Vec<BrokerProcess>,
    db: DatabaseConnection,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start(size: usize) -> Option<Self> {
        if std::env::var("TEST_POSTGRES_URL").is_err() {
            eprintln!("several brokers on one database need PostgreSQL (TEST_POSTGRES_URL)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let url = fresh_database_url(dir.path()).await;
        let settings = [
            ("DATABASE_URL", url.clone()),
            ("JWT_SECRET", "outbox-test-secret-0123456789abcdef0123".to_owned()),
            ("DEV_LOGIN", "true".to_owned()),
            ("SWEEP_INTERVAL_SECS", "0".to_owned()),
        ];
        let binary = env!("CARGO_BIN_EXE_chatgenius-files");
        let brokers = futures_util::future::join_all((0..size).map(|_| BrokerProcess::start(binary, &settings))).await;
        let db = Database::connect(&url).await.unwrap();
        Some(Self { brokers, db, client: reqwest::Client::new(), _dir: dir })
    }

    async fn post(&self, broker: usize, token: &str, path: &str, body: Value) -> reqwest::Result<reqwest::Response> {
        self.client.post(format!("{}{path}", self.brokers[broker].base)).bearer_auth(token).json(&body).send().await
    }

    /// A token and user id for `username` (created on first login).
    async fn login(&self, username: &str) -> (String, i64) {
        let login: Value =
            self.post(0, "", "/auth/dev-login", json!({ "username": username })).await.unwrap().json().await.unwrap();
        (login["token"].as_str().unwrap().to_owned(), login["user"]["id"].as_i64().unwrap())
    }

    /// `general`, created by alice with bob in it: (alice's token, bob's token, channel).
    async fn channel(&self) -> (String, String, i64) {
        let (alice, _) = self.login("alice").await;
        let (bob, _) = self.login("bob").await;
        let channel: Value =
            self.post(0, &alice, "/channels", json!({ "name": "general" })).await.unwrap().json().await.unwrap();
        let channel = channel["id"].as_i64().unwrap();
        let added = self.post(0, &alice, &format!("/channels/{channel}/members"), json!({ "username": "bob" })).await;
        assert_eq!(added.unwrap().status(), StatusCode::CREATED);
        (alice, bob, channel)
    }

    /// The channel's events in the outbox after `after`: id → type.
    async fn events(&self, channel: i64, after: i64) -> BTreeMap<i64, String> {
        let rows = self
            .db
            .query_all_raw(Statement::from_string(
                self.db.get_database_backend(),
                format!("SELECT id, kind FROM events WHERE channel_id = {channel} AND id > {after} ORDER BY id"),
            ))
            .await
            .unwrap();
        rows.iter().map(|r| (r.try_get("", "id").unwrap(), r.try_get("", "kind").unwrap())).collect()
    }

    async fn count(&self, sql: &str) -> i64 {
        let row = self.db.query_one_raw(Statement::from_string(self.db.get_database_backend(), sql)).await.unwrap();
        row.unwrap().try_get_by_index(0).unwrap()
    }
}

/// A subscriber collecting every frame it receives (id → type), counting repeats.
struct Subscriber {
    start: i64,
    frames: Arc<Mutex<Vec<(i64, String)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscriber {
    async fn connect(addr: &str, token: &str) -> Self {
        let (mut socket, _, ready) = connect_to(addr, token, None).await;
        let frames: Arc<Mutex<Vec<(i64, String)>>> = Arc::default();
        let sink = frames.clone();
        let task = tokio::spawn(async move {
            while let Some(Ok(frame)) = socket.next().await {
                if let Message::Text(text) = frame {
                    let event: Value = serde_json::from_str(&text).unwrap();
                    let entry = (event["id"].as_i64().unwrap(), event["type"].as_str().unwrap().to_owned());
                    sink.lock().unwrap().push(entry);
                }
            }
        });
        Self { start: ready["id"].as_i64().unwrap(), frames, task }
    }

    /// Waits until the subscriber has every event of `expected`, then checks
    /// it got exactly those, each once, in id order.
    async fn assert_got(&self, expected: &BTreeMap<i64, String>, who: &str) {
        let want: Vec<(i64, String)> = expected.iter().map(|(id, kind)| (*id, kind.clone())).collect();
        for _ in 0..100 {
            if self.frames.lock().unwrap().len() >= want.len() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let got = self.frames.lock().unwrap().clone();
        assert_eq!(got, want, "{who}: every committed event once, in order");
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn text_file(channel: i64, i: usize) -> reqwest::multipart::Form {
    let part = reqwest::multipart::Part::bytes(format!("file {i}").into_bytes())
        .file_name(format!("f{i}.txt"))
        .mime_str("text/plain")
        .unwrap();
    reqwest::multipart::Form::new().text("channel_id", channel.to_string()).part("file", part)
}

#[tokio::test]
async fn a_broker_killed_under_load_loses_no_event_on_the_others() {
    let Some(mut cluster) = Cluster::start(3).await else { return };
    let (alice, bob, channel) = cluster.channel().await;
    let mut subscribers = Vec::new();
    for broker in [1, 2] {
        subscribers.push((broker, Subscriber::connect(&cluster.brokers[broker].addr, &bob).await));
    }

    // Eight writers on broker 0 (messages and files streamed through it) until it dies.
    let base = cluster.brokers[0].base.clone();
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (client, base, alice) = (cluster.client.clone(), base.clone(), alice.clone());
            tokio::spawn(async move {
                for i in 0.. {
                    let sent = if (w + i) % 2 == 0 {
                        client
                            .post(format!("{base}/channels/{channel}/messages"))
                            .bearer_auth(&alice)
                            .json(&json!({ "content": format!("w{w} m{i}") }))
                            .send()
                            .await
                    } else {
                        let form = text_file(channel, i);
                        client.post(format!("{base}/files/upload")).bearer_auth(&alice).multipart(form).send().await
                    };
                    if sent.is_err() {
                        return i;
                    }
                }
                unreachable!()
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cluster.brokers[0].child.kill().unwrap();
    cluster.brokers[0].child.wait().unwrap();
    let sent: usize = futures_util::future::join_all(writers).await.into_iter().map(Result::unwrap).sum();
    assert!(sent > 20, "the load ran before the kill ({sent} requests)");

    // An event exists for exactly every change that committed...
    let messages = cluster.count(&format!("SELECT count(*) FROM messages WHERE channel_id = {channel}")).await;
    let files = cluster.count(&format!("SELECT count(*) FROM file_uploads WHERE channel_id = {channel}")).await;
    let events = cluster.events(channel, 0).await;
    let of_kind = |kind: &str| events.values().filter(|k| *k == kind).count() as i64;
    assert_eq!(of_kind("message_created"), messages);
    assert_eq!(of_kind("file_upload_complete"), files);
    assert!(messages > 0 && files > 0);
    // ...and every subscriber of the surviving brokers got each once.
    for (broker, subscriber) in &subscribers {
        let expected = cluster.events(channel, subscriber.start).await;
        subscriber.assert_got(&expected, &format!("subscriber on broker {broker}")).await;
    }
}

#[tokio::test]
async fn database_connections_cut_mid_stream_lose_no_event() {
    let Some(cluster) = Cluster::start(2).await else { return };
    let (alice, bob, channel) = cluster.channel().await;
    let subscribers = [
        Subscriber::connect(&cluster.brokers[0].addr, &bob).await,
        Subscriber::connect(&cluster.brokers[1].addr, &bob).await,
    ];

    // Writers on both brokers while every broker connection (LISTEN ones
    // included) is terminated again and again.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (client, base, alice, stop) =
                (cluster.client.clone(), cluster.brokers[w % 2].base.clone(), alice.clone(), stop.clone());
            tokio::spawn(async move {
                let mut created = 0;
                for i in 0.. {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let resp = client
                        .post(format!("{base}/channels/{channel}/messages"))
                        .bearer_auth(&alice)
                        .json(&json!({ "content": format!("w{w} m{i}") }))
                        .send()
                        .await
                        .unwrap();
                    match resp.status() {
                        StatusCode::CREATED => created += 1,
                        StatusCode::SERVICE_UNAVAILABLE => tokio::time::sleep(Duration::from_millis(20)).await,
                        other => panic!("a cut connection answers 201 or 503, not {other}"),
                    }
                }
                created
            })
        })
        .collect();
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cluster
            .db
            .execute_unprepared(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
            )
            .await
            .unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let created: i64 = futures_util::future::join_all(writers).await.into_iter().map(Result::unwrap).sum();
    assert!(created > 0);

    // After the cuts, both brokers deliver again (a pooled connection that
    // was cut fails its next statement: 503, and the client retries).
    let mut retries = 0;
    while cluster
        .post(0, &alice, &format!("/channels/{channel}/messages"), json!({ "content": "after" }))
        .await
        .unwrap()
        .status()
        == StatusCode::SERVICE_UNAVAILABLE
    {
        retries += 1;
        assert!(retries < 50, "the broker recovers from cut connections");
    }
    let messages = cluster.count(&format!("SELECT count(*) FROM messages WHERE channel_id = {channel}")).await;
    assert_eq!(messages, created + 1);
    for (broker, subscriber) in subscribers.iter().enumerate() {
        let expected = cluster.events(channel, subscriber.start).await;
        assert_eq!(expected.len() as i64, created + 1, "one event per message");
        subscriber.assert_got(&expected, &format!("subscriber on broker {broker}")).await;
    }
}
