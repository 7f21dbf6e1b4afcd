//! `/health` and `/ready`.

use poem::{http::StatusCode, web::Data};
use poem_openapi::{Object, OpenApi};

use super::{ApiTags, Success, ok};
use crate::{error::ApiError, startup::AppState};

/// Probe operations.
pub struct HealthApi;

/// Result of a probe.
#[derive(Object)]
pub struct Status {
    /// Always `ok` when answered with 200.
    pub status: String,
}

#[OpenApi(tag = "ApiTags::Health")]
impl HealthApi {
    /// Liveness: the process is up.
    #[oai(path = "/health", method = "get", operation_id = "health")]
    async fn health(&self) -> Success<Status> {
        ok(Status { status: "ok".into() })
    }

    /// Readiness: the database and the object store answer.
    ///
    /// 503 names what failed (`database`, `storage` or both).
    #[oai(path = "/ready", method = "get", operation_id = "ready")]
    async fn ready(&self, state: Data<&AppState>) -> Result<Success<Status>, ApiError> {
        let (db, storage) = tokio::join!(state.db.ping(), state.storage.check());
        let mut failed = Vec::new();
        if let Err(err) = db {
            tracing::warn!(error = %err, "readiness: database unavailable");
            failed.push("database");
        }
        if let Err(err) = storage {
            tracing::warn!(error = %err, "readiness: object store unavailable");
            failed.push("storage");
        }
        if failed.is_empty() {
            return Ok(ok(Status { status: "ok".into() }));
        }
        let code = match failed.as_slice() {
            ["database"] => "database_unavailable",
            ["storage"] => "storage_unavailable",
            _ => "not_ready",
        };
        Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, format!("unavailable: {}", failed.join(", "))))
    }
}
