//! `[fleet]`: where the fleet server is, who this sensor is, which keys it trusts and which
//! channel it follows. Also the names of the subjects, streams and buckets ([`names`]) that
//! sensors, learner and operator commands share: one source of truth.
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The names on the server.
pub mod names {
    /// Stream of every sensor's labelled samples (`safelink.samples.<sensor>`).
    pub const SAMPLES_STREAM: &str = "SAFELINK_SAMPLES";
    pub const SAMPLES_SUBJECTS: &str = "safelink.samples.>";
    /// Stream of alert summaries (`safelink.alerts.<sensor>`).
    pub const ALERTS_STREAM: &str = "SAFELINK_ALERTS";
    pub const ALERTS_SUBJECTS: &str = "safelink.alerts.>";
    /// KV bucket of the signed bundles: keys `stable`, `canary` (what sensors watch) and
    /// `v<N>` (every published version, for promote and rollback).
    pub const MODELS_BUCKET: &str = "safelink_models";
    /// KV bucket of the sensors' heartbeats (key: sensor id).
    pub const SENSORS_BUCKET: &str = "safelink_sensors";
    /// KV bucket of the learner lease (key [`LEASE_KEY`]).
    pub const LEASE_BUCKET: &str = "safelink_lease";
    pub const LEASE_KEY: &str = "learner";
    /// Object store of the model files (history).
    pub const MODEL_FILES: &str = "safelink_model_files";
    /// The learner's durable consumer on [`SAMPLES_STREAM`].
    pub const LEARNER_CONSUMER: &str = "safelink-learner";

    pub fn samples_subject(sensor: &str) -> String {
        format!("safelink.samples.{sensor}")
    }
    pub fn alerts_subject(sensor: &str) -> String {
        format!("safelink.alerts.{sensor}")
    }
    /// The KV key of published version `v`.
    pub fn version_key(v: u64) -> String {
        format!("v{v}")
    }
}

/// Which published models a sensor follows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// Models the operator promoted.
    #[default]
    Stable,
    /// Every model the learner accepted, first.
    Canary,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Stable => "stable",
            Channel::Canary => "canary",
        }
    }
}

/// The `[fleet]` section.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FleetSection {
    /// `nats://HOST:PORT` (or `tls://`); unset = not in a fleet. `safelink run --fleet URL`.
    pub url: Option<String>,
    /// This sensor's name on the server: letters, digits, `-` and `_` (default: the hostname,
    /// other characters replaced by `-`).
    pub sensor_id: Option<String>,
    /// NATS credentials file (`.creds`: user JWT + nkey seed) for this sensor.
    pub credentials: Option<PathBuf>,
    /// Public keys (hex ed25519) whose signatures are trusted: two, so a key can rotate.
    pub trusted_keys: Vec<String>,
    pub channel: Channel,
    /// Manifests of another fleet are refused.
    pub fleet_id: String,
    /// Most messages waiting on disk for the server; beyond it new ones are dropped, counted.
    pub buffer_max_messages: u64,
    /// Seconds between heartbeats.
    pub heartbeat_s: u64,
    /// CA file for `tls://` servers (system roots otherwise).
    pub tls_ca: Option<PathBuf>,
}

impl Default for FleetSection {
    fn default() -> Self {
        FleetSection {
            url: None,
            sensor_id: None,
            credentials: None,
            trusted_keys: Vec::new(),
            channel: Channel::Stable,
            fleet_id: "safelink".into(),
            buffer_max_messages: 100_000,
            heartbeat_s: 10,
            tls_ca: None,
        }
    }
}

impl std::fmt::Debug for FleetSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetSection")
            .field("url", &self.url)
            .field("sensor_id", &self.sensor_id)
            .field("channel", &self.channel)
            .field("trusted_keys", &self.trusted_keys.len())
            .finish_non_exhaustive()
    }
}

/// The most trusted keys at once (the current one and the next).
pub const MAX_TRUSTED_KEYS: usize = 2;

impl FleetSection {
    pub fn enabled(&self) -> bool {
        self.url.as_deref().is_some_and(|u| !u.is_empty())
    }

    /// The sensor id: configured, else the hostname, made a valid subject token.
    pub fn sensor_id(&self) -> String {
        let raw = self.sensor_id.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        });
        let id: String = raw
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        if id.is_empty() { "sensor".into() } else { id }
    }

    /// Checks what a fleet sensor needs: at most two trusted keys, each valid.
    pub fn validate(&self) -> Result<(), String> {
        if self.trusted_keys.len() > MAX_TRUSTED_KEYS {
            return Err(format!(
                "[fleet] trusted_keys: at most {MAX_TRUSTED_KEYS} keys (current and next), got {}",
                self.trusted_keys.len()
            ));
        }
        for k in &self.trusted_keys {
            super::manifest::parse_public_key(k)
                .map_err(|e| format!("[fleet] trusted_keys: {e}"))?;
        }
        if self.enabled() && self.trusted_keys.is_empty() {
            return Err(
                "[fleet] trusted_keys: a fleet sensor needs the learner's public key \
                        (safelink fleet keygen prints it)"
                    .into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensor_id_is_a_subject_token() {
        let f = FleetSection {
            sensor_id: Some("edge 1.example".into()),
            ..FleetSection::default()
        };
        assert_eq!(f.sensor_id(), "edge-1-example");
        assert!(!FleetSection::default().sensor_id().is_empty());
    }

    #[test]
    fn keys_are_checked() {
        let mut f = FleetSection {
            url: Some("nats://127.0.0.1:4222".into()),
            ..FleetSection::default()
        };
        assert!(
            f.validate()
                .unwrap_err()
                .contains("needs the learner's public key")
        );
        f.trusted_keys = vec!["zz".into()];
        assert!(f.validate().unwrap_err().contains("trusted_keys"));
        f.trusted_keys = vec!["00".repeat(32); 3];
        assert!(f.validate().unwrap_err().contains("at most 2"));
    }
}
