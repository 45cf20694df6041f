//! The daemon's configuration: one TOML file (`--config FILE`, else `./safelink.toml`, else
//! `/etc/safelink/safelink.toml`), overridden by `SAFELINK_*` environment variables and CLI
//! flags. Unknown keys are an error naming the key. `safelink config print` shows the result.
//!
//! Each section is defined beside the component it configures (`[sensor]` in `capture`,
//! `[flows]` in `expiry`, `[api]` in `api`, `[store]` in `store`, `[dfa]` in `detect::dfa`,
//! `[ann]` in `ann`, `[learning]` in `learn`, `[privacy]` in `privacy`, `[fleet]` in `fleet`); this module composes
//! them into the file and loads it.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::ann::config::{AnnSection, SHIPPED_MODEL};
pub use crate::api::config::ApiConfig;
pub use crate::capture::config::SensorConfig;
use crate::detect::dfa::DfaConfig;
pub use crate::expiry::{FlowTimeouts, FlowsConfig};
pub use crate::privacy::config::PrivacyConfig;
pub use crate::store::config::StoreConfig;

/// Serialises an `f32` by its shortest decimal form (`0.9`, not `0.8999999761581421`), so
/// `safelink config print` shows what was written.
pub fn f32_short<S: serde::Serializer>(v: &f32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(v.to_string().parse().unwrap_or(f64::from(*v)))
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
    /// Fleet mode: the NATS server, this sensor's id and the keys it trusts.
    pub fleet: crate::fleet::FleetSection,
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

    /// The resolved `[learning]` parameters, with the ANN alert threshold of `[ann]` (the
    /// baseline's local check counts flows at or above it).
    pub fn learning_params(
        &self,
    ) -> Result<crate::learn::LearningParams, crate::learn::config::LearningConfigError> {
        let mut p = self.learning.params()?;
        p.alert_threshold = self.ann.detector.threshold;
        Ok(p)
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
        assert_eq!(c.flows.timeouts().idle, std::time::Duration::from_secs(5));
        assert_eq!(c.flows.active_timeout_s, 1800);
    }

    #[test]
    fn debug_never_prints_the_token_or_the_privacy_key() {
        let c = Config::from_toml(
            "[api]\ntoken = \"tok-SECRET-1234\"\n[privacy]\nkey = \"key-SECRET-5678-abcdef\"\n",
            "f",
        )
        .unwrap();
        let d = format!("{c:?} {c:#?}");
        assert!(!d.contains("SECRET"), "{d}");
        assert!(d.contains("<redacted>"));
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
