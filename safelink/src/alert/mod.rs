//! The alert and its home: what every detector raises and what the store, the API, the exports
//! and `safelink analyze` carry. Field names are a stable contract: `analyze` prints them as
//! JSON lines and the EVE export wraps the same fields.
//!
//! - [`kind`]: the alert kinds, each declared once by the detector that raises it;
//! - [`book`]: the open alerts of one detector (ids, `New`/`Updated` events, throttling);
//! - [`build`]: filling an alert from the flow or packet that triggered it;
//! - [`eve`]: the alert as a Suricata EVE event;
//! - [`time`]: [`Timestamp`], integer nanoseconds, RFC 3339 text only at the edges.
pub mod book;
pub mod build;
pub mod eve;
pub mod kind;
pub mod time;

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

pub use book::{AlertBook, AlertEvent};
pub use kind::{AlertKind, KindInfo};
pub use time::Timestamp;

/// Which detector raised the alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertSource {
    Dfa,
    Ann,
}

impl AlertSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dfa => "dfa",
            Self::Ann => "ann",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

/// One alert. An incident raises one alert that is then updated (`count`, `last_seen`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Monotonic id assigned by the store (0 until stored; `analyze` numbers them 1, 2, ...).
    pub id: u64,
    /// When the alert was raised.
    pub timestamp: Timestamp,
    pub source: AlertSource,
    pub kind: AlertKind,
    pub severity: Severity,
    /// 0.0 ..= 1.0 (DFA: 1.0 once the automaton reached its alerting state; ANN: the score).
    pub confidence: f64,
    pub src_ip: Option<IpAddr>,
    pub src_port: Option<u16>,
    pub dest_ip: Option<IpAddr>,
    pub dest_port: Option<u16>,
    /// "tcp", "udp", "icmp", "icmpv6", "arp" or the protocol number.
    pub proto: String,
    pub src_mac: Option<String>,
    /// First and last evidence.
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    /// Evidence count (probes, attempts, packets... per kind; the description says which).
    pub count: u64,
    pub description: String,
    /// Community ID v1 of the triggering flow (absent for ARP alerts).
    pub community_id: Option<String>,
    /// The tunnel the triggering flow was found in (`{type, id, outer_src, outer_dst}`; absent
    /// for a plain flow and for alerts not raised from one flow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<crate::tunnel::Tunnel>,
    /// ANN alerts: the top contributing features.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explanation: Option<serde_json::Value>,
    /// ANN alerts: the attack family (a rule kind) the triggering flow resembles, with the
    /// share of its nearest labelled attack rows of that family ([`crate::ann::family`]);
    /// absent when the sensor has no labelled rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resembles: Option<crate::ann::Resemblance>,
    /// The triggering flow's row of the ANN feature table ([`crate::ann::FEATURES`], names in
    /// that order; a flow start counts as a one-packet flow; empty for ARP alerts). The same
    /// table for every detector. Never payload bytes.
    #[serde(default)]
    pub features: Vec<f32>,
}

/// One number of [`Alert::features`] with its name and unit (from [`crate::ann::FEATURES`]).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NamedFeature {
    pub name: &'static str,
    pub unit: &'static str,
    pub value: f32,
}

impl Alert {
    /// The feature row with its names, in table order (empty for ARP alerts).
    pub fn named_features(&self) -> Vec<NamedFeature> {
        crate::ann::FEATURES
            .iter()
            .zip(&self.features)
            .map(|(f, &value)| NamedFeature {
                name: f.name,
                unit: f.unit,
                value,
            })
            .collect()
    }
}

/// An alert with its feature row named: the body of `GET /alerts/{id}`.
#[derive(Serialize)]
pub struct AlertView<'a> {
    #[serde(flatten)]
    pub alert: &'a Alert,
    pub feature_table: Vec<NamedFeature>,
}

impl<'a> From<&'a Alert> for AlertView<'a> {
    fn from(alert: &'a Alert) -> Self {
        AlertView {
            feature_table: alert.named_features(),
            alert,
        }
    }
}
