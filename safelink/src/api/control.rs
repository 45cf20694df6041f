//! What the API needs from the daemon: a sensor status snapshot and start/stop of the
//! sniffer (attach/detach the XDP program), behind the [`SensorControl`] trait.
use std::future::Future;
use std::pin::Pin;

use serde::Serialize;

use crate::alert::AlertSource;

/// A snapshot of the sniffer for `GET /status`; the daemon fills it from its counters.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SensorStatus {
    /// The XDP program is attached and records flow.
    pub running: bool,
    pub interface: Option<String>,
    /// "native", "skb" (XDP modes) or "tc" (the TC classifier on ingress); `None` when not
    /// attached.
    pub xdp_mode: Option<String>,
    pub uptime_secs: u64,
    pub packets: u64,
    /// Flows currently tracked.
    pub flows: u64,
    /// Ring-buffer events received and events the kernel dropped (ring buffer full).
    pub ringbuf_events: u64,
    pub ringbuf_drops: u64,
    /// Detectors feeding alerts (`dfa`, `ann`).
    pub detection_sources: Vec<AlertSource>,
    /// Stages of the daemon that stopped on their own (the daemon is shutting down).
    pub degraded: Vec<crate::daemon::stages::DegradedStage>,
}

/// Why a start/stop was not done.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Not possible in the current state (e.g. no interface configured): HTTP 409.
    #[error("{0}")]
    Conflict(String),
    /// Attaching or detaching failed: HTTP 500.
    #[error("{0}")]
    Failed(String),
}

/// Result of a start/stop: `Ok(true)` if the state changed, `Ok(false)` if the sniffer was
/// already in the requested state.
pub type ControlFuture<'a> = Pin<Box<dyn Future<Output = Result<bool, ControlError>> + Send + 'a>>;

/// The daemon's side of the API. `status` must be cheap (it is called on every
/// `GET /status`); `start`/`stop` may take their time (`Box::pin(async move { ... })`).
pub trait SensorControl: Send + Sync + 'static {
    fn status(&self) -> SensorStatus;
    fn start(&self) -> ControlFuture<'_>;
    fn stop(&self) -> ControlFuture<'_>;
}
