//! `syn_flood`: half-open TCP connection attempts towards one port of one victim, from one
//! source or from thousands of spoofed ones (aggregated per victim); and floods of TCP segments
//! that belong to no connection (ACK, FIN or PSH floods), counted with them.
//!
//! Key: (victim IP, victim port). Evidence: flow-start records of a bare SYN (no ACK, RST or
//! FIN) — counted at once, so the alert does not wait for flows to time out; a connection that
//! later proves completed (handshake and data) is taken back from the window. A single flow
//! retransmitting SYNs at flood rate (one fixed 5-tuple) is an alert by itself, while it runs (interim updates) or when it ends.
//! Evidence from such segments: each segment of a flow that ended ([`unsolicited`]). Alert at
//! `new_flows` SYNs and segments within the window (default 500 in 5 s). `count` = SYNs and
//! segments.
use std::net::IpAddr;

use safelink_common::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};

use super::family::Family;
use super::{
    Cx, Detector,
    automaton::Phase,
    classify::{self, TCP},
    config::FloodConfig,
    flood::{FloodTable, Summary, one_way_pps},
};
use crate::alert::build::{base_alert, community_id, flow_features, start_features};
use crate::{
    alert::{Alert, AlertKind, AlertSource, KindInfo, Severity},
    record::{FlowRecord, FlowStartRecord},
};

pub struct SynFlood {
    table: FloodTable<(IpAddr, u16)>,
}

/// What a flood's evidence is, for its description.
#[derive(Clone, Copy)]
enum Evidence {
    /// Bare SYNs (flow starts, or one flow repeating its SYN).
    Syns,
    /// Segments outside any connection ([`unsolicited`]).
    Segments,
}

#[allow(clippy::too_many_arguments)]
fn alert(
    what: Evidence,
    s: &Summary,
    now: u64,
    ts: u64,
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
    window: u64,
) -> Alert {
    let mut a = base_alert(AlertKind::SYN_FLOOD, now, ts, ts);
    a.src_ip = s.dominant;
    a.src_port = s.dominant.map(|_| sport);
    a.dest_ip = Some(dst);
    a.dest_port = Some(dport);
    a.proto = "tcp".into();
    let who = match s.dominant {
        Some(d) => format!("mostly from {d}"),
        None => format!("from {} distinct (likely spoofed) sources", s.sources),
    };
    a.description = match what {
        Evidence::Syns => format!(
            "SYN flood against {dst}:{dport}: {} half-open SYNs within {window}s, {who} ({} SYNs); count = SYNs",
            s.in_window, s.count
        ),
        Evidence::Segments => format!(
            "TCP flood against {dst}:{dport}: {} segments outside any connection (ACK, FIN or \
             PSH without a handshake, answered by resets or not at all) within {window}s, \
             {who} ({} segments); count = segments",
            s.in_window, s.count
        ),
    };
    a.community_id = community_id(TCP, src, sport, dst, dport, None);
    a
}

/// [`alert`] for a finished or running flow: its ends, its tunnel and its features.
fn flow_alert(what: Evidence, s: &Summary, now: u64, f: &FlowRecord, window: u64) -> Alert {
    let mut a = alert(
        what, s, now, f.first_ns, f.src_ip, f.src_port, f.dst_ip, f.dst_port, window,
    );
    a.tunnel = f.tunnel.clone();
    a.features = flow_features(f);
    a
}

impl SynFlood {
    pub fn new(cfg: FloodConfig) -> Self {
        Self {
            table: FloodTable::new(cfg),
        }
    }

    pub fn phase(&self, victim: IpAddr, port: u16) -> Phase {
        self.table.phase(&(victim, port))
    }
}

impl Detector for SynFlood {
    fn on_start(&mut self, s: &FlowStartRecord, cx: &mut Cx) {
        let f = s.tcp_flags;
        if s.proto != TCP
            || f & TCP_SYN == 0
            || f & (TCP_ACK | TCP_RST | TCP_FIN) != 0
            || !classify::is_unicast(&s.dst_ip)
        {
            return;
        }
        let (now, window) = (cx.now, self.table.cfg.window_secs);
        let mac = cx.macs.get(&s.src_ip);
        self.table.observe(
            cx,
            (s.dst_ip, s.dst_port),
            s.ts_ns,
            1,
            s.src_ip,
            false,
            |sum| {
                let mut a = alert(
                    Evidence::Syns,
                    sum,
                    now,
                    s.ts_ns,
                    s.src_ip,
                    s.src_port,
                    s.dst_ip,
                    s.dst_port,
                    window,
                );
                if sum.dominant == Some(s.src_ip) {
                    a.src_mac = mac.or_else(|| Some(s.src_mac.clone()));
                }
                a.tunnel = s.tunnel.clone();
                a.features = start_features(s);
                a
            },
        );
    }

    fn on_update(&mut self, f: &FlowRecord, cx: &mut Cx) {
        if f.proto == TCP && classify::is_unicast(&f.dst_ip) {
            self.heavy(f, cx);
        }
    }

    fn on_flow(&mut self, f: &FlowRecord, cx: &mut Cx) {
        if f.proto != TCP || !classify::is_unicast(&f.dst_ip) {
            return;
        }
        let key = (f.dst_ip, f.dst_port);
        if classify::tcp_established(f) && classify::tcp_has_data(f) {
            self.table.retract(&key, f.first_ns, 1);
            return;
        }
        if unsolicited(f) {
            self.unsolicited(f, cx);
            return;
        }
        self.heavy(f, cx);
    }

    fn tick(&mut self, cx: &mut Cx) {
        self.table.tick(cx);
    }
}

/// A TCP flow of segments that belong to no connection: the initiator never sent a SYN and
/// no data (bare ACK, FIN, PSH or URG segments: `hping3 -A --flood`), and the responder
/// answered with resets only, or not at all. A connection the sensor saw only from its middle
/// carries data or gets acknowledgements back; backscatter (an initiator that only sent
/// SYN-ACKs or resets) is not an attack on the responder.
fn unsolicited(f: &FlowRecord) -> bool {
    let (x, r) = (&f.fwd.flags, &f.rev.flags);
    x.syn == 0
        && x.synack == 0
        && x.psh == 0
        && f.fwd.l3_max <= crate::expiry::BARE_SEGMENT_MAX_L3
        && !classify::tcp_response_only(f)
        && f.rev.packets == u64::from(r.rst)
}

impl SynFlood {
    /// A flow of segments outside any connection ([`unsolicited`]): each of its segments is
    /// evidence, like a SYN, for the flood window of its victim port.
    fn unsolicited(&mut self, f: &FlowRecord, cx: &mut Cx) {
        let (now, window) = (cx.now, self.table.cfg.window_secs);
        let mac = cx.macs.get(&f.src_ip);
        self.table.observe(
            cx,
            (f.dst_ip, f.dst_port),
            f.last_ns,
            f.fwd.packets,
            f.src_ip,
            false,
            |sum| {
                let mut a = flow_alert(Evidence::Segments, sum, now, f, window);
                if sum.dominant == Some(f.src_ip) {
                    a.src_mac = mac;
                }
                a
            },
        );
    }

    /// One flow of SYNs at flood rate (fixed ports, `hping3 -S -k`), running or ended.
    fn heavy(&mut self, f: &FlowRecord, cx: &mut Cx) {
        let key = (f.dst_ip, f.dst_port);
        let cfg = &self.table.cfg;
        let syns = u64::from(f.fwd.flags.syn);
        if f.fwd.flags.synack > 0
            || syns < cfg.heavy_flow_packets
            || one_way_pps(syns, f.first_ns, f.last_ns) < cfg.heavy_flow_pps
        {
            return;
        }
        let (now, window) = (cx.now, cfg.window_secs);
        // The flow's first SYN was counted from its flow-start record.
        let n = self.table.uncounted(f, syns - 1);
        if n == 0 {
            return;
        }
        let mac = cx.macs.get(&f.src_ip);
        self.table
            .observe(cx, key, f.last_ns, n, f.src_ip, true, |sum| {
                let mut a = flow_alert(Evidence::Syns, sum, now, f, window);
                a.src_ip = Some(f.src_ip);
                a.src_port = Some(f.src_port);
                a.src_mac = mac;
                a
            });
    }
}

impl AlertKind {
    /// A flood of unanswered TCP SYNs at one victim.
    pub const SYN_FLOOD: AlertKind = AlertKind::declare(&KindInfo {
        name: "syn_flood",
        number: 7,
        severity: Severity::High,
        source: AlertSource::Dfa,
        summary: "a flood of unanswered TCP SYNs, or of TCP segments outside any connection, at one victim",
    });
}

/// The `syn_flood` family (see [`super::family`]).
pub const FAMILY: Family = Family {
    kind: AlertKind::SYN_FLOOD,
    section: "syn_flood",
    build: |c| Box::new(SynFlood::new(c.syn_flood.clone())),
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        detect::dfa::{DfaConfig, Engine, testutil::*},
        record::Record,
    };

    fn spoofed_syn(i: u64, t: u64) -> Record {
        let src = format!(
            "{}.{}.{}.{}",
            1 + i % 200,
            (i / 200) % 250,
            (i / 50_000) % 250,
            1 + i % 7
        );
        let mut s = start(&src, 1024 + (i % 60_000) as u16, "10.10.10.10", 30120, 6, t);
        s.tcp_flags = 0xc2; // SYN+ECE+CWR
        Record::FlowStart(s)
    }

    /// A flow of `n` bare ACKs from `sport` to 10.10.10.10:80 at `t`, each answered by a reset
    /// (`rst`), or with data both ways and acknowledged (`data`: a connection seen from its
    /// middle), or with data one way and nothing seen back (`data` and not `answered`).
    fn acks(sport: u16, t: u64, n: u64, data: bool, answered: bool) -> Record {
        let mut f = flow("192.0.2.66", sport, "10.10.10.10", 80, 6, t);
        f.last_ns = t + MS;
        f.fwd.packets = n;
        f.fwd.flags.ack = n as u32;
        if data {
            f.fwd.flags.psh = 1;
            f.fwd.l3_max = 1000;
        }
        if answered {
            f.rev.packets = n;
            if data {
                f.rev.flags.ack = n as u32;
                f.rev.flags.psh = 1;
            } else {
                f.rev.flags.rst = n as u32;
            }
        }
        Record::Flow(f)
    }

    /// An alerted victim is kept through its cool-down (ten minutes by default), but the
    /// thousands of spoofed sources its window counted are given back once they have left
    /// the window: under address churn every victim's burst was held that long.
    #[test]
    fn a_quiet_victim_keeps_its_alert_but_not_its_sources() {
        let mut e = Engine::new(DfaConfig::default()).unwrap();
        let mut ev = Vec::new();
        for i in 0..3000 {
            e.observe_into(&spoofed_syn(i, T0 + i * MS), &mut ev);
        }
        assert_eq!(new_alerts(&ev, AlertKind::SYN_FLOOD).len(), 1);
        let syn = |e: &Engine| e.detector::<SynFlood>().unwrap().table.held();
        let (keys, burst) = syn(&e);
        assert_eq!(keys, 1);
        assert!(burst >= 500, "{burst} source slots");
        // 200 s without evidence: past the 60 s window, within the cool-down.
        for t in 0..=200 {
            ev.extend(e.tick(T0 + 3 * S + t * S));
        }
        let flood = e.detector::<SynFlood>().unwrap();
        assert_eq!(flood.phase(ip("10.10.10.10"), 30120), Phase::CoolDown);
        let (keys, quiet) = syn(&e);
        assert_eq!(keys, 1);
        assert!(quiet <= 32, "{quiet} of {burst} source slots still held");
    }

    /// Ten victims flooded one after the other by a thousand spoofed sources each: the
    /// automaton's windows stay within `max_items` by forgetting the victims flooded
    /// longest ago, while the latest stays tracked and alerting.
    #[test]
    fn flooded_victims_stay_within_the_item_budget() {
        let cfg = DfaConfig {
            max_items: 3000,
            ..DfaConfig::default()
        };
        let mut e = Engine::new(cfg).unwrap();
        let mut ev = Vec::new();
        for v in 0..10u64 {
            let victim = format!("10.10.10.{}", 10 + v);
            for i in 0..1000 {
                let Record::FlowStart(mut s) = spoofed_syn(v * 1000 + i, T0 + v * S + i * MS)
                else {
                    unreachable!()
                };
                s.dst_ip = ip(&victim);
                e.observe_into(&Record::FlowStart(s), &mut ev);
            }
        }
        ev.extend(e.tick(T0 + 10 * S));
        ev.extend(e.tick(T0 + 11 * S));
        assert_eq!(new_alerts(&ev, AlertKind::SYN_FLOOD).len(), 10);
        let flood = e.detector::<SynFlood>().unwrap();
        let (keys, slots) = flood.table.held();
        assert!(slots <= 3000, "{slots} source slots held by {keys} victims");
        assert!((1..10).contains(&keys), "{keys} victims tracked");
        assert_eq!(flood.phase(ip("10.10.10.19"), 30120), Phase::Alerting);
        assert_eq!(flood.phase(ip("10.10.10.10"), 30120), Phase::Idle);
        assert!(e.stats().evicted_keys >= (10 - keys) as u64);
    }

    #[test]
    fn ack_flood_is_a_tcp_flood() {
        // hping3 -A --flood: the source port changes with every few segments, the victim
        // answers each with a reset. 200 flows of 5 segments within 2 s.
        let recs = (0..200u64).map(|i| acks(1024 + i as u16, T0 + i * 10 * MS, 5, false, true));
        let (e, ev) = run(DfaConfig::default(), recs);
        let news = new_alerts(&ev, AlertKind::SYN_FLOOD);
        assert_eq!(news.len(), 1);
        assert_eq!(news[0].dest_ip, Some(ip("10.10.10.10")));
        assert_eq!(news[0].dest_port, Some(80));
        assert_eq!(news[0].src_ip, Some(ip("192.0.2.66")));
        assert!(
            news[0].description.starts_with(
                "TCP flood against 10.10.10.10:80: 500 segments outside any connection"
            ),
            "{}",
            news[0].description
        );
        assert_eq!(
            e.detector::<SynFlood>()
                .unwrap()
                .phase(ip("10.10.10.10"), 80),
            Phase::Alerting
        );
    }

    #[test]
    fn connections_seen_from_their_middle_are_no_flood() {
        // A sensor started on a busy server: 1000 connections go on, with data, within 2 s;
        // seen both ways, or only their inbound half.
        for answered in [true, false] {
            let recs =
                (0..1000u64).map(|i| acks(1024 + i as u16, T0 + i * 2 * MS, 5, true, answered));
            let (_, ev) = run(DfaConfig::default(), recs);
            assert!(
                new_alerts(&ev, AlertKind::SYN_FLOOD).is_empty(),
                "answered {answered}"
            );
        }
    }

    #[test]
    fn spoofed_flood_aggregates_per_victim() {
        let mut e = crate::detect::dfa::Engine::new(DfaConfig::default()).unwrap();
        let victim = ip("10.10.10.10");
        let mut ev = Vec::new();
        // 400 SYNs/s for 10 s.
        for i in 0..4000u64 {
            ev.extend(e.observe(&spoofed_syn(i, T0 + i * 2_500_000)));
            let want = match i {
                0..=123 => Phase::Idle,
                124..=498 => Phase::Suspicious,
                _ => Phase::Alerting,
            };
            assert_eq!(
                e.detector::<SynFlood>().unwrap().phase(victim, 30120),
                want,
                "after SYN {}",
                i + 1
            );
        }
        ev.extend(e.finish());
        let news = new_alerts(&ev, AlertKind::SYN_FLOOD);
        assert_eq!(news.len(), 1);
        assert_eq!(news[0].count, 500);
        assert_eq!(news[0].src_ip, None, "spoofed: no single source");
        assert_eq!(news[0].dest_ip, Some(victim));
        assert_eq!(news[0].dest_port, Some(30120));
        assert!(
            news[0].description.contains("distinct"),
            "{}",
            news[0].description
        );
        assert_eq!(finals(&ev)[0].count, 4000);
        // 8.75 s of alerting at one update per second at most.
        let n = updates(&ev, 1);
        assert!((8..=10).contains(&n), "{n} updates");
    }

    #[test]
    fn single_source_flood_names_the_attacker() {
        let recs = (0..1000u64).map(|i| {
            Record::FlowStart(start(
                "198.51.100.9",
                1024 + i as u16,
                "192.0.2.80",
                80,
                6,
                T0 + i * MS,
            ))
        });
        let (_, ev) = run(DfaConfig::default(), recs);
        let news = new_alerts(&ev, AlertKind::SYN_FLOOD);
        assert_eq!(news.len(), 1);
        assert_eq!(news[0].src_ip, Some(ip("198.51.100.9")));
        assert_eq!(news[0].src_mac.as_deref(), Some("02:00:00:00:00:01"));
    }

    #[test]
    fn one_tuple_repeating_its_syn() {
        let mut f = failed_syn("198.51.100.11", "192.0.2.81", 443, T0);
        f.fwd.flags.syn = 3000;
        f.fwd.packets = 3000;
        f.last_ns = T0 + 10 * S;
        let mut slow = failed_syn("198.51.100.12", "192.0.2.81", 443, T0);
        slow.fwd.flags.syn = 7;
        slow.fwd.packets = 7;
        slow.last_ns = T0 + 120 * S;
        let (_, ev) = run(DfaConfig::default(), [Record::Flow(slow), Record::Flow(f)]);
        let news = new_alerts(&ev, AlertKind::SYN_FLOOD);
        assert_eq!(news.len(), 1);
        assert_eq!(news[0].src_ip, Some(ip("198.51.100.11")));
        assert_eq!(news[0].count, 2999);
    }

    #[test]
    fn busy_server_with_completed_connections_is_not_flooded() {
        let mut recs = Vec::new();
        // 80 connections/s for 20 s, each completed (its flow record follows 1 s later).
        for i in 0..1600u64 {
            let t = T0 + i * S / 80;
            recs.push(Record::FlowStart(start(
                "198.51.100.10",
                1024 + (i % 60_000) as u16,
                "192.0.2.80",
                443,
                6,
                t,
            )));
            if i >= 80 {
                let j = i - 80;
                let tj = T0 + j * S / 80;
                recs.push(Record::Flow(session(
                    "198.51.100.10",
                    1024 + (j % 60_000) as u16,
                    "192.0.2.80",
                    443,
                    tj,
                    0,
                    5000,
                )));
            }
        }
        let (_, ev) = run(DfaConfig::default(), recs);
        assert!(new_alerts(&ev, AlertKind::SYN_FLOOD).is_empty());
    }
}
