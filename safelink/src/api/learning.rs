//! The continuous learner over HTTP: `GET /learning/status`, `POST /learning/train-now`
//! (202, 409 while a cycle runs, 422 with the reason when there is nothing to train on),
//! `POST /learning/start|stop`, `GET /learning/history?limit=N`, `GET /models` and
//! `POST /models/{version}/activate` (manual rollback). 404 when the daemon runs without a
//! learner. POSTs need the token (see `auth.rs`).
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::error::ApiQuery;
use super::{ApiError, ApiState};
use crate::learn::{LearnError, Learner, LearningStatus, TrainNowError};

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

pub async fn status(State(state): State<ApiState>) -> Result<Json<LearningStatus>, ApiError> {
    let l = learner(&state)?;
    Ok(Json(blocking(l, |l| l.status()).await?))
}

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

pub async fn stop(State(state): State<ApiState>) -> Result<Json<Toggle>, ApiError> {
    let l = learner(&state)?;
    let changed = l.stop();
    Ok(Json(Toggle {
        state: "inactive",
        changed,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    pub limit: Option<usize>,
}

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
    Ok(Json(json!({"total_cycles": total, "cycles": cycles})))
}

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
