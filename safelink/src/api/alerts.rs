//! Alert endpoints: `GET /alerts`, `GET /alerts/{id}`, `POST /alerts/archive`,
//! `GET /alerts/archive`.
use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiJson, ApiQuery, ErrorBody};
use super::params::ListParams;
use super::{ApiError, ApiState, blocking};
use crate::alert::{Alert, AlertView};
use crate::store::{Page, parse_rfc3339};

/// Most ids accepted by one archive call.
pub const MAX_ARCHIVE_IDS: usize = 10_000;

/// A page as JSON: `{"alerts": [...], "next_cursor": "..." | null}`.
#[derive(Serialize)]
pub struct PageBody {
    pub alerts: Vec<Alert>,
    pub next_cursor: Option<String>,
}

impl From<Page> for PageBody {
    fn from(p: Page) -> Self {
        PageBody {
            alerts: p.alerts,
            next_cursor: p.next_cursor.map(|c| c.to_string()),
        }
    }
}

#[utoipa::path(
    get,
    path = "/alerts",
    tag = "alerts",
    summary = "Active alerts, newest first, filtered and paged",
    params(ListParams),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "a page of alerts and the next cursor", body = Object),
        (status = 400, description = "a bad parameter, named", body = ErrorBody)
    )
)]
pub async fn list(
    State(state): State<ApiState>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<PageBody>, ApiError> {
    let l = params.listing()?;
    let page = blocking(&state, move |s| s.query(&l.filter, l.limit, l.cursor)).await?;
    Ok(Json(page.into()))
}

#[utoipa::path(
    get,
    path = "/alerts/archive",
    tag = "alerts",
    summary = "Archived alerts, newest first, filtered and paged",
    params(ListParams),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "a page of archived alerts and the next cursor", body = Object),
        (status = 400, description = "a bad parameter, named", body = ErrorBody)
    )
)]
pub async fn list_archive(
    State(state): State<ApiState>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<PageBody>, ApiError> {
    let l = params.listing()?;
    let page = blocking(&state, move |s| {
        s.list_archive(&l.filter, l.limit, l.cursor)
    })
    .await?;
    Ok(Json(page.into()))
}

/// An alert id from the path: a positive integer, or a 400 naming what was given.
pub(super) fn alert_id(raw: &str) -> Result<u64, ApiError> {
    raw.parse::<u64>().ok().filter(|&id| id > 0).ok_or_else(|| {
        ApiError::bad_request(format!("bad alert id {raw:?}: expected a positive integer"))
    })
}

#[utoipa::path(
    get,
    path = "/alerts/{id}",
    tag = "alerts",
    summary = "One active alert",
    params(("id" = u64, Path, minimum = 1, description = "alert id")),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "the alert with its feature table", body = Object),
        (status = 400, description = "a bad parameter, named", body = ErrorBody),
        (status = 404, description = "no such alert, or archived", body = ErrorBody)
    )
)]
pub async fn get_one(
    State(state): State<ApiState>,
    Path(raw): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = alert_id(&raw)?;
    let (active, archived) = blocking(&state, move |s| {
        let active = s.get(id)?;
        let archived = if active.is_none() {
            s.get_archived(id)?.is_some()
        } else {
            false
        };
        Ok((active, archived))
    })
    .await?;
    match active {
        Some(a) => Ok(Json(
            serde_json::to_value(AlertView::from(&a))
                .map_err(|e| ApiError::internal(e.to_string()))?,
        )),
        None if archived => Err(ApiError::not_found(format!(
            "alert {id} is archived: list it with GET /alerts/archive"
        ))),
        None => Err(ApiError::not_found(format!("alert {id} not found"))),
    }
}

/// Body of `POST /alerts/archive`: exactly one of the two.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ArchiveRequest {
    /// Alert ids (at most 10 000).
    ids: Option<Vec<u64>>,
    /// Archive every alert older than this RFC 3339 time.
    older_than: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ArchiveResponse {
    pub archived: u64,
}

#[utoipa::path(
    post,
    path = "/alerts/archive",
    tag = "alerts",
    summary = "Archive alerts by id or by age",
    request_body = ArchiveRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "how many alerts were archived", body = ArchiveResponse),
        (status = 400, description = "a bad parameter, named", body = ErrorBody),
        (status = 401, description = "missing or wrong token", body = ErrorBody),
        (status = 403, description = "no token configured, or a Host not allowed on loopback", body = ErrorBody),
        (status = 413, description = "body over [api] max_body_bytes", body = ErrorBody),
        (status = 415, description = "body is not application/json", body = ErrorBody),
        (status = 422, description = "body of the wrong shape", body = ErrorBody)
    )
)]
pub async fn archive(
    State(state): State<ApiState>,
    ApiJson(req): ApiJson<ArchiveRequest>,
) -> Result<Json<ArchiveResponse>, ApiError> {
    let archived = match (req.ids, req.older_than) {
        (Some(ids), None) => {
            if ids.is_empty() {
                return Err(ApiError::bad_request("\"ids\" is empty"));
            }
            if ids.len() > MAX_ARCHIVE_IDS {
                return Err(ApiError::bad_request(format!(
                    "too many ids ({}): at most {MAX_ARCHIVE_IDS} per call",
                    ids.len()
                )));
            }
            blocking(&state, move |s| s.archive_ids(&ids)).await?
        }
        (None, Some(raw)) => {
            let cutoff = parse_rfc3339(&raw).map_err(|e| {
                ApiError::bad_request(format!(
                    "bad older_than {raw:?}: expected an RFC 3339 time such as 2024-05-01T12:00:00Z ({e})"
                ))
            })?;
            blocking(&state, move |s| s.archive_older_than(cutoff)).await?
        }
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of \"ids\" or \"older_than\"",
            ));
        }
    };
    Ok(Json(ArchiveResponse { archived }))
}
