//! `GET /ws`: a WebSocket delivering the events of the caller's channels.
//!
//! The caller authenticates before the upgrade (Authorization header, `?token=`
//! or `Sec-WebSocket-Protocol: bearer, <token>`); a browser's `Origin` must be
//! allowed. Each connection keeps the set of channels its user belongs to and
//! updates it from `member_joined` / `member_left` events, so joining starts
//! delivery and removal stops it at once. A connection that cannot take an
//! event within the send timeout is dropped; the others never wait for it.

use std::{collections::HashSet, sync::Arc, time::Duration};

use futures_util::{SinkExt, StreamExt};
use poem::{
    IntoResponse, Request, Response,
    http::StatusCode,
    web::websocket::{CloseCode, Message, WebSocket, WebSocketStream},
};
use tokio::sync::broadcast::error::RecvError;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::{
    auth::CurrentUser,
    config::Origin,
    error::ApiError,
    events::{Event, Stamped},
    service::channels,
    startup::AppState,
};

/// Largest inbound frame or message; larger ones close the socket with 1009.
pub const MAX_INBOUND_BYTES: usize = 64 * 1024;

/// How long a socket stays open after a close frame sent mid-frame.
const CLOSE_LINGER: Duration = Duration::from_millis(500);

/// Browser origins allowed to open the socket.
#[derive(Clone)]
pub struct AllowedOrigins(pub Arc<Vec<Origin>>);

/// Checks origin and token, then upgrades; refusals are the JSON error body.
pub fn upgrade(req: &Request, socket: WebSocket, state: &AppState, origins: &AllowedOrigins) -> Response {
    if let Some(origin) = req.header("origin")
        && !origins.0.iter().any(|allowed| allowed.as_str() == origin.trim_end_matches('/'))
    {
        return ApiError::new(StatusCode::FORBIDDEN, "origin_not_allowed", "this origin may not open the event socket")
            .into_response();
    }
    let Some(token) = token_of(req) else {
        return ApiError::unauthorized("missing bearer token (Authorization, ?token= or Sec-WebSocket-Protocol)")
            .into_response();
    };
    let user = match state.tokens.verify(&token) {
        Ok(user) => user,
        Err(err) => return ApiError::unauthorized(err.to_string()).into_response(),
    };
    let state = state.clone();
    // Small buffers: clients send little, and 10k idle sockets should not cost 10k × 256 KiB.
    let config = WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_INBOUND_BYTES))
        .max_frame_size(Some(MAX_INBOUND_BYTES));
    socket.protocols(["bearer"]).config(config).on_upgrade(move |stream| serve(state, user, stream)).into_response()
}

/// The bearer token from the header, the query or the subprotocol list.
fn token_of(req: &Request) -> Option<String> {
    if let Some(bearer) = req.header("authorization").and_then(|h| h.strip_prefix("Bearer ")) {
        return Some(bearer.trim().to_owned());
    }
    let from_query =
        req.uri().query().into_iter().flat_map(|q| q.split('&')).find_map(|pair| pair.strip_prefix("token="));
    if let Some(token) = from_query {
        return Some(token.to_owned());
    }
    let protocols = req.header("sec-websocket-protocol")?;
    let mut parts = protocols.split(',').map(str::trim);
    (parts.next() == Some("bearer")).then(|| parts.next().map(str::to_owned)).flatten()
}

async fn serve(state: AppState, user: CurrentUser, stream: WebSocketStream) {
    state.metrics.ws_opened();
    connection(&state, user, stream).await;
    state.metrics.ws_closed();
}

async fn connection(state: &AppState, user: CurrentUser, stream: WebSocketStream) {
    let mut events = state.events.subscribe();
    let mut channels: HashSet<i32> = match channels::list_for_member(&state.db, user.id).await {
        Ok(found) => found.into_iter().map(|c| c.id).collect(),
        Err(err) => {
            tracing::warn!(error = %err, "websocket: cannot load memberships");
            return;
        }
    };
    let send_timeout = Duration::from_millis(state.config.ws_send_timeout_ms);
    let (mut sink, mut inbound) = stream.split();
    let ping_every = Duration::from_secs(state.config.ws_ping_interval_secs);
    let mut ping = tokio::time::interval(ping_every);
    let mut last_seen = tokio::time::Instant::now();
    let close = |code, reason: &str| Message::Close(Some((code, reason.to_owned())));
    let mut closing = state.closing.clone();
    let outcome = loop {
        tokio::select! {
            _ = closing.changed() => {
                let _ = tokio::time::timeout(send_timeout, sink.send(close(CloseCode::Away, "server shutting down"))).await;
                break "server shutting down";
            }
            received = events.recv() => match received {
                Ok(stamped) => {
                    if !visible(&stamped, user.id, &mut channels) {
                        continue;
                    }
                    match tokio::time::timeout(send_timeout, sink.send(Message::text(stamped.json()))).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => break "send failed",
                        // The client does not read: drop it rather than make anyone wait.
                        Err(_) => break "slow consumer dropped",
                    }
                }
                Err(RecvError::Lagged(_)) => {
                    let _ = tokio::time::timeout(send_timeout, sink.send(close(CloseCode::Again, "too slow; reconnect and catch up"))).await;
                    break "lagged";
                }
                Err(RecvError::Closed) => break "hub closed",
            },
            frame = inbound.next() => match frame {
                Some(Ok(Message::Close(_))) | None => break "closed by client",
                Some(Ok(_)) => last_seen = tokio::time::Instant::now(),
                Some(Err(err)) => {
                    let too_big = err.to_string().to_ascii_lowercase().contains("too long")
                        || err.to_string().to_ascii_lowercase().contains("size");
                    if too_big {
                        let _ = tokio::time::timeout(send_timeout, sink.send(close(CloseCode::Size, "frame too large"))).await;
                        // The rest of the frame is still arriving; closing the socket
                        // now would reset it and the client could lose the close frame.
                        tokio::time::sleep(CLOSE_LINGER).await;
                    }
                    break "inbound error";
                }
            },
            _ = ping.tick() => {
                if last_seen.elapsed() > 2 * ping_every {
                    break "peer silent";
                }
                if tokio::time::timeout(send_timeout, sink.send(Message::Ping(Vec::new()))).await.is_err() {
                    break "ping timed out";
                }
            }
        }
    };
    tracing::debug!(user = user.id, outcome, "websocket closed");
}

/// Whether the user may see the event; keeps the channel set current.
fn visible(stamped: &Stamped, me: i32, channels: &mut HashSet<i32>) -> bool {
    match &stamped.event {
        Event::MemberJoined(e) if e.user_id == me => {
            channels.insert(e.channel_id);
            true
        }
        // The user sees their own removal, then nothing more of that channel.
        Event::MemberLeft(e) if e.user_id == me => channels.remove(&e.channel_id),
        event => channels.contains(&event.channel_id()),
    }
}
