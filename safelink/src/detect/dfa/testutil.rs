//! Hand-made records for the automata's unit tests.
use std::net::IpAddr;

use crate::{
    alert::{Alert, AlertKind},
    expiry::EndReason,
    record::{ArpRecord, Direction, Flags, FlowRecord, FlowStartRecord, Record},
};

use super::{AlertEvent, DfaConfig, Engine};

pub const S: u64 = 1_000_000_000;
pub const MS: u64 = 1_000_000;
/// A realistic epoch (2024-01-01) so windows never saturate at zero.
pub const T0: u64 = 1_704_067_200 * S;

pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

pub fn flow(src: &str, sport: u16, dst: &str, dport: u16, proto: u8, first_ns: u64) -> FlowRecord {
    FlowRecord {
        src_ip: ip(src),
        src_port: sport,
        dst_ip: ip(dst),
        dst_port: dport,
        proto,
        vlan: 0,
        first_ns,
        last_ns: first_ns,
        icmp_type: 0,
        icmp_code: 0,
        end_reason: EndReason::Idle,
        fwd: Direction {
            packets: 1,
            bytes: 60,
            l3_min: 40,
            l3_max: 40,
            l3_sum: 40,
            ..Direction::default()
        },
        rev: Direction::default(),
        tunnel: None,
        ctx: crate::context::FlowContext::default(),
    }
}

/// An unanswered TCP SYN (or one answered by RST when `rst`).
pub fn failed_syn(src: &str, dst: &str, dport: u16, ts: u64) -> FlowRecord {
    let mut f = flow(src, 40000, dst, dport, 6, ts);
    f.fwd.flags = Flags {
        syn: 1,
        ..Flags::default()
    };
    f
}

/// A TCP session that connected and exchanged a little data: `rev_bytes` from the server.
pub fn session(
    src: &str,
    sport: u16,
    dst: &str,
    dport: u16,
    ts: u64,
    dur_s: u64,
    rev_bytes: u64,
) -> FlowRecord {
    let mut f = flow(src, sport, dst, dport, 6, ts);
    f.last_ns = ts + dur_s * S;
    f.end_reason = EndReason::Closed;
    f.fwd = Direction {
        packets: 12,
        bytes: 1500,
        l3_min: 52,
        l3_max: 400,
        l3_sum: 1300,
        flags: Flags {
            syn: 1,
            fin: 1,
            psh: 6,
            ack: 11,
            ..Flags::default()
        },
        ..Direction::default()
    };
    f.rev = Direction {
        packets: 12,
        bytes: rev_bytes,
        l3_min: 52,
        l3_max: 1000,
        l3_sum: rev_bytes.saturating_sub(168),
        flags: Flags {
            synack: 1,
            fin: 1,
            psh: 5,
            ack: 12,
            ..Flags::default()
        },
        ..Direction::default()
    };
    f
}

pub fn start(src: &str, sport: u16, dst: &str, dport: u16, proto: u8, ts: u64) -> FlowStartRecord {
    FlowStartRecord {
        ts_ns: ts,
        src_ip: ip(src),
        src_port: sport,
        dst_ip: ip(dst),
        dst_port: dport,
        proto,
        vlan: 0,
        src_mac: "02:00:00:00:00:01".into(),
        tcp_flags: if proto == 6 { 0x02 } else { 0 },
        tcp_flags_unknown: false,
        icmp_type: 0,
        icmp_code: 0,
        l3_len: 60,
        ttl: 64,
        tunnel: None,
        ctx: crate::context::FlowContext::default(),
    }
}

pub fn arp(op: u16, mac: &str, sender_ip: &str, target_ip: &str, ts: u64) -> ArpRecord {
    arp_full(op, mac, sender_ip, "00:00:00:00:00:00", target_ip, ts)
}

pub fn arp_full(
    op: u16,
    mac: &str,
    sender_ip: &str,
    target_mac: &str,
    target_ip: &str,
    ts: u64,
) -> ArpRecord {
    ArpRecord {
        ts_ns: ts,
        vlan: 0,
        op,
        eth_src: mac.into(),
        sender_mac: mac.into(),
        sender_ip: sender_ip.parse().expect("test address"),
        target_mac: target_mac.into(),
        target_ip: target_ip.parse().expect("test address"),
    }
}

/// Runs records through a fresh engine; returns every event (including `finish`).
pub fn run(cfg: DfaConfig, records: impl IntoIterator<Item = Record>) -> (Engine, Vec<AlertEvent>) {
    let mut e = Engine::new(cfg).expect("valid config");
    let mut ev = Vec::new();
    for r in records {
        e.observe_into(&r, &mut ev);
    }
    ev.extend(e.finish());
    (e, ev)
}

/// The `New` alerts of a kind.
pub fn new_alerts(ev: &[AlertEvent], kind: AlertKind) -> Vec<Alert> {
    ev.iter()
        .filter_map(|e| match e {
            AlertEvent::New(a) if a.kind == kind => Some(a.clone()),
            _ => None,
        })
        .collect()
}

/// The final state of every alert, by id.
pub fn finals(ev: &[AlertEvent]) -> Vec<Alert> {
    let mut m = std::collections::BTreeMap::new();
    for e in ev {
        m.insert(e.alert().id, e.alert().clone());
    }
    m.into_values().collect()
}

/// How many `Updated` events an alert got.
pub fn updates(ev: &[AlertEvent], id: u64) -> usize {
    ev.iter()
        .filter(|e| matches!(e, AlertEvent::Updated(a) if a.id == id))
        .count()
}
