//! `GET /fleet/status`: this sensor's place in the fleet — connected, sensor id, channel,
//! samples published / buffered / dropped, the fleet model serving (version, hash, origin),
//! models accepted and refused by reason, and the last refusal with its reason. 404 when the
//! sensor is not in a fleet.
use axum::Json;
use axum::extract::State;

use super::error::ErrorBody;
use super::{ApiError, ApiState};
use crate::fleet::FleetStatus;

#[utoipa::path(
    get,
    path = "/fleet/status",
    tag = "fleet",
    summary = "Fleet connection, published/buffered/dropped, fleet model and refusals",
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "fleet status", body = Object),
        (status = 404, description = "this sensor is not in a fleet", body = ErrorBody)
    )
)]
pub async fn status(State(state): State<ApiState>) -> Result<Json<FleetStatus>, ApiError> {
    let f = state.fleet.as_ref().ok_or_else(|| {
        ApiError::not_found("this sensor is not in a fleet (safelink run --fleet nats://HOST:PORT)")
    })?;
    Ok(Json(f.snapshot()))
}
