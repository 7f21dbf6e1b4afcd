//! The event WebSocket over loopback with tokio-tungstenite clients.

use std::time::Duration;

use chatgenius_files::{
    auth::CurrentUser,
    events::{Event, MessageCreated},
    wire::MessageInfo,
};
use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async,
    tungstenite::{self, Message, client::IntoClientRequest, protocol::frame::coding::CloseCode},
};

use crate::helpers::{TestApp, TestUser, spawn_app, spawn_app_with};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn request(app: &TestApp, query: &str, headers: &[(&str, &str)]) -> tungstenite::handshake::client::Request {
    let mut req = format!("ws://{}/ws{query}", app.addr).into_client_request().unwrap();
    for (name, value) in headers {
        req.headers_mut()
            .insert(tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
    }
    req
}

async fn connect(app: &TestApp, user: &TestUser) -> Socket {
    let auth = format!("Bearer {}", user.token);
    connect_async(request(app, "", &[("authorization", &auth)])).await.expect("upgrade").0
}

/// The next event, skipping pings; `None` when nothing arrives in `wait`.
async fn next_event(socket: &mut Socket, wait: Duration) -> Option<Value> {
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
    let expired = app.state.tokens.issue_with_ttl(&CurrentUser { id: alice.id as i32, username: "alice".into() }, -600);
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
        let events = app.state.events.clone();
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
                events.publish(Event::MessageCreated(MessageCreated { channel_id: channel as i32, message }));
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
    if first.state.db.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
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

    // Larger than a NOTIFY payload: relayed through the database.
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
