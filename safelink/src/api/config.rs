//! `[api]`: the HTTP API's listen address and token, its limits (connections, request body
//! size) and where `POST /model/load` may read model files from (and how large they may be).
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// `[api]`: the HTTP API and dashboard.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Listen address (default 127.0.0.1:8000). Any other address needs a token.
    pub listen: SocketAddr,
    /// Bearer token for state-changing calls (and all calls off loopback). Prefer the
    /// `SAFELINK_API_TOKEN` environment variable to writing it here.
    pub token: Option<String>,
    /// Host names the API answers to on loopback besides IP addresses and `localhost` (DNS
    /// rebinding protection: any other `Host` gets 403).
    pub allowed_hosts: Vec<String>,
    /// Most connections served at once; a connection beyond it gets one
    /// `503 Service Unavailable` JSON answer (`Retry-After: 1`) and is closed.
    pub max_connections: usize,
    /// Largest request body accepted, bytes; a larger one gets `413` JSON.
    pub max_body_bytes: usize,
    /// The only directory `POST /model/load` reads model files from (relative paths are
    /// taken in it; `..` and symlinks leading out of it are refused). Unset:
    /// `<data_dir>/models`, the continuous learner's model directory.
    pub model_dir: Option<PathBuf>,
    /// Largest model file `POST /model/load` reads, bytes.
    pub max_model_bytes: u64,
}

/// Never prints the token (logs, panics and `{:?}` of the configuration).
impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("allowed_hosts", &self.allowed_hosts)
            .field("max_connections", &self.max_connections)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("model_dir", &self.model_dir)
            .field("max_model_bytes", &self.max_model_bytes)
            .finish()
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: crate::api::DEFAULT_LISTEN,
            token: None,
            allowed_hosts: Vec::new(),
            max_connections: 256,
            // 10 000 archive ids (the most one call takes) fit.
            max_body_bytes: 256 * 1024,
            model_dir: None,
            max_model_bytes: crate::ann::model::DEFAULT_MAX_MODEL_BYTES,
        }
    }
}

impl ApiConfig {
    /// The directory `POST /model/load` reads from: `model_dir`, else `<data_dir>/models`.
    pub fn model_dir(&self, data_dir: &Path) -> PathBuf {
        self.model_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("models"))
    }
}
