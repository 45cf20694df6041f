//! `[privacy]`: address forms and retention ages.
use serde::{Deserialize, Serialize};

/// `[privacy]`: how addresses are written and how long data is kept (see
/// [`crate::privacy`]). Retention ages are in days; 0 keeps that data forever.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrivacyConfig {
    /// `none` (default), `truncate` or `keyed-hash`.
    pub ip_mode: crate::privacy::IpMode,
    /// Prefix kept by `truncate` for IPv4 (default 24).
    pub ipv4_prefix: u8,
    /// Prefix kept by `truncate` for IPv6 (default 48).
    pub ipv6_prefix: u8,
    /// Hash MAC addresses with the key (default false; needs a key).
    pub hash_macs: bool,
    /// Secret of `keyed-hash` and `hash_macs` (at least 16 bytes). Prefer the
    /// `SAFELINK_PRIVACY_KEY` environment variable to writing it here.
    pub key: Option<String>,
    /// Active alerts whose last evidence is older than this are deleted (default 90).
    pub alert_retention_days: u64,
    /// Archived alerts whose last evidence is older than this are deleted (default 365).
    pub archive_retention_days: u64,
    /// Training samples older than this are deleted (default 30).
    pub sample_retention_days: u64,
    /// Seconds between retention sweeps of the daemon (default 3600; the first runs at start;
    /// 0 = no sweeps).
    pub retention_interval_s: u64,
}

/// Never prints the key (logs, panics and `{:?}` of the configuration).
impl std::fmt::Debug for PrivacyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivacyConfig")
            .field("ip_mode", &self.ip_mode)
            .field("ipv4_prefix", &self.ipv4_prefix)
            .field("ipv6_prefix", &self.ipv6_prefix)
            .field("hash_macs", &self.hash_macs)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("alert_retention_days", &self.alert_retention_days)
            .field("archive_retention_days", &self.archive_retention_days)
            .field("sample_retention_days", &self.sample_retention_days)
            .field("retention_interval_s", &self.retention_interval_s)
            .finish()
    }
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        Self {
            ip_mode: crate::privacy::IpMode::None,
            ipv4_prefix: 24,
            ipv6_prefix: 48,
            hash_macs: false,
            key: None,
            alert_retention_days: 90,
            archive_retention_days: 365,
            sample_retention_days: 30,
            retention_interval_s: 3600,
        }
    }
}
