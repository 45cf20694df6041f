//! `GET /model` (the ANN model serving now: version, metadata, metrics, generation) and
//! `POST /model/load` (token; body `{"path": "..."}`): validates the file first, then swaps it
//! in atomically. On any failure the answer is a 4xx JSON error and the old model keeps
//! serving.
//!
//! The file must be in the models directory (`[api] model_dir`, default
//! `<data_dir>/models`): a relative path is taken in it, and a path leading out of it (`..`,
//! an absolute path elsewhere, a symbolic link) is refused with 403 before anything is
//! opened. Files larger than `[api] max_model_bytes` are refused while reading. Errors name
//! the path as the caller gave it and never carry the operating system's error text.
use std::path::{Component, Path, PathBuf};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiJson, ErrorBody};
use super::{ApiError, ApiState};
use crate::ann::{ModelError, ModelHandle, ModelInfo};

#[derive(Serialize)]
pub struct ModelBody {
    /// 1 for the model the daemon started with, +1 per successful load.
    pub generation: u64,
    pub model: ModelInfo,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadRequest {
    /// Model file in the models directory (relative to it, or absolute inside it).
    #[schema(value_type = String)]
    pub path: PathBuf,
}

fn handle(state: &ApiState) -> Result<&ModelHandle, ApiError> {
    state
        .model
        .as_ref()
        .ok_or_else(|| ApiError::not_found("no ANN model is configured on this sensor"))
}

#[utoipa::path(
    get,
    path = "/model",
    tag = "model",
    summary = "The ANN model serving now",
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "model info and generation", body = Object),
        (status = 404, description = "no ANN model on this sensor", body = ErrorBody)
    )
)]
pub async fn get(State(state): State<ApiState>) -> Result<Json<ModelBody>, ApiError> {
    let m = handle(&state)?.current();
    Ok(Json(ModelBody {
        generation: m.generation,
        model: m.info.clone(),
    }))
}

#[utoipa::path(
    post,
    path = "/model/load",
    tag = "model",
    summary = "Validate a model file from the models directory and swap it in",
    request_body = LoadRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the new model", body = Object),
        (status = 400, description = "no such file, or unreadable", body = ErrorBody),
        (status = 401, description = "missing or wrong token", body = ErrorBody),
        (status = 403, description = "the path leads out of the models directory", body = ErrorBody),
        (status = 404, description = "no ANN model on this sensor", body = ErrorBody),
        (status = 409, description = "the learner manages the model, or no models directory", body = ErrorBody),
        (status = 413, description = "body over [api] max_body_bytes", body = ErrorBody),
        (status = 415, description = "body is not application/json", body = ErrorBody),
        (status = 422, description = "model refused (reason named), or a body of the wrong shape", body = ErrorBody)
    )
)]
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
    let dir = state.limits.model_dir.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "no models directory is configured on this sensor ([api] model_dir)",
        )
    })?;
    let max_bytes = state.limits.max_model_bytes;
    let requested = req.path.clone();
    let res = tokio::task::spawn_blocking(move || {
        let path = confine(&dir, &requested)?;
        h.load_and_install_capped(&path, max_bytes)
            .map_err(|e| refused(&requested, e))
    })
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
            tracing::warn!(path = %req.path.display(), "ANN model refused: {}", e.message);
            Err(e)
        }
    }
}

/// The file `requested` names in the models directory `dir`, symbolic links resolved:
/// relative paths are taken in `dir`; `..`, absolute paths elsewhere and links leading out
/// of `dir` are refused (403), a missing file is 400. Nothing outside `dir` is opened, and
/// no operating-system error text reaches the answer.
fn confine(dir: &Path, requested: &Path) -> Result<PathBuf, ApiError> {
    let shown = requested.display();
    let forbidden = |msg: String| ApiError::new(StatusCode::FORBIDDEN, msg);
    let where_ = format!("the models directory {} ([api] model_dir)", dir.display());
    if requested
        .components()
        .any(|c| matches!(c, Component::ParentDir))
    {
        return Err(forbidden(format!(
            "model path {shown:?} contains \"..\": models are loaded only from {where_}"
        )));
    }
    let root = dir.canonicalize().map_err(|_| {
        ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "the models directory {} does not exist on this sensor ([api] model_dir)",
                dir.display()
            ),
        )
    })?;
    let joined = dir.join(requested);
    if !(joined.starts_with(dir) || joined.starts_with(&root)) {
        return Err(forbidden(format!(
            "model path {shown:?} is not in {where_}"
        )));
    }
    let real = joined.canonicalize().map_err(|e| {
        ApiError::bad_request(match e.kind() {
            std::io::ErrorKind::NotFound => {
                format!("no model file {shown:?} in the models directory")
            }
            _ => format!("cannot read model file {shown:?}"),
        })
    })?;
    if !real.starts_with(&root) {
        return Err(forbidden(format!(
            "model path {shown:?} leads out of {where_} through a symbolic link"
        )));
    }
    Ok(real)
}

/// The answer for a refused file (the path as the caller gave it; no OS error text).
fn refused(requested: &Path, e: ModelError) -> ApiError {
    let shown = requested.display();
    let (status, why) = match e {
        ModelError::Read { .. } => (
            StatusCode::BAD_REQUEST,
            format!("cannot read model file {shown:?}"),
        ),
        ModelError::NotAFile { .. } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{shown:?} is not a regular file"),
        ),
        ModelError::TooLarge { limit, .. } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{shown:?} is larger than {limit} bytes ([api] max_model_bytes)"),
        ),
        e => (StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    };
    ApiError::new(
        status,
        format!("model refused, the current model keeps serving: {why}"),
    )
}
