//! The continuous learner over HTTP: `GET /learning/status`, `POST /learning/train-now`
//! (202, 409 while a cycle runs, 422 with the reason when there is nothing to train on),
//! `POST /learning/start|stop`, `GET /learning/history?limit=N`, `GET /models` and
//! `POST /models/{version}/activate` (manual rollback). Without a learner `GET
//! /learning/status` answers 200 with `"enabled": false` and the reason; the other routes
//! answer 404. POSTs need the token (see `auth.rs`).
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::error::{ApiQuery, ErrorBody};
use super::{ApiError, ApiState};
use crate::learn::{LearnError, Learner, LearningStatus, TrainNowError};
use utoipa::IntoParams;

fn learner(state: &ApiState) -> Result<Learner, ApiError> {
    state.learner.clone().ok_or_else(|| {
        ApiError::not_found(
            "continuous learning is not available on this sensor (it needs the ANN model; see [learning])",
        )
    })
}

fn learn_error(e: LearnError) -> ApiError {
    match e {
        LearnError::Busy => ApiError::new(StatusCode::CONFLICT, e.to_string()),
        LearnError::UnknownVersion(_) => ApiError::not_found(e.to_string()),
        LearnError::Model(m) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("model refused: {m}"),
        ),
        other => ApiError::internal(other.to_string()),
    }
}

/// Runs a learner call on the blocking pool (store reads and writes fsync).
async fn blocking<T, F>(l: Learner, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(Learner) -> Result<T, LearnError> + Send + 'static,
{
    tokio::task::spawn_blocking(move || f(l))
        .await
        .map_err(|e| ApiError::internal(format!("learner task failed: {e}")))?
        .map_err(learn_error)
}

#[utoipa::path(
    get,
    path = "/learning/status",
    tag = "learning",
    summary = "The continuous learner's state",
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "learner state (`enabled: false` and the reason when the sensor runs without a learner)", body = Object)
    )
)]
pub async fn status(State(state): State<ApiState>) -> Result<Json<LearningStatus>, ApiError> {
    match state.learner.clone() {
        Some(l) => Ok(Json(blocking(l, |l| l.status()).await?)),
        None => Ok(Json(LearningStatus::off(NO_LEARNER))),
    }
}

/// Why a sensor has no learner.
const NO_LEARNER: &str = "continuous learning is off on this sensor ([learning] enabled = false, \
                          or the ANN model could not be loaded: see the log)";

#[utoipa::path(
    post,
    path = "/learning/train-now",
    tag = "learning",
    summary = "Run a training cycle now",
    security(("bearer" = [])),
    responses(
        (status = 202, description = "cycle started", body = Object),
        (status = 401, description = "missing or wrong token", body = ErrorBody),
        (status = 403, description = "no token configured, or a Host not allowed on loopback", body = ErrorBody),
        (status = 404, description = "no continuous learner on this sensor", body = ErrorBody),
        (status = 409, description = "a cycle is running", body = ErrorBody),
        (status = 422, description = "nothing to train on (reason named)", body = ErrorBody)
    )
)]
pub async fn train_now(
    State(state): State<ApiState>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let l = learner(&state)?;
    let r = tokio::task::spawn_blocking(move || l.train_now())
        .await
        .map_err(|e| ApiError::internal(format!("learner task failed: {e}")))?;
    match r {
        Ok(()) => Ok((
            StatusCode::ACCEPTED,
            Json(json!({"message": "Training cycle started", "status": "in_progress"})),
        )),
        Err(e @ TrainNowError::Busy) => Err(ApiError::new(StatusCode::CONFLICT, e.to_string())),
        Err(e @ TrainNowError::NothingToTrain(_)) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            e.to_string(),
        )),
        Err(e @ TrainNowError::Failed(_)) => Err(ApiError::internal(e.to_string())),
    }
}

#[derive(Serialize)]
pub struct Toggle {
    pub state: &'static str,
    /// False when the learner already was in the requested state.
    pub changed: bool,
}

#[utoipa::path(
    post,
    path = "/learning/start",
    tag = "learning",
    summary = "Start interval cycles",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "learner state and whether it changed", body = Object),
        (status = 401, description = "missing or wrong token", body = ErrorBody),
        (status = 403, description = "no token configured, or a Host not allowed on loopback", body = ErrorBody),
        (status = 404, description = "no continuous learner on this sensor", body = ErrorBody)
    )
)]
pub async fn start(State(state): State<ApiState>) -> Result<Json<Toggle>, ApiError> {
    let l = learner(&state)?;
    let changed = l.start();
    Ok(Json(Toggle {
        state: if l.is_training() {
            "training"
        } else {
            "active"
        },
        changed,
    }))
}

#[utoipa::path(
    post,
    path = "/learning/stop",
    tag = "learning",
    summary = "Stop interval cycles",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "learner state and whether it changed", body = Object),
        (status = 401, description = "missing or wrong token", body = ErrorBody),
        (status = 403, description = "no token configured, or a Host not allowed on loopback", body = ErrorBody),
        (status = 404, description = "no continuous learner on this sensor", body = ErrorBody)
    )
)]
pub async fn stop(State(state): State<ApiState>) -> Result<Json<Toggle>, ApiError> {
    let l = learner(&state)?;
    let changed = l.stop();
    Ok(Json(Toggle {
        state: "inactive",
        changed,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// How many cycles, newest first.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

#[utoipa::path(
    get,
    path = "/learning/history",
    tag = "learning",
    summary = "The newest training cycles",
    params(HistoryQuery),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "total cycles and the newest ones", body = Object),
        (status = 400, description = "a bad parameter, named", body = ErrorBody),
        (status = 404, description = "no continuous learner on this sensor", body = ErrorBody)
    )
)]
pub async fn history(
    State(state): State<ApiState>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(20);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and 1000, got {limit}"
        )));
    }
    let l = learner(&state)?;
    let (total, cycles) = blocking(l, move |l| l.history(limit)).await?;
    Ok(Json(json!({"total_cycles": total, "history": cycles})))
}

#[utoipa::path(
    get,
    path = "/models",
    tag = "learning",
    summary = "Kept model versions",
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "versions", body = Object),
        (status = 404, description = "no continuous learner on this sensor", body = ErrorBody)
    )
)]
pub async fn models(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let l = learner(&state)?;
    let (current, versions) = blocking(l, |l| l.versions()).await?;
    let list: Vec<Value> = versions
        .into_iter()
        .rev()
        .map(|v| {
            let mut o = serde_json::to_value(&v).unwrap_or_default();
            o["active"] = json!(Some(v.version) == current);
            o
        })
        .collect();
    Ok(Json(json!({"current_version": current, "versions": list})))
}

#[utoipa::path(
    post,
    path = "/models/{version}/activate",
    tag = "learning",
    summary = "Serve a kept model version again (rollback)",
    params(("version" = u64, Path, minimum = 1, description = "model version")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the version now serving", body = Object),
        (status = 400, description = "a bad parameter, named", body = ErrorBody),
        (status = 401, description = "missing or wrong token", body = ErrorBody),
        (status = 403, description = "no token configured, or a Host not allowed on loopback", body = ErrorBody),
        (status = 404, description = "no such version, or no learner", body = ErrorBody),
        (status = 409, description = "conflicts with the sensor's state", body = ErrorBody)
    )
)]
pub async fn activate(
    State(state): State<ApiState>,
    Path(raw): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let version: u64 = raw.trim_start_matches('v').parse().map_err(|_| {
        ApiError::bad_request(format!(
            "bad model version {raw:?}: expected a number such as 3"
        ))
    })?;
    let l = learner(&state)?;
    let v = blocking(l, move |l| l.activate(version)).await?;
    Ok(Json(json!({"current_version": v.version, "version": v})))
}
