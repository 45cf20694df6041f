//! Alert kinds. A kind is declared once, by the detector that raises it (each rule family in
//! its own module under `detect/dfa`, the ANN's in `ann::detector`), as an associated constant
//! of [`AlertKind`] holding its [`KindInfo`]: the contract string, the export number and the
//! default severity. [`AlertKind::known`] lists them (the rule families of
//! [`crate::detect::dfa::FAMILIES`], then the ANN's), and everything that needs the list —
//! parsing, the exports, the API's `GET /kinds`, the dashboard — derives from it.
use std::{fmt, sync::LazyLock};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{AlertSource, Severity};

/// What a kind is.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct KindInfo {
    /// The contract string (`port_scan`), as alerts, exports and the API spell it.
    pub name: &'static str,
    /// Stable number of the kind in exports (Suricata-style signature ids); unique.
    pub number: u16,
    /// Severity of a new alert of this kind.
    pub severity: Severity,
    /// Which detector raises it.
    pub source: AlertSource,
    /// One line for people (dashboard, docs).
    pub summary: &'static str,
}

/// An alert kind: a reference to its declaration. Serialised as its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AlertKind(&'static KindInfo);

impl AlertKind {
    /// Declares a kind (used once per kind, by the detector that raises it).
    pub const fn declare(info: &'static KindInfo) -> Self {
        Self(info)
    }

    pub fn as_str(self) -> &'static str {
        self.0.name
    }

    pub fn info(self) -> &'static KindInfo {
        self.0
    }

    pub fn number(self) -> u16 {
        self.0.number
    }

    pub fn severity(self) -> Severity {
        self.0.severity
    }

    /// Every kind this build raises: the rule families in order, then the ANN's.
    pub fn known() -> &'static [AlertKind] {
        static KNOWN: LazyLock<Vec<AlertKind>> = LazyLock::new(|| {
            crate::detect::dfa::FAMILIES
                .iter()
                .map(|f| f.kind)
                .chain([AlertKind::ANOMALOUS_FLOW])
                .collect()
        });
        &KNOWN
    }

    /// The contract strings of [`Self::known`].
    pub fn names() -> &'static [&'static str] {
        static NAMES: LazyLock<Vec<&'static str>> =
            LazyLock::new(|| AlertKind::known().iter().map(|k| k.as_str()).collect());
        &NAMES
    }

    /// The known kind named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::known().iter().copied().find(|k| k.as_str() == name)
    }
}

impl PartialOrd for AlertKind {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// By export number (the order of the families), then name.
impl Ord for AlertKind {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.0.number, self.0.name).cmp(&(other.0.number, other.0.name))
    }
}

impl fmt::Display for AlertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.name)
    }
}

impl Serialize for AlertKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.name)
    }
}

impl<'de> Deserialize<'de> for AlertKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<str>::deserialize(d)?;
        AlertKind::from_name(&s)
            .ok_or_else(|| serde::de::Error::unknown_variant(&s, AlertKind::names()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_are_unique_and_parse_back() {
        let kinds = AlertKind::known();
        assert_eq!(kinds.len(), 11);
        for (i, a) in kinds.iter().enumerate() {
            for b in &kinds[i + 1..] {
                assert_ne!(a.as_str(), b.as_str());
                assert_ne!(a.number(), b.number());
            }
            let json = serde_json::to_string(a).unwrap();
            assert_eq!(json, format!("\"{}\"", a.as_str()));
            assert_eq!(serde_json::from_str::<AlertKind>(&json).unwrap(), *a);
        }
        let e = serde_json::from_str::<AlertKind>("\"port_scann\"")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("port_scann") && e.contains("ssh_brute_force"),
            "{e}"
        );
    }
}
