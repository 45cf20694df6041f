//! `[store]`: the data directory.
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[store]`: where alerts live.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    pub data_dir: PathBuf,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("/var/lib/safelink"),
        }
    }
}
