//! Filling an [`Alert`]: the fields every detector fills the same way ([`base_alert`]), the
//! endpoints, protocol, Community ID and feature row of the flow (or first packet) that
//! triggered it ([`Alert::with_flow`], [`Alert::with_start`]).
use std::net::IpAddr;

use safelink_common::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};

use super::{Alert, AlertKind, Timestamp};
use crate::record::{FlowRecord, FlowStartRecord};

/// SCTP, which the Community ID hashes with ports as TCP and UDP.
const IPPROTO_SCTP: u8 = 132;

/// Whether flows of `proto` have ports.
pub fn has_ports(proto: u8) -> bool {
    matches!(proto, IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP)
}

/// Protocol name as the alert contract spells it.
pub fn proto_name(p: u8) -> String {
    match p {
        IPPROTO_ICMP => "icmp".into(),
        IPPROTO_TCP => "tcp".into(),
        IPPROTO_UDP => "udp".into(),
        IPPROTO_ICMPV6 => "icmpv6".into(),
        n => n.to_string(),
    }
}

/// Community ID v1 (seed 0) of a flow, oriented any way (the hash is symmetric). For ICMP the
/// "ports" are the type and code, as the specification says.
pub fn community_id(
    proto: u8,
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
    icmp: Option<(u8, u8)>,
) -> Option<String> {
    let (sp, dp) = match (proto, icmp) {
        (p, _) if has_ports(p) => (Some(sport), Some(dport)),
        (IPPROTO_ICMP | IPPROTO_ICMPV6, Some((t, c))) => (Some(u16::from(t)), Some(u16::from(c))),
        _ => (None, None),
    };
    community_id::calculate_community_id(0, src, dst, sp, dp, proto, false).ok()
}

/// The Community ID of flow `f` (ICMP type and code as its "ports").
pub fn flow_community_id(f: &FlowRecord) -> Option<String> {
    community_id(
        f.proto,
        f.src_ip,
        f.src_port,
        f.dst_ip,
        f.dst_port,
        Some((f.icmp_type, f.icmp_code)),
    )
}

/// An alert of `kind` raised at `now` about evidence from `first` to `last` (ns), with the
/// kind's severity and source, confidence 1.0 and nothing else filled.
pub fn base_alert(kind: AlertKind, now: u64, first: u64, last: u64) -> Alert {
    Alert {
        id: 0,
        timestamp: Timestamp::from_ns(now),
        source: kind.info().source,
        kind,
        severity: kind.severity(),
        confidence: 1.0,
        src_ip: None,
        src_port: None,
        dest_ip: None,
        dest_port: None,
        proto: String::new(),
        src_mac: None,
        first_seen: Timestamp::from_ns(first),
        last_seen: Timestamp::from_ns(last),
        count: 0,
        description: String::new(),
        community_id: None,
        tunnel: None,
        explanation: None,
        resembles: None,
        features: Vec::new(),
    }
}

/// The feature row of a flow, as alerts carry it (the ANN table, [`crate::ann::FEATURES`]).
pub fn flow_features(f: &FlowRecord) -> Vec<f32> {
    crate::ann::features::extract(f).to_vec()
}

/// [`flow_features`] of the one-packet flow a flow start is.
pub fn start_features(s: &FlowStartRecord) -> Vec<f32> {
    flow_features(&FlowRecord::one_packet(s))
}

impl Alert {
    /// Fills the endpoints, protocol, Community ID, tunnel and feature row of flow `f` (ports
    /// only where the protocol has them).
    pub fn with_flow(mut self, f: &FlowRecord) -> Self {
        self.set_flow(f, flow_features(f));
        self
    }

    /// [`Self::with_flow`] in place, with the flow's feature row already extracted.
    pub fn set_flow(&mut self, f: &FlowRecord, row: Vec<f32>) {
        let ports = has_ports(f.proto);
        self.src_ip = Some(f.src_ip);
        self.src_port = ports.then_some(f.src_port);
        self.dest_ip = Some(f.dst_ip);
        self.dest_port = ports.then_some(f.dst_port);
        self.proto = proto_name(f.proto);
        self.community_id = flow_community_id(f);
        self.tunnel = f.tunnel.clone();
        self.features = row;
    }

    /// [`Self::with_flow`] of the one-packet flow a flow start is.
    pub fn with_start(self, s: &FlowStartRecord) -> Self {
        self.with_flow(&FlowRecord::one_packet(s))
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn community_id_spec_vectors() {
        // Community ID specification baseline (and Zeek's documentation example).
        let a = IpAddr::V4(Ipv4Addr::new(128, 232, 110, 120));
        let b = IpAddr::V4(Ipv4Addr::new(66, 35, 250, 204));
        let id = community_id(6, a, 34855, b, 80, None).unwrap();
        assert_eq!(id, "1:LQU9qZlK+B5F3KDmev6m5PMibrg=");
        assert_eq!(community_id(6, b, 80, a, 34855, None).unwrap(), id);
        let x = IpAddr::V4(Ipv4Addr::new(1, 2, 3, 4));
        let y = IpAddr::V4(Ipv4Addr::new(5, 6, 7, 8));
        assert_eq!(
            community_id(6, x, 1122, y, 3344, None).unwrap(),
            "1:wCb3OG7yAFWelaUydu0D+125CLM="
        );
        let v6 = IpAddr::V6("::1".parse().unwrap());
        assert_eq!(community_id(6, x, 1, v6, 2, None), None);
    }
}
