//! Faults: the object store or the database going away and coming back, the
//! broker killed or shut down mid-work, a client vanishing mid-upload. The
//! outcome must be a clear 503 while it lasts, recovery without a restart, and
//! nothing left behind after a sweep.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use chatgenius_files::{embedded_s3::EmbeddedS3, entity::file_upload};
use reqwest::StatusCode;
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{Value, json};
use tokio::{
    io::AsyncWriteExt,
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

use crate::helpers::{
    TestApp, assert_error, fresh_database_url, outside_store, spawn_app_with, spawn_with, store_args,
};

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";

/// A TCP link that can be cut (every connection dropped, new ones refused),
/// frozen (connections accepted and never answered, as a hung server does)
/// and restored.
struct Link {
    addr: SocketAddr,
    down: Arc<AtomicBool>,
    frozen: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<JoinHandle<()>>>>,
    held: Arc<Mutex<Vec<TcpStream>>>,
}

impl Link {
    async fn to(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (down, frozen) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let open: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (is_down, is_frozen, conns, holding) = (down.clone(), frozen.clone(), open.clone(), held.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if is_down.load(Ordering::SeqCst) {
                    continue;
                }
                if is_frozen.load(Ordering::SeqCst) {
                    holding.lock().unwrap().push(client);
                    continue;
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                conns.lock().unwrap().push(task);
            }
        });
        Self { addr, down, frozen, open, held }
    }

    fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
        for task in self.open.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        for task in self.open.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
        self.frozen.store(false, Ordering::SeqCst);
        self.held.lock().unwrap().clear();
    }
}

async fn presign_and_put(app: &TestApp, user: &crate::helpers::TestUser, channel: i64, name: &str) -> String {
    let presigned: Value = app
        .post(
            user,
            "/files/presign",
            json!({ "channel_id": channel, "file_name": name, "content_type": "image/png", "size": PNG.len() }),
        )
        .await
        .json()
        .await
        .unwrap();
    let put = crate::presigned::put(&app.client, &presigned, PNG.to_vec()).send().await.unwrap();
    assert!(put.status().is_success(), "PUT {}", put.status());
    presigned["upload_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn confirm_answers_503_while_the_store_is_unreachable_and_succeeds_once_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = outside_store(dir.path()).await;
    let link = Link::to(s3.addr).await;
    let app = spawn_with(&store_args(&format!("http://{}", link.addr), &s3)).await;
    let alice = app.login("alice").await;
    let channel = app.create_channel(&alice, "general").await;
    let upload_id = presign_and_put(&app, &alice, channel, "a.png").await;

    link.cut();
    assert_error(app.confirm_id(&alice, &upload_id).await, StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable")
        .await;
    assert_error(app.ready_now().await, StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable").await;

    link.restore();
    let resp = app.confirm_id(&alice, &upload_id).await;
    assert_eq!(resp.status(), StatusCode::CREATED, "{}", resp.text().await.unwrap());
    assert_eq!(app.ready_now().await.status(), StatusCode::OK);
    assert_eq!(file_upload::Entity::find().count(&app.deps.db).await.unwrap(), 1);
}

#[tokio::test]
async fn a_stalled_store_is_503_with_retry_after_within_the_total_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = outside_store(dir.path()).await;
    let link = Link::to(s3.addr).await;
    let args = store_args(&format!("http://{}", link.addr), &s3);
    stalled_store_answers_503_then_recovers(&link, args).await;
}

#[tokio::test]
async fn a_stalled_seaweedfs_is_503_with_retry_after_within_the_total_timeout() {
    let Some(crate::helpers::Store::SeaweedFs { endpoint, access_key, secret_key }) =
        crate::helpers::Store::seaweedfs()
    else {
        eprintln!("SeaweedFS not configured (TEST_S3_ENDPOINT); run tests/run.sh");
        return;
    };
    let upstream = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let link = Link::to(tokio::net::lookup_host(upstream).await.unwrap().next().unwrap()).await;
    let args = vec![
        ("aws-s3-endpoint", format!("http://{}", link.addr)),
        ("aws-access-key-id", access_key),
        ("aws-secret-access-key", secret_key),
        ("aws-s3-bucket-name", format!("stall-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])),
    ];
    stalled_store_answers_503_then_recovers(&link, args).await;
}

/// The store behind `link` hangs (connections accepted, never answered):
/// confirm answers 503 with Retry-After within the total timeout, `/ready`
/// says so, and the same confirm succeeds once the store answers again.
async fn stalled_store_answers_503_then_recovers(link: &Link, mut args: Vec<(&'static str, String)>) {
    args.extend([("s3-attempt-timeout-secs", "1".to_owned()), ("s3-total-timeout-secs", "2".to_owned())]);
    let app = spawn_with(&args).await;
    let alice = app.login("alice").await;
    let channel = app.create_channel(&alice, "general").await;
    let upload_id = presign_and_put(&app, &alice, channel, "a.png").await;

    link.freeze();
    let started = std::time::Instant::now();
    let resp = app.confirm_id(&alice, &upload_id).await;
    let waited = started.elapsed();
    assert_eq!(resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned()).as_deref(), Some("5"));
    assert_error(resp, StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable").await;
    // The total timeout is 2 s; the old single 30 s attempt would hang here.
    assert!(waited < Duration::from_secs(10), "confirm waited {waited:?} on a hung store");
    let ready = app.ready_now().await;
    assert_error(ready, StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable").await;

    link.restore();
    let resp = app.confirm_id(&alice, &upload_id).await;
    assert_eq!(resp.status(), StatusCode::CREATED, "{}", resp.text().await.unwrap());
    assert_eq!(app.ready_now().await.status(), StatusCode::OK);
}

#[tokio::test]
async fn database_backends_terminated_under_load_are_503_never_500() {
    let Ok(server) = std::env::var("TEST_POSTGRES_URL") else {
        eprintln!("PostgreSQL not configured (TEST_POSTGRES_URL); tests/run.sh runs this on PostgreSQL");
        return;
    };
    let app = spawn_app_with(&[("presign-rate-per-min", "100000")]).await;
    let alice = app.login("alice").await;
    let channel = app.create_channel(&alice, "general").await;
    let database = app.database_url.rsplit('/').next().unwrap().to_owned();
    let admin = sea_orm::Database::connect(format!("{}/postgres", server.trim_end_matches('/'))).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let killer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            use sea_orm::ConnectionTrait;
            let mut terminated = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let sql = format!(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{database}'"
                );
                if let Ok(Some(row)) =
                    admin.query_one_raw(sea_orm::Statement::from_string(admin.get_database_backend(), sql)).await
                {
                    terminated += row.try_get_by_index::<i64>(0).unwrap_or(0) as u64;
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            terminated
        })
    };
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let messages = format!("/channels/{channel}/messages");
    while std::time::Instant::now() < deadline {
        let presign = app.post(
            &alice,
            "/files/presign",
            json!({ "channel_id": channel, "file_name": "a.png", "content_type": "image/png", "size": 10 }),
        );
        let message = app.post(&alice, &messages, json!({ "content": "hi" }));
        let list = app.get(&alice, "/channels");
        let (a, b, c) = tokio::join!(presign, message, list);
        for resp in [a, b, c] {
            *statuses.entry(resp.status().as_u16()).or_default() += 1;
            if resp.status().is_server_error() {
                assert_error(resp, StatusCode::SERVICE_UNAVAILABLE, "database_unavailable").await;
            }
        }
    }
    stop.store(true, Ordering::SeqCst);
    let terminated = killer.await.unwrap();
    assert!(terminated > 0, "the load ran while backends were terminated: {statuses:?}");
    assert!(statuses.keys().all(|s| (200..300).contains(s) || *s == 503), "{statuses:?}");
}

#[tokio::test]
async fn the_database_going_away_is_503_and_the_broker_recovers_without_a_restart() {
    let Ok(server) = std::env::var("TEST_POSTGRES_URL") else {
        eprintln!("PostgreSQL not configured (TEST_POSTGRES_URL); tests/run.sh runs this on PostgreSQL");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(dir.path()).await;
    let host_port = server.trim_end_matches('/').rsplit('@').next().unwrap().to_owned();
    let link = Link::to(tokio::net::lookup_host(&host_port).await.unwrap().next().unwrap()).await;
    let linked = url.replacen(&host_port, &link.addr.to_string(), 1);
    let app = spawn_app_with(&[("database-url", &linked)]).await;
    let alice = app.login("alice").await;
    app.create_channel(&alice, "general").await;

    link.cut();
    assert_error(app.get(&alice, "/channels").await, StatusCode::SERVICE_UNAVAILABLE, "database_unavailable").await;
    let post = app.post(&alice, "/channels", json!({ "name": "during" })).await;
    assert_error(post, StatusCode::SERVICE_UNAVAILABLE, "database_unavailable").await;
    assert_error(app.ready_now().await, StatusCode::SERVICE_UNAVAILABLE, "database_unavailable").await;

    link.restore();
    let mut recovered = false;
    for _ in 0..50 {
        if app.get(&alice, "/channels").await.status() == StatusCode::OK {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "the broker serves again once the database is back");
    let channels: Value = app.get(&alice, "/channels").await.json().await.unwrap();
    assert_eq!(channels["channels"].as_array().unwrap().len(), 1, "nothing was half-written: {channels}");
    assert_eq!(app.ready_now().await.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_upload_abandoned_by_a_killed_broker_is_gone_after_expiry_and_one_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = outside_store(&dir.path().join("s3")).await;
    let data_dir = dir.path().join("broker");
    let api = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let envs = [
        ("DATA_DIR", data_dir.to_str().unwrap().to_owned()),
        ("BIND_ADDR", api.to_string()),
        ("AWS_S3_ENDPOINT", s3.endpoint().as_str().to_owned()),
        ("AWS_ACCESS_KEY_ID", s3.access_key_id.clone()),
        ("AWS_SECRET_ACCESS_KEY", s3.secret_access_key.expose().to_owned()),
        // Not 1: X-Amz-Date has whole seconds, so a 1 s URL can die before the PUT.
        ("UPLOAD_URL_TTL_SECS", "2".to_owned()),
        ("UPLOAD_CONFIRM_GRACE_SECS", "0".to_owned()),
        ("SWEEP_INTERVAL_SECS", "0".to_owned()),
        ("RUST_LOG", "error".to_owned()),
    ];
    let command = || {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_chatgenius-files"));
        cmd.env_clear().envs(envs.iter().map(|(k, v)| (*k, v.as_str()))).stdout(std::process::Stdio::piped());
        cmd
    };
    let mut broker = command().arg("serve").spawn().unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://{api}");
    for _ in 0..100 {
        if client.get(format!("{base}/health")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let login: Value = client
        .post(format!("{base}/auth/dev-login"))
        .json(&json!({ "username": "kim" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().unwrap();
    let channel: Value = client
        .post(format!("{base}/channels"))
        .bearer_auth(token)
        .json(&json!({ "name": "c" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let presigned: Value = client
        .post(format!("{base}/files/presign"))
        .bearer_auth(token)
        .json(&json!({ "channel_id": channel["id"], "file_name": "k.png", "content_type": "image/png", "size": PNG.len() }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let put = crate::presigned::put(&client, &presigned, PNG.to_vec()).send().await.unwrap();
    assert!(put.status().is_success());
    // SIGKILL between the PUT and the confirm.
    broker.kill().unwrap();
    broker.wait().unwrap();
    assert_eq!(count_objects(&s3).await, 1);

    tokio::time::sleep(Duration::from_millis(2500)).await;
    // Run off this test's runtime: the store it sweeps is served by it.
    let mut sweep = command();
    sweep.arg("sweep").env("BIND_ADDR", "127.0.0.1:0");
    let swept = tokio::task::spawn_blocking(move || sweep.output()).await.unwrap().unwrap();
    let report = String::from_utf8_lossy(&swept.stdout);
    assert!(swept.status.success(), "{report}{}", String::from_utf8_lossy(&swept.stderr));
    assert!(report.contains("| expired uploads removed | 1 |"), "{report}");
    assert_eq!(count_objects(&s3).await, 0, "no orphan object after one sweep");
}

async fn count_objects(s3: &EmbeddedS3) -> usize {
    let settings = chatgenius_files::storage::StorageSettings {
        public_endpoint: Some(s3.endpoint()),
        endpoint: Some(s3.endpoint()),
        region: "us-east-1".into(),
        bucket: "chatgenius-files".parse().unwrap(),
        credentials: chatgenius_files::storage::CredentialSource::fixed(
            &s3.access_key_id,
            s3.secret_access_key.expose(),
        ),
        force_path_style: true,
        timeouts: Default::default(),
    };
    let storage = chatgenius_files::storage::Storage::new(&settings);
    storage.list_page("uploads/", None).await.unwrap().len()
}

#[tokio::test]
async fn a_client_vanishing_mid_upload_leaves_no_row_and_no_object() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = outside_store(dir.path()).await;
    let app = spawn_with(&store_args(s3.endpoint().as_str(), &s3)).await;
    let alice = app.login("alice").await;
    let channel = app.create_channel(&alice, "general").await;

    let boundary = "cgfboundary";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"channel_id\"\r\n\r\n{channel}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.png\"\r\nContent-Type: image/png\r\n\r\n"
    );
    let declared = 30 * 1024 * 1024;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let request = format!(
        "POST /files/upload HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {declared}\r\n\r\n",
        app.addr, alice.token
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(PNG).await.unwrap();
    // 12 MiB: more than one 8 MiB part has gone to the store.
    let chunk = vec![7u8; 1024 * 1024];
    for _ in 0..12 {
        stream.write_all(&chunk).await.unwrap();
    }
    stream.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(stream);
    tokio::time::sleep(Duration::from_millis(1000)).await;

    let report = app.sweep_once().await.unwrap();
    assert_eq!(report.orphans_found, 0);
    assert_eq!(file_upload::Entity::find().count(&app.deps.db).await.unwrap(), 0, "no row");
    assert_eq!(app.object_count().await, 0, "no object");
    if let Ok(pending) = app.deps.storage.list_multipart("uploads/").await {
        assert!(pending.is_empty(), "no multipart upload left: {pending:?}");
    }
}

#[tokio::test]
async fn shutting_down_during_a_burst_of_confirms_leaves_each_upload_whole_or_gone() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = outside_store(&dir.path().join("s3")).await;
    let database_url = fresh_database_url(dir.path()).await;
    let mut args = store_args(s3.endpoint().as_str(), &s3);
    args.push(("database-url", database_url));
    args.push(("upload-url-ttl-secs", "2".to_owned()));
    args.push(("upload-confirm-grace-secs", "0".to_owned()));
    args.push(("confirm-rate-per-min", "100000".to_owned()));
    args.push(("presign-rate-per-min", "100000".to_owned()));
    args.push(("sweep-interval-secs", "0".to_owned()));
    let app = spawn_with(&args).await;
    let alice = app.login("alice").await;
    let channel = app.create_channel(&alice, "general").await;
    let mut uploads = Vec::new();
    for i in 0..30 {
        uploads.push(presign_and_put(&app, &alice, channel, &format!("{i}.png")).await);
    }

    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // A connection per confirm, as many clients would: after shutdown starts, new ones are refused.
    let unpooled = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let confirms: Vec<_> = uploads
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let (client, url, token) =
                (unpooled.clone(), app.url(&format!("/files/uploads/{id}/confirm")), alice.token.clone());
            let done = done.clone();
            tokio::spawn(async move {
                // A steady stream rather than one instant volley.
                tokio::time::sleep(Duration::from_millis(3 * i as u64)).await;
                let result = client.post(url).bearer_auth(token).send().await.map(|r| r.status());
                done.fetch_add(1, Ordering::SeqCst);
                result
            })
        })
        .collect();
    // SIGTERM's path (graceful shutdown) once a few confirms went through.
    while done.load(Ordering::SeqCst) < 5 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    app.shut_down();
    let (mut answered, mut created) = (0, 0);
    for confirm in confirms {
        if let Ok(Ok(status)) = confirm.await {
            assert!(status == StatusCode::CREATED || status == StatusCode::SERVICE_UNAVAILABLE, "{status}");
            answered += 1;
            created += usize::from(status == StatusCode::CREATED);
        }
    }

    // After the links expire, one sweep by a new instance settles everything.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after = spawn_with(&args).await;
    after.sweep_once().await.unwrap();
    let files = file_upload::Entity::find().all(&after.deps.db).await.unwrap();
    let objects: Vec<String> =
        after.deps.storage.list_page("uploads/", None).await.unwrap().into_iter().map(|(key, _)| key).collect();
    let mut recorded: Vec<&str> = files.iter().map(|f| f.s3_key.as_str()).collect();
    recorded.sort();
    let mut stored: Vec<&str> = objects.iter().map(String::as_str).collect();
    stored.sort();
    assert_eq!(recorded, stored, "every object has its row and every row its object");
    assert!(files.len() >= created, "every 201 has its file ({created} answered 201, {} recorded)", files.len());
    eprintln!("{answered} of 30 confirms answered before shutdown; {} files recorded", files.len());
}

/// Download counts are written behind (within 50 ms): a SIGTERM right after a
/// download still leaves it counted.
#[tokio::test]
async fn a_download_just_before_sigterm_is_counted() {
    use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
    let data = tempfile::tempdir().unwrap();
    let settings = [("DATA_DIR", data.path().display().to_string()), ("SWEEP_INTERVAL_SECS", "0".to_owned())];
    let mut broker = crate::process::BrokerProcess::start(env!("CARGO_BIN_EXE_chatgenius-files"), &settings).await;
    // No idle connection for the shutdown to wait on.
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let base = broker.base.clone();
    let post = |path: &str, token: &str, body: Value| {
        client.post(format!("{base}{path}")).bearer_auth(token).json(&body).send()
    };
    let login: Value = post("/auth/dev-login", "", json!({ "username": "alice" })).await.unwrap().json().await.unwrap();
    let token = login["token"].as_str().unwrap();
    let channel: Value = post("/channels", token, json!({ "name": "general" })).await.unwrap().json().await.unwrap();
    let body =
        json!({ "channel_id": channel["id"], "file_name": "last.png", "content_type": "image/png", "size": PNG.len() });
    let presigned: Value = post("/files/presign", token, body).await.unwrap().json().await.unwrap();
    let put = crate::presigned::put(&client, &presigned, PNG.to_vec()).send().await.unwrap();
    assert!(put.status().is_success());
    let confirm = format!("/files/uploads/{}/confirm", presigned["upload_id"].as_str().unwrap());
    let confirmed = post(&confirm, token, json!({})).await.unwrap();
    assert_eq!(confirmed.status(), StatusCode::CREATED);
    let file_id = confirmed.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    let download =
        client.get(format!("{base}/files/download/{file_id}?redirect=false")).bearer_auth(token).send().await.unwrap();
    assert_eq!(download.status(), StatusCode::OK);

    unsafe { libc::kill(broker.child.id() as i32, libc::SIGTERM) };
    let (status, _broker) = tokio::task::spawn_blocking(move || (broker.child.wait().unwrap(), broker)).await.unwrap();
    assert!(status.success(), "graceful exit: {status:?}");

    let url = format!("sqlite://{}?mode=ro", data.path().join("chatgenius.db").display());
    let db = sea_orm::Database::connect(url).await.unwrap();
    let count = |sql: &'static str| {
        let db = db.clone();
        async move {
            let row = db.query_one_raw(Statement::from_string(DatabaseBackend::Sqlite, sql)).await.unwrap().unwrap();
            row.try_get_by_index::<i64>(0).unwrap()
        }
    };
    assert_eq!(count("SELECT COUNT(*) FROM file_downloads").await, 1, "the download's log row");
    assert_eq!(count("SELECT download_count FROM file_uploads").await, 1, "the file's counter");
}

#[tokio::test]
async fn a_presign_answered_just_before_a_sigkill_is_known_after_restart() {
    let body = json!({ "file_name": "last.png", "content_type": "image/png", "size": PNG.len() });
    upload_started_just_before_a_sigkill(
        "/files/presign",
        body,
        |upload_id| (format!("/files/uploads/{upload_id}/confirm"), json!({})),
        |status, body| {
            // Known (nothing was uploaded to it), not 404.
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (StatusCode::UNPROCESSABLE_ENTITY, Some("object_missing")),
                "{body}"
            );
        },
    )
    .await;
}

#[tokio::test]
async fn a_multipart_start_answered_just_before_a_sigkill_is_known_after_restart() {
    let body = json!({ "file_name": "big.png", "content_type": "image/png", "size": 12 * 1024 * 1024 });
    let parts = |upload_id: &str| (format!("/files/uploads/{upload_id}/parts"), json!({ "part_numbers": [1] }));
    upload_started_just_before_a_sigkill("/files/multipart", body, parts, |status, body| {
        // Known, with its store-side upload: a fresh part URL and no part yet.
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["parts"][0]["part_number"], 1, "{body}");
        assert_eq!(body["uploaded"], json!([]), "{body}");
    })
    .await;
}

/// Starts an upload at `path` (into a new channel), SIGKILLs the broker the
/// moment the answer is out, restarts it on the same data, checks the
/// answer to the request `next` builds, and aborts the upload.
async fn upload_started_just_before_a_sigkill(
    path: &str,
    mut body: Value,
    next: impl Fn(&str) -> (String, Value),
    check: impl Fn(StatusCode, &Value),
) {
    let data = tempfile::tempdir().unwrap();
    let settings = [("DATA_DIR", data.path().display().to_string()), ("SWEEP_INTERVAL_SECS", "0".to_owned())];
    let binary = env!("CARGO_BIN_EXE_chatgenius-files");
    let mut broker = crate::process::BrokerProcess::start(binary, &settings).await;
    let client = reqwest::Client::new();
    let post = |base: String, path: &str, token: &str, body: Value| {
        client.post(format!("{base}{path}")).bearer_auth(token).json(&body).send()
    };
    let login: Value = post(broker.base.clone(), "/auth/dev-login", "", json!({ "username": "alice" }))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().unwrap().to_owned();
    let channel: Value = post(broker.base.clone(), "/channels", &token, json!({ "name": "general" }))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["channel_id"] = channel["id"].clone();
    let started = post(broker.base.clone(), path, &token, body).await.unwrap();
    assert_eq!(started.status(), StatusCode::CREATED);
    // Killed the moment the answer is out: the row may not have reached the table.
    broker.child.kill().unwrap();
    broker.child.wait().unwrap();
    let upload_id = started.json::<Value>().await.unwrap()["upload_id"].as_str().unwrap().to_owned();

    let broker = crate::process::BrokerProcess::start(binary, &settings).await;
    let (next_path, next_body) = next(&upload_id);
    let answer = post(broker.base.clone(), &next_path, &token, next_body).await.unwrap();
    let status = answer.status();
    check(status, &answer.json().await.unwrap());
    let aborted =
        client.delete(format!("{}/files/uploads/{upload_id}", broker.base)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(aborted.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn an_aborted_upload_stays_aborted_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = outside_store(&dir.path().join("s3")).await;
    let mut args = store_args(s3.endpoint().as_str(), &s3);
    args.push(("database-url", fresh_database_url(dir.path()).await));
    args.push(("data-dir", dir.path().join("broker").display().to_string()));
    args.push(("sweep-interval-secs", "0".to_owned()));
    let app = spawn_with(&args).await;
    let alice = app.login("alice").await;
    let channel = app.create_channel(&alice, "general").await;
    let presigned: Value = app
        .post(
            &alice,
            "/files/presign",
            json!({ "channel_id": channel, "file_name": "a.png", "content_type": "image/png", "size": PNG.len() }),
        )
        .await
        .json()
        .await
        .unwrap();
    assert!(crate::presigned::put(&app.client, &presigned, PNG.to_vec()).send().await.unwrap().status().is_success());
    let upload = format!("/files/uploads/{}", presigned["upload_id"].as_str().unwrap());
    assert_eq!(app.delete(&alice, &upload).await.status(), StatusCode::NO_CONTENT);
    // The URL still works: the object is back, for an aborted upload.
    assert!(crate::presigned::put(&app.client, &presigned, PNG.to_vec()).send().await.unwrap().status().is_success());
    app.shut_down();
    drop(app);

    let restarted = spawn_with(&args).await;
    let confirm = restarted.post(&alice, &format!("{upload}/confirm"), json!({})).await;
    assert_error(confirm, StatusCode::CONFLICT, "upload_not_pending").await;
    restarted.sweep_once().await.unwrap();
    assert_eq!(restarted.object_count().await, 0, "the re-PUT object is swept");
}
