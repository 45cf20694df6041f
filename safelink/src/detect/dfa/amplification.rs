//! `amplification`: unsolicited responses from reflection services (DNS, NTP, SNMP, SSDP,
//! memcached, CLDAP, chargen...) towards one victim, whose address the attacker spoofed in
//! small requests.
//!
//! A UDP flow whose *first* packet comes from a reflection-service port (to a different port)
//! is a response nobody on this link asked for. Key: victim IP. The alert rises when
//! - `reflectors` (10) distinct reflectors send such responses within the window (10 s) and
//!   their first packets add up to `bytes` (50 000): volumetric reflection; or
//! - one such response is larger than its service ever answers honestly (per-packet rule,
//!   e.g. NTP ≥ 200 bytes: a mode 6/7 `monlist` reply; memcached ≥ 1000); or
//! - `large_reflectors` (10) reflectors send a large first response (≥ 512 bytes, more than a
//!   classic DNS answer) within the window: few but big responses, e.g. fragmented DNSSEC; or
//! - one such flow carries `heavy_flow_bytes` (1 MB) without a packet back; or
//! - TCP reflection: flows that start with a SYN-ACK (the SYN was sent with the victim's
//!   address) from `tcp_reflectors` (50) distinct servers within the window.
//!
//! Flow-start records count each response flow's first packet at once; when a response flow
//! ends, the rest of its packets and bytes are added. `count` = unsolicited response packets.
//! `src_ip` names the reflector of the triggering response, `dest_ip` the victim.
use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
};

use super::family::Family;
use super::window::KeyMap;
use super::{
    Cx, Detector,
    automaton::{Incident, Phase, Verdict},
    classify::{self, UDP},
    config::{AmplificationConfig, ns},
    window::{DistinctWindow, RateWindow},
};
use crate::alert::build::{base_alert, community_id, flow_features, start_features};
use crate::{
    alert::{AlertKind, AlertSource, KindInfo, Severity},
    record::{FlowRecord, FlowStartRecord},
};

pub struct Entry {
    reflectors: DistinctWindow<IpAddr>,
    /// Reflectors whose first response was large (≥ `large_response_l3`).
    large: DistinctWindow<IpAddr>,
    /// Sources of unsolicited TCP SYN-ACKs.
    tcp: DistinctWindow<IpAddr>,
    bytes: RateWindow,
    services: HashSet<u16>,
    pub incident: Incident,
}

pub struct Amplification {
    cfg: AmplificationConfig,
    /// port → (name, single-packet L3 threshold)
    services: HashMap<u16, (String, Option<u16>)>,
    window_ns: u64,
    keys: KeyMap<IpAddr, Entry>,
}

/// The response that is being judged.
struct Response<'a> {
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
    ts: u64,
    bytes: u64,
    /// Response packets this adds.
    packets: u64,
    /// Size of a flow's first packet (flow-start records only).
    first_len: Option<u16>,
    /// An unsolicited TCP SYN-ACK (reflection off TCP servers) rather than a UDP response.
    tcp: bool,
    /// Why this single response alerts by itself, if it does.
    alone: Option<String>,
    /// Tunnel of the triggering flow.
    tunnel: Option<&'a crate::tunnel::Tunnel>,
    features: &'a dyn Fn() -> Vec<f32>,
}

impl Amplification {
    pub fn new(cfg: AmplificationConfig) -> Self {
        Self {
            services: cfg
                .services
                .iter()
                .map(|s| (s.port, (s.name.clone(), s.single_packet_l3)))
                .collect(),
            window_ns: ns(cfg.window_secs),
            cfg,
            keys: KeyMap::new(),
        }
    }

    pub fn phase(&self, victim: IpAddr) -> Phase {
        self.keys
            .get(&victim)
            .map_or(Phase::Idle, |e| e.incident.phase())
    }

    fn name(&self, port: u16) -> &str {
        self.services.get(&port).map_or("?", |(n, _)| n.as_str())
    }

    fn response(&mut self, r: Response, cx: &mut Cx) {
        let (window_ns, cap, now) = (self.window_ns, cx.common.cap, cx.now);
        let cfg = &self.cfg;
        let services = &self.services;
        let Some(e) = cx.slot(
            &mut self.keys,
            r.dst,
            |e| &e.incident,
            || Entry {
                reflectors: DistinctWindow::new(window_ns, cap),
                large: DistinctWindow::new(window_ns, cap),
                tcp: DistinctWindow::new(window_ns, cap),
                bytes: RateWindow::new(window_ns),
                services: HashSet::new(),
                incident: Incident::default(),
            },
        ) else {
            return;
        };
        if e.services.len() < 32 && !r.tcp {
            e.services.insert(r.sport);
        }
        if !r.tcp {
            e.bytes.add(r.ts, r.bytes, now);
        }
        let mut why_tier = "";
        let verdict = match e.incident.phase() {
            Phase::Alerting | Phase::CoolDown => Verdict::Noise,
            _ if r.tcp => {
                e.tcp.insert(r.src, r.ts, now);
                let n = e.tcp.len(now);
                if n >= cfg.tcp_reflectors {
                    Verdict::Alert
                } else if n >= cfg.tcp_reflectors / 4 {
                    Verdict::Suspicious
                } else {
                    Verdict::Noise
                }
            }
            _ => {
                e.reflectors.insert(r.src, r.ts, now);
                if r.first_len.is_some_and(|l| l >= cfg.large_response_l3) {
                    e.large.insert(r.src, r.ts, now);
                }
                let refl = e.reflectors.len(now);
                let large = e.large.len(now);
                let bytes = e.bytes.sum(now);
                if r.alone.is_some() {
                    Verdict::Alert
                } else if refl >= cfg.reflectors && bytes >= cfg.bytes {
                    why_tier = "volume";
                    Verdict::Alert
                } else if large >= cfg.large_reflectors {
                    why_tier = "large";
                    Verdict::Alert
                } else if refl >= 3 {
                    Verdict::Suspicious
                } else {
                    Verdict::Noise
                }
            }
        };
        let Entry {
            reflectors,
            large,
            tcp,
            bytes,
            services: seen,
            incident,
        } = e;
        let build = |inc: &Incident| {
            let name = |p: &u16| {
                services
                    .get(p)
                    .map_or("?".to_owned(), |(n, _)| format!("{n}/{p}"))
            };
            let mut svc: Vec<String> = seen.iter().map(name).collect();
            svc.sort();
            let mut a = base_alert(AlertKind::AMPLIFICATION, now, r.ts, r.ts);
            a.src_ip = Some(r.src);
            a.src_port = Some(r.sport);
            a.dest_ip = Some(r.dst);
            a.dest_port = Some(r.dport);
            a.proto = if r.tcp { "tcp" } else { "udp" }.into();
            a.description = match &r.alone {
                None if r.tcp => format!(
                    "TCP SYN-ACK reflection towards {}: unsolicited SYN-ACKs from {} distinct servers within {}s ({} SYN-ACKs); count = unsolicited response packets",
                    r.dst,
                    tcp.len(now),
                    cfg.window_secs,
                    inc.count
                ),
                None if why_tier == "large" => format!(
                    "amplification/reflection towards {}: large unsolicited {} responses (≥ {} bytes) from {} reflectors within {}s ({} responses); count = unsolicited response packets",
                    r.dst,
                    svc.join(", "),
                    cfg.large_response_l3,
                    large.len(now),
                    cfg.window_secs,
                    inc.count
                ),
                Some(why) => format!(
                    "amplification/reflection towards {} from {}: {why} ({} unsolicited responses); count = unsolicited response packets",
                    r.dst, r.src, inc.count
                ),
                None => format!(
                    "amplification/reflection towards {}: unsolicited {} responses from {} reflectors, {} bytes within {}s ({} responses); count = unsolicited response packets",
                    r.dst,
                    svc.join(", "),
                    reflectors.len(now),
                    bytes.sum(now),
                    cfg.window_secs,
                    inc.count
                ),
            };
            let proto = if r.tcp { classify::TCP } else { UDP };
            a.community_id = community_id(proto, r.src, r.sport, r.dst, r.dport, None);
            a.tunnel = r.tunnel.cloned();
            a.features = (r.features)();
            a
        };
        cx.drive(incident, r.ts, r.packets, verdict, build, |_, _| {});
    }
}

impl Detector for Amplification {
    fn on_start(&mut self, s: &FlowStartRecord, cx: &mut Cx) {
        if !classify::is_unicast(&s.dst_ip) {
            return;
        }
        if s.proto == classify::TCP && s.tcp_flags & 0x12 == 0x12 {
            // A flow that starts with a SYN-ACK: the SYN came from elsewhere (spoofed).
            let feats = || start_features(s);
            self.response(
                Response {
                    src: s.src_ip,
                    sport: s.src_port,
                    dst: s.dst_ip,
                    dport: s.dst_port,
                    ts: s.ts_ns,
                    bytes: u64::from(s.l3_len),
                    packets: 1,
                    first_len: Some(s.l3_len),
                    tcp: true,
                    alone: None,
                    tunnel: s.tunnel.as_ref(),
                    features: &feats,
                },
                cx,
            );
            return;
        }
        if s.proto != UDP || s.src_port == s.dst_port {
            return;
        }
        let Some((_, single)) = self.services.get(&s.src_port) else {
            return;
        };
        let alone = single.filter(|&min| s.l3_len >= min).map(|min| {
            format!(
                "a single unsolicited {} response of {} bytes (honest replies stay under {min}: e.g. an NTP mode 6/7 monlist reply)",
                self.name(s.src_port),
                s.l3_len
            )
        });
        let feats = || start_features(s);
        self.response(
            Response {
                src: s.src_ip,
                sport: s.src_port,
                dst: s.dst_ip,
                dport: s.dst_port,
                ts: s.ts_ns,
                bytes: u64::from(s.l3_len),
                packets: 1,
                first_len: Some(s.l3_len),
                tcp: false,
                alone,
                tunnel: s.tunnel.as_ref(),
                features: &feats,
            },
            cx,
        );
    }

    fn on_flow(&mut self, f: &FlowRecord, cx: &mut Cx) {
        if f.proto != UDP
            || f.src_port == f.dst_port
            || f.rev.packets > 0
            || f.fwd.packets < 2
            || !classify::is_unicast(&f.dst_ip)
        {
            return;
        }
        let Some((_, single)) = self.services.get(&f.src_port) else {
            return;
        };
        // The rest of an unsolicited response flow (its first packet was counted from the
        // flow-start record): its bytes, spread over the window if the flow lasted longer.
        let rest = f.fwd.l3_sum.saturating_sub(u64::from(f.fwd.l3_min));
        let dur = f.last_ns.saturating_sub(f.first_ns).max(1);
        let in_window = if dur > self.window_ns {
            (rest as u128 * self.window_ns as u128 / dur as u128) as u64
        } else {
            rest
        };
        let alone = if f.fwd.l3_sum >= self.cfg.heavy_flow_bytes {
            Some(format!(
                "one unsolicited {} response flow of {} packets, {} bytes, nothing sent back",
                self.name(f.src_port),
                f.fwd.packets,
                f.fwd.l3_sum
            ))
        } else {
            single.filter(|&min| f.fwd.l3_max >= min).map(|min| {
                format!(
                    "unsolicited {} responses of up to {} bytes (honest replies stay under {min})",
                    self.name(f.src_port),
                    f.fwd.l3_max
                )
            })
        };
        let feats = || flow_features(f);
        self.response(
            Response {
                src: f.src_ip,
                sport: f.src_port,
                dst: f.dst_ip,
                dport: f.dst_port,
                ts: f.last_ns,
                bytes: in_window,
                packets: f.fwd.packets - 1,
                first_len: None,
                tcp: false,
                alone,
                tunnel: f.tunnel.as_ref(),
                features: &feats,
            },
            cx,
        );
    }

    fn tick(&mut self, cx: &mut Cx) {
        let w = self.window_ns;
        cx.tick_map(
            &mut self.keys,
            w,
            w,
            |e| &mut e.incident,
            |e, now| e.reflectors.expire(now) + e.large.expire(now) + e.tcp.expire(now),
        );
    }
}

impl AlertKind {
    /// Reflected replies of amplifying services (DNS, NTP, memcached...) converging on one victim.
    pub const AMPLIFICATION: AlertKind = AlertKind::declare(&KindInfo {
        name: "amplification",
        number: 10,
        severity: Severity::High,
        source: AlertSource::Dfa,
        summary: "reflected replies of amplifying services (DNS, NTP, memcached...) converging on one victim",
    });
}

/// The `amplification` family (see [`super::family`]).
pub const FAMILY: Family = Family {
    kind: AlertKind::AMPLIFICATION,
    section: "amplification",
    build: |c| Box::new(Amplification::new(c.amplification.clone())),
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        detect::dfa::{DfaConfig, testutil::*},
        record::Record,
    };

    fn resp(src: &str, sport: u16, dst: &str, dport: u16, len: u16, ts: u64) -> Record {
        let mut s = start(src, sport, dst, dport, 17, ts);
        s.l3_len = len;
        Record::FlowStart(s)
    }

    #[test]
    fn ntp_monlist_single_response() {
        let (e, ev) = run(
            DfaConfig::default(),
            [resp("208.104.95.10", 123, "78.46.76.2", 80, 396, T0)],
        );
        let news = new_alerts(&ev, AlertKind::AMPLIFICATION);
        assert_eq!(news.len(), 1);
        assert_eq!(news[0].src_ip, Some(ip("208.104.95.10")));
        assert_eq!(news[0].dest_ip, Some(ip("78.46.76.2")));
        assert_eq!(news[0].count, 1);
        assert_eq!(
            e.detector::<Amplification>()
                .unwrap()
                .phase(ip("78.46.76.2")),
            Phase::Alerting
        );
    }

    #[test]
    fn ordinary_ntp_and_ntp_peers_are_quiet() {
        let recs = [
            resp("192.0.2.123", 123, "198.51.100.1", 40000, 76, T0),
            resp("192.0.2.124", 123, "198.51.100.1", 123, 396, T0),
        ];
        let (_, ev) = run(DfaConfig::default(), recs);
        assert!(ev.is_empty());
    }

    #[test]
    fn snmp_reflection_from_many_reflectors() {
        let mut e = crate::detect::dfa::Engine::new(DfaConfig::default()).unwrap();
        let v = ip("10.10.10.10");
        let mut ev = Vec::new();
        for i in 0..400u64 {
            let src = format!("203.0.{}.{}", i / 200, 1 + i % 200);
            ev.extend(e.observe(&resp(&src, 161, "10.10.10.10", 3299, 300, T0 + i * 10_000)));
            let want = match i {
                0..=1 => Phase::Idle,
                2..=165 => Phase::Suspicious,
                _ => Phase::Alerting,
            };
            assert_eq!(
                e.detector::<Amplification>().unwrap().phase(v),
                want,
                "after response {}",
                i + 1
            );
        }
        ev.extend(e.finish());
        let news = new_alerts(&ev, AlertKind::AMPLIFICATION);
        assert_eq!(news.len(), 1);
        assert_eq!(news[0].count, 167, "50 000 bytes at 300 bytes each");
        assert_eq!(news[0].dest_ip, Some(v));
        assert!(
            news[0].description.contains("snmp/161"),
            "{}",
            news[0].description
        );
        assert_eq!(finals(&ev)[0].count, 400);
    }

    #[test]
    fn few_reflectors_with_many_packets_each() {
        // 12 DNS reflectors, one flow each (fixed victim port): 1 packet counted at the flow
        // start, the other 99 when the flow ends.
        let mut recs = Vec::new();
        for i in 0..12u64 {
            recs.push(resp(
                &format!("203.0.113.{}", i + 1),
                53,
                "192.0.2.77",
                80,
                400,
                T0 + i * MS,
            ));
        }
        let (_, ev) = run(DfaConfig::default(), recs.clone());
        assert!(ev.is_empty(), "first packets alone: 4800 bytes");
        for i in 0..12u64 {
            let mut f = flow(
                &format!("203.0.113.{}", i + 1),
                53,
                "192.0.2.77",
                80,
                17,
                T0 + i * MS,
            );
            f.last_ns = T0 + 2 * S;
            f.fwd.packets = 100;
            f.fwd.l3_min = 400;
            f.fwd.l3_max = 1400;
            f.fwd.l3_sum = 140_000;
            recs.push(Record::Flow(f));
        }
        let (_, ev) = run(DfaConfig::default(), recs);
        let news = new_alerts(&ev, AlertKind::AMPLIFICATION);
        assert_eq!(news.len(), 1);
        assert_eq!(news[0].count, 12 + 99);
        assert_eq!(finals(&ev)[0].count, 1200);
    }

    #[test]
    fn large_responses_from_a_few_reflectors() {
        let mut e = crate::detect::dfa::Engine::new(DfaConfig::default()).unwrap();
        let v = ip("192.0.2.78");
        let mut ev = Vec::new();
        for i in 0..10u64 {
            // Fragmented DNSSEC answers: first fragments of 1476 bytes, 14 760 bytes in all.
            let r = resp(
                &format!("203.0.113.{}", i + 1),
                53,
                "192.0.2.78",
                22,
                1476,
                T0 + i * 100 * MS,
            );
            ev.extend(e.observe(&r));
            let want = if i < 2 {
                Phase::Idle
            } else if i < 9 {
                Phase::Suspicious
            } else {
                Phase::Alerting
            };
            assert_eq!(
                e.detector::<Amplification>().unwrap().phase(v),
                want,
                "after response {}",
                i + 1
            );
        }
        let news = new_alerts(&ev, AlertKind::AMPLIFICATION);
        assert_eq!(news.len(), 1);
        assert!(
            news[0].description.contains("large"),
            "{}",
            news[0].description
        );
        assert_eq!(news[0].count, 10);
    }

    #[test]
    fn syn_ack_reflection() {
        let recs = (0..60u64).map(|i| {
            let mut s = start(
                &format!("198.18.{}.{}", i / 200, 1 + i % 200),
                80,
                "192.0.2.79",
                40000 + i as u16,
                6,
                T0 + i * MS,
            );
            s.tcp_flags = 0x12;
            Record::FlowStart(s)
        });
        let (e, ev) = run(DfaConfig::default(), recs);
        let news = new_alerts(&ev, AlertKind::AMPLIFICATION);
        assert_eq!(news.len(), 1);
        assert_eq!(news[0].proto, "tcp");
        assert_eq!(news[0].dest_ip, Some(ip("192.0.2.79")));
        assert_eq!(news[0].count, 50);
        assert!(new_alerts(&ev, AlertKind::SYN_FLOOD).is_empty());
        assert!(new_alerts(&ev, AlertKind::PORT_SCAN).is_empty());
        assert_eq!(
            e.detector::<Amplification>()
                .unwrap()
                .phase(ip("192.0.2.79")),
            Phase::Alerting
        );
    }

    #[test]
    fn a_few_ssdp_answers_are_not_an_attack() {
        let recs = (0..8u64).map(|i| {
            resp(
                &format!("192.168.1.{}", 10 + i),
                1900,
                "192.168.1.2",
                50000,
                320,
                T0 + i * MS,
            )
        });
        let (_, ev) = run(DfaConfig::default(), recs);
        assert!(ev.is_empty());
    }
}
