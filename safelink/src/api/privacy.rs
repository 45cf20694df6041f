//! Privacy endpoints: `DELETE /privacy/subject?ip=...|mac=...` (state-changing, so the token
//! policy of [`super::AuthPolicy`] requires the bearer token) deletes everything stored about
//! one address and returns the counts per tree; `GET /privacy/report` says what is stored, in
//! which form and for how long.
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::error::{ApiQuery, ErrorBody};
use super::{ApiError, ApiState, blocking};
use crate::privacy::{self, Report, Subject};
use crate::store::TreeCounts;
use utoipa::IntoParams;

/// Query of `DELETE /privacy/subject`: exactly one of the two.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SubjectQuery {
    /// An IP address.
    ip: Option<String>,
    /// A MAC address.
    mac: Option<String>,
}

/// Answer of `DELETE /privacy/subject`.
#[derive(Serialize)]
pub struct ForgetResponse {
    pub subject: Subject,
    pub deleted: TreeCounts,
}

#[utoipa::path(
    delete,
    path = "/privacy/subject",
    tag = "privacy",
    summary = "Delete everything stored about one address",
    params(SubjectQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "deleted counts per tree", body = Object),
        (status = 400, description = "a bad parameter, named", body = ErrorBody),
        (status = 401, description = "missing or wrong token", body = ErrorBody),
        (status = 403, description = "no token configured, or a Host not allowed on loopback", body = ErrorBody)
    )
)]
pub async fn forget(
    State(state): State<ApiState>,
    ApiQuery(q): ApiQuery<SubjectQuery>,
) -> Result<Json<ForgetResponse>, ApiError> {
    let subject = match (q.ip, q.mac) {
        (Some(ip), None) => Subject::parse_ip(&ip),
        (None, Some(mac)) => Subject::parse_mac(&mac),
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of the query parameters \"ip\" or \"mac\"",
            ));
        }
    }
    .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let policy = state.privacy.clone();
    let deleted = blocking(&state, move |s| privacy::forget(&s, &policy, subject)).await?;
    if let Some(l) = state.learner.clone() {
        // The known-benign services follow the samples that remain.
        let _ = tokio::task::spawn_blocking(move || l.reload_baseline()).await;
    }
    Ok(Json(ForgetResponse { subject, deleted }))
}

#[utoipa::path(
    get,
    path = "/privacy/report",
    tag = "privacy",
    summary = "What is stored, in which form, for how long",
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "the report", body = Object)
    )
)]
pub async fn report(State(state): State<ApiState>) -> Result<Json<Report>, ApiError> {
    let policy = state.privacy.clone();
    let r = blocking(&state, move |s| privacy::report(&s, &policy)).await?;
    Ok(Json(r))
}
