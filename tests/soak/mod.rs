//! Soak: mixed load at a fixed rate against the broker binary in its own
//! process — presign, PUT, confirm, message, list, download, delete, with
//! WebSocket subscribers counting events — then a final sweep. Reports
//! requests by outcome, the broker's RSS at start and end, orphan objects
//! after the sweep, and events received against expected.
//!
//! Long run: `cargo bench --bench broker -- soak [seconds] [pg]` (README);
//! a short variant runs in the integration suite (`soak::short_soak`).

use std::{
    collections::BTreeMap,
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::{
    connect_async,
    tungstenite::{Message, client::IntoClientRequest},
};

use crate::process::BrokerProcess;

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";

/// Where the broker keeps its data.
#[derive(Debug, Clone, Default)]
pub struct Backend {
    /// `postgres://…` (a fresh database); SQLite under the data dir when absent.
    pub database_url: Option<String>,
    /// An external S3 (endpoint, key, secret); the embedded store when absent.
    pub s3: Option<(String, String, String)>,
}

/// What a soak found.
#[derive(Debug, Default)]
pub struct SoakReport {
    pub outcomes: BTreeMap<String, u64>,
    pub unexpected: u64,
    pub rss_start_kib: u64,
    pub rss_end_kib: u64,
    /// RSS at every tenth of the run, KiB.
    pub rss_samples_kib: Vec<u64>,
    pub orphans_after_sweep: u64,
    pub events_expected: u64,
    pub events_received: u64,
    pub operations: u64,
}

impl SoakReport {
    pub fn table(&self, title: &str) -> String {
        let mut out = format!("\n## Soak: {title}\n\n| measure | value |\n|---|---:|\n");
        out += &format!("| operations | {} |\n", self.operations);
        for (outcome, count) in &self.outcomes {
            out += &format!("| {outcome} | {count} |\n");
        }
        out += &format!("| unexpected outcomes | {} |\n", self.unexpected);
        out += &format!(
            "| broker RSS at start / end, MiB | {:.1} / {:.1} |\n",
            self.rss_start_kib as f64 / 1024.0,
            self.rss_end_kib as f64 / 1024.0
        );
        let samples: Vec<String> = self.rss_samples_kib.iter().map(|k| format!("{:.1}", *k as f64 / 1024.0)).collect();
        out += &format!("| broker RSS every tenth of the run, MiB | {} |\n", samples.join(" → "));
        out += &format!("| orphan objects after the final sweep | {} |\n", self.orphans_after_sweep);
        out += &format!("| events received / expected | {} / {} |\n", self.events_received, self.events_expected);
        out
    }
}

async fn start_broker(binary: &str, backend: &Backend) -> BrokerProcess {
    let mut settings = vec![
        ("PRESIGN_RATE_PER_MIN", "1000000".to_owned()),
        ("CONFIRM_RATE_PER_MIN", "1000000".to_owned()),
        ("DOWNLOAD_RATE_PER_MIN", "1000000".to_owned()),
        ("SWEEP_INTERVAL_SECS", "0".to_owned()),
        ("RUST_LOG", "error".to_owned()),
        ("AWS_S3_BUCKET_NAME", format!("soak-{}", &uuid::Uuid::new_v4().simple().to_string()[..10])),
    ];
    if let Some(url) = &backend.database_url {
        settings.push(("DATABASE_URL", url.clone()));
    }
    if backend.s3.is_none() {
        settings.push(("STORAGE", "embedded".to_owned()));
    }
    if let Some((endpoint, key, secret)) = &backend.s3 {
        settings.push(("AWS_S3_ENDPOINT", endpoint.clone()));
        settings.push(("AWS_ACCESS_KEY_ID", key.clone()));
        settings.push(("AWS_SECRET_ACCESS_KEY", secret.clone()));
    }
    BrokerProcess::start(binary, &settings).await
}

#[derive(Clone)]
struct User {
    token: String,
}

struct Load {
    client: reqwest::Client,
    base: String,
    channel: i64,
    outcomes: Mutex<BTreeMap<String, u64>>,
    unexpected: AtomicU64,
    /// Files this user may delete, by user index.
    files: Mutex<Vec<(usize, i64)>>,
    expected_per_subscriber: AtomicU64,
}

impl Load {
    fn record(&self, op: &str, status: Result<u16, String>, expected: &[u16]) -> Option<u16> {
        let (key, ok) = match &status {
            Ok(code) => (format!("{op} → {code}"), expected.contains(code)),
            Err(err) => (format!("{op} → transport error ({})", err.split(':').next().unwrap_or("")), false),
        };
        *self.outcomes.lock().unwrap().entry(key).or_default() += 1;
        if !ok {
            self.unexpected.fetch_add(1, Ordering::Relaxed);
        }
        status.ok().filter(|_| ok)
    }

    async fn json(&self, op: &str, req: reqwest::RequestBuilder, expected: &[u16]) -> Option<Value> {
        match req.send().await {
            Ok(resp) => {
                let code = resp.status().as_u16();
                self.record(op, Ok(code), expected)?;
                if code == 204 {
                    return Some(Value::Null);
                }
                resp.json().await.ok()
            }
            Err(err) => {
                self.record(op, Err(err.to_string()), expected);
                None
            }
        }
    }

    /// presign → PUT → confirm; returns the file id.
    async fn upload(&self, user: &User, n: u64, message: Option<i64>) -> Option<i64> {
        let body = json!({ "channel_id": self.channel, "message_id": message, "file_name": format!("s{n}.png"), "content_type": "image/png", "size": PNG.len() });
        let presigned = self
            .json(
                "presign",
                self.client.post(format!("{}/files/presign", self.base)).bearer_auth(&user.token).json(&body),
                &[201],
            )
            .await?;
        let put = crate::presigned::put(&self.client, &presigned, PNG.to_vec()).send().await;
        self.record("PUT to S3", put.map(|r| r.status().as_u16()).map_err(|e| e.to_string()), &[200])?;
        let upload_id = presigned["upload_id"].as_str()?;
        let file = self
            .json(
                "confirm",
                self.client.post(format!("{}/files/uploads/{upload_id}/confirm", self.base)).bearer_auth(&user.token),
                &[201],
            )
            .await?;
        // file_upload_complete, plus message_updated when it went onto a message.
        self.expected_per_subscriber.fetch_add(if message.is_some() { 2 } else { 1 }, Ordering::Relaxed);
        file["id"].as_i64()
    }

    async fn step(&self, users: &[User], n: u64) {
        let who = (n as usize) % users.len();
        let user = &users[who];
        match n % 5 {
            0 => {
                if let Some(id) = self.upload(user, n, None).await {
                    let body = json!({ "content": format!("message {n}"), "file_ids": [id] });
                    let posted = self
                        .json(
                            "post message",
                            self.client
                                .post(format!("{}/channels/{}/messages", self.base, self.channel))
                                .bearer_auth(&user.token)
                                .json(&body),
                            &[201],
                        )
                        .await;
                    if posted.is_some() {
                        self.expected_per_subscriber.fetch_add(1, Ordering::Relaxed);
                        self.files.lock().unwrap().push((who, id));
                    }
                }
            }
            1 => {
                self.json(
                    "list messages",
                    self.client
                        .get(format!("{}/channels/{}/messages?limit=50", self.base, self.channel))
                        .bearer_auth(&user.token),
                    &[200],
                )
                .await;
            }
            2 => {
                let file = self.files.lock().unwrap().last().map(|(_, id)| *id);
                if let Some(id) = file {
                    let link = self
                        .json(
                            "download link",
                            self.client
                                .get(format!("{}/files/download/{id}?redirect=false", self.base))
                                .bearer_auth(&user.token),
                            &[200, 404],
                        )
                        .await;
                    if let Some(url) = link.as_ref().and_then(|l| l["url"].as_str()) {
                        let got = self.client.get(url).send().await;
                        self.record("GET from S3", got.map(|r| r.status().as_u16()).map_err(|e| e.to_string()), &[200]);
                    }
                }
            }
            3 => {
                let own = {
                    let mut files = self.files.lock().unwrap();
                    files.iter().position(|(owner, _)| *owner == who).map(|i| files.remove(i))
                };
                if let Some((_, id)) = own {
                    let deleted = self
                        .json(
                            "delete",
                            self.client.delete(format!("{}/files/{id}", self.base)).bearer_auth(&user.token),
                            &[204],
                        )
                        .await;
                    if deleted.is_some() {
                        // file_deleted, and message_updated for the message it left.
                        self.expected_per_subscriber.fetch_add(2, Ordering::Relaxed);
                    }
                }
            }
            _ => {
                let message = json!({ "content": format!("note {n}") });
                let posted = self
                    .json(
                        "post message",
                        self.client
                            .post(format!("{}/channels/{}/messages", self.base, self.channel))
                            .bearer_auth(&user.token)
                            .json(&message),
                        &[201],
                    )
                    .await;
                if let Some(message) = posted {
                    self.expected_per_subscriber.fetch_add(1, Ordering::Relaxed);
                    if let Some(id) = message["id"].as_i64() {
                        self.upload(user, n, Some(id)).await;
                    }
                }
            }
        }
    }
}

/// Runs the soak for `duration` at `rate` operations per second with
/// `subscribers` WebSocket clients.
pub async fn run(binary: &str, backend: &Backend, duration: Duration, rate: u32, subscribers: usize) -> SoakReport {
    let broker = start_broker(binary, backend).await;
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
    let mut users = Vec::new();
    for i in 0..3 {
        let login: Value = client
            .post(format!("{}/auth/dev-login", broker.base))
            .json(&json!({ "username": format!("soak{i}") }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        users.push(User { token: login["token"].as_str().unwrap().to_owned() });
    }
    let channel: Value = client
        .post(format!("{}/channels", broker.base))
        .bearer_auth(&users[0].token)
        .json(&json!({ "name": "soak" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let channel = channel["id"].as_i64().unwrap();
    for i in 1..3 {
        let added = client
            .post(format!("{}/channels/{channel}/members", broker.base))
            .bearer_auth(&users[0].token)
            .json(&json!({ "username": format!("soak{i}") }))
            .send()
            .await
            .unwrap();
        assert_eq!(added.status(), 201);
    }

    // Subscribers, spread over the users; each counts the channel's events.
    let received = Arc::new(AtomicU64::new(0));
    let mut sockets = Vec::new();
    for i in 0..subscribers {
        let mut req = format!("{}/ws", broker.base.replace("http://", "ws://")).into_client_request().unwrap();
        req.headers_mut().insert("authorization", format!("Bearer {}", users[i % 3].token).parse().unwrap());
        let (socket, _) = connect_async(req).await.expect("websocket connects");
        let received = received.clone();
        sockets.push(tokio::spawn(async move {
            let (_, mut read) = socket.split();
            while let Some(Ok(frame)) = read.next().await {
                if let Message::Text(text) = frame {
                    let event: Value = serde_json::from_str(&text).unwrap_or_default();
                    // `file_updated` (a preview made) comes from a background job: not counted.
                    if event["channel_id"] == json!(channel)
                        && !matches!(event["type"].as_str(), Some("member_joined" | "file_updated"))
                    {
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let load = Arc::new(Load {
        client: client.clone(),
        base: broker.base.clone(),
        channel,
        outcomes: Mutex::default(),
        unexpected: AtomicU64::new(0),
        files: Mutex::default(),
        expected_per_subscriber: AtomicU64::new(0),
    });
    let rss_start_kib = broker.rss_kib();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    let mut running = Vec::new();
    let mut n = 0u64;
    let mut rss_samples_kib = Vec::new();
    while started.elapsed() < duration {
        if started.elapsed() >= duration.mul_f64(rss_samples_kib.len() as f64 / 10.0) {
            rss_samples_kib.push(broker.rss_kib());
        }
        tick.tick().await;
        let (load, users) = (load.clone(), users.clone());
        running.push(tokio::spawn(async move { load.step(&users, n).await }));
        n += 1;
        running.retain(|t| !t.is_finished());
    }
    for task in running {
        let _ = task.await;
    }
    let expected = load.expected_per_subscriber.load(Ordering::Relaxed) * subscribers as u64;
    let deadline = Instant::now() + Duration::from_secs(10);
    while received.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss_end_kib = broker.rss_kib();
    for socket in sockets {
        socket.abort();
    }

    // The final sweep, by the CLI on the broker's data.
    let mut sweep = Command::new(binary);
    sweep.arg("sweep").env_clear().envs(broker.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    sweep.env("BIND_ADDR", "127.0.0.1:0").env("EMBEDDED_S3_ADDR", "127.0.0.1:0");
    // The CLI opens the same database and store (for the embedded store, the
    // same folder) while the broker still runs.
    let out = tokio::task::spawn_blocking(move || sweep.output()).await.unwrap().unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "sweep failed: {report}{}", String::from_utf8_lossy(&out.stderr));
    let orphans_after_sweep = orphan_count(&report);
    drop(broker);
    let outcomes = std::mem::take(&mut *load.outcomes.lock().unwrap());
    SoakReport {
        outcomes,
        unexpected: load.unexpected.load(Ordering::Relaxed),
        rss_start_kib,
        rss_end_kib,
        rss_samples_kib,
        orphans_after_sweep,
        events_expected: expected,
        events_received: received.load(Ordering::Relaxed),
        operations: n,
    }
}

fn orphan_count(report: &str) -> u64 {
    report
        .lines()
        .find(|l| l.starts_with("| orphan objects found |"))
        .and_then(|l| l.split('|').nth(2)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no orphan line in the sweep report:\n{report}"))
}
