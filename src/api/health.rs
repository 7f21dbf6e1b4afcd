//! `/health` and `/ready`.

use std::time::Duration;

use poem::{http::StatusCode, web::Data};
use poem_openapi::{Object, OpenApi};

use super::common::{ApiTags, Success, ok};
use crate::{error::ApiError, state::AppState};

/// How long `/ready` waits for each of the database and the store.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Probe operations.
pub struct HealthApi;

/// How long a readiness answer is reused: probes from anyone cost the
/// database and the store at most one round each per second.
const READY_FRESH: Duration = Duration::from_secs(1);

/// What does not answer in time: `database`, `storage`.
async fn check(state: &AppState) -> Vec<&'static str> {
    // A stalled database or store is as unready as a refusing one: each
    // check gets READY_TIMEOUT, not the store's whole retry budget.
    let (db, storage) = tokio::join!(
        tokio::time::timeout(READY_TIMEOUT, state.deps.db.ping()),
        tokio::time::timeout(READY_TIMEOUT, state.deps.storage.check()),
    );
    [("database", answered("database", db)), ("storage", answered("storage", storage))]
        .into_iter()
        .filter_map(|(what, ok)| (!ok).then_some(what))
        .collect()
}

/// Whether a readiness check answered in time and well (logging why not).
fn answered<E: std::fmt::Display>(what: &str, check: Result<Result<(), E>, tokio::time::error::Elapsed>) -> bool {
    match check {
        Ok(Ok(())) => true,
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "readiness: {what} unavailable");
            false
        }
        Err(_) => {
            tracing::warn!("readiness: {what} did not answer within {READY_TIMEOUT:?}");
            false
        }
    }
}

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
    /// 503 names what failed (`database`, `storage` or both). Checked at most
    /// once a second; callers in between get the last answer.
    #[oai(path = "/ready", method = "get", operation_id = "ready")]
    async fn ready(&self, state: Data<&AppState>) -> Result<Success<Status>, ApiError> {
        let mut last = state.readiness.lock().await;
        let failed = match &*last {
            Some((at, failed)) if at.elapsed() < READY_FRESH => failed.clone(),
            _ => {
                let failed = check(&state).await;
                *last = Some((std::time::Instant::now(), failed.clone()));
                failed
            }
        };
        drop(last);
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
