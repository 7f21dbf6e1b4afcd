//! The one error body of the HTTP API and the mapping of every failure into it.
//!
//! Use cases return [`ServiceError`](crate::service::ServiceError); handlers turn
//! it into [`ApiError`], whose variants document every status in the OpenAPI
//! spec. Errors raised by poem itself (unknown route, unparsable body, missing
//! token…) are rewritten into the same body by [`render_poem_error`].

use poem::{IntoResponse, Response, http::StatusCode};
use poem_openapi::{ApiResponse, Object, payload::Json};

/// The body of every error response.
#[derive(Object, Debug, Clone)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// A machine-readable code and a human-readable message.
#[derive(Object, Debug, Clone)]
pub struct ErrorDetail {
    /// Stable snake_case code, e.g. `file_too_large`, `not_found`, `rate_limited`.
    pub code: String,
    /// Explanation for humans; may change between versions.
    pub message: String,
}

/// Every error the API answers with.
#[derive(ApiResponse, Debug)]
pub enum ApiError {
    /// The request is malformed or fails validation (`invalid_request`, `invalid_file_name`…).
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Missing, malformed, badly signed or expired bearer token (`unauthorized`).
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// The caller may see the resource but not do this to it (`forbidden`).
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// No such resource, or one the caller may not see (`not_found`).
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The request conflicts with the current state (`conflict`, `already_member`…).
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// The upload's time ran out before it was confirmed (`upload_expired`); presign again.
    #[oai(status = 410)]
    Gone(Json<ErrorBody>),
    /// The file exceeds MAX_FILE_SIZE_MB (`file_too_large`).
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// The content type is not in ALLOWED_FILE_TYPES, or the body's media type is wrong (`type_not_allowed`).
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorBody>),
    /// The uploaded object failed verification (`object_missing`, `size_mismatch`, `checksum_mismatch`, `content_mismatch`, `image_malformed`).
    #[oai(status = 422)]
    Unprocessable(Json<ErrorBody>),
    /// Too many requests; retry after the given number of seconds (`rate_limited`).
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>, #[oai(header = "Retry-After")] u64),
    /// An unexpected server fault (`internal`); details are in the server log only.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// The object store answered with an error (`storage_error`).
    #[oai(status = 502)]
    BadGateway(Json<ErrorBody>),
    /// The object store or the database cannot be reached (`storage_unavailable`, `database_unavailable`).
    #[oai(status = 503)]
    ServiceUnavailable(Json<ErrorBody>, #[oai(header = "Retry-After")] u64),
}

/// The `Retry-After` of a 503: long enough for a database failover or a
/// store node's restart to be noticed, short enough for an upload dialog.
pub const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 5;

impl ApiError {
    /// An error with the given status, code and message. Statuses without a
    /// variant of their own become 400 (client side) or 500 (server side).
    pub fn new(status: StatusCode, code: impl Into<String>, message: impl Into<String>) -> Self {
        let body = Json(ErrorBody { error: ErrorDetail { code: code.into(), message: message.into() } });
        match status.as_u16() {
            401 => Self::Unauthorized(body),
            403 => Self::Forbidden(body),
            404 => Self::NotFound(body),
            409 => Self::Conflict(body),
            410 => Self::Gone(body),
            413 => Self::PayloadTooLarge(body),
            415 => Self::UnsupportedMediaType(body),
            422 => Self::Unprocessable(body),
            429 => Self::TooManyRequests(body, 1),
            502 => Self::BadGateway(body),
            503 => Self::ServiceUnavailable(body, UNAVAILABLE_RETRY_AFTER_SECS),
            s if s >= 500 => Self::Internal(body),
            _ => Self::BadRequest(body),
        }
    }

    /// 401 with the given reason.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 404 `not_found` for the named kind of resource.
    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found"))
    }

    /// The error's body (code and message).
    pub fn body(&self) -> &ErrorBody {
        match self {
            Self::BadRequest(b)
            | Self::Unauthorized(b)
            | Self::Forbidden(b)
            | Self::NotFound(b)
            | Self::Conflict(b)
            | Self::Gone(b)
            | Self::PayloadTooLarge(b)
            | Self::UnsupportedMediaType(b)
            | Self::Unprocessable(b)
            | Self::TooManyRequests(b, _)
            | Self::Internal(b)
            | Self::BadGateway(b)
            | Self::ServiceUnavailable(b, _) => &b.0,
        }
    }
}

/// Rewrites any error poem or poem-openapi raised (and any response already
/// built from an [`ApiError`]) into the one JSON error body.
pub async fn render_poem_error(err: poem::Error) -> Response {
    let message = err.to_string();
    let response = err.into_response();
    let is_json = response.content_type().is_some_and(|ct| ct.starts_with("application/json"));
    if is_json {
        return response;
    }
    let status = response.status();
    let code = match status.as_u16() {
        400 => "invalid_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        s if s >= 500 => "internal",
        _ => "invalid_request",
    };
    let message = match status.as_u16() {
        401 => "missing or malformed bearer token".to_owned(),
        404 => "no such resource".to_owned(),
        405 => "method not allowed on this resource".to_owned(),
        s if s >= 500 => "internal error".to_owned(),
        _ => message,
    };
    let mut rendered = ApiError::new(status, code, message).into_response();
    if status.as_u16() == 405 || status.as_u16() == 400 || status.as_u16() >= 500 {
        // Keep the exact status (405 has no variant of its own).
        rendered.set_status(status);
    }
    rendered
}
