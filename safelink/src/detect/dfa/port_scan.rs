//! `port_scan`: one source probing many ports of one destination.
//!
//! Key: (source IP, destination IP). Evidence:
//! - a finished flow that was a failed probe (see [`classify::failed_probe`]): TCP SYN,
//!   connect, ACK and FIN+ACK probes that carried no data (not flows whose initiator only sent
//!   SYN-ACKs or resets: backscatter and reflection); UDP datagrams that got no reply
//!   (except from reflection-service ports, between equal ports, and to the traceroute range);
//! - a flow-start record whose TCP flags no stack sends (NULL, FIN, XMAS, SYN+FIN...), counted at
//!   once: a handful of those is a scan whatever the volume.
//!
//! Tiers (any one raises the alert): distinct failed ports within the main window (Zeek's 15 in
//! 5 min), within the slow window (30 in 1 h: a scan paced under the main tier), or distinct
//! ports hit by stealth probes (5 in the main window). `count` = probes.
use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
};

use super::family::Family;
use super::family::amp_ports;
use super::window::KeyMap;
use super::{
    Cx, Detector,
    automaton::{Incident, Phase, Verdict},
    classify::{self, TCP, UDP},
    config::{PortScanConfig, ns},
    window::{self, DistinctWindow},
};
use crate::alert::build::{
    base_alert, community_id, flow_community_id, flow_features, proto_name, start_features,
};
use crate::{
    alert::{Alert, AlertKind, AlertSource, KindInfo, Severity},
    record::{FlowRecord, FlowStartRecord},
};

/// What kind of probes a pair saw (for the description).
const K_SYN: u8 = 1;
const K_CONNECT: u8 = 2;
const K_ACK: u8 = 4;
const K_UDP: u8 = 8;
const K_STEALTH: u8 = 16;
const K_PROTO: u8 = 32;

pub struct Entry {
    /// (proto, port) → last failed probe, over the slow window (the main window is a suffix).
    ports: DistinctWindow<(u8, u16)>,
    /// Ports hit by stealth probes within the main window.
    stealth: Option<DistinctWindow<(u8, u16)>>,
    stealth_name: &'static str,
    kinds: u8,
    pub incident: Incident,
}

pub struct PortScan {
    cfg: PortScanConfig,
    window_ns: u64,
    slow_ns: u64,
    amp_ports: HashSet<u16>,
    keys: KeyMap<(IpAddr, IpAddr), Entry>,
    /// (source, destination) → UDP ports the source sent to (answered or not) and how many
    /// ICMP port-unreachables the *source* sent back to the destination.
    udp: KeyMap<(IpAddr, IpAddr), UdpTrail>,
    /// (source, destination) → ports of new TCP/UDP flows within the burst window, whatever
    /// their outcome (known only when the flows end).
    burst: KeyMap<(IpAddr, IpAddr), DistinctWindow<(u8, u16)>>,
    burst_ns: u64,
}

/// What a raw-socket UDP scanner leaves behind: it probes several ports with one datagram (and
/// a retry or two) each, and its kernel, which knows nothing of the probes, answers the replies
/// with ICMP port-unreachable.
struct UdpTrail {
    /// Destination ports per source port: a raw-socket scanner sends every probe from one port,
    /// applications open a socket per conversation.
    ports: HashMap<u16, DistinctWindow<u16>>,
    rejections: u64,
    last_ns: u64,
}

/// Port-unreachables and ports that make a raw-socket UDP scan (a closed client socket turns
/// away a late answer or two, on one port).
const UDP_REJECTIONS: u64 = 3;
const UDP_REJECTED_PORTS: u64 = 3;

/// Everything the alert needs about the probe that triggered it.
struct Probe<'a> {
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
    proto: u8,
    ts: u64,
    kind: u8,
    item: (u8, u16),
    stealth: Option<&'static str>,
    /// Probes this stands for (more than one for a burst of ICMP protocol-unreachables).
    n: u64,
    /// Why this evidence is a scan by itself.
    alone: Option<String>,
    /// Community ID of the triggering flow.
    cid: Option<String>,
    /// Tunnel of the triggering flow.
    tunnel: Option<&'a crate::tunnel::Tunnel>,
    features: &'a dyn Fn() -> Vec<f32>,
}

impl PortScan {
    pub fn new(cfg: PortScanConfig, amp_ports: &[u16]) -> Self {
        Self {
            window_ns: ns(cfg.window_secs),
            slow_ns: ns(cfg.slow_window_secs.max(cfg.window_secs)),
            amp_ports: amp_ports.iter().copied().collect(),
            burst_ns: ns(cfg.burst_window_secs),
            cfg,
            keys: KeyMap::new(),
            udp: KeyMap::new(),
            burst: KeyMap::new(),
        }
    }

    /// Notes a UDP flow (source and destination port) or a port-unreachable flow (rejections)
    /// of `src` towards `dst`; true when the pair now shows a raw-socket UDP scan.
    fn udp_trail(
        &mut self,
        src: IpAddr,
        dst: IpAddr,
        ports: Option<(u16, u16)>,
        rejections: u64,
        ts: u64,
        cx: &mut Cx,
    ) -> bool {
        let (w, now) = (self.window_ns, cx.now);
        // Least recently updated trails make room (a spoofed flood cannot pin the table).
        let t = window::slot(
            &mut self.udp,
            (src, dst),
            cx.common.max_keys.min(1 << 16),
            || UdpTrail {
                ports: HashMap::new(),
                rejections: 0,
                last_ns: ts,
            },
            |_| cx.stats.evicted_keys += 1,
        );
        if let Some((sport, dport)) = ports
            && (t.ports.len() < 16 || t.ports.contains_key(&sport))
        {
            t.ports
                .entry(sport)
                .or_insert_with(|| DistinctWindow::new(w, 64))
                .insert(dport, ts, now);
        }
        t.rejections = t.rejections.saturating_add(rejections);
        t.last_ns = t.last_ns.max(ts);
        t.rejections >= UDP_REJECTIONS && Self::trail_ports(t, now) >= UDP_REJECTED_PORTS
    }

    /// Counts a new flow for the burst tier; true when it raised (or fed) the alert.
    fn burst_tier(&mut self, s: &FlowStartRecord, cx: &mut Cx) -> bool {
        let (w, now, need) = (self.burst_ns, cx.now, self.cfg.burst_ports);
        let win = window::slot(
            &mut self.burst,
            (s.src_ip, s.dst_ip),
            cx.common.max_keys,
            || DistinctWindow::new(w, need.min(1 << 16) as usize + 1),
            |_| cx.stats.evicted_keys += 1,
        );
        win.insert((s.proto, s.dst_port), s.ts_ns, now);
        if win.len(now) < need
            || matches!(
                self.phase(s.src_ip, s.dst_ip),
                Phase::Alerting | Phase::CoolDown
            )
        {
            return false;
        }
        let feats = || start_features(s);
        let why = format!(
            "{need} distinct ports opened within {}s (burst)",
            self.cfg.burst_window_secs
        );
        self.probe(
            Probe {
                src: s.src_ip,
                sport: s.src_port,
                dst: s.dst_ip,
                dport: s.dst_port,
                proto: s.proto,
                ts: s.ts_ns,
                kind: if s.proto == TCP { K_SYN } else { K_UDP },
                item: (s.proto, s.dst_port),
                stealth: None,
                n: 1,
                alone: Some(why),
                cid: community_id(s.proto, s.src_ip, s.src_port, s.dst_ip, s.dst_port, None),
                tunnel: s.tunnel.as_ref(),
                features: &feats,
            },
            cx,
        );
        true
    }

    /// Most destination ports probed from one source port.
    fn trail_ports(t: &mut UdpTrail, now: u64) -> u64 {
        t.ports.values_mut().map(|w| w.len(now)).max().unwrap_or(0)
    }

    /// Phase of a (source, destination) pair.
    pub fn phase(&self, src: IpAddr, dst: IpAddr) -> Phase {
        self.keys
            .get(&(src, dst))
            .map_or(Phase::Idle, |e| e.incident.phase())
    }

    fn udp_ignored(&self, sport: u16, dport: u16) -> bool {
        sport == dport
            || self.amp_ports.contains(&sport)
            || self
                .cfg
                .ignore_udp_ports
                .iter()
                .any(|&(a, b)| (a..=b).contains(&dport))
    }

    fn probe(&mut self, p: Probe, cx: &mut Cx) {
        let (window_ns, slow_ns, cap) = (self.window_ns, self.slow_ns, cx.common.cap);
        let cfg = &self.cfg;
        let Some(e) = cx.slot(
            &mut self.keys,
            (p.src, p.dst),
            |e| &e.incident,
            || Entry {
                ports: DistinctWindow::new(slow_ns, cap),
                stealth: None,
                stealth_name: "",
                kinds: 0,
                incident: Incident::default(),
            },
        ) else {
            return;
        };
        let now = cx.now;
        e.ports.insert(p.item, p.ts, now);
        e.kinds |= p.kind;
        if let Some(name) = p.stealth {
            e.stealth_name = name;
            e.stealth
                .get_or_insert_with(|| DistinctWindow::new(window_ns, cap))
                .insert(p.item, p.ts, now);
        }
        let verdict = match e.incident.phase() {
            Phase::Alerting | Phase::CoolDown => Verdict::Noise,
            _ if p.alone.is_some() => Verdict::Alert,
            _ => {
                let fast = e.ports.count_since(now.saturating_sub(window_ns));
                let slow = e.ports.len(now);
                let stealth = e.stealth.as_mut().map_or(0, |s| s.len(now));
                if fast >= cfg.ports || slow >= cfg.slow_ports || stealth >= cfg.stealth_ports {
                    Verdict::Alert
                } else if fast >= cfg.suspicious_ports || stealth > 0 {
                    Verdict::Suspicious
                } else {
                    Verdict::Noise
                }
            }
        };
        let Entry {
            ports,
            stealth,
            stealth_name,
            kinds,
            incident,
        } = e;
        let macs = cx.macs;
        let build = |inc: &Incident| -> Alert {
            let fast = ports.count_since(now.saturating_sub(window_ns));
            let slow = ports.count_since(now.saturating_sub(slow_ns));
            let st = stealth
                .as_ref()
                .map_or(0, |s| s.count_since(now.saturating_sub(window_ns)));
            let mut names = Vec::new();
            for (bit, n) in [
                (K_SYN, "SYN"),
                (K_CONNECT, "connect"),
                (K_ACK, "ACK/FIN-ACK"),
                (K_UDP, "UDP"),
                (K_STEALTH, *stealth_name),
                (K_PROTO, "IP protocol"),
            ] {
                if *kinds & bit != 0 {
                    names.push(n);
                }
            }
            let why = if let Some(why) = &p.alone {
                why.clone()
            } else if st >= cfg.stealth_ports {
                format!(
                    "{st} ports hit by {stealth_name} probes within {}s",
                    cfg.window_secs
                )
            } else if fast >= cfg.ports {
                format!(
                    "{fast} distinct ports with failed probes within {}s",
                    cfg.window_secs
                )
            } else {
                format!(
                    "slow scan: {slow} distinct ports with failed probes within {}s",
                    cfg.slow_window_secs
                )
            };
            let mut a = base_alert(AlertKind::PORT_SCAN, now, p.ts, p.ts);
            a.src_ip = Some(p.src);
            let ports = p.proto == TCP || p.proto == UDP;
            a.src_port = ports.then_some(p.sport);
            a.dest_ip = Some(p.dst);
            a.dest_port = ports.then_some(p.dport);
            a.proto = proto_name(p.proto);
            a.src_mac = macs.get(&p.src);
            a.description = format!(
                "{} port scan of {} from {}: {why} ({} probes); count = probes",
                names.join("/"),
                p.dst,
                p.src,
                inc.count
            );
            a.community_id = p.cid.clone();
            a.tunnel = p.tunnel.cloned();
            a.features = (p.features)();
            a
        };
        cx.drive(incident, p.ts, p.n, verdict, build, |_, _| {});
    }
}

impl Detector for PortScan {
    fn on_start(&mut self, s: &FlowStartRecord, cx: &mut Cx) {
        if !classify::is_unicast(&s.dst_ip) {
            return;
        }
        // Burst tier: new connections to very many ports of one host within seconds are a scan
        // whatever their outcome, which the flow records only tell when the flows end.
        let burst_probe = match s.proto {
            TCP => !s.tcp_flags_unknown && s.tcp_flags & 0x12 == 0x02,
            UDP => !self.udp_ignored(s.src_port, s.dst_port),
            _ => false,
        };
        if burst_probe && self.burst_tier(s, cx) {
            return;
        }
        if s.proto != TCP || s.tcp_flags_unknown || !classify::stealth_flags(s.tcp_flags) {
            return;
        }
        let feats = || start_features(s);
        self.probe(
            Probe {
                src: s.src_ip,
                sport: s.src_port,
                dst: s.dst_ip,
                dport: s.dst_port,
                proto: TCP,
                ts: s.ts_ns,
                kind: K_STEALTH,
                item: (TCP, s.dst_port),
                stealth: Some(classify::stealth_name(s.tcp_flags)),
                n: 1,
                alone: None,
                cid: community_id(TCP, s.src_ip, s.src_port, s.dst_ip, s.dst_port, None),
                tunnel: s.tunnel.as_ref(),
                features: &feats,
            },
            cx,
        );
    }

    fn on_flow(&mut self, f: &FlowRecord, cx: &mut Cx) {
        // A host answering "protocol unreachable" again and again to one peer: that peer is
        // scanning its IP protocols (nmap -sO), even when only the answers are captured.
        if f.proto == classify::ICMP
            && f.icmp_type == 3
            && f.icmp_code == 2
            && f.rev.packets == 0
            && f.fwd.packets >= self.cfg.ports
            && classify::is_unicast(&f.dst_ip)
        {
            let feats = || flow_features(f);
            let why = format!(
                "{} answered {} probes with ICMP protocol-unreachable (IP protocol scan)",
                f.src_ip, f.fwd.packets
            );
            self.probe(
                Probe {
                    src: f.dst_ip,
                    sport: 0,
                    dst: f.src_ip,
                    dport: 0,
                    proto: classify::ICMP,
                    ts: f.first_ns,
                    kind: K_PROTO,
                    item: (classify::ICMP, 0),
                    stealth: None,
                    n: f.fwd.packets,
                    alone: Some(why),
                    cid: community_id(f.proto, f.src_ip, 0, f.dst_ip, 0, Some((3, 2))),
                    tunnel: f.tunnel.as_ref(),
                    features: &feats,
                },
                cx,
            );
            return;
        }
        // The scanner's own kernel rejecting the answers to its UDP probes.
        let raw_udp = if f.proto == classify::ICMP
            && f.icmp_type == 3
            && f.icmp_code == 3
            && classify::is_unicast(&f.dst_ip)
        {
            self.udp_trail(f.src_ip, f.dst_ip, None, f.fwd.packets, f.first_ns, cx)
        } else if f.proto == UDP
            && classify::is_unicast(&f.dst_ip)
            && !self.udp_ignored(f.src_port, f.dst_port)
            // A probe and its retries, and at most a few answers: not a conversation (QUIC,
            // RTP...) whose late packets a closed socket turns away.
            && f.fwd.packets <= 4
            && f.rev.packets <= 4
            // Only answered probes: the answers are what gets rejected (and a spoofed flood,
            // never answered, leaves no trail to keep).
            && f.rev.packets > 0
        {
            self.udp_trail(
                f.src_ip,
                f.dst_ip,
                Some((f.src_port, f.dst_port)),
                0,
                f.first_ns,
                cx,
            )
        } else {
            false
        };
        if raw_udp {
            let feats = || flow_features(f);
            let now = cx.now;
            let (ports, rejections) = match self.udp.get_mut(&(f.src_ip, f.dst_ip)) {
                Some(t) => (Self::trail_ports(t, now), t.rejections),
                None => (0, 0),
            };
            let why = format!(
                "UDP probes to {ports} ports from one source port, whose answers the source itself rejected {rejections} times with ICMP port-unreachable (raw-socket scanner)"
            );
            self.probe(
                Probe {
                    src: f.src_ip,
                    sport: f.src_port,
                    dst: f.dst_ip,
                    dport: f.dst_port,
                    proto: f.proto,
                    ts: f.first_ns,
                    kind: K_UDP,
                    item: (f.proto, f.dst_port),
                    stealth: None,
                    n: 1,
                    alone: Some(why),
                    cid: flow_community_id(f),
                    tunnel: f.tunnel.as_ref(),
                    features: &feats,
                },
                cx,
            );
            return;
        }
        if !classify::is_unicast(&f.dst_ip)
            || !classify::failed_probe(f)
            || classify::tcp_response_only(f)
        {
            return;
        }
        // nmap's SYN scan: the SYN-ACK of an open port is answered by a bare RST, never ACKed.
        let half_open = f.proto == TCP
            && f.fwd.flags.syn > 0
            && f.rev.flags.synack > 0
            && f.fwd.flags.ack == 0
            && f.fwd.flags.rst > 0;
        let kind = match f.proto {
            TCP if classify::started_stealthy(f) => return,
            TCP if classify::tcp_established(f) => K_CONNECT,
            TCP if f.fwd.flags.syn > 0 => K_SYN,
            TCP => K_ACK,
            UDP if self.udp_ignored(f.src_port, f.dst_port) => return,
            UDP => K_UDP,
            // Unanswered datagrams of other IP protocols (nmap -sO probes each protocol number
            // once): each protocol counts as one port, so a scan is seen even where the victim
            // rate-limits or never sends its protocol-unreachables.
            p if p != classify::ICMP && p != classify::ICMPV6 => K_PROTO,
            _ => return,
        };
        let feats = || flow_features(f);
        self.probe(
            Probe {
                src: f.src_ip,
                sport: f.src_port,
                dst: f.dst_ip,
                dport: f.dst_port,
                proto: f.proto,
                ts: f.first_ns,
                kind,
                item: (f.proto, f.dst_port),
                stealth: half_open.then_some("SYN half-open"),
                n: 1,
                alone: None,
                cid: community_id(f.proto, f.src_ip, f.src_port, f.dst_ip, f.dst_port, None),
                tunnel: f.tunnel.as_ref(),
                features: &feats,
            },
            cx,
        );
    }

    fn tick(&mut self, cx: &mut Cx) {
        let (quiet, keep) = (self.window_ns, self.slow_ns);
        cx.tick_map(
            &mut self.keys,
            quiet,
            keep,
            |e| &mut e.incident,
            |e, now| {
                let ports = e.ports.expire(now);
                let stealth = e.stealth.as_mut().map_or(0, |s| s.expire(now));
                if e.stealth.as_ref().is_some_and(|s| s.is_empty()) {
                    e.stealth = None;
                    return ports;
                }
                ports + stealth
            },
        );
        let (now, w) = (cx.now, self.window_ns);
        self.udp.retain(|_, t| now.saturating_sub(t.last_ns) <= w);
        self.burst.retain(|_, b| {
            b.prune(now);
            !b.is_empty()
        });
    }
}

impl AlertKind {
    /// One source probing many ports of one host.
    pub const PORT_SCAN: AlertKind = AlertKind::declare(&KindInfo {
        name: "port_scan",
        number: 1,
        severity: Severity::Medium,
        source: AlertSource::Dfa,
        summary: "one source probing many ports of one host",
    });
}

/// The `port_scan` family (see [`super::family`]).
pub const FAMILY: Family = Family {
    kind: AlertKind::PORT_SCAN,
    section: "port_scan",
    build: |c| Box::new(PortScan::new(c.port_scan.clone(), &amp_ports(c))),
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        detect::dfa::{DfaConfig, testutil::*},
        record::Record,
    };

    #[test]
    fn a_table_full_of_spoofed_suspicious_keys_cannot_hide_a_new_scanner() {
        let cfg = DfaConfig {
            max_keys: 20_000,
            ..DfaConfig::default()
        };
        let mut e = crate::detect::dfa::Engine::new(cfg).unwrap();
        let mut t = T0;
        // 100 000 spoofed sources, five failed probes each: every key is suspicious.
        for i in 0..100_000u32 {
            let src = std::net::Ipv4Addr::from(0xc633_0000 | i).to_string(); // 198.51.x.x+
            for p in 1..=5u16 {
                t += 1_000;
                e.observe(&Record::Flow(failed_syn(&src, "192.0.2.2", p, t)));
            }
        }
        // Every automaton keyed by source forgot the same 80 000 (port_scan among them).
        assert_eq!(e.detector::<PortScan>().unwrap().keys.len(), 20_000);
        assert_eq!(e.stats().evicted_keys % 80_000, 0);
        assert!(e.stats().evicted_keys >= 80_000);
        // A real scan from a new source still alerts.
        let mut ev = Vec::new();
        for p in 1..=15u16 {
            t += MS;
            ev.extend(e.observe(&Record::Flow(failed_syn("192.0.2.7", "192.0.2.2", p, t))));
        }
        let news = new_alerts(&ev, AlertKind::PORT_SCAN);
        assert_eq!(news.len(), 1, "{ev:?}");
        assert_eq!(news[0].src_ip, Some(ip("192.0.2.7")));
    }

    #[test]
    fn fifteen_failed_ports_raise_one_alert_then_updates() {
        let mut e = crate::detect::dfa::Engine::new(DfaConfig::default()).unwrap();
        let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
        let mut ev = Vec::new();
        for p in 1..=4u16 {
            ev.extend(e.observe(&Record::Flow(failed_syn(
                "192.0.2.1",
                "192.0.2.2",
                p,
                T0 + u64::from(p) * MS,
            ))));
        }
        assert_eq!(e.detector::<PortScan>().unwrap().phase(a, b), Phase::Idle);
        ev.extend(e.observe(&Record::Flow(failed_syn(
            "192.0.2.1",
            "192.0.2.2",
            5,
            T0 + 5 * MS,
        ))));
        assert_eq!(
            e.detector::<PortScan>().unwrap().phase(a, b),
            Phase::Suspicious
        );
        // Repeated probes of a known port add probes, not ports.
        for _ in 0..20 {
            ev.extend(e.observe(&Record::Flow(failed_syn(
                "192.0.2.1",
                "192.0.2.2",
                5,
                T0 + 6 * MS,
            ))));
        }
        assert_eq!(
            e.detector::<PortScan>().unwrap().phase(a, b),
            Phase::Suspicious
        );
        for p in 6..=15u16 {
            ev.extend(e.observe(&Record::Flow(failed_syn(
                "192.0.2.1",
                "192.0.2.2",
                p,
                T0 + 10 * MS,
            ))));
        }
        assert_eq!(
            e.detector::<PortScan>().unwrap().phase(a, b),
            Phase::Alerting
        );
        for p in 16..=100u16 {
            ev.extend(e.observe(&Record::Flow(failed_syn(
                "192.0.2.1",
                "192.0.2.2",
                p,
                T0 + 20 * MS,
            ))));
        }
        ev.extend(e.finish());
        let news = new_alerts(&ev, AlertKind::PORT_SCAN);
        assert_eq!(news.len(), 1);
        assert_eq!(news[0].count, 35, "5 + 20 repeats + 10 more probes");
        assert_eq!(news[0].src_ip, Some(a));
        assert_eq!(news[0].dest_ip, Some(b));
        assert_eq!(news[0].dest_port, Some(15));
        assert_eq!(news[0].features.len(), crate::ann::N_FEATURES);
        assert!(news[0].community_id.as_deref().unwrap().starts_with("1:"));
        let f = finals(&ev);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].count, 120);
        // All later probes fell within one second: one update, at finish.
        assert_eq!(updates(&ev, 1), 1);
    }

    /// Quiet time on a live sensor: one tick a second from `from_s` to `to_s` after `T0`
    /// (ticks move the engine by at most a second each).
    fn quiet(
        e: &mut crate::detect::dfa::Engine,
        from_s: u64,
        to_s: u64,
    ) -> Vec<crate::alert::AlertEvent> {
        (from_s..=to_s).flat_map(|s| e.tick(T0 + s * S)).collect()
    }

    #[test]
    fn cool_down_then_new_incident() {
        let cfg = DfaConfig {
            cooldown_secs: 60,
            ..DfaConfig::default()
        };
        let mut e = crate::detect::dfa::Engine::new(cfg).unwrap();
        let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
        for p in 1..=15u16 {
            e.observe(&Record::Flow(failed_syn("192.0.2.1", "192.0.2.2", p, T0)));
        }
        assert_eq!(
            e.detector::<PortScan>().unwrap().phase(a, b),
            Phase::Alerting
        );
        quiet(&mut e, 0, 301);
        assert_eq!(
            e.detector::<PortScan>().unwrap().phase(a, b),
            Phase::CoolDown
        );
        // Evidence during cool-down: same alert.
        let ev = e.observe(&Record::Flow(failed_syn(
            "192.0.2.1",
            "192.0.2.2",
            99,
            T0 + 302 * S,
        )));
        assert!(
            ev.iter()
                .all(|x| !matches!(x, crate::alert::AlertEvent::New(_)))
        );
        assert_eq!(
            e.detector::<PortScan>().unwrap().phase(a, b),
            Phase::Alerting
        );
        let ev = quiet(&mut e, 302, 603);
        assert_eq!(
            e.detector::<PortScan>().unwrap().phase(a, b),
            Phase::CoolDown
        );
        assert_eq!(ev.len(), 1, "the pending update");
        assert_eq!(ev[0].alert().count, 16);
        let ev = quiet(&mut e, 604, 664);
        assert_eq!(e.detector::<PortScan>().unwrap().phase(a, b), Phase::Idle);
        assert!(ev.is_empty(), "nothing changed since the last report");
        // A later scan is a new incident with a new id.
        let mut ev = Vec::new();
        for p in 1..=15u16 {
            ev.extend(e.observe(&Record::Flow(failed_syn(
                "192.0.2.1",
                "192.0.2.2",
                p,
                T0 + 4000 * S,
            ))));
        }
        let news = new_alerts(&ev, AlertKind::PORT_SCAN);
        assert_eq!(news.len(), 1);
        assert_eq!(news[0].id, 2);
    }

    #[test]
    fn stealth_probes_alert_below_volume_threshold() {
        let recs = (0..5u16).map(|p| {
            let mut s = start(
                "192.0.2.7",
                5555,
                "192.0.2.8",
                20 + p,
                6,
                T0 + u64::from(p) * MS,
            );
            s.tcp_flags = 0x29;
            Record::FlowStart(s)
        });
        let (_, ev) = run(DfaConfig::default(), recs);
        let news = new_alerts(&ev, AlertKind::PORT_SCAN);
        assert_eq!(news.len(), 1);
        assert!(
            news[0].description.contains("XMAS"),
            "{}",
            news[0].description
        );
        assert_eq!(news[0].src_mac.as_deref(), Some("02:00:00:00:00:01"));
    }

    #[test]
    fn ip_protocol_scan_seen_from_the_answers() {
        let mut f = flow("10.0.0.2", 0, "10.0.0.128", 0, 1, T0);
        f.icmp_type = 3;
        f.icmp_code = 2;
        f.fwd.packets = 252;
        f.last_ns = T0 + 30 * MS;
        let (e, ev) = run(DfaConfig::default(), [Record::Flow(f)]);
        let news = new_alerts(&ev, AlertKind::PORT_SCAN);
        assert_eq!(news.len(), 1);
        assert_eq!(
            news[0].src_ip,
            Some(ip("10.0.0.128")),
            "the scanner is the one answered"
        );
        assert_eq!(news[0].dest_ip, Some(ip("10.0.0.2")));
        assert_eq!(news[0].count, 252);
        assert_eq!(news[0].src_port, None);
        assert_eq!(
            e.detector::<PortScan>()
                .unwrap()
                .phase(ip("10.0.0.128"), ip("10.0.0.2")),
            Phase::Alerting
        );
    }

    #[test]
    fn ip_protocol_scan_seen_from_the_probes() {
        // nmap -sO from a victim that answers nothing (rate-limited protocol-unreachables):
        // one unanswered datagram per IP protocol number, 2..=40 without TCP and UDP.
        let recs: Vec<Record> = (2u8..=40)
            .filter(|p| ![6, 17].contains(p))
            .enumerate()
            .map(|(i, p)| Record::Flow(flow("10.0.0.128", 0, "10.0.0.2", 0, p, T0 + i as u64 * MS)))
            .collect();
        let (_, ev) = run(DfaConfig::default(), recs);
        let news = new_alerts(&ev, AlertKind::PORT_SCAN);
        assert_eq!(news.len(), 1);
        assert_eq!(news[0].src_ip, Some(ip("10.0.0.128")));
        assert_eq!(news[0].dest_ip, Some(ip("10.0.0.2")));
        assert_eq!(news[0].src_port, None);
        assert!(
            news[0].description.starts_with(
                "IP protocol port scan of 10.0.0.2 from 10.0.0.128: 15 distinct ports"
            ),
            "{}",
            news[0].description
        );
    }

    #[test]
    fn a_few_one_way_tunnel_protocols_are_no_scan() {
        // GRE, ESP, IP-in-IP and 6in4 one way (asymmetric routing), answered AH, and IGMP and
        // OSPF to multicast groups: no port scan.
        let mut recs = Vec::new();
        for (i, p) in [47u8, 50, 4, 41, 51].into_iter().enumerate() {
            let mut f = flow("10.0.0.1", 0, "10.0.0.2", 0, p, T0 + i as u64 * MS);
            if p == 51 {
                f.rev.packets = 3;
            }
            recs.push(Record::Flow(f));
        }
        for (i, p) in (0..20u8).map(|k| (k, if k % 2 == 0 { 2u8 } else { 89 })) {
            let g = format!("224.0.0.{}", 5 + i);
            recs.push(Record::Flow(flow(
                "10.0.0.1",
                0,
                &g,
                0,
                p,
                T0 + (10 + u64::from(i)) * MS,
            )));
        }
        let (_, ev) = run(DfaConfig::default(), recs);
        assert!(new_alerts(&ev, AlertKind::PORT_SCAN).is_empty());
    }

    #[test]
    fn small_syn_scan_with_open_ports() {
        // nmap -sS of 10 ports, 6 open: each open port's SYN-ACK is answered by a bare RST.
        let mut recs = Vec::new();
        for (i, p) in [21u16, 22, 25, 80, 139, 445, 20, 23, 24, 3306]
            .into_iter()
            .enumerate()
        {
            let mut f = failed_syn("192.168.117.135", "192.168.117.131", p, T0 + i as u64 * MS);
            f.src_port = 42425;
            if i < 6 {
                f.fwd.flags.rst = 1;
                f.rev.packets = 1;
                f.rev.flags.synack = 1;
                f.rev.flags.ack = 1;
            } else {
                f.rev.packets = 1;
                f.rev.flags.rst = 1;
            }
            recs.push(Record::Flow(f));
        }
        let (_, ev) = run(DfaConfig::default(), recs.clone());
        let news = new_alerts(&ev, AlertKind::PORT_SCAN);
        assert_eq!(news.len(), 1);
        assert_eq!(news[0].count, 5, "the fifth half-open port");
        assert!(
            news[0].description.contains("SYN half-open"),
            "{}",
            news[0].description
        );
        // A client whose connections completed the handshake (ACK) is not half-open.
        let ok: Vec<Record> = recs
            .into_iter()
            .map(|r| match r {
                Record::Flow(mut f) => {
                    f.fwd.flags.ack = 1;
                    Record::Flow(f)
                }
                r => r,
            })
            .collect();
        let (_, ev) = run(DfaConfig::default(), ok);
        assert!(new_alerts(&ev, AlertKind::PORT_SCAN).is_empty());
    }

    #[test]
    fn raw_socket_udp_scan_rejects_its_own_answers() {
        let (s, v) = ("192.168.117.135", "192.168.117.131");
        let mut recs = Vec::new();
        for (p, answered) in [(138u16, false), (111, true), (53, true), (137, true)] {
            let mut f = flow(s, 39600, v, p, 17, T0);
            if answered {
                f.rev.packets = 1;
            }
            recs.push(Record::Flow(f));
        }
        let mut icmp = flow(s, 0, v, 0, 1, T0 + MS);
        icmp.icmp_type = 3;
        icmp.icmp_code = 3;
        icmp.fwd.packets = 6;
        recs.push(Record::Flow(icmp.clone()));
        let (_, ev) = run(DfaConfig::default(), recs);
        let news = new_alerts(&ev, AlertKind::PORT_SCAN);
        assert_eq!(news.len(), 1);
        assert_eq!(news[0].src_ip, Some(ip(s)));
        assert!(
            news[0].description.contains("raw-socket"),
            "{}",
            news[0].description
        );
        // QUIC to three ports, a socket each, late packets turned away: not a scan.
        let mut recs: Vec<Record> = [443u16, 4433, 4434]
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                let mut f = flow(s, 40000 + i as u16, v, p, 17, T0);
                f.fwd.packets = 2;
                f.rev.packets = 2;
                Record::Flow(f)
            })
            .collect();
        recs.push(Record::Flow(icmp.clone()));
        let (_, ev) = run(DfaConfig::default(), recs);
        assert!(ev.is_empty());
        // A resolver client turning away two late answers on one port is not a scan.
        let mut late = icmp;
        late.fwd.packets = 2;
        let recs = vec![
            Record::Flow(flow(s, 39600, v, 53, 17, T0)),
            Record::Flow(late),
        ];
        let (_, ev) = run(DfaConfig::default(), recs);
        assert!(ev.is_empty());
    }

    #[test]
    fn burst_of_new_connections_alerts_before_any_flow_ends() {
        let mut e = crate::detect::dfa::Engine::new(DfaConfig::default()).unwrap();
        let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
        let mut ev = Vec::new();
        for p in 1..=100u16 {
            ev.extend(e.observe(&Record::FlowStart(start(
                "192.0.2.1",
                50000,
                "192.0.2.2",
                p,
                6,
                T0 + u64::from(p) * MS,
            ))));
            if p == 99 {
                assert_eq!(e.detector::<PortScan>().unwrap().phase(a, b), Phase::Idle);
            }
        }
        assert_eq!(
            e.detector::<PortScan>().unwrap().phase(a, b),
            Phase::Alerting
        );
        // The flow records follow: more probes of the same incident, no second alert.
        for p in 1..=100u16 {
            ev.extend(e.observe(&Record::Flow(failed_syn(
                "192.0.2.1",
                "192.0.2.2",
                p,
                T0 + u64::from(p) * MS,
            ))));
        }
        ev.extend(e.finish());
        let news = new_alerts(&ev, AlertKind::PORT_SCAN);
        assert_eq!(news.len(), 1);
        assert!(
            news[0].description.contains("burst"),
            "{}",
            news[0].description
        );
        assert_eq!(finals(&ev)[0].count, 101);
    }

    #[test]
    fn slow_scan_over_the_long_window() {
        // One new port every 30 s: 10 per 5 min (under 15), 30 within 15 min.
        let recs = (0..30u16).map(|p| {
            Record::Flow(failed_syn(
                "192.0.2.1",
                "192.0.2.2",
                1000 + p,
                T0 + u64::from(p) * 30 * S,
            ))
        });
        let (_, ev) = run(DfaConfig::default(), recs);
        let news = new_alerts(&ev, AlertKind::PORT_SCAN);
        assert_eq!(news.len(), 1);
        assert!(news[0].description.contains("slow scan"));
    }

    #[test]
    fn successful_and_ignored_flows_are_not_probes() {
        let mut recs = Vec::new();
        for p in 0..40u16 {
            // Passive FTP data connections: many ports, but data flowed.
            recs.push(Record::Flow(session(
                "192.0.2.1",
                40000 + p,
                "192.0.2.2",
                30000 + p,
                T0,
                1,
                5000,
            )));
            // UDP traceroute probes, and replies from port 53.
            recs.push(Record::Flow(flow(
                "192.0.2.1",
                40000,
                "192.0.2.3",
                33434 + p,
                17,
                T0,
            )));
            recs.push(Record::Flow(flow(
                "192.0.2.4",
                53,
                "192.0.2.1",
                1000 + p,
                17,
                T0,
            )));
            // Multicast destinations.
            recs.push(Record::Flow(flow(
                "192.0.2.1",
                5353,
                "224.0.0.251",
                1000 + p,
                17,
                T0,
            )));
        }
        let (_, ev) = run(DfaConfig::default(), recs);
        assert!(ev.is_empty(), "{ev:?}");
    }
}
