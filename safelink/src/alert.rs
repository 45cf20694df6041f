//! The alert: what a detector raises and what the store, the API, the exports and
//! `safelink analyze` carry. Field names are a stable contract (see DESIGN.md): `analyze`
//! prints them as JSON lines and the EVE export wraps the same fields.
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Which detector raised the alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertSource {
    Dfa,
    Ann,
}

/// Alert kinds, serialised exactly as the strings of the product contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    PortScan,
    HostSweep,
    ArpScan,
    ArpSpoof,
    SshBruteForce,
    LoginBruteForce,
    SynFlood,
    UdpFlood,
    IcmpFlood,
    Amplification,
    /// ANN verdict without a more specific kind.
    AnomalousFlow,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PortScan => "port_scan",
            Self::HostSweep => "host_sweep",
            Self::ArpScan => "arp_scan",
            Self::ArpSpoof => "arp_spoof",
            Self::SshBruteForce => "ssh_brute_force",
            Self::LoginBruteForce => "login_brute_force",
            Self::SynFlood => "syn_flood",
            Self::UdpFlood => "udp_flood",
            Self::IcmpFlood => "icmp_flood",
            Self::Amplification => "amplification",
            Self::AnomalousFlow => "anomalous_flow",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

/// One alert. An incident raises one alert that is then updated (`count`, `last_seen`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Monotonic id assigned by the store (0 until stored; `analyze` numbers them 1, 2, ...).
    pub id: u64,
    /// When the alert was raised (RFC 3339 UTC).
    pub timestamp: String,
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
    /// RFC 3339 UTC of the first and last evidence.
    pub first_seen: String,
    pub last_seen: String,
    /// Evidence count (probes, attempts, packets... per kind; the description says which).
    pub count: u64,
    pub description: String,
    /// Community ID v1 of the triggering flow (absent for ARP alerts).
    pub community_id: Option<String>,
    /// ANN alerts: the top contributing features.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explanation: Option<serde_json::Value>,
    /// Feature vector of the triggering flow(s) (learner input). Never payload bytes.
    #[serde(default)]
    pub features: Vec<f32>,
}
