//! `[store]`: the data directory and the EVE log.
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
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("/var/lib/safelink"),
            eve_log: None,
        }
    }
}
