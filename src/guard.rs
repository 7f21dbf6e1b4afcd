//! What every request passes before a handler: a bounded body (413 before
//! more than the limit is read), dev login refused before its body is read
//! when it is off, the event socket's origin and body checks; and after it:
//! `Allow` on 405 answers and `Vary: Origin` on every answer to a request
//! with an `Origin` (the guard's own refusals included).

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use futures_util::StreamExt;
use poem::{
    Body, Endpoint, IntoResponse, Request, Response, Result,
    http::{HeaderValue, Method, StatusCode, header},
};

use crate::{error::ApiError, routes, state::AppState, ws::AllowedOrigins};

/// Largest request body of every route but the streamed upload (JSON bodies
/// here are a few hundred bytes; a message with its content is under 20 KiB).
pub const MAX_BODY_BYTES: u64 = 64 * 1024;

fn too_large() -> Response {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("request bodies may be at most {} KiB", MAX_BODY_BYTES / 1024),
    )
    .into_response()
}

/// The middleware (see the module documentation).
pub async fn guard<E: Endpoint>(next: E, req: Request) -> Result<Response> {
    let cors = req.header(header::ORIGIN).is_some();
    let mut resp = answer(next, req).await;
    if cors {
        resp.headers_mut().append(header::VARY, HeaderValue::from_static("Origin"));
    }
    Ok(resp)
}

async fn answer<E: Endpoint>(next: E, mut req: Request) -> Response {
    let path = req.uri().path().to_owned();
    if let Some(refused) = refuse_early(&req, &path) {
        return refused;
    }
    // `POST /files/upload` streams files and enforces MAX_FILE_SIZE_MB itself.
    let exceeded = Arc::new(AtomicBool::new(false));
    if !(req.method() == Method::POST && path == "/files/upload") {
        let declared = req.header(header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > MAX_BODY_BYTES) {
            return too_large();
        }
        // Without a length (chunked), the body stops with an error at the limit.
        let flag = exceeded.clone();
        let mut seen = 0u64;
        let bounded = req.take_body().into_bytes_stream().map(move |chunk| {
            let chunk = chunk?;
            seen += chunk.len() as u64;
            if seen > MAX_BODY_BYTES {
                flag.store(true, Ordering::Relaxed);
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "request body too large"));
            }
            Ok(chunk)
        });
        req.set_body(Body::from_bytes_stream(bounded));
    }
    let mut resp = match next.call(req).await {
        Ok(resp) => resp.into_response(),
        Err(err) => crate::error::render_poem_error(err).await,
    };
    if exceeded.load(Ordering::Relaxed) {
        return too_large();
    }
    if resp.status() == StatusCode::METHOD_NOT_ALLOWED
        && let Some(allow) = routes::allow(&path).and_then(|a| HeaderValue::from_str(&a).ok())
    {
        resp.headers_mut().insert(header::ALLOW, allow);
    }
    resp
}

/// Answers that need nothing of the body.
fn refuse_early(req: &Request, path: &str) -> Option<Response> {
    let state = req.data::<AppState>()?;
    if path == "/auth/dev-login" && req.method() == Method::POST && !state.config.dev_login_enabled() {
        return Some(
            ApiError::new(StatusCode::NOT_FOUND, "dev_login_disabled", "dev login is disabled").into_response(),
        );
    }
    // An upgrade carries no body: bytes after the headers would be read as
    // WebSocket frames.
    let has_body = req.header(header::TRANSFER_ENCODING).is_some()
        || req.header(header::CONTENT_LENGTH).is_some_and(|len| len.trim() != "0");
    if path == "/ws" && has_body {
        return Some(
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", "a WebSocket upgrade has no body")
                .into_response(),
        );
    }
    // Before CORS, which would refuse a foreign origin with a generic 403.
    if path == "/ws"
        && let Some(origin) = req.header(header::ORIGIN)
        && let Some(origins) = req.data::<AllowedOrigins>()
        && !origins.allows(origin)
    {
        return Some(
            ApiError::new(StatusCode::FORBIDDEN, "origin_not_allowed", "this origin may not open the event socket")
                .into_response(),
        );
    }
    None
}
