//! Request logging without query strings: `?token=` on `/ws` carries a bearer
//! token, and no secret may reach a log line.

use std::{sync::Arc, time::Instant};

use poem::{Endpoint, IntoResponse, Request, Response, Result};

use crate::{metrics::Metrics, routes};

/// Logs method, path (never the query), status and duration of every request,
/// and counts it in the metrics.
pub async fn log_request<E: Endpoint>(next: E, req: Request) -> Result<Response> {
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let metrics = req.data::<Arc<Metrics>>().cloned();
    let started = Instant::now();
    let result = next.call(req).await.map(IntoResponse::into_response);
    let status = match &result {
        Ok(resp) => resp.status(),
        Err(err) => err.status(),
    };
    tracing::info!(%method, path, status = status.as_u16(), elapsed_ms = started.elapsed().as_secs_f64() * 1000.0, "request");
    if let Some(metrics) = metrics {
        metrics.request(method.as_str(), routes::label(&path), status.as_u16());
    }
    result
}
