//! Privacy endpoints: `DELETE /privacy/subject?ip=...|mac=...` (state-changing, so the token
//! policy of [`super::AuthPolicy`] requires the bearer token) deletes everything stored about
//! one address and returns the counts per tree; `GET /privacy/report` says what is stored, in
//! which form and for how long.
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::error::ApiQuery;
use super::{ApiError, ApiState, blocking};
use crate::privacy::{self, Report, Subject};
use crate::store::TreeCounts;

/// Query of `DELETE /privacy/subject`: exactly one of the two.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectQuery {
    ip: Option<String>,
    mac: Option<String>,
}

/// Answer of `DELETE /privacy/subject`.
#[derive(Serialize)]
pub struct ForgetResponse {
    pub subject: Subject,
    pub deleted: TreeCounts,
}

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
    Ok(Json(ForgetResponse { subject, deleted }))
}

pub async fn report(State(state): State<ApiState>) -> Result<Json<Report>, ApiError> {
    let policy = state.privacy.clone();
    let r = blocking(&state, move |s| privacy::report(&s, &policy)).await?;
    Ok(Json(r))
}
