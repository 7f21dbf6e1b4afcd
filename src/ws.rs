//! `GET /ws`: a WebSocket delivering the events of the caller's channels.
//!
//! The caller authenticates before the upgrade (Authorization header, `?token=`
//! or `Sec-WebSocket-Protocol: bearer, <token>`); a browser's `Origin` must be
//! allowed ([`crate::guard`] checks it). A connection with `?after=<id>` first gets the events after that
//! id it may see, in order; every connection then gets one `ready` frame (or
//! `resync_required` when the missed events cannot be replayed) and the live
//! events. Each connection keeps the set of channels its user belongs to and
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
    events::{Event, ResyncRequired, Stamped, StreamReady},
    service::stream::{self, Opening, Replay},
    state::AppState,
};

/// Events read per replay query.
const REPLAY_PAGE: u64 = 500;

/// Largest inbound frame or message; larger ones close the socket with 1009.
pub const MAX_INBOUND_BYTES: usize = 64 * 1024;

/// How long a socket stays open after a close frame sent mid-frame.
const CLOSE_LINGER: Duration = Duration::from_millis(500);

/// Browser origins allowed to open the socket.
#[derive(Clone)]
pub struct AllowedOrigins(pub Arc<Vec<Origin>>);

impl AllowedOrigins {
    /// Whether a browser at `origin` (an `Origin` header) may connect.
    pub fn allows(&self, origin: &str) -> bool {
        self.0.iter().any(|allowed| allowed.as_str() == origin.trim_end_matches('/'))
    }
}

/// Checks the token and the user's socket count, then upgrades; refusals are
/// the JSON error body. (The browser's origin was checked by
/// [`crate::guard`], in front of CORS.)
pub async fn upgrade(req: &Request, socket: WebSocket, state: &AppState, after: Option<i64>) -> Response {
    let Some(token) = token_of(req) else {
        return ApiError::unauthorized("missing bearer token (Authorization, ?token= or Sec-WebSocket-Protocol)")
            .into_response();
    };
    let user = match state.auth.authenticate(&token).await {
        Ok(user) => user,
        Err(err) => return err.into_response(),
    };
    let Some(slot) = state.sockets.take(user.id, state.config.ws_max_per_user as usize) else {
        return ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_connections",
            format!("at most {} event sockets per user", state.config.ws_max_per_user),
        )
        .into_response();
    };
    let state = state.clone();
    // Small buffers: clients send little, and 10k idle sockets should not cost 10k × 256 KiB.
    let config = WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_INBOUND_BYTES))
        .max_frame_size(Some(MAX_INBOUND_BYTES));
    socket
        .protocols(["bearer"])
        .config(config)
        .on_upgrade(move |stream| async move {
            serve(state, user, after, stream).await;
            drop(slot);
        })
        .into_response()
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

async fn serve(state: AppState, user: CurrentUser, after: Option<i64>, stream: WebSocketStream) {
    state.deps.metrics.ws_opened();
    connection(&state, user, after, stream).await;
    state.deps.metrics.ws_closed();
}

async fn connection(state: &AppState, user: CurrentUser, after: Option<i64>, stream: WebSocketStream) {
    // Subscribed before the stream's start is read: nothing committed after
    // that start can be missed, and what the live feed repeats is skipped.
    let mut events = state.deps.events.subscribe();
    let send_timeout = Duration::from_millis(state.config.ws_send_timeout_ms);
    let (mut sink, mut inbound) = stream.split();
    let close = |code, reason: &str| Message::Close(Some((code, reason.to_owned())));
    let opened = match stream::open(&state.deps.db, user.id, after, state.config.events_replay_max).await {
        Ok(opening) => start(state, user.id, opening, &mut sink, send_timeout).await,
        Err(err) => Err(err.to_string()),
    };
    let (upto, mut channels) = match opened {
        Ok(started) => started,
        Err(reason) => {
            tracing::warn!(user = user.id, reason, "websocket: cannot open the stream");
            let closing = close(CloseCode::Error, "events unavailable; reconnect later");
            let _ = tokio::time::timeout(send_timeout, sink.send(closing)).await;
            return;
        }
    };
    let ping_every = Duration::from_secs(state.config.ws_ping_interval_secs);
    let mut ping = tokio::time::interval(ping_every);
    let mut last_seen = tokio::time::Instant::now();
    let mut closing = state.closing.clone();
    // The socket ends with its token: the client reconnects with a fresh one.
    let left = user.expires_at.saturating_sub(jsonwebtoken::get_current_timestamp());
    let expiry = tokio::time::sleep(Duration::from_secs(left));
    tokio::pin!(expiry);
    let outcome = loop {
        tokio::select! {
            () = &mut expiry => {
                let _ = tokio::time::timeout(send_timeout, sink.send(close(CloseCode::Policy, "token expired"))).await;
                break "token expired";
            }
            _ = closing.changed() => {
                let _ = tokio::time::timeout(send_timeout, sink.send(close(CloseCode::Away, "server shutting down"))).await;
                break "server shutting down";
            }
            received = events.recv() => match received {
                Ok(stamped) => {
                    if stamped.id <= upto || !stream::visible(&stamped.event, user.id, &mut channels) {
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
                    if over_capacity(&err) {
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

/// Whether an inbound error is tungstenite's capacity error (a frame or
/// message over MAX_INBOUND_BYTES). poem hands it over as an `io::Error`
/// carrying only its text, so the text is compared with the one tungstenite
/// itself writes for that variant.
fn over_capacity(err: &std::io::Error) -> bool {
    use tokio_tungstenite::tungstenite::error::{CapacityError, Error};
    let capacity = Error::Capacity(CapacityError::TooManyHeaders).to_string();
    let prefix = capacity.split(':').next().unwrap_or(&capacity);
    err.to_string().starts_with(prefix)
}

type Sink = futures_util::stream::SplitSink<WebSocketStream, Message>;

/// Sends the replay (if any) and the frame that opens the stream; returns
/// where live delivery starts and the user's channels there.
async fn start(
    state: &AppState,
    me: i32,
    opening: Opening,
    sink: &mut Sink,
    send_timeout: Duration,
) -> Result<(i64, HashSet<i32>), String> {
    let Opening { upto, mut channels, replay } = opening;
    let send = async |sink: &mut Sink, frame: &Stamped| match tokio::time::timeout(
        send_timeout,
        sink.send(Message::text(frame.json())),
    )
    .await
    {
        Ok(Ok(())) => Ok(()),
        _ => Err("the client does not read".to_owned()),
    };
    let now = chrono::Utc::now();
    let first = match replay {
        Replay::Nothing => Event::Ready(StreamReady { replayed: 0 }),
        Replay::Resync(reason) => Event::ResyncRequired(ResyncRequired { reason: reason.to_owned() }),
        Replay::From { after, spans } => {
            let (mut cursor, mut replayed) = (after, 0);
            loop {
                let page = stream::replay_page(&state.deps.db, cursor, &spans, REPLAY_PAGE)
                    .await
                    .map_err(|e| e.to_string())?;
                for event in &page.events {
                    if stream::visible(&event.event, me, &mut channels) {
                        send(sink, event).await?;
                        replayed += 1;
                    }
                }
                cursor = page.next_after;
                if !page.more {
                    break;
                }
            }
            if stream::trimmed_since(&state.deps.db, after).await.map_err(|e| e.to_string())? {
                let reason = "the missed events were trimmed during the replay; reload";
                Event::ResyncRequired(ResyncRequired { reason: reason.to_owned() })
            } else {
                Event::Ready(StreamReady { replayed })
            }
        }
    };
    send(sink, &Stamped::new(upto, now, first)).await?;
    Ok((upto, channels))
}
