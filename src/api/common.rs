//! What the handlers share: tags, the success response, a JSON string type,
//! use-case and parse errors as API errors, timestamps as RFC 3339.

use poem::http::StatusCode;
use poem_openapi::{ApiResponse, Tags, payload::Json, types::ToJSON};

use crate::{
    domain::ParseError,
    error::{ApiError, ErrorBody, ErrorDetail},
    service::ServiceError,
};

/// Groups of operations in the spec.
#[derive(Tags)]
pub enum ApiTags {
    /// Logging in and the current user.
    Auth,
    /// Channels and their members.
    Channels,
    /// Messages in channels.
    Messages,
    /// Uploading, confirming and reading files.
    Files,
    /// The WebSocket event stream.
    Events,
    /// Liveness and readiness probes.
    Health,
    /// Settings for clients.
    Client,
}

/// A request string that must be a JSON string: poem-openapi's `String` would
/// also take `false` or `12` and turn them into text, accepting bodies that
/// break the published schema.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JsonString(pub String);

impl std::ops::Deref for JsonString {
    type Target = String;
    fn deref(&self) -> &String {
        &self.0
    }
}

impl poem_openapi::types::Type for JsonString {
    const IS_REQUIRED: bool = true;
    type RawValueType = String;
    type RawElementValueType = String;

    fn name() -> std::borrow::Cow<'static, str> {
        String::name()
    }

    fn schema_ref() -> poem_openapi::registry::MetaSchemaRef {
        String::schema_ref()
    }

    fn as_raw_value(&self) -> Option<&String> {
        Some(&self.0)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a String> + 'a> {
        Box::new(std::iter::once(&self.0))
    }
}

impl poem_openapi::types::ParseFromJSON for JsonString {
    fn parse_from_json(value: Option<serde_json::Value>) -> poem_openapi::types::ParseResult<Self> {
        match value {
            Some(serde_json::Value::String(text)) => Ok(Self(text)),
            other => Err(poem_openapi::types::ParseError::expected_type(other.unwrap_or_default())),
        }
    }
}

impl poem_openapi::types::ToJSON for JsonString {
    fn to_json(&self) -> Option<serde_json::Value> {
        Some(serde_json::Value::String(self.0.clone()))
    }
}

/// A successful answer carrying a JSON body.
#[derive(ApiResponse)]
pub enum Success<T: ToJSON + Send + Sync> {
    /// Success; the body is described by its schema.
    #[oai(status = 200)]
    Ok(Json<T>),
}

/// Shorthand for handlers: `ok(value)` answers 200 with `value` as JSON.
pub fn ok<T: ToJSON + Send + Sync>(value: T) -> Success<T> {
    Success::Ok(Json(value))
}

/// Database timestamps are UTC without a zone; the API speaks RFC 3339.
pub fn utc(at: chrono::NaiveDateTime) -> chrono::DateTime<chrono::Utc> {
    at.and_utc()
}

impl From<ServiceError> for ApiError {
    fn from(err: ServiceError) -> Self {
        use ServiceError as E;
        match err {
            E::NotFound(what) => ApiError::not_found(what),
            E::Forbidden(message) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", message),
            E::Invalid { code, message } => ApiError::new(StatusCode::BAD_REQUEST, code, message),
            E::Conflict { code, message } => ApiError::new(StatusCode::CONFLICT, code, message),
            E::Gone { code, message } => ApiError::new(StatusCode::GONE, code, message),
            E::TooLarge(message) => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "file_too_large", message),
            E::QuotaExceeded(message) => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded", message),
            E::TypeNotAllowed(message) => {
                ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "type_not_allowed", message)
            }
            E::Unverified { code, message } => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message),
            E::RateLimited { retry_after_secs } => ApiError::TooManyRequests(
                Json(ErrorBody {
                    error: ErrorDetail {
                        code: "rate_limited".into(),
                        message: format!("too many requests; retry in {retry_after_secs} s"),
                    },
                }),
                retry_after_secs.max(1),
            ),
            E::Database(err) => {
                if crate::service::database_unavailable(&err) {
                    tracing::warn!(error = %err, "database unavailable");
                    ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "database_unavailable",
                        "the database is unavailable",
                    )
                } else {
                    tracing::error!(error = ?err, "database error");
                    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
                }
            }
            E::Storage(crate::storage::StorageError::Unavailable(cause)) => {
                tracing::warn!(%cause, "object store unavailable");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable", "the object store is unavailable")
            }
            E::Storage(err @ crate::storage::StorageError::Service { .. }) => {
                tracing::error!(error = %err, "object store error");
                ApiError::new(StatusCode::BAD_GATEWAY, "storage_error", "the object store answered with an error")
            }
        }
    }
}

impl From<ParseError> for ApiError {
    fn from(err: ParseError) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, err.code, err.message)
    }
}
