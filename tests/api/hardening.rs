//! Bounded input, honest metrics, sockets that end with their token, tokens
//! bound to this database's users, one name policy, limits on the open
//! endpoints, HTTP conformance, and `migrate fresh`.

use std::time::Duration;

use chatgenius_files::{auth::CurrentUser, entity::pending_upload};
use futures_util::StreamExt;
use reqwest::StatusCode;
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::{
    connect_async,
    tungstenite::{self, Message, client::IntoClientRequest, protocol::frame::coding::CloseCode},
};

use crate::{
    helpers::{TestApp, assert_error, fresh_database_url, spawn_app, spawn_app_with},
    process::BrokerProcess,
};

const MIB: usize = 1024 * 1024;

/// A body of `total` bytes sent in 1 MiB chunks, without a Content-Length.
fn chunked(total: usize) -> reqwest::Body {
    let chunks = futures_util::stream::iter((0..total / MIB).map(|_| Ok::<_, std::io::Error>(vec![b' '; MIB])));
    reqwest::Body::wrap_stream(chunks)
}

#[tokio::test]
async fn a_huge_body_is_refused_without_being_read() {
    let binary = env!("CARGO_BIN_EXE_chatgenius-files");
    for settings in [vec![], vec![("JWT_SECRET", "hardening-secret-0123456789abcdef012345".to_owned())]] {
        let dev_login_off = !settings.is_empty();
        let broker = BrokerProcess::start(binary, &settings).await;
        let client = reqwest::Client::new();
        let url = format!("{}/auth/dev-login", broker.base);
        for _ in 0..4 {
            // Declared: refused before any of it is read.
            let declared = client
                .post(&url)
                .header("content-type", "application/json")
                .header("content-length", (256 * MIB).to_string())
                .body(vec![b' '; 64])
                .send()
                .await;
            if let Ok(resp) = declared {
                let expected = if dev_login_off { 404 } else { 413 };
                assert_eq!(resp.status().as_u16(), expected);
            }
            // Chunked: the body stops at the limit (the broker may close the connection on us).
            if let Ok(resp) =
                client.post(&url).header("content-type", "application/json").body(chunked(256 * MIB)).send().await
            {
                let code: Value = resp.json().await.unwrap();
                let expected = if dev_login_off { "dev_login_disabled" } else { "payload_too_large" };
                assert_eq!(code["error"]["code"], expected);
            }
        }
        let peak_mib = broker.peak_rss_kib() / 1024;
        assert!(peak_mib < 100, "peak RSS {peak_mib} MiB after four 256 MiB bodies");
    }
    // Every JSON route has the limit, and its answer is the one error body.
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let big = json!({ "name": "x".repeat(100 * 1024) });
    assert_error(app.post(&alice, "/channels", big).await, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
}

/// Sends a raw request line (paths reqwest would escape) and drops the answer.
async fn raw_get(app: &TestApp, path: &str) {
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
}

/// Checks every line of a text exposition: `# HELP`/`# TYPE`, or
/// `name{label="escaped",...} number`.
fn assert_valid_exposition(text: &str) {
    for line in text.lines().filter(|l| !l.is_empty()) {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
        assert!(value.parse::<f64>().is_ok(), "value of {line}");
        let (name, labels) = series.split_once('{').map_or((series, None), |(n, l)| (n, Some(l)));
        assert!(!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'), "{line}");
        let Some(labels) = labels else { continue };
        let mut rest = labels.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels: {line}"));
        while !rest.is_empty() {
            let (label, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("label: {line}"));
            assert!(label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "label name in {line}");
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next() {
                    Some((_, '\\')) => assert!(matches!(chars.next(), Some((_, '\\' | '"' | 'n'))), "{line}"),
                    Some((i, '"')) => break i,
                    Some(_) => {}
                    None => panic!("unterminated label value: {line}"),
                }
            };
            rest = after[end + 1..].trim_start_matches(',');
        }
    }
}

#[tokio::test]
async fn metrics_stay_valid_and_meaningful_whatever_clients_send() {
    let app = spawn_app().await;
    for path in ["/a\"b", "/x\\y", "/%0Aevil", "/files/%22"] {
        raw_get(&app, path).await;
    }
    for i in 0..600 {
        raw_get(&app, &format!("/junk-{i}")).await;
    }
    assert_eq!(reqwest::get(app.url("/health")).await.unwrap().status(), 200);
    let text = reqwest::get(app.url("/metrics")).await.unwrap().text().await.unwrap();
    assert_valid_exposition(&text);
    assert!(text.contains(r#"cgf_http_requests_total{method="GET",route="/health",status="200"} 1"#), "{text}");
    let unmatched: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix(r#"cgf_http_requests_total{method="GET",route="unmatched",status="404"} "#))
        .expect("junk is one series")
        .parse()
        .unwrap();
    assert!(unmatched >= 600.0, "{unmatched}: {text}");
    assert!(!text.contains("junk-"), "no client path is a label value");

    // METRICS_TOKEN: a bearer token is required.
    let guarded = spawn_app_with(&[("metrics-token", "scrape-me-please")]).await;
    let url = guarded.url("/metrics");
    assert_error(reqwest::get(&url).await.unwrap(), StatusCode::UNAUTHORIZED, "unauthorized").await;
    let client = reqwest::Client::new();
    let ok = client.get(&url).bearer_auth("scrape-me-please").send().await.unwrap();
    assert_eq!(ok.status(), 200);
}

async fn socket(
    app: &TestApp,
    token: &str,
) -> Result<tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>, u16> {
    let mut req = format!("ws://{}/ws", app.addr).into_client_request().unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    match connect_async(req).await {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(other) => panic!("{other}"),
    }
}

async fn user_of(app: &TestApp, id: i64) -> CurrentUser {
    let found = chatgenius_files::service::users::find_by_id(&app.deps.db, id as i32).await.unwrap().unwrap();
    CurrentUser::of(&found)
}

#[tokio::test]
async fn a_socket_ends_with_its_token_and_a_user_has_few() {
    let app = spawn_app_with(&[("ws-max-per-user", "2")]).await;
    let alice = app.login("alice").await;
    let short = app.tokens.issue_with_ttl(&user_of(&app, alice.id).await, 2);
    let mut expiring = socket(&app, &short).await.unwrap();
    let code = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match expiring.next().await {
                Some(Ok(Message::Close(Some(frame)))) => break frame.code,
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    })
    .await
    .expect("closed when the token expired");
    assert_eq!(code, CloseCode::Policy);

    let first = socket(&app, &alice.token).await.unwrap();
    let _second = socket(&app, &alice.token).await.unwrap();
    assert_eq!(socket(&app, &alice.token).await.err(), Some(429), "a third socket is refused");
    drop(first);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(socket(&app, &alice.token).await.is_ok(), "a closed socket frees its place");
}

#[tokio::test]
async fn a_token_names_a_user_of_this_database_only() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    // Validly signed, for a user this database does not have: 401, not 500.
    let ghost = CurrentUser { id: 999, username: "ghost".into(), created_ms: 0, expires_at: 0 };
    let token = app.tokens.issue(&ghost);
    let resp = app.client.post(app.url("/channels")).bearer_auth(&token).json(&json!({ "name": "x" })).send().await;
    assert_error(resp.unwrap(), StatusCode::UNAUTHORIZED, "unauthorized").await;
    // Same id, another creation time (the database was recreated): refused too.
    let mut earlier = user_of(&app, alice.id).await;
    earlier.created_ms -= 1000;
    let token = app.tokens.issue(&earlier);
    let resp = app.client.get(app.url("/auth/me")).bearer_auth(&token).send().await.unwrap();
    assert_error(resp, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert_eq!(socket(&app, &token).await.err(), Some(401));
    // The real one works.
    assert_eq!(app.get(&alice, "/auth/me").await.status(), 200);
}

#[tokio::test]
async fn names_follow_one_policy_and_usernames_ignore_case() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    for name in ["\u{202E}evil", "a\u{200B}b", "soft\u{AD}hyphen", "tag\u{E0041}", "\u{3164}"] {
        let resp = app.post(&alice, "/channels", json!({ "name": name })).await;
        assert_error(resp, StatusCode::BAD_REQUEST, "invalid_channel_name").await;
    }
    let general = app.create_channel(&alice, "general").await;
    let nul = app.post(&alice, &format!("/channels/{general}/messages"), json!({ "content": "a\u{0}b" })).await;
    assert_error(nul, StatusCode::BAD_REQUEST, "invalid_content").await;
    let fine = app.post(&alice, &format!("/channels/{general}/messages"), json!({ "content": "a\tb\nc" })).await;
    assert_eq!(fine.status(), StatusCode::CREATED);
    assert_eq!(app.login("ALICE").await.id, alice.id);
    assert_eq!(app.login("Alice").await.id, alice.id);
}

#[tokio::test]
async fn open_endpoints_are_limited() {
    let app = spawn_app_with(&[
        ("dev-login-rate-per-min", "3"),
        ("parts-rate-per-min", "2"),
        ("multipart-part-size-mb", "5"),
    ])
    .await;
    let alice = app.login("alice").await;
    app.login("bob").await;
    app.login("carol").await;
    let resp = app.client.post(app.url("/auth/dev-login")).json(&json!({ "username": "dave" })).send().await.unwrap();
    assert!(resp.headers().get("retry-after").is_some());
    assert_error(resp, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;

    let channel = app.create_channel(&alice, "general").await;
    let started: Value = app
        .post(
            &alice,
            "/files/multipart",
            json!({ "channel_id": channel, "file_name": "big.png", "content_type": "image/png", "size": 12 * MIB }),
        )
        .await
        .json()
        .await
        .unwrap();
    let parts = format!("/files/uploads/{}/parts", started["upload_id"].as_str().unwrap());
    for _ in 0..2 {
        assert_eq!(app.post(&alice, &parts, json!({ "part_numbers": [1] })).await.status(), 200);
    }
    assert_error(
        app.post(&alice, &parts, json!({ "part_numbers": [1] })).await,
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
    )
    .await;

    // /ready is checked at most once a second: the store stopping shows a second later.
    assert_eq!(reqwest::get(app.url("/ready")).await.unwrap().status(), 200);
    app.s3_stopper.as_ref().unwrap().notify_one();
    assert_eq!(reqwest::get(app.url("/ready")).await.unwrap().status(), 200, "the cached answer");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(reqwest::get(app.url("/ready")).await.unwrap().status(), 503);
}

#[tokio::test]
async fn http_answers_conform() {
    let app = spawn_app().await;
    let client = reqwest::Client::new();
    let resp = client.delete(app.url("/health")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "GET, HEAD");
    let resp = client.put(app.url("/files/7")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "GET, HEAD, DELETE");

    let vary = |resp: &reqwest::Response| resp.headers().get_all("vary").iter().any(|v| v == "Origin");
    let resp = client.get(app.url("/health")).header("origin", "http://localhost:3000").send().await.unwrap();
    assert!(vary(&resp), "{resp:?}");
    // The guard's own refusals too.
    let resp = client
        .post(app.url("/channels"))
        .header("origin", "http://localhost:3000")
        .header("content-length", "100000")
        .body(vec![b' '; 100_000])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert!(vary(&resp), "{resp:?}");

    let alice = app.login("alice").await;
    let mut req = format!("ws://{}/ws", app.addr).into_client_request().unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {}", alice.token).parse().unwrap());
    req.headers_mut().insert("origin", "http://evil.example".parse().unwrap());
    let Err(tungstenite::Error::Http(resp)) = connect_async(req).await else { panic!("a foreign origin is refused") };
    assert_eq!(resp.status().as_u16(), 403);
    let body: Value = serde_json::from_slice(resp.body().as_deref().unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "origin_not_allowed");
    // An upgrade with a body: its bytes would be read as frames.
    let mut req = format!("ws://{}/ws", app.addr).into_client_request().unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {}", alice.token).parse().unwrap());
    req.headers_mut().insert("content-length", "5".parse().unwrap());
    let Err(tungstenite::Error::Http(resp)) = connect_async(req).await else {
        panic!("an upgrade with a body is refused")
    };
    assert_eq!(resp.status().as_u16(), 400);
}

#[tokio::test]
async fn migrate_fresh_rebuilds_an_empty_a_migrated_and_a_populated_database() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(dir.path()).await;
    let migrate = |action: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_chatgenius-files"))
            .args(["migrate", action])
            .env_clear()
            .env("DATABASE_URL", &url)
            .env("DATA_DIR", dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "migrate {action}: {}", String::from_utf8_lossy(&out.stderr));
    };
    migrate("fresh"); // empty
    migrate("fresh"); // migrated
    let app = spawn_app_with(&[("database-url", &url)]).await;
    let alice = app.login("alice").await;
    let channel = app.create_channel(&alice, "general").await;
    app.upload(&alice, channel, None, "a.txt", "text/plain", b"data").await;
    app.shut_down();
    drop(app);
    migrate("fresh"); // populated
    let app = spawn_app_with(&[("database-url", &url)]).await;
    let page: Value = app.get(&app.login("alice").await, "/channels").await.json().await.unwrap();
    assert_eq!(page["channels"].as_array().unwrap().len(), 0, "the database starts over");
}

#[tokio::test]
async fn a_streamed_upload_refuses_fields_after_the_file_and_keeps_nothing() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let channel = app.create_channel(&alice, "general").await;
    let part =
        reqwest::multipart::Part::bytes(b"late target".to_vec()).file_name("a.txt").mime_str("text/plain").unwrap();
    let form = reqwest::multipart::Form::new()
        .text("channel_id", channel.to_string())
        .part("file", part)
        .text("message_id", "7");
    let resp =
        app.client.post(app.url("/files/upload")).bearer_auth(&alice.token).multipart(form).send().await.unwrap();
    assert_error(resp, StatusCode::BAD_REQUEST, "invalid_form").await;
    assert_eq!(app.object_count().await, 0, "the stored bytes were discarded");
    let page: Value = app.get(&alice, &format!("/channels/{channel}/messages")).await.json().await.unwrap();
    assert!(page["messages"].as_array().unwrap().is_empty());
}

/// A request body that sends `first`, then whatever the sender is given,
/// and ends when the sender is dropped.
async fn stalling_body(first: Vec<u8>) -> (tokio::sync::mpsc::Sender<Vec<u8>>, reqwest::Body) {
    let (more, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(1);
    more.send(first).await.unwrap();
    let chunks = futures_util::stream::unfold(rx, |mut rx| async {
        rx.recv().await.map(|chunk| (Ok::<_, std::io::Error>(chunk), rx))
    });
    (more, reqwest::Body::wrap_stream(chunks))
}

#[tokio::test]
async fn a_user_gets_a_few_uploads_through_the_broker_at_once() {
    let app = spawn_app_with(&[("proxy-uploads-per-user", "1")]).await;
    let alice = app.login("alice").await;
    let channel = app.create_channel(&alice, "general").await;
    let form = |body: reqwest::Body| {
        let part = reqwest::multipart::Part::stream(body).file_name("slow.txt").mime_str("text/plain").unwrap();
        reqwest::multipart::Form::new().text("channel_id", channel.to_string()).part("file", part)
    };
    // A client that sends a first part (the upload is then recorded as in
    // progress), then stalls until told to finish.
    let (more, stalled) = stalling_body(vec![b's'; 8 * MIB]).await;
    let slow = app.client.post(app.url("/files/upload")).bearer_auth(&alice.token).multipart(form(stalled));
    let slow = tokio::spawn(slow.send());
    let in_progress = || async {
        let open = pending_upload::Entity::find().count(&app.deps.db).await.unwrap();
        open == 1
    };
    for _ in 0..100 {
        if in_progress().await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(in_progress().await, "the slow upload started");

    let small = |body: &'static [u8]| {
        app.client.post(app.url("/files/upload")).bearer_auth(&alice.token).multipart(form(body.into())).send()
    };
    let second = small(b"another file").await.unwrap();
    assert_eq!(second.headers()["retry-after"], "1");
    assert_error(second, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;

    more.send(b"and its end".to_vec()).await.unwrap();
    drop(more);
    assert_eq!(slow.await.unwrap().unwrap().status(), StatusCode::CREATED);
    let third = small(b"a third file").await.unwrap();
    assert_eq!(third.status(), StatusCode::CREATED, "the slot was given back");
}

#[tokio::test]
async fn an_upload_through_the_broker_whose_client_goes_quiet_is_abandoned() {
    let app = spawn_app_with(&[("proxy-uploads-per-user", "1"), ("proxy-idle-timeout-secs", "1")]).await;
    let alice = app.login("alice").await;
    let channel = app.create_channel(&alice, "general").await;
    // Sends a first part, then nothing, without closing.
    let (more, quiet) = stalling_body(vec![b'q'; 8 * MIB]).await;
    let part = reqwest::multipart::Part::stream(quiet).file_name("quiet.txt").mime_str("text/plain").unwrap();
    let form = reqwest::multipart::Form::new().text("channel_id", channel.to_string()).part("file", part);
    let resp =
        app.client.post(app.url("/files/upload")).bearer_auth(&alice.token).multipart(form).send().await.unwrap();
    let body = assert_error(resp, StatusCode::BAD_REQUEST, "upload_interrupted").await;
    assert!(body["error"]["message"].as_str().unwrap().contains("no bytes arrived"), "{body}");
    drop(more);
    // Its slot is free again, and nothing was kept.
    let part = reqwest::multipart::Part::bytes(b"next".to_vec()).file_name("next.txt").mime_str("text/plain").unwrap();
    let form = reqwest::multipart::Form::new().text("channel_id", channel.to_string()).part("file", part);
    let resp =
        app.client.post(app.url("/files/upload")).bearer_auth(&alice.token).multipart(form).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(app.object_count().await, 1, "only the next file is stored");
}
