//! Privacy and data lifecycle. Owns the anonymisation policy applied at every write boundary
//! (alert sink, and through the store the archive and the exports; the sink's log line too),
//! the retention sweep (deleting alerts, archived alerts and training samples older than the
//! configured ages), deletion on request of everything stored about one IP or MAC address,
//! and the report of what is stored, for how long and in which form.
//!
//! Detection always runs on the real addresses in memory; only what is written (store,
//! logs, exports, `analyze --store`) passes through [`Policy::apply`]. No packet payload is
//! stored anywhere: an [`crate::alert::Alert`] carries addresses, ports, counters and flow
//! features only.
//!
//! Modes (`[privacy] ip_mode`):
//! - `none`: addresses stored as seen.
//! - `truncate`: host bits zeroed (`ipv4_prefix`, default /24; `ipv6_prefix`, default /48).
//! - `keyed-hash`: HMAC-SHA256 with a secret key (`SAFELINK_PRIVACY_KEY`, else `[privacy]
//!   key`), mapped into reserved space so a hashed address can never be mistaken for a real
//!   one: IPv4 → 240.0.0.0/4 (28 bits of the HMAC), IPv6 → fd00::/8 (120 bits). The same key
//!   gives the same form, so one attacker still aggregates across alerts and restarts.
//!
//! With `hash_macs = true` MAC addresses are hashed with the same key into a locally
//! administered unicast MAC (`x2:..`).
pub mod anonymize;
pub mod config;
pub mod forget;
pub mod report;
pub mod retention;

pub use anonymize::{Addr, Policy, addresses, format_mac, parse_mac};
pub use forget::{Subject, SubjectError, forget, is_about};
pub use report::{Report, report};
pub use retention::{RetentionAges, run_periodic, sweep};

use serde::{Deserialize, Serialize};

/// Environment variable holding the keyed-hash secret (preferred to `[privacy] key`).
pub const KEY_ENV: &str = "SAFELINK_PRIVACY_KEY";

/// Shortest accepted key, in bytes: a short key lets anyone who guesses it reverse the
/// hashes by trying every address.
pub const MIN_KEY_LEN: usize = 16;

/// How IP addresses are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IpMode {
    /// As seen.
    #[default]
    None,
    /// Network prefix only (host bits zeroed).
    Truncate,
    /// HMAC-SHA256 with the configured key, as an address in reserved space.
    KeyedHash,
}

impl IpMode {
    pub fn as_str(self) -> &'static str {
        match self {
            IpMode::None => "none",
            IpMode::Truncate => "truncate",
            IpMode::KeyedHash => "keyed-hash",
        }
    }
}

/// A `[privacy]` section the sensor refuses to start with.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PrivacyError {
    #[error(
        "[privacy] ip_mode = \"keyed-hash\" (or hash_macs = true) needs a key: set \
         SAFELINK_PRIVACY_KEY (or [privacy] key) to a secret of at least {MIN_KEY_LEN} bytes"
    )]
    MissingKey,
    #[error(
        "[privacy] key is {0} bytes: at least {MIN_KEY_LEN} are needed so the hashes cannot be \
         reversed by guessing the key"
    )]
    ShortKey(usize),
    #[error("[privacy] ipv4_prefix = {0}: must be 0..=32")]
    Ipv4Prefix(u8),
    #[error("[privacy] ipv6_prefix = {0}: must be 0..=128")]
    Ipv6Prefix(u8),
}
