//! `[store]`: the data directory, the EVE log, the size cap and the alert sink's group commit.
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[store]`: where alerts live.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    pub data_dir: PathBuf,
    /// Also append every new alert to this file as an EVE JSON line (Suricata's eve.json
    /// form); SIGHUP reopens it. Unset: no EVE file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eve_log: Option<PathBuf>,
    /// Cap on the store's size on disk: above it the oldest alerts are deleted, a tenth at a
    /// time. 0 = no cap.
    pub max_bytes: u64,
    /// Group commit: the sink flushes (fsyncs) new alerts at most this many ms after the
    /// first unflushed one...
    pub commit_interval_ms: u64,
    /// ...or as soon as this many writes wait, whichever comes first.
    pub commit_max_alerts: usize,
}

impl StoreConfig {
    /// Default cap on the size on disk: 1 GiB (a few hundred thousand alerts).
    pub const MAX_BYTES: u64 = 1 << 30;
    /// Default longest wait before a new alert is durable: 50 ms.
    pub const COMMIT_INTERVAL_MS: u64 = 50;
    /// Default most writes per fsync.
    pub const COMMIT_MAX_ALERTS: usize = 256;
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("/var/lib/safelink"),
            eve_log: None,
            max_bytes: Self::MAX_BYTES,
            commit_interval_ms: Self::COMMIT_INTERVAL_MS,
            commit_max_alerts: Self::COMMIT_MAX_ALERTS,
        }
    }
}
