//! `GET /status` (sensor snapshot plus store counts) and `POST /sniffer/start|stop`.
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;

use super::control::ControlError;
use super::error::ErrorBody;
use super::{ApiError, ApiState, blocking};
use crate::alert::AlertSource;
use crate::store::StoreHealth;

#[derive(Serialize)]
pub struct StatusBody {
    pub sniffer_running: bool,
    pub interface: Option<String>,
    pub xdp_mode: Option<String>,
    pub uptime_secs: u64,
    pub packets: u64,
    pub flows: u64,
    /// Active plus archived.
    pub total_alerts: u64,
    pub active_alerts: u64,
    pub archived_alerts: u64,
    pub latest_alert_time: Option<String>,
    pub detection_sources: Vec<AlertSource>,
    pub ringbuf_events: u64,
    pub ringbuf_drops: u64,
    /// Store health: `ok` / `degraded` with the last error, dropped and queued alerts, size.
    pub store: StoreHealth,
    /// `ok`, or `degraded` when a stage of the daemon stopped (listed in `degraded_stages`).
    pub health: &'static str,
    pub degraded_stages: Vec<crate::daemon::stages::DegradedStage>,
    /// The ANN's phase (absent without an ANN model): `baseline` or `live`.
    pub ann: Option<AnnPhase>,
}

/// `/status`'s `ann` object.
#[derive(Serialize)]
pub struct AnnPhase {
    /// `baseline` (scores every flow, learns this host, raises no ANN alert) or `live`.
    pub phase: &'static str,
    /// Last local check: share of held-out local flows the serving model flags.
    pub local_fpr: Option<f64>,
    pub local_heldout_flows: u64,
    /// Flows scored during the baseline (this run).
    pub baseline_flows_seen: u64,
    pub baseline_ends: Option<String>,
    pub reason: Option<String>,
}

/// The ANN's phase: the learner's, else live when a model serves without one.
async fn ann_phase(state: &ApiState) -> Option<AnnPhase> {
    match state.learner.clone() {
        Some(l) => {
            let st = tokio::task::spawn_blocking(move || l.status())
                .await
                .ok()?
                .ok()?;
            Some(AnnPhase {
                phase: st.phase,
                local_fpr: st.local_fpr,
                local_heldout_flows: st.local_heldout_flows,
                baseline_flows_seen: st.baseline_flows_seen,
                baseline_ends: st.baseline_ends,
                reason: st.baseline_reason,
            })
        }
        None => state.model.as_ref().map(|_| AnnPhase {
            phase: crate::learn::Phase::Live.as_str(),
            local_fpr: None,
            local_heldout_flows: 0,
            baseline_flows_seen: 0,
            baseline_ends: None,
            reason: Some("no continuous learner: no local baseline".into()),
        }),
    }
}

#[utoipa::path(
    get,
    path = "/status",
    tag = "sensor",
    summary = "Sniffer state, interface, uptime, counters",
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "status", body = Object)
    )
)]
pub async fn status(State(state): State<ApiState>) -> Result<Json<StatusBody>, ApiError> {
    let (counts, health) = blocking(&state, |s| Ok((s.counts_or_last()?, s.health()))).await?;
    let s = state.sensor.status();
    let ann = ann_phase(&state).await;
    Ok(Json(StatusBody {
        sniffer_running: s.running,
        interface: s.interface,
        xdp_mode: s.xdp_mode,
        uptime_secs: s.uptime_secs,
        packets: s.packets,
        flows: s.flows,
        total_alerts: counts.active + counts.archived,
        active_alerts: counts.active,
        archived_alerts: counts.archived,
        latest_alert_time: counts.latest_alert.map(|t| t.to_string()),
        detection_sources: s.detection_sources,
        ringbuf_events: s.ringbuf_events,
        ringbuf_drops: s.ringbuf_drops,
        store: health,
        health: if s.degraded.is_empty() {
            "ok"
        } else {
            "degraded"
        },
        degraded_stages: s.degraded,
        ann,
    }))
}

#[derive(Serialize)]
pub struct SnifferBody {
    pub running: bool,
    /// False when the sniffer already was in the requested state.
    pub changed: bool,
}

fn control_error(action: &str, e: ControlError) -> ApiError {
    match e {
        ControlError::Conflict(m) => ApiError::new(
            StatusCode::CONFLICT,
            format!("cannot {action} the sniffer: {m}"),
        ),
        ControlError::Failed(m) => ApiError::internal(format!("sniffer {action} failed: {m}")),
    }
}

#[utoipa::path(
    post,
    path = "/sniffer/start",
    tag = "sensor",
    summary = "Attach the programs",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "sniffer state and whether it changed", body = Object),
        (status = 401, description = "missing or wrong token", body = ErrorBody),
        (status = 403, description = "no token configured, or a Host not allowed on loopback", body = ErrorBody),
        (status = 409, description = "conflicts with the sensor's state", body = ErrorBody)
    )
)]
pub async fn start(State(state): State<ApiState>) -> Result<Json<SnifferBody>, ApiError> {
    let changed = state
        .sensor
        .start()
        .await
        .map_err(|e| control_error("start", e))?;
    Ok(Json(SnifferBody {
        running: state.sensor.status().running,
        changed,
    }))
}

#[utoipa::path(
    post,
    path = "/sniffer/stop",
    tag = "sensor",
    summary = "Detach the programs",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "sniffer state and whether it changed", body = Object),
        (status = 401, description = "missing or wrong token", body = ErrorBody),
        (status = 403, description = "no token configured, or a Host not allowed on loopback", body = ErrorBody),
        (status = 409, description = "conflicts with the sensor's state", body = ErrorBody)
    )
)]
pub async fn stop(State(state): State<ApiState>) -> Result<Json<SnifferBody>, ApiError> {
    let changed = state
        .sensor
        .stop()
        .await
        .map_err(|e| control_error("stop", e))?;
    Ok(Json(SnifferBody {
        running: state.sensor.status().running,
        changed,
    }))
}
