//! `GET /metrics`: the process's Prometheus metrics in the text exposition format. The store
//! size is refreshed at scrape time; everything else is recorded where it happens (see
//! [`crate::telemetry`]).
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::{ApiError, ApiState, blocking};
use crate::telemetry;

/// Content type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "meta",
    summary = "Prometheus metrics",
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")
    )
)]
pub async fn metrics(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let handle = telemetry::install();
    // The last size read while the store was readable: /metrics answers while it is degraded.
    let size = blocking(&state, |s| Ok(s.health().bytes)).await?;
    telemetry::record_store_size(size);
    telemetry::record_sniffer_running(state.sensor.status().running);
    handle.run_upkeep();
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], handle.render()).into_response())
}
