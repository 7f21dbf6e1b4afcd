//! `GET /ws`: the event stream, documented here so its payloads are in the spec.

use poem::{
    IntoResponse, Request, Response,
    web::{Data, websocket::WebSocket},
};
use poem_openapi::{
    ApiResponse, OpenApi,
    param::Query,
    registry::{MetaMediaType, MetaResponse, MetaResponses, Registry},
    types::Type,
};

use super::common::ApiTags;
use crate::{error::ErrorBody, events::Event, state::AppState, ws};

/// Event stream operations.
pub struct EventsApi;

/// The upgraded socket, or the JSON error that refused it.
pub struct EventStream(Response);

impl IntoResponse for EventStream {
    fn into_response(self) -> Response {
        self.0
    }
}

impl ApiResponse for EventStream {
    fn meta() -> MetaResponses {
        let json = |schema| vec![MetaMediaType { content_type: "application/json; charset=utf-8", schema }];
        let response = |status, description, content| MetaResponse {
            description,
            status: Some(status),
            status_range: None,
            content,
            headers: vec![],
        };
        MetaResponses {
            responses: vec![
                response(
                    101,
                    "Switched to WebSocket. Every text frame is one `Event` (schema below) plus `id` and `at`.",
                    json(Event::schema_ref()),
                ),
                response(
                    400,
                    "Not a WebSocket upgrade request, or `after` is not a non-negative integer (`invalid_request`).",
                    json(ErrorBody::schema_ref()),
                ),
                response(
                    401,
                    "Missing, malformed, badly signed or expired token (`unauthorized`).",
                    json(ErrorBody::schema_ref()),
                ),
                response(
                    403,
                    "The browser's Origin is not allowed (`origin_not_allowed`).",
                    json(ErrorBody::schema_ref()),
                ),
                response(
                    429,
                    "The user has WS_MAX_PER_USER sockets open already (`too_many_connections`).",
                    json(ErrorBody::schema_ref()),
                ),
            ],
        }
    }

    fn register(registry: &mut Registry) {
        Event::register(registry);
        ErrorBody::register(registry);
    }
}

#[OpenApi(tag = "ApiTags::Events")]
impl EventsApi {
    /// Subscribe to the events of the caller's channels (WebSocket).
    ///
    /// Authenticate with `Authorization: Bearer <token>`, `?token=<token>` or,
    /// from browsers, `Sec-WebSocket-Protocol: bearer, <token>` (the server
    /// answers `bearer`). A browser `Origin` must be in CORS_ALLOWED_ORIGINS or
    /// the broker's own. Delivers `file_upload_complete`, `file_deleted`, `file_updated`,
    /// `message_created`, `message_updated`, `member_joined` and `member_left`
    /// of every channel the user belongs to, following membership changes at
    /// once. Frames from the client over 64 KiB close the socket with 1009; a
    /// client that does not read within WS_SEND_TIMEOUT_MS is disconnected.
    /// The socket closes (1008, `token expired`) when its token expires;
    /// reconnect with a fresh one.
    ///
    /// Every frame has an `id`: events are numbered across all broker
    /// instances in the order their changes committed. The first frame after
    /// connecting is `ready` (its `id` is where the stream starts). To resume
    /// after a disconnect, connect with `?after=<id of the last frame seen>`:
    /// the missed events of your channels (as your membership was at each
    /// event) come first, in order, then `ready`. When they cannot be
    /// replayed (older than EVENTS_RETENTION_SECS, more than
    /// EVENTS_REPLAY_MAX, or from another database) the first frame is
    /// `resync_required` instead: reload channels and messages, then resume
    /// from its `id`. Delivery is at least once: drop frames whose `id` is not
    /// larger than the last one seen.
    #[oai(path = "/ws", method = "get", operation_id = "subscribe_events")]
    async fn subscribe(
        &self,
        req: &Request,
        socket: WebSocket,
        state: Data<&AppState>,
        /// Resume after this event `id` (the last one seen).
        #[oai(validator(minimum(value = "0")))]
        after: Query<Option<i64>>,
    ) -> EventStream {
        EventStream(ws::upgrade(req, socket, &state, after.0).await)
    }
}
