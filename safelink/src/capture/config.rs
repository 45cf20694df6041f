//! `[sensor]`: where and how the XDP program attaches.
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::loader::AttachMode;

/// `[sensor]`: where and how the XDP program attaches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SensorConfig {
    /// Interface to attach to; empty = the interface of the default route.
    pub iface: Option<String>,
    /// `auto` (native where the driver supports it, else SKB), `native` or `skb`.
    pub xdp_mode: AttachMode,
    /// Also watch the host's own outgoing frames (TC egress hook), so flows have both
    /// directions. Without it the sensor sees only what the interface receives.
    pub egress: bool,
    /// bpffs directory of the pinned maps (reused across restarts).
    pub pin_dir: PathBuf,
    /// Seconds between sweeps of the kernel flow map.
    pub sweep_interval_s: u64,
    /// Seconds between status lines in the log (0 = never).
    pub status_interval_s: u64,
}

impl Default for SensorConfig {
    fn default() -> Self {
        Self {
            iface: None,
            xdp_mode: AttachMode::Auto,
            egress: true,
            pin_dir: PathBuf::from(crate::capture::DEFAULT_PIN_DIR),
            sweep_interval_s: 1,
            status_interval_s: 60,
        }
    }
}
