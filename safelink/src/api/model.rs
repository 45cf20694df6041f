//! `GET /model` (the ANN model serving now: version, metadata, metrics, generation) and
//! `POST /model/load` (token; body `{"path": "..."}`): validates the file first, then swaps it
//! in atomically. On any failure the answer is a 4xx JSON error and the old model keeps
//! serving.
use std::path::PathBuf;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::error::ApiJson;
use super::{ApiError, ApiState};
use crate::ann::{ModelError, ModelHandle, ModelInfo};

#[derive(Serialize)]
pub struct ModelBody {
    /// 1 for the model the daemon started with, +1 per successful load.
    pub generation: u64,
    pub model: ModelInfo,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadRequest {
    /// Model file on the sensor's file system.
    pub path: PathBuf,
}

fn handle(state: &ApiState) -> Result<&ModelHandle, ApiError> {
    state
        .model
        .as_ref()
        .ok_or_else(|| ApiError::not_found("no ANN model is configured on this sensor"))
}

pub async fn get(State(state): State<ApiState>) -> Result<Json<ModelBody>, ApiError> {
    let m = handle(&state)?.current();
    Ok(Json(ModelBody {
        generation: m.generation,
        model: m.info.clone(),
    }))
}

pub async fn load(
    State(state): State<ApiState>,
    ApiJson(req): ApiJson<LoadRequest>,
) -> Result<Json<ModelBody>, ApiError> {
    let h = handle(&state)?.clone();
    if state.learner.is_some() {
        // The learner's versions and history must name what serves.
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "the continuous learner manages the model on this sensor: roll back with \
             POST /models/{version}/activate, or run without [learning] to load files",
        ));
    }
    if req.path.as_os_str().is_empty() {
        return Err(ApiError::bad_request("`path` must not be empty"));
    }
    let path = req.path.clone();
    let res = tokio::task::spawn_blocking(move || h.load_and_install(&path))
        .await
        .map_err(|e| ApiError::internal(format!("model load task failed: {e}")))?;
    match res {
        Ok((info, generation)) => {
            tracing::info!(path = %req.path.display(), generation, model_version = %info.model_version, "ANN model loaded");
            Ok(Json(ModelBody {
                generation,
                model: info,
            }))
        }
        Err(e) => {
            tracing::warn!(path = %req.path.display(), "ANN model refused: {e}");
            let status = match e {
                ModelError::Read { .. } => StatusCode::BAD_REQUEST,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            Err(ApiError::new(
                status,
                format!("model refused, the current model keeps serving: {e}"),
            ))
        }
    }
}
