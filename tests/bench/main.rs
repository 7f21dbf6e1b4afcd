//! Benchmarks of the broker's hot paths, printed as a table:
//! `cargo bench --bench broker`. Each figure is measured beside its baseline
//! in the same run (same machine load), and the ratio is what the targets
//! are about. Not a test: nothing here fails on a slow machine.

mod events;
mod large;
#[path = "../support/presigned.rs"]
mod presigned;
mod previews;
#[path = "../support/process.rs"]
mod process;
mod production;
mod sign;
#[path = "../soak/mod.rs"]
mod soak;
mod ws;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use chatgenius_files::{config::Config, net::NoDelayAcceptor, startup::Application};
use poem::{Route, Server, handler, post, web::Json};
use serde_json::{Value, json};

/// How long each load phase runs.
const PHASE: Duration = Duration::from_secs(4);
/// Rounds in which presign and the bare endpoint take turns (half a phase each).
const ROUNDS: usize = 4;
/// Confirms (and raw baselines) measured one after the other.
const CONFIRMS: usize = 300;

pub(crate) const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";

#[handler]
fn bare(Json(body): Json<Value>) -> Json<Value> {
    Json(json!({ "ok": true, "echo": body["file_name"] }))
}

#[handler]
fn bare_redirect() -> poem::web::Redirect {
    poem::web::Redirect::see_other("http://127.0.0.1:9/object?X-Amz-Signature=0")
}

#[derive(Default)]
struct Stats {
    requests: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Stats {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
    fn merge(&mut self, other: Stats) {
        self.requests += other.requests;
        self.elapsed += other.elapsed;
        self.latencies.extend(other.latencies);
    }
    fn pct(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
    }
}

pub(crate) fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// Runs `concurrency` workers sending requests built by `make` for [`PHASE`].
async fn load<F, Fut>(concurrency: usize, make: F) -> Stats
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = reqwest::StatusCode> + Send,
{
    load_for(concurrency, PHASE, make).await
}

/// Runs `concurrency` workers sending requests built by `make` for `phase`.
async fn load_for<F, Fut>(concurrency: usize, phase: Duration, make: F) -> Stats
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = reqwest::StatusCode> + Send,
{
    let make = Arc::new(make);
    let start = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|worker| {
            let make = make.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut i = 0;
                while start.elapsed() < phase {
                    let t = Instant::now();
                    let status = make(worker * 1_000_000 + i).await;
                    assert!(status.is_success(), "request failed: {status}");
                    latencies.push(t.elapsed());
                    i += 1;
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for w in workers {
        latencies.extend(w.await.unwrap());
    }
    Stats { requests: latencies.len(), elapsed: start.elapsed(), latencies }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(run());
}

/// Logs in (dev login) and creates a channel; returns the token and the channel id.
pub(crate) async fn login_and_channel(client: &reqwest::Client, addr: &str) -> (String, i64) {
    let login: Value = client
        .post(format!("http://{addr}/auth/dev-login"))
        .json(&json!({"username": "bench"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().unwrap().to_owned();
    let channel: Value = client
        .post(format!("http://{addr}/channels"))
        .bearer_auth(&token)
        .json(&json!({"name": "bench"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (token, channel["id"].as_i64().unwrap())
}

/// Starts a broker on the embedded store with limits out of the way, on the
/// given database (default: SQLite in `dir`).
async fn start(
    dir: &std::path::Path,
    database_url: Option<&str>,
) -> (std::net::SocketAddr, chatgenius_files::service::deps::Deps) {
    let mut args = vec![
        "bench".to_owned(),
        format!("--data-dir={}", dir.display()),
        "--bind-addr=127.0.0.1:0".to_owned(),
        "--embedded-s3-addr=127.0.0.1:0".to_owned(),
        "--presign-rate-per-min=100000000".to_owned(),
        "--confirm-rate-per-min=100000000".to_owned(),
        "--download-rate-per-min=100000000".to_owned(),
        "--sweep-interval-secs=0".to_owned(),
        // The confirms' own cost: the thumbnails of the benchmark's PNGs
        // would be made beside them (`-- previews` measures those).
        "--preview-workers=0".to_owned(),
    ];
    if let Some(url) = database_url {
        args.push(format!("--database-url={url}"));
    }
    let app = Application::build(Config::parse_from(args).unwrap()).await.unwrap();
    let addr = app.addr();
    let state = app.state().deps.clone();
    tokio::spawn(app.run_until(std::future::pending()));
    (addr, state)
}

/// A fresh PostgreSQL database when one answers on 127.0.0.1:5432 (or BENCH_POSTGRES_URL).
pub(crate) async fn postgres_database() -> Option<String> {
    use sea_orm::ConnectionTrait;
    let server = std::env::var("BENCH_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let admin = sea_orm::Database::connect(format!("{server}/postgres")).await.ok()?;
    let name = format!("cgf_bench_{}", std::process::id());
    admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name}")).await.ok()?;
    admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.ok()?;
    Some(format!("{server}/{name}"))
}

async fn run() {
    // `cargo bench --bench broker -- ws` runs the WebSocket fan-out alone.
    let only_ws = std::env::args().any(|a| a == "ws");
    let client = reqwest::Client::builder().pool_max_idle_per_host(256).build().unwrap();
    if only_ws {
        return ws::run(&client).await;
    }
    // `cargo bench --bench broker -- soak [seconds] [pg]`: the soak alone (600 s
    // by default; `pg`: PostgreSQL + the SeaweedFS of tests/run.sh).
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "soak") {
        let secs = args.get(at + 1).and_then(|s| s.parse().ok()).unwrap_or(600);
        let (backend, title) = if args.iter().any(|a| a == "pg") {
            let s3 = (
                std::env::var("TEST_S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:18333".into()),
                std::env::var("TEST_S3_ACCESS_KEY").unwrap_or_else(|_| "cgftestkey".into()),
                std::env::var("TEST_S3_SECRET_KEY").unwrap_or_else(|_| "cgftestsecret0123456789".into()),
            );
            let database_url = postgres_database().await.expect("PostgreSQL on 127.0.0.1:5432 (or BENCH_POSTGRES_URL)");
            (
                soak::Backend { database_url: Some(database_url), s3: Some(s3) },
                format!("PostgreSQL + SeaweedFS, {secs} s"),
            )
        } else {
            (soak::Backend::default(), format!("embedded default (SQLite + s3s-fs), {secs} s"))
        };
        let report =
            soak::run(env!("CARGO_BIN_EXE_chatgenius-files"), &backend, Duration::from_secs(secs), 20, 20).await;
        print!("{}", report.table(&title));
        return;
    }
    // `cargo bench --bench broker -- sign`: the two signers alone.
    if std::env::args().any(|a| a == "sign") {
        return sign::run();
    }
    // `cargo bench --bench broker -- previews`: thumbnail generation alone.
    if std::env::args().any(|a| a == "previews") {
        return previews::run();
    }
    // `cargo bench --bench broker -- events`: event delivery, replay and the append lock alone.
    if std::env::args().any(|a| a == "events") {
        return events::run(&client).await;
    }
    // `cargo bench --bench broker -- production` measures the production
    // shape (PostgreSQL + SeaweedFS, tests/run.sh starts both) alone.
    if std::env::args().any(|a| a == "production") {
        return production::run(&client).await;
    }
    // `cargo bench --bench broker -- large` runs the 1 GiB upload alone.
    if std::env::args().any(|a| a == "large") {
        return large::run(&client).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let (addr, state) = start(dir.path(), None).await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bare_addr = listener.local_addr().unwrap();
    let bare_routes = Route::new().at("/bare", post(bare)).at("/bare-redirect", poem::get(bare_redirect));
    tokio::spawn(Server::new_with_acceptor(NoDelayAcceptor::new(listener).unwrap().0).run(bare_routes));

    // `cargo bench --bench broker -- download`: the download rows alone.
    if std::env::args().any(|a| a == "download") {
        let (token, channel) = login_and_channel(&client, &addr.to_string()).await;
        let message: Value = client
            .post(format!("http://{addr}/channels/{channel}/messages"))
            .bearer_auth(&token)
            .json(&json!({ "content": "one file" }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        upload_into(&client, addr, &token, channel, message["id"].as_i64().unwrap(), 0).await;
        return downloads(&no_follow_client(), addr, &state, bare_addr).await;
    }
    // Presign and confirm on PostgreSQL (production's database) and on the embedded SQLite default.
    let pg_dir = tempfile::tempdir().unwrap();
    let postgres = match postgres_database().await {
        Some(url) => Some(start(pg_dir.path(), Some(&url)).await),
        None => {
            println!("\n(PostgreSQL not reachable on 127.0.0.1:5432: its rows are left out)");
            None
        }
    };
    let mut databases = Vec::new();
    if let Some((pg_addr, pg_state)) = &postgres {
        databases.push(("PostgreSQL", *pg_addr, pg_state.clone()));
    }
    databases.push(("SQLite", addr, state.clone()));
    for (database, addr, state) in &databases {
        upload_paths(&client, database, *addr, state, bare_addr).await;
    }
    // `cargo bench --bench broker -- upload` stops here.
    if std::env::args().any(|a| a == "upload") {
        return;
    }
    sign::run();
    downloads(&no_follow_client(), addr, &state, bare_addr).await;

    // A page of 50 messages with 2 files each, on SQLite and PostgreSQL.
    println!("\n## Message page: 50 messages x 2 files (concurrency 16)\n");
    println!("| database | requests/s | p50 ms | p99 ms |");
    println!("|---|---:|---:|---:|");
    for (database, addr, _) in databases {
        let token = login_token(&client, addr).await;
        let channel = make_channel(&client, addr, &token).await;
        for i in 0..50 {
            let message: Value = client
                .post(format!("http://{addr}/channels/{channel}/messages"))
                .bearer_auth(&token)
                .json(&json!({ "content": format!("message {i}") }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            for j in 0..2 {
                upload_into(&client, addr, &token, channel, message["id"].as_i64().unwrap(), j).await;
            }
        }
        let (c, url, t) =
            (client.clone(), format!("http://{addr}/channels/{channel}/messages?limit=50"), token.clone());
        let page = load(16, move |_| {
            let (c, url, t) = (c.clone(), url.clone(), t.clone());
            async move { c.get(&url).bearer_auth(&t).send().await.unwrap().status() }
        })
        .await;
        println!("| {database} | {:.0} | {} | {} |", page.rps(), ms(page.pct(0.5)), ms(page.pct(0.99)));
    }
    ws::run(&client).await;
    events::run(&client).await;
    large::run(&client).await;
}

/// Presign beside the bare endpoint (concurrency 16 and 64), then confirm
/// beside its own store and database round trips, on one broker.
async fn upload_paths(
    client: &reqwest::Client,
    database: &str,
    addr: std::net::SocketAddr,
    state: &chatgenius_files::service::deps::Deps,
    bare_addr: std::net::SocketAddr,
) {
    let (token, channel) = login_and_channel(client, &addr.to_string()).await;
    let presign_body = move |i: usize| json!({ "channel_id": channel, "file_name": format!("f{i}.png"), "content_type": "image/png", "size": 1024 });

    println!("\n## Presign vs a bare poem endpoint ({database}, embedded store)\n");
    println!("| endpoint | concurrency | requests/s | p50 ms | p99 ms | ratio to bare |");
    println!("|---|---:|---:|---:|---:|---:|");
    // This machine's speed drifts (a shared VM): the two endpoints take turns
    // in short rounds, and the ratio printed is the median of the rounds'.
    for concurrency in [16, 64] {
        let (c, url) = (client.clone(), format!("http://{bare_addr}/bare"));
        let to_bare = move |i: usize| {
            let (c, url) = (c.clone(), url.clone());
            async move { c.post(&url).json(&presign_body(i)).send().await.unwrap().status() }
        };
        let (c, url, t) = (client.clone(), format!("http://{addr}/files/presign"), token.clone());
        let presign = move |i: usize| {
            let (c, url, t) = (c.clone(), url.clone(), t.clone());
            async move { c.post(&url).bearer_auth(&t).json(&presign_body(i)).send().await.unwrap().status() }
        };
        let (mut bare_stats, mut presign_stats, mut ratios) = (Stats::default(), Stats::default(), Vec::new());
        for _ in 0..ROUNDS {
            let b = load_for(concurrency, PHASE / 2, to_bare.clone()).await;
            let p = load_for(concurrency, PHASE / 2, presign.clone()).await;
            ratios.push(p.rps() / b.rps());
            bare_stats.merge(b);
            presign_stats.merge(p);
        }
        ratios.sort_by(f64::total_cmp);
        print_rounds(
            concurrency,
            ("bare poem", &bare_stats),
            ("POST /files/presign", &presign_stats),
            ratios[ratios.len() / 2],
        );
    }

    // Confirm: prepare uploads, then time confirms one by one.
    let mut uploads = Vec::new();
    for i in 0..CONFIRMS {
        uploads.push(presign_and_put(client, addr, &token, channel, None, &format!("c{i}.png")).await);
    }
    let mut confirm = Vec::new();
    for id in &uploads {
        let t = Instant::now();
        let status = client
            .post(format!("http://{addr}/files/uploads/{id}/confirm"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 201);
        confirm.push(t.elapsed());
    }

    // The raw cost of what confirm must do: HEAD, ranged GET, insert, on other objects.
    let mut raw = Vec::new();
    for i in 0..CONFIRMS {
        let key = format!("uploads/{channel}/raw/{i}.png");
        state.storage.put(&key, "image/png", bytes::Bytes::from_static(PNG)).await.unwrap();
        let t = Instant::now();
        state.storage.read_head(&key, 1024).await.unwrap().unwrap();
        use sea_orm::{ActiveModelTrait, ActiveValue::Set};
        chatgenius_files::entity::file_upload::ActiveModel {
            file_name: Set(format!("{i}.png")),
            s3_key: Set(key),
            content_type: Set(Some("image/png".into())),
            file_size: Set(Some(PNG.len() as i64)),
            channel_id: Set(channel as i32),
            download_count: Set(0),
            ..Default::default()
        }
        .insert(&state.db)
        .await
        .unwrap();
        raw.push(t.elapsed());
    }
    let confirm = Stats { requests: confirm.len(), elapsed: Duration::ZERO, latencies: confirm };
    let raw = Stats { requests: raw.len(), elapsed: Duration::ZERO, latencies: raw };
    println!("\n## Confirm vs its own ranged GET + insert ({CONFIRMS} sequential, {database}, embedded store)\n");
    println!("| what | p50 ms | p99 ms | p50 ratio |");
    println!("|---|---:|---:|---:|");
    println!("| raw ranged GET 1 KiB + INSERT | {} | {} | 1.00 |", ms(raw.pct(0.5)), ms(raw.pct(0.99)));
    println!(
        "| POST /files/uploads/{{id}}/confirm | {} | {} | {:.2} |",
        ms(confirm.pct(0.5)),
        ms(confirm.pct(0.99)),
        confirm.pct(0.5).as_secs_f64() / raw.pct(0.5).as_secs_f64()
    );
}

fn redirected(status: reqwest::StatusCode) -> reqwest::StatusCode {
    if status.is_redirection() { reqwest::StatusCode::OK } else { status }
}

async fn login_token(client: &reqwest::Client, addr: std::net::SocketAddr) -> String {
    let login: Value = client
        .post(format!("http://{addr}/auth/dev-login"))
        .json(&json!({"username": "pager"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    login["token"].as_str().unwrap().to_owned()
}

async fn make_channel(client: &reqwest::Client, addr: std::net::SocketAddr, token: &str) -> i64 {
    let channel: Value = client
        .post(format!("http://{addr}/channels"))
        .bearer_auth(token)
        .json(&json!({"name": "page"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    channel["id"].as_i64().unwrap()
}

async fn upload_into(
    client: &reqwest::Client,
    addr: std::net::SocketAddr,
    token: &str,
    channel: i64,
    message: i64,
    n: usize,
) {
    let upload_id = presign_and_put(client, addr, token, channel, Some(message), &format!("{n}.png")).await;
    let confirmed = client
        .post(format!("http://{addr}/files/uploads/{upload_id}/confirm"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(confirmed.status(), 201);
}

/// Presigns a small PNG and PUTs it to the store; returns the upload id to confirm.
pub(crate) async fn presign_and_put(
    client: &reqwest::Client,
    addr: impl std::fmt::Display,
    token: &str,
    channel: i64,
    message: Option<i64>,
    name: &str,
) -> String {
    let p: Value = client
        .post(format!("http://{addr}/files/presign"))
        .bearer_auth(token)
        .json(&json!({ "channel_id": channel, "message_id": message, "file_name": name, "content_type": "image/png", "size": PNG.len() }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let put = crate::presigned::put(client, &p, PNG).send().await.unwrap();
    assert!(put.status().is_success(), "PUT {}", put.status());
    p["upload_id"].as_str().unwrap().to_owned()
}

/// Two table rows, totals of the rounds, and the median of the rounds' ratios.
fn print_rounds(concurrency: usize, baseline: (&str, &Stats), measured: (&str, &Stats), median_ratio: f64) {
    for ((name, s), ratio) in [(baseline, 1.0), (measured, median_ratio)] {
        println!("| {name} | {concurrency} | {:.0} | {} | {} | {ratio:.2} |", s.rps(), ms(s.pct(0.5)), ms(s.pct(0.99)));
    }
}

/// Two table rows: a baseline and an endpoint measured beside it.
fn print_beside(concurrency: usize, baseline: (&str, &Stats), measured: (&str, &Stats)) {
    for (name, s) in [baseline, measured] {
        println!(
            "| {name} | {concurrency} | {:.0} | {} | {} | {:.2} |",
            s.rps(),
            ms(s.pct(0.5)),
            ms(s.pct(0.99)),
            s.rps() / baseline.1.rps()
        );
    }
}

/// A client that does not follow redirects (for the download path).
fn no_follow_client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).pool_max_idle_per_host(256).build().unwrap()
}

/// Download redirects beside a bare poem redirect, on a broker holding at least one file.
async fn downloads(
    no_follow: &reqwest::Client,
    addr: std::net::SocketAddr,
    state: &chatgenius_files::service::deps::Deps,
    bare_addr: std::net::SocketAddr,
) {
    let client = no_follow;
    let (token, _) = login_and_channel(client, &addr.to_string()).await;

    // Download redirects.
    let file_id = state.db.clone();
    let file_id = {
        use sea_orm::EntityTrait;
        chatgenius_files::entity::file_upload::Entity::find().one(&file_id).await.unwrap().unwrap().id
    };
    println!("\n## Download redirect vs a bare poem redirect (embedded default, SQLite)\n");
    println!("| endpoint | concurrency | requests/s | p50 ms | p99 ms | ratio to bare |");
    println!("|---|---:|---:|---:|---:|---:|");
    for concurrency in [16, 64] {
        let (c, url) = (no_follow.clone(), format!("http://{bare_addr}/bare-redirect"));
        let bare_stats = load(concurrency, move |_| {
            let (c, url) = (c.clone(), url.clone());
            async move { redirected(c.get(&url).send().await.unwrap().status()) }
        })
        .await;
        let (c, url, t) = (no_follow.clone(), format!("http://{addr}/files/download/{file_id}"), token.clone());
        let download_stats = load(concurrency, move |_| {
            let (c, url, t) = (c.clone(), url.clone(), t.clone());
            async move { redirected(c.get(&url).bearer_auth(&t).send().await.unwrap().status()) }
        })
        .await;
        print_beside(concurrency, ("bare poem redirect", &bare_stats), ("GET /files/download/{id}", &download_stats));
    }
}
