//! The event WebSocket over loopback with tokio-tungstenite clients.

use std::time::Duration;

use chatgenius_files::{
    auth::CurrentUser,
    events::{Event, MessageCreated},
    outbox,
    wire::MessageInfo,
};
use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async,
    tungstenite::{self, Message, client::IntoClientRequest, protocol::frame::coding::CloseCode},
};

use crate::helpers::{TestApp, TestUser, spawn_app, spawn_app_with};

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn request(app: &TestApp, query: &str, headers: &[(&str, &str)]) -> tungstenite::handshake::client::Request {
    let mut req = format!("ws://{}/ws{query}", app.addr).into_client_request().unwrap();
    for (name, value) in headers {
        req.headers_mut()
            .insert(tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
    }
    req
}

/// A socket of `user`, past its `ready` frame (live delivery has started).
async fn connect(app: &TestApp, user: &TestUser) -> Socket {
    connect_after(app, user, None).await.0
}

/// A socket resuming after `after`, with the frames before `ready` and `ready` itself.
async fn connect_after(app: &TestApp, user: &TestUser, after: Option<i64>) -> (Socket, Vec<Value>, Value) {
    connect_to(&app.addr.to_string(), &user.token, after).await
}

/// A socket to the broker at `addr` (`host:port`): the frames up to the one
/// opening the stream (`ready` or `resync_required`), and that frame.
pub async fn connect_to(addr: &str, token: &str, after: Option<i64>) -> (Socket, Vec<Value>, Value) {
    let query = after.map(|id| format!("?after={id}")).unwrap_or_default();
    let mut req = format!("ws://{addr}/ws{query}").into_client_request().unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    let mut socket = connect_async(req).await.expect("upgrade").0;
    let mut before = Vec::new();
    loop {
        let frame = next_event(&mut socket, Duration::from_secs(5)).await.expect("the stream opens");
        if frame["type"] == "ready" || frame["type"] == "resync_required" {
            return (socket, before, frame);
        }
        before.push(frame);
    }
}

/// The next event, skipping pings; `None` when nothing arrives in `wait`.
pub async fn next_event(socket: &mut Socket, wait: Duration) -> Option<Value> {
    loop {
        match tokio::time::timeout(wait, socket.next()).await {
            Err(_) => return None,
            Ok(Some(Ok(Message::Text(text)))) => return Some(serde_json::from_str(&text).unwrap()),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(other) => panic!("unexpected {other:?}"),
        }
    }
}

/// The next event of the given type, skipping others.
async fn expect_event(socket: &mut Socket, kind: &str) -> Value {
    loop {
        let event = next_event(socket, Duration::from_secs(5)).await.unwrap_or_else(|| panic!("no {kind} event"));
        if event["type"] == kind {
            return event;
        }
    }
}

fn handshake_status(result: Result<(Socket, tungstenite::handshake::client::Response), tungstenite::Error>) -> u16 {
    match result {
        Err(tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => 101,
    }
}

#[tokio::test]
async fn upgrade_requires_a_valid_token_and_an_allowed_origin() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let expired = app.tokens.issue_with_ttl(
        &CurrentUser { id: alice.id as i32, username: "alice".into(), created_ms: 0, expires_at: 0 },
        -600,
    );
    assert_eq!(handshake_status(connect_async(request(&app, "", &[])).await), 401);
    assert_eq!(handshake_status(connect_async(request(&app, "", &[("authorization", "Bearer nope")])).await), 401);
    assert_eq!(handshake_status(connect_async(request(&app, &format!("?token={expired}"), &[])).await), 401);
    let auth = format!("Bearer {}", alice.token);
    let foreign = request(&app, "", &[("authorization", &auth), ("origin", "http://evil.example")]);
    assert_eq!(handshake_status(connect_async(foreign).await), 403);

    // Browsers: ?token= or the subprotocol list, from an allowed origin.
    let by_query = request(&app, &format!("?token={}", alice.token), &[("origin", "http://localhost:3000")]);
    assert_eq!(handshake_status(connect_async(by_query).await), 101);
    let protocols = format!("bearer, {}", alice.token);
    let (_, resp) = connect_async(request(&app, "", &[("sec-websocket-protocol", &protocols)])).await.unwrap();
    assert_eq!(resp.headers()["sec-websocket-protocol"], "bearer");
}

#[tokio::test]
async fn members_receive_their_channels_events_and_nobody_else_does() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let mallory = app.login("mallory").await;
    let channel = app.create_channel(&alice, "general").await;
    app.add_member(&alice, channel, &bob).await;
    let mut bobs = connect(&app, &bob).await;
    let mut mallorys = connect(&app, &mallory).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let file = app.upload(&alice, channel, None, "a.txt", "text/plain", b"hello").await;
    let event = expect_event(&mut bobs, "file_upload_complete").await;
    assert_eq!(event["channel_id"], channel);
    assert_eq!(event["file"]["id"], file["id"]);
    assert!(event["id"].as_u64().is_some() && event["at"].is_string(), "stamped: {event}");

    assert_eq!(app.delete(&alice, &format!("/files/{}", file["id"])).await.status(), StatusCode::NO_CONTENT);
    let event = expect_event(&mut bobs, "file_deleted").await;
    assert_eq!(event["file_id"], file["id"]);

    let message = app.post(&alice, &format!("/channels/{channel}/messages"), json!({ "content": "hi" })).await;
    assert_eq!(message.status(), StatusCode::CREATED);
    let event = expect_event(&mut bobs, "message_created").await;
    assert_eq!(event["message"]["content"], "hi");

    assert!(next_event(&mut mallorys, Duration::from_millis(500)).await.is_none(), "non-member receives nothing");
}

#[tokio::test]
async fn joining_starts_delivery_and_removal_stops_it_at_once() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let channel = app.create_channel(&alice, "general").await;
    let mut bobs = connect(&app, &bob).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    app.post(&alice, &format!("/channels/{channel}/messages"), json!({ "content": "before" })).await;
    assert!(next_event(&mut bobs, Duration::from_millis(300)).await.is_none());

    app.add_member(&alice, channel, &bob).await;
    assert_eq!(expect_event(&mut bobs, "member_joined").await["user_id"], bob.id);
    app.post(&alice, &format!("/channels/{channel}/messages"), json!({ "content": "during" })).await;
    assert_eq!(expect_event(&mut bobs, "message_created").await["message"]["content"], "during");

    let removed = app.delete(&alice, &format!("/channels/{channel}/members/{}", bob.id)).await;
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);
    // The removal is the last thing bob hears of the channel.
    app.post(&alice, &format!("/channels/{channel}/messages"), json!({ "content": "after" })).await;
    assert_eq!(expect_event(&mut bobs, "member_left").await["user_id"], bob.id);
    assert!(next_event(&mut bobs, Duration::from_millis(500)).await.is_none(), "nothing after removal");
}

#[tokio::test]
async fn a_channel_created_while_connected_delivers_at_once() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let mut socket = connect(&app, &alice).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let channel = app.create_channel(&alice, "fresh").await;
    let joined = expect_event(&mut socket, "member_joined").await;
    assert_eq!((joined["channel_id"].as_i64(), joined["user_id"].as_i64()), (Some(channel), Some(alice.id)));
    app.post(&alice, &format!("/channels/{channel}/messages"), json!({ "content": "first" })).await;
    assert_eq!(expect_event(&mut socket, "message_created").await["message"]["content"], "first");
}

#[tokio::test]
async fn a_stalled_client_is_dropped_while_others_keep_receiving() {
    let app = spawn_app_with(&[("ws-send-timeout-ms", "300")]).await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let channel = app.create_channel(&alice, "general").await;
    app.add_member(&alice, channel, &bob).await;
    let mut stalled = connect(&app, &bob).await;
    let mut reader = connect(&app, &alice).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let big = "x".repeat(64 * 1024);
    let total = 400;
    let publisher = {
        let (events, db) = (app.deps.events.clone(), app.deps.db.clone());
        tokio::spawn(async move {
            for i in 0..total {
                let message = MessageInfo {
                    id: i,
                    channel_id: channel as i32,
                    user_id: 1,
                    content: big.clone(),
                    created_at: chrono::Utc::now(),
                    updated_at: chrono::Utc::now(),
                    files: Vec::new(),
                };
                let event = Event::MessageCreated(MessageCreated { channel_id: channel as i32, message });
                let id = outbox::append(&db, &event).await.unwrap();
                events.committed(id);
                if i % 20 == 19 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        })
    };
    let mut received = 0;
    while received < total {
        let event =
            next_event(&mut reader, Duration::from_secs(5)).await.expect("the reading client keeps getting events");
        if event["type"] == "message_created" {
            received += 1;
        }
    }
    publisher.await.unwrap();

    // The stalled client now reads: it finds what was buffered, then the end.
    let mut got = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stalled.next())
            .await
            .expect("the server ended the stalled connection")
        {
            Some(Ok(Message::Text(_))) => got += 1,
            Some(Ok(Message::Ping(_))) => {}
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
            Some(Ok(other)) => panic!("unexpected {other:?}"),
        }
    }
    assert!(got < total, "the stalled client was dropped before getting all {total} events (got {got})");
}

#[tokio::test]
async fn an_oversized_inbound_frame_closes_with_1009() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let mut socket = connect(&app, &alice).await;
    socket.send(Message::text("x".repeat(100 * 1024))).await.unwrap();
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(5), socket.next()).await.unwrap() {
            Some(Ok(Message::Close(Some(frame)))) => break frame.code,
            Some(Ok(Message::Ping(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(code, CloseCode::Size);
}

#[tokio::test]
async fn an_event_published_on_one_instance_reaches_clients_of_another() {
    let first = spawn_app().await;
    if first.deps.db.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
        eprintln!("cross-instance delivery needs PostgreSQL (TEST_POSTGRES_URL)");
        return;
    }
    let url = first.database_url.clone();
    let second = spawn_app_with(&[("database-url", &url)]).await;
    let alice = first.login("alice").await;
    let bob = first.login("bob").await;
    let channel = first.create_channel(&alice, "general").await;
    first.add_member(&alice, channel, &bob).await;

    // Bob listens on the second instance (tokens are per instance secret: log in there).
    let bob_on_second = second.login("bob").await;
    assert_eq!(bob_on_second.id, bob.id);
    let mut socket = connect(&second, &bob_on_second).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let file = first.upload(&alice, channel, None, "a.txt", "text/plain", b"across").await;
    let event = expect_event(&mut socket, "file_upload_complete").await;
    assert_eq!(event["file"]["id"], file["id"]);

    // Larger than a NOTIFY payload (8000 bytes): read from the outbox like any other.
    let long = "é".repeat(3990);
    let resp = first.post(&alice, &format!("/channels/{channel}/messages"), json!({ "content": long })).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let event = expect_event(&mut socket, "message_created").await;
    assert_eq!(event["message"]["content"], long);

    // A removal on the first instance stops delivery on the second.
    first.delete(&alice, &format!("/channels/{channel}/members/{}", bob.id)).await;
    assert_eq!(expect_event(&mut socket, "member_left").await["user_id"], bob.id);
    first.post(&alice, &format!("/channels/{channel}/messages"), json!({ "content": "after" })).await;
    assert!(next_event(&mut socket, Duration::from_millis(500)).await.is_none());
}

#[tokio::test]
async fn a_silent_client_is_reaped_after_two_ping_intervals() {
    let app = spawn_app_with(&[("ws-ping-interval-secs", "1")]).await;
    let alice = app.login("alice").await;
    let mut answering = connect(&app, &alice).await;
    let mut silent = connect(&app, &alice).await;

    // The answering client reads, so tungstenite answers every ping with a pong.
    let keep_reading = tokio::spawn(async move {
        let started = tokio::time::Instant::now();
        while started.elapsed() < Duration::from_millis(3500) {
            if let Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) =
                tokio::time::timeout(Duration::from_millis(100), answering.next()).await
            {
                return false;
            }
        }
        true
    });
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert!(keep_reading.await.unwrap(), "a client that answers pings stays connected");

    // The silent one finds the pings it never answered, then the end of the connection.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match silent.next().await {
                Some(Ok(Message::Ping(_))) => continue,
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(other)) => panic!("unexpected {other:?}"),
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the silent client was disconnected");
}

#[tokio::test]
async fn shutdown_sends_websocket_clients_a_going_away_close_frame() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let mut socket = connect(&app, &alice).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    app.shut_down();
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(5), socket.next()).await.expect("a close frame") {
            Some(Ok(Message::Close(Some(frame)))) => break frame.code,
            Some(Ok(Message::Ping(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(code, CloseCode::Away);
}

/// Posts `content` in `channel` as `user`.
async fn say(app: &TestApp, user: &TestUser, channel: i64, content: &str) {
    let resp = app.post(user, &format!("/channels/{channel}/messages"), json!({ "content": content })).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
}

fn ids(frames: &[Value]) -> Vec<i64> {
    frames.iter().map(|f| f["id"].as_i64().unwrap()).collect()
}

#[tokio::test]
async fn a_client_resuming_with_its_last_id_gets_exactly_what_it_missed_in_order() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let general = app.create_channel(&alice, "general").await;
    app.add_member(&alice, general, &bob).await;
    let secret = app.create_channel(&alice, "secret").await;

    let mut socket = connect(&app, &bob).await;
    say(&app, &alice, general, "seen").await;
    let last_seen = expect_event(&mut socket, "message_created").await["id"].as_i64().unwrap();
    drop(socket);

    // Missed while away: five messages and a file in bob's channel, noise in alice's.
    for i in 1..=5 {
        say(&app, &alice, general, &format!("missed {i}")).await;
        say(&app, &alice, secret, "not for bob").await;
    }
    let file = app.upload(&alice, general, None, "a.txt", "text/plain", b"missed file").await;

    let (mut socket, replayed, ready) = connect_after(&app, &bob, Some(last_seen)).await;
    let kinds: Vec<&str> = replayed.iter().map(|f| f["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["message_created"; 5].into_iter().chain(["file_upload_complete"]).collect::<Vec<_>>());
    let contents: Vec<&str> = replayed[..5].iter().map(|f| f["message"]["content"].as_str().unwrap()).collect();
    assert_eq!(contents, ["missed 1", "missed 2", "missed 3", "missed 4", "missed 5"]);
    assert_eq!(replayed[5]["file"]["id"], file["id"]);
    let replayed_ids = ids(&replayed);
    assert!(replayed_ids.windows(2).all(|w| w[0] < w[1]), "in order: {replayed_ids:?}");
    assert!(replayed_ids[0] > last_seen);
    assert_eq!(ready["type"], "ready");
    assert_eq!(ready["replayed"], 6);
    assert!(ready["id"].as_i64().unwrap() >= replayed_ids[5], "ready names the newest position");

    // Live delivery goes on after the replay, without repeating it.
    say(&app, &alice, general, "live").await;
    let live = expect_event(&mut socket, "message_created").await;
    assert_eq!(live["message"]["content"], "live");
    assert!(live["id"].as_i64().unwrap() > ready["id"].as_i64().unwrap());

    // Resuming from the newest id replays nothing.
    let (_, replayed, ready_again) = connect_after(&app, &bob, live["id"].as_i64()).await;
    assert!(replayed.is_empty(), "{replayed:?}");
    assert_eq!((ready_again["type"].as_str(), ready_again["replayed"].as_i64()), (Some("ready"), Some(0)));
}

#[tokio::test]
async fn a_replay_follows_membership_at_each_event() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let general = app.create_channel(&alice, "general").await;
    app.add_member(&alice, general, &bob).await;
    let (socket, _, ready) = connect_after(&app, &bob, None).await;
    drop(socket);
    let start = ready["id"].as_i64().unwrap();

    say(&app, &alice, general, "before removal").await;
    assert_eq!(app.delete(&alice, &format!("/channels/{general}/members/{}", bob.id)).await.status(), 204);
    say(&app, &alice, general, "after removal").await;
    let later = app.create_channel(&alice, "later").await;
    say(&app, &alice, later, "before bob joined").await;
    app.add_member(&alice, later, &bob).await;
    say(&app, &alice, later, "welcome").await;

    let (_, replayed, ready) = connect_after(&app, &bob, Some(start)).await;
    let seen: Vec<(String, i64)> =
        replayed.iter().map(|f| (f["type"].as_str().unwrap().to_owned(), f["channel_id"].as_i64().unwrap())).collect();
    let expected =
        [("message_created", general), ("member_left", general), ("member_joined", later), ("message_created", later)];
    assert_eq!(seen, expected.map(|(k, c)| (k.to_owned(), c)));
    assert_eq!(replayed[0]["message"]["content"], "before removal");
    assert_eq!(replayed[3]["message"]["content"], "welcome");
    assert_eq!(ready["replayed"], 4);
}

#[tokio::test]
async fn a_resume_that_cannot_be_replayed_asks_the_client_to_resync() {
    let app = spawn_app_with(&[("events-replay-max", "3")]).await;
    let alice = app.login("alice").await;
    let general = app.create_channel(&alice, "general").await;
    let (socket, _, ready) = connect_after(&app, &alice, None).await;
    drop(socket);
    let start = ready["id"].as_i64().unwrap();

    for i in 0..3 {
        say(&app, &alice, general, &format!("m{i}")).await;
    }
    let (_, replayed, opened) = connect_after(&app, &alice, Some(start)).await;
    assert_eq!((replayed.len(), opened["type"].as_str()), (3, Some("ready")), "three fit EVENTS_REPLAY_MAX");

    say(&app, &alice, general, "one too many").await;
    let (_, replayed, opened) = connect_after(&app, &alice, Some(start)).await;
    assert!(replayed.is_empty());
    assert_eq!(opened["type"], "resync_required");
    let newest = opened["id"].as_i64().unwrap();
    assert!(newest > start);

    // An id this database never gave out (another database, a reset).
    let (_, replayed, opened) = connect_after(&app, &alice, Some(newest + 1000)).await;
    assert!(replayed.is_empty());
    assert_eq!((opened["type"].as_str(), opened["id"].as_i64()), (Some("resync_required"), Some(newest)));

    // Past the retention window: the sweeper trims, the resume cannot replay.
    app.deps
        .db
        .execute_unprepared(if app.deps.db.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            "UPDATE events SET created_at = created_at - interval '2 days'"
        } else {
            "UPDATE events SET created_at = datetime(created_at, '-2 days')"
        })
        .await
        .unwrap();
    say(&app, &alice, general, "today").await;
    let report = app.sweep_once().await.unwrap();
    assert!(report.events_trimmed > 0, "{report:?}");
    let (_, replayed, opened) = connect_after(&app, &alice, Some(start)).await;
    assert!(replayed.is_empty());
    assert_eq!(opened["type"], "resync_required");
    // From the resync's id, the stream goes on normally.
    let (_, replayed, opened) = connect_after(&app, &alice, opened["id"].as_i64()).await;
    assert_eq!((replayed.len(), opened["type"].as_str()), (0, Some("ready")));

    // A malformed position is refused before the upgrade.
    let auth = format!("Bearer {}", alice.token);
    for query in ["?after=-1", "?after=abc"] {
        let status = handshake_status(connect_async(request(&app, query, &[("authorization", &auth)])).await);
        assert_eq!(status, 400, "{query}");
    }
}

#[tokio::test]
async fn an_event_exists_exactly_when_its_change_committed() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let general = app.create_channel(&alice, "general").await;
    let count = async || outbox::read(&app.deps.db, 0, 10_000).await.unwrap();
    let before = count().await.len();

    // A post that fails half-way (a file it cannot attach) rolls back with its event.
    let resp =
        app.post(&alice, &format!("/channels/{general}/messages"), json!({ "content": "x", "file_ids": [999] })).await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    assert_eq!(count().await.len(), before, "no event for a change that did not commit");

    // A confirm retried, and racing itself, records one file and one event.
    let presigned: Value = app
        .post(
            &alice,
            "/files/presign",
            json!({ "channel_id": general, "file_name": "a.txt", "content_type": "text/plain", "size": 5 }),
        )
        .await
        .json()
        .await
        .unwrap();
    let put = crate::presigned::put(&app.client, &presigned, b"hello".to_vec()).send().await.unwrap();
    assert!(put.status().is_success());
    let path = format!("/files/uploads/{}/confirm", presigned["upload_id"].as_str().unwrap());
    let confirms = futures_util::future::join_all((0..4).map(|_| app.post(&alice, &path, json!({})))).await;
    let mut statuses: Vec<u16> = confirms.iter().map(|r| r.status().as_u16()).collect();
    statuses.push(app.post(&alice, &path, json!({})).await.status().as_u16());
    statuses.sort();
    assert_eq!(statuses, [200, 200, 200, 200, 201]);
    let completes: Vec<_> =
        count().await.into_iter().filter(|row| row.kind == "file_upload_complete").map(|row| row.payload).collect();
    assert_eq!(completes.len(), 1, "{completes:?}");
}

#[tokio::test]
async fn a_member_removed_from_a_busy_channel_resumes_without_a_resync() {
    let app = spawn_app_with(&[("events-replay-max", "5")]).await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let busy = app.create_channel(&alice, "busy").await;
    app.add_member(&alice, busy, &bob).await;
    let (socket, _, ready) = connect_after(&app, &bob, None).await;
    drop(socket);

    assert_eq!(app.delete(&alice, &format!("/channels/{busy}/members/{}", bob.id)).await.status(), 204);
    for i in 0..20 {
        say(&app, &alice, busy, &format!("without bob {i}")).await;
    }
    // Only bob's removal is his to see: well under EVENTS_REPLAY_MAX.
    let (_, replayed, opened) = connect_after(&app, &bob, ready["id"].as_i64()).await;
    assert_eq!(opened["type"], "ready", "{opened}");
    assert_eq!(replayed.iter().map(|f| f["type"].as_str().unwrap()).collect::<Vec<_>>(), ["member_left"]);
}

#[tokio::test]
async fn a_delete_racing_a_post_that_attaches_the_file_announces_the_message_it_left() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let general = app.create_channel(&alice, "general").await;
    for round in 0..10 {
        let file = app.upload(&alice, general, None, &format!("f{round}.txt"), "text/plain", b"racing").await;
        let file_id = file["id"].as_i64().unwrap();
        let mut events = app.events().await;
        let body = json!({ "content": format!("with f{round}"), "file_ids": [file_id] });
        let (post_path, delete_path) = (format!("/channels/{general}/messages"), format!("/files/{file_id}"));
        let (posted, deleted) = tokio::join!(app.post(&alice, &post_path, body), app.delete(&alice, &delete_path));
        assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
        if posted.status() != StatusCode::CREATED {
            // The delete committed first: the post could not attach the file.
            assert_eq!(posted.status(), StatusCode::CONFLICT);
            continue;
        }
        // The post committed first: the deletion names its message, which is
        // then announced without the file.
        let message: Value = posted.json().await.unwrap();
        let kinds: Vec<Event> = [events.next().await, events.next().await, events.next().await]
            .into_iter()
            .map(|stamped| stamped.event.clone())
            .collect();
        let [Event::MessageCreated(_), Event::FileDeleted(deletion), Event::MessageUpdated(update)] = &kinds[..] else {
            panic!("round {round}: {kinds:?}");
        };
        assert_eq!(deletion.message_id.map(i64::from), message["id"].as_i64(), "round {round}");
        assert!(update.message.files.is_empty(), "round {round}: {update:?}");
    }
}
