//! `[api]`: the HTTP API's listen address and token.
use std::net::SocketAddr;

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
}

/// Never prints the token (logs, panics and `{:?}` of the configuration).
impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("allowed_hosts", &self.allowed_hosts)
            .finish()
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: crate::api::DEFAULT_LISTEN,
            token: None,
            allowed_hosts: Vec::new(),
        }
    }
}
