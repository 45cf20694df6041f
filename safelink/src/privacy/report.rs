//! `GET /privacy/report` and `safelink privacy report`: what is stored, in which form, for
//! how long, and how much of it there is. Never shows the key.
use serde::Serialize;

use super::{IpMode, Policy, RetentionAges};
use crate::store::{AlertTree, Store, StoreError, TreeCounts};

/// Oldest record (`timestamp`, RFC 3339) per tree.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Oldest {
    pub alerts: Option<String>,
    pub archive: Option<String>,
    pub samples: Option<String>,
}

/// The privacy report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// `none`, `truncate` or `keyed-hash`.
    pub ip_mode: &'static str,
    /// How an address is written under `ip_mode`.
    pub ip_form: String,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    pub hash_macs: bool,
    /// Whether a keyed-hash secret is configured (the key itself is never shown).
    pub key_configured: bool,
    /// Where the anonymisation applies.
    pub applies_to: [&'static str; 5],
    /// Retention per tree in days (0 = kept forever).
    pub retention_days: RetentionAges,
    /// Seconds between the daemon's retention sweeps (0 = none).
    pub retention_interval_s: u64,
    /// Records stored per tree.
    pub stored: TreeCounts,
    pub oldest: Oldest,
    pub payloads: &'static str,
    pub deletion: &'static str,
}

/// The report for `store` under `policy`.
pub fn report(store: &Store, policy: &Policy) -> Result<Report, StoreError> {
    let ip_form = match policy.mode() {
        IpMode::None => "addresses as seen".to_string(),
        IpMode::Truncate => format!(
            "IPv4 truncated to /{}, IPv6 to /{} (host bits zero)",
            policy.ipv4_prefix(),
            policy.ipv6_prefix()
        ),
        IpMode::KeyedHash => "HMAC-SHA256 with the configured key: IPv4 as an address in \
                              240.0.0.0/4, IPv6 in fd00::/8; stable for the same key"
            .to_string(),
    };
    Ok(Report {
        ip_mode: policy.mode().as_str(),
        ip_form,
        ipv4_prefix: policy.ipv4_prefix(),
        ipv6_prefix: policy.ipv6_prefix(),
        hash_macs: policy.hash_macs(),
        key_configured: policy.key_configured(),
        applies_to: ["alerts", "archive", "samples", "exports", "logs"],
        retention_days: policy.ages(),
        retention_interval_s: policy.retention_interval_s(),
        stored: store.tree_counts()?,
        oldest: Oldest {
            alerts: store.oldest(AlertTree::Active)?.map(|t| t.to_string()),
            archive: store.oldest(AlertTree::Archive)?.map(|t| t.to_string()),
            samples: store.oldest_sample()?,
        },
        payloads: "never stored: alerts carry addresses, ports, counters and flow features, \
                   no packet payload bytes",
        deletion: "DELETE /privacy/subject?ip=...|mac=... (or `safelink privacy forget` on a \
                   stopped store) deletes alerts, archived alerts and training samples about a \
                   subject; a model already trained on deleted samples stays until the next \
                   training cycle, which no longer sees them",
    })
}
