//! The daemon's configuration: one TOML file (`--config FILE`, else `./safelink.toml`, else
//! `/etc/safelink/safelink.toml`), overridden by `SAFELINK_*` environment variables and CLI
//! flags. Unknown keys are an error naming the key. `safelink config print` shows the result.
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::capture::loader::AttachMode;
use crate::detect::dfa::DfaConfig;

/// Serialises an `f32` by its shortest decimal form (`0.9`, not `0.8999999761581421`), so
/// `safelink config print` shows what was written.
pub fn f32_short<S: serde::Serializer>(v: &f32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(v.to_string().parse().unwrap_or(f64::from(*v)))
}

/// When a flow is considered finished and exported as a [`crate::record::FlowRecord`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowTimeouts {
    /// No packet for this long: the flow ends (default 60 s, Suricata's TCP new/closed timeout).
    pub idle: Duration,
    /// A flow older than this is exported and restarted (default 1800 s, nfstream's default).
    pub active: Duration,
    /// After the first FIN/RST, wait this long for the closing packets (default 2 s).
    pub closed_linger: Duration,
    /// A flow that is still only a SYN (or one UDP datagram) ends after this much silence
    /// (default 2 s), so failed connections and probes reach the detectors quickly.
    pub embryonic: Duration,
}

impl Default for FlowTimeouts {
    fn default() -> Self {
        FlowsConfig::default().timeouts()
    }
}

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

/// `[flows]`: flow expiry (seconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlowsConfig {
    pub idle_timeout_s: u64,
    pub active_timeout_s: u64,
    pub closed_linger_s: u64,
    pub embryonic_timeout_s: u64,
}

impl Default for FlowsConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl FlowsConfig {
    /// The defaults, written once: idle 60 s (Suricata's TCP new/closed timeout), active
    /// 1800 s (nfstream), closing linger 2 s, embryonic 2 s.
    pub const DEFAULT: Self = Self {
        idle_timeout_s: 60,
        active_timeout_s: 1800,
        closed_linger_s: 2,
        embryonic_timeout_s: 2,
    };

    pub fn timeouts(&self) -> FlowTimeouts {
        FlowTimeouts {
            idle: Duration::from_secs(self.idle_timeout_s),
            active: Duration::from_secs(self.active_timeout_s),
            closed_linger: Duration::from_secs(self.closed_linger_s),
            embryonic: Duration::from_secs(self.embryonic_timeout_s),
        }
    }
}

/// `[api]`: the HTTP API and dashboard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Listen address (default 127.0.0.1:8000). Any other address needs a token.
    pub listen: SocketAddr,
    /// Bearer token for state-changing calls (and all calls off loopback). Prefer the
    /// `SAFELINK_API_TOKEN` environment variable to writing it here.
    pub token: Option<String>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: crate::api::DEFAULT_LISTEN,
            token: None,
        }
    }
}

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

/// `[ann]`: the neural flow classifier.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnnSection {
    /// Off by default: the shipped base model was trained on public captures with few benign
    /// flows and flags ordinary SSH logins in the lab (models/README.md). Turn it on once it
    /// has been retrained on your own traffic.
    pub enabled: bool,
    /// ONNX model file. Unset: `models/base.onnx` (source tree, `cargo xtask run`), then
    /// `/usr/local/share/safelink/base.onnx` (`cargo xtask install`).
    pub model: Option<PathBuf>,
    #[serde(flatten)]
    pub detector: crate::ann::AnnConfig,
}

/// Where the model is looked for when `[ann] model` is unset.
pub const MODEL_SEARCH_PATH: &[&str] = &["models/base.onnx", "/usr/local/share/safelink/base.onnx"];

impl AnnSection {
    /// The model file to load: the configured one, else the first of [`MODEL_SEARCH_PATH`]
    /// that exists.
    pub fn model_path(&self) -> Option<PathBuf> {
        self.model.clone().or_else(|| {
            MODEL_SEARCH_PATH
                .iter()
                .map(PathBuf::from)
                .find(|p| p.exists())
        })
    }
}

/// `[privacy]`: how addresses are written and how long data is kept (see
/// [`crate::privacy`]). Retention ages are in days; 0 keeps that data forever.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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

/// The whole configuration file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub sensor: SensorConfig,
    pub flows: FlowsConfig,
    pub api: ApiConfig,
    pub store: StoreConfig,
    /// Thresholds and windows of the rule automata.
    pub dfa: DfaConfig,
    pub ann: AnnSection,
    /// The continuous learner and its profile.
    pub learning: crate::learn::LearningSection,
    /// Anonymisation and retention.
    pub privacy: PrivacyConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
}

/// Default search path when `--config` is not given.
pub const SEARCH_PATH: &[&str] = &["safelink.toml", "/etc/safelink/safelink.toml"];

impl Config {
    /// Parses a TOML document; unknown keys are an error that names the key.
    pub fn from_toml(text: &str, path: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// Loads `path`, or the first file of [`SEARCH_PATH`] that exists, or the defaults.
    /// Returns the config and the file it came from.
    pub fn load(path: Option<&Path>) -> Result<(Self, Option<PathBuf>), ConfigError> {
        Self::load_with(path, &[])
    }

    /// [`Config::load`], then any key overridden: first by `SAFELINK__SECTION__KEY=value`
    /// environment variables (`__` separates the levels, names are lower-cased), then by
    /// `overrides` (`section.key=value`, from `--set`). Values are TOML (`20`, `true`,
    /// `[22, 2222]`, `"text"`); a value that is not TOML is taken as a string. An unknown key is
    /// an error naming it and where the override came from.
    pub fn load_with(
        path: Option<&Path>,
        overrides: &[String],
    ) -> Result<(Self, Option<PathBuf>), ConfigError> {
        let chosen = match path {
            Some(p) => Some(p.to_path_buf()),
            None => SEARCH_PATH.iter().map(PathBuf::from).find(|p| p.exists()),
        };
        let (text, shown) = match &chosen {
            Some(p) => {
                let shown = p.display().to_string();
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: shown.clone(),
                    source,
                })?;
                (text, shown)
            }
            None => (String::new(), "built-in defaults".to_string()),
        };
        let mut sets: Vec<(String, String, String)> = Vec::new();
        let mut env: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with("SAFELINK__"))
            .collect();
        env.sort();
        for (k, v) in env {
            let path = k["SAFELINK__".len()..].to_lowercase().replace("__", ".");
            sets.push((k, path, v));
        }
        for o in overrides {
            let (k, v) = o.split_once('=').ok_or_else(|| ConfigError::Parse {
                path: format!("--set {o}"),
                message: "expected section.key=value".into(),
            })?;
            sets.push((format!("--set {o}"), k.trim().to_string(), v.to_string()));
        }
        if sets.is_empty() {
            return Ok((Self::from_toml(&text, &shown)?, chosen));
        }
        let mut doc: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: shown.clone(),
            message: e.to_string(),
        })?;
        for (origin, path, value) in &sets {
            set_path(&mut doc, path, value).map_err(|message| ConfigError::Parse {
                path: origin.clone(),
                message,
            })?;
        }
        let origins: Vec<&str> = sets.iter().map(|(o, _, _)| o.as_str()).collect();
        let c = Config::deserialize(doc).map_err(|e| ConfigError::Parse {
            path: format!("{shown} with {}", origins.join(", ")),
            message: e.to_string(),
        })?;
        Ok((c, chosen))
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serialises")
    }
}

/// Sets `a.b.c = value` in `doc` (creating tables on the way).
fn set_path(doc: &mut toml::Table, path: &str, value: &str) -> Result<(), String> {
    let parts: Vec<&str> = path.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!("bad key {path:?}: expected section.key"));
    }
    let v: toml::Value = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    let mut t = doc;
    for p in &parts[..parts.len() - 1] {
        let e = t
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = e
            .as_table_mut()
            .ok_or_else(|| format!("`{p}` in {path:?} is not a table"))?;
    }
    t.insert(parts[parts.len() - 1].to_string(), v);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_key_can_be_overridden_and_unknown_ones_are_named() {
        let (c, _) = Config::load_with(
            Some(Path::new("/dev/null")),
            &[
                "dfa.port_scan.ports=20".into(),
                "learning.profile=mass".into(),
                "sensor.iface=eth7".into(),
                "dfa.ssh_brute_force.ports=[22, 8022]".into(),
            ],
        )
        .unwrap();
        assert_eq!(c.dfa.port_scan.ports, 20);
        assert_eq!(c.learning.profile, crate::learn::Profile::Mass);
        assert_eq!(c.sensor.iface.as_deref(), Some("eth7"));
        assert_eq!(c.dfa.ssh_brute_force.ports, vec![22, 8022]);
        let e = Config::load_with(
            Some(Path::new("/dev/null")),
            &["dfa.port_scan.portz=1".into()],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("portz") && e.contains("--set dfa.port_scan.portz=1"),
            "{e}"
        );
        let e = Config::load_with(Some(Path::new("/dev/null")), &["nokey".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("section.key=value"), "{e}");
    }

    #[test]
    fn defaults_round_trip_and_unknown_keys_are_named() {
        let c = Config::default();
        assert_eq!(Config::from_toml(&c.to_toml(), "x").unwrap(), c);
        let e = Config::from_toml("[api]\nlisten = \"127.0.0.1:9\"\nbogus = 1\n", "f.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("f.toml") && e.contains("bogus"), "{e}");
        let c = Config::from_toml("[flows]\nidle_timeout_s = 5\n", "f").unwrap();
        assert_eq!(c.flows.timeouts().idle, Duration::from_secs(5));
        assert_eq!(c.flows.active_timeout_s, 1800);
    }

    #[test]
    fn privacy_section_parses_and_names_unknown_keys() {
        let c = Config::from_toml(
            "[privacy]\nip_mode = \"keyed-hash\"\nhash_macs = true\nalert_retention_days = 7\n",
            "f",
        )
        .unwrap();
        assert_eq!(c.privacy.ip_mode, crate::privacy::IpMode::KeyedHash);
        assert!(c.privacy.hash_macs);
        assert_eq!(c.privacy.alert_retention_days, 7);
        assert_eq!(c.privacy.archive_retention_days, 365);
        assert_eq!(c.privacy.ipv4_prefix, 24);
        let e = Config::from_toml("[privacy]\nip_mode = \"hash\"\n", "f")
            .unwrap_err()
            .to_string();
        assert!(e.contains("ip_mode") || e.contains("hash"), "{e}");
        let e = Config::from_toml("[privacy]\nretention = 1\n", "f")
            .unwrap_err()
            .to_string();
        assert!(e.contains("retention"), "{e}");
    }
}
