//! `POST /alerts/{id}/verdict`: the operator says `false_positive` or `confirmed` about a
//! stored alert; the learner stores it as a labelled sample that outranks every automatic
//! label (see `learn::verdict`). Token required (a POST). 400 for a bad id, 404 for an
//! unknown or archived alert and when the sensor runs without a learner, 422 for a body of the
//! wrong shape or an alert without a flow (ARP).
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;

use super::error::{ApiJson, ErrorBody};
use super::{ApiError, ApiState, blocking};
use crate::learn::{Verdict, VerdictError, VerdictOutcome};

/// Body of `POST /alerts/{id}/verdict`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerdictRequest {
    /// `false_positive` or `confirmed`.
    pub verdict: Verdict,
}

#[utoipa::path(
    post,
    path = "/alerts/{id}/verdict",
    tag = "alerts",
    summary = "The operator's verdict on an alert: a labelled sample for the learner",
    params(("id" = u64, Path, minimum = 1, description = "alert id")),
    request_body = VerdictRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the verdict stored as a training sample", body = VerdictOutcome),
        (status = 400, description = "a bad alert id", body = ErrorBody),
        (status = 401, description = "missing or wrong token", body = ErrorBody),
        (status = 403, description = "no token configured, or a Host not allowed on loopback", body = ErrorBody),
        (status = 404, description = "no such alert (or archived), or no learner on this sensor", body = ErrorBody),
        (status = 415, description = "body is not application/json", body = ErrorBody),
        (status = 422, description = "body of the wrong shape (verdict must be false_positive or confirmed), or an alert without a flow", body = ErrorBody)
    )
)]
pub async fn verdict(
    State(state): State<ApiState>,
    Path(raw): Path<String>,
    ApiJson(req): ApiJson<VerdictRequest>,
) -> Result<Json<VerdictOutcome>, ApiError> {
    let id = super::alerts::alert_id(&raw)?;
    let alert = blocking(&state, move |s| s.get(id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("alert {id} not found")))?;
    let learner = state.learner.clone().ok_or_else(|| {
        ApiError::not_found(
            "continuous learning is off on this sensor: a verdict is a training sample for the learner ([learning] enabled)",
        )
    })?;
    let out = tokio::task::spawn_blocking(move || learner.verdict(&alert, req.verdict))
        .await
        .map_err(|e| ApiError::internal(format!("learner task failed: {e}")))?;
    match out {
        Ok(o) => Ok(Json(o)),
        Err(e @ VerdictError::NoFlow(_)) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            e.to_string(),
        )),
        Err(VerdictError::Learn(e)) => Err(ApiError::internal(e.to_string())),
    }
}
