//! `host_sweep`: one source probing one service on many hosts (ICMP echo, a TCP port, a UDP
//! port), the address scan of Zeek.
//!
//! Key: (source IP, service). Evidence: a finished flow that was a failed probe (no reply to an
//! echo request or UDP datagram; a TCP attempt refused or unanswered) towards a unicast
//! address. Alert at `hosts` distinct such hosts within the window (Zeek: 25 in 5 min, keyed by
//! scanner and port, like here) when they are *dense* — at most one /24 (IPv6: /64) prefix per
//! `dense_hosts_per_prefix` hosts, as when a subnet is walked — or at `scattered_hosts` when they
//! are spread over the Internet, which is also what peer-to-peer clients do when they call
//! peers on a well-known port (Gnutella 6346, BitTorrent 6881) that are gone. `count` = probes.
use std::{collections::HashSet, net::IpAddr};

use super::family::Family;
use super::family::amp_ports;
use super::window::KeyMap;
use super::{
    Cx, Detector,
    automaton::{Incident, Phase, Verdict},
    classify::{self, TCP, UDP},
    config::{HostSweepConfig, ns},
    window::DistinctWindow,
};
use crate::alert::build::base_alert;
use crate::{
    alert::{AlertKind, AlertSource, KindInfo, Severity},
    record::FlowRecord,
};

/// The probed service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Service {
    Echo,
    /// Other ICMP queries used for host discovery (timestamp, address mask, information).
    IcmpQuery(u8),
    Tcp(u16),
    Udp(u16),
}

impl Service {
    fn describe(self) -> String {
        match self {
            Self::Echo => "ICMP echo".into(),
            Self::IcmpQuery(t) => format!("ICMP type {t} query"),
            Self::Tcp(p) => format!("TCP port {p}"),
            Self::Udp(p) => format!("UDP port {p}"),
        }
    }
}

pub struct Entry {
    hosts: DistinctWindow<IpAddr>,
    prefixes: DistinctWindow<IpAddr>,
    pub incident: Incident,
}

pub struct HostSweep {
    cfg: HostSweepConfig,
    window_ns: u64,
    amp_ports: HashSet<u16>,
    keys: KeyMap<(IpAddr, Service), Entry>,
}

impl HostSweep {
    pub fn new(cfg: HostSweepConfig, amp_ports: &[u16]) -> Self {
        Self {
            window_ns: ns(cfg.window_secs),
            amp_ports: amp_ports.iter().copied().collect(),
            cfg,
            keys: KeyMap::new(),
        }
    }

    pub fn phase(&self, src: IpAddr, svc: Service) -> Phase {
        self.keys
            .get(&(src, svc))
            .map_or(Phase::Idle, |e| e.incident.phase())
    }
}

/// The /24 (IPv4) or /64 (IPv6) network of an address.
fn prefix(ip: &IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            IpAddr::V4(std::net::Ipv4Addr::new(o[0], o[1], o[2], 0))
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

impl Detector for HostSweep {
    fn on_flow(&mut self, f: &FlowRecord, cx: &mut Cx) {
        if !classify::is_unicast(&f.dst_ip)
            || !classify::failed_probe(f)
            || classify::tcp_response_only(f)
        {
            return;
        }
        let svc = match f.proto {
            // A completed handshake means a live host with the port open (a browser's unused
            // preconnection, a port check): a sweep is recognised by the dead and the closed.
            TCP if classify::tcp_established(f) => return,
            TCP => Service::Tcp(f.dst_port),
            UDP if f.src_port == f.dst_port || self.amp_ports.contains(&f.src_port) => return,
            UDP => Service::Udp(f.dst_port),
            p if classify::is_echo_request(p, f.icmp_type) => Service::Echo,
            // Timestamp, information and address-mask requests (nmap -PP, -PM).
            classify::ICMP if matches!(f.icmp_type, 13 | 15 | 17) => {
                Service::IcmpQuery(f.icmp_type)
            }
            _ => return,
        };
        let (window_ns, cap, now) = (self.window_ns, cx.common.cap, cx.now);
        let cfg = &self.cfg;
        let Some(e) = cx.slot(
            &mut self.keys,
            (f.src_ip, svc),
            |e| &e.incident,
            || Entry {
                hosts: DistinctWindow::new(window_ns, cap),
                prefixes: DistinctWindow::new(window_ns, cap),
                incident: Incident::default(),
            },
        ) else {
            return;
        };
        e.hosts.insert(f.dst_ip, f.first_ns, now);
        e.prefixes.insert(prefix(&f.dst_ip), f.first_ns, now);
        let verdict = match e.incident.phase() {
            Phase::Alerting | Phase::CoolDown => Verdict::Noise,
            _ => {
                let n = e.hosts.len(now);
                let dense = e
                    .prefixes
                    .len(now)
                    .saturating_mul(cfg.dense_hosts_per_prefix)
                    <= n;
                if (dense && n >= cfg.hosts) || n >= cfg.scattered_hosts {
                    Verdict::Alert
                } else if n >= cfg.suspicious_hosts {
                    Verdict::Suspicious
                } else {
                    Verdict::Noise
                }
            }
        };
        let macs = cx.macs;
        let hosts = &e.hosts;
        let build = |inc: &Incident| {
            let mut a = base_alert(AlertKind::HOST_SWEEP, now, f.first_ns, f.first_ns).with_flow(f);
            a.src_mac = macs.get(&f.src_ip);
            a.description = format!(
                "host sweep from {}: {} probes to {} distinct hosts without answer within {}s ({} probes); count = probes",
                f.src_ip,
                svc.describe(),
                hosts.count_since(now.saturating_sub(window_ns)),
                cfg.window_secs,
                inc.count
            );
            a
        };
        cx.drive(&mut e.incident, f.first_ns, 1, verdict, build, |_, _| {});
    }

    fn tick(&mut self, cx: &mut Cx) {
        let w = self.window_ns;
        cx.tick_map(
            &mut self.keys,
            w,
            w,
            |e| &mut e.incident,
            |e, now| e.hosts.expire(now) + e.prefixes.expire(now),
        );
    }
}

impl AlertKind {
    /// One source probing one service on many hosts.
    pub const HOST_SWEEP: AlertKind = AlertKind::declare(&KindInfo {
        name: "host_sweep",
        number: 2,
        severity: Severity::Medium,
        source: AlertSource::Dfa,
        summary: "one source probing one service on many hosts",
    });
}

/// The `host_sweep` family (see [`super::family`]).
pub const FAMILY: Family = Family {
    kind: AlertKind::HOST_SWEEP,
    section: "host_sweep",
    build: |c| Box::new(HostSweep::new(c.host_sweep.clone(), &amp_ports(c))),
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        detect::dfa::{DfaConfig, testutil::*},
        record::Record,
    };

    fn echo(src: &str, dst: &str, ts: u64, answered: bool) -> Record {
        let mut f = flow(src, 0, dst, 0, 1, ts);
        f.icmp_type = 8;
        if answered {
            f.rev.packets = 1;
        }
        Record::Flow(f)
    }

    #[test]
    fn icmp_sweep_one_alert_with_exact_phases() {
        let mut e = crate::detect::dfa::Engine::new(DfaConfig::default()).unwrap();
        let src = ip("10.9.0.1");
        let mut ev = Vec::new();
        for h in 1..=7u8 {
            ev.extend(e.observe(&echo(
                "10.9.0.1",
                &format!("10.9.1.{h}"),
                T0 + u64::from(h) * MS,
                false,
            )));
        }
        assert_eq!(
            e.detector::<HostSweep>().unwrap().phase(src, Service::Echo),
            Phase::Idle
        );
        ev.extend(e.observe(&echo("10.9.0.1", "10.9.1.8", T0 + 8 * MS, false)));
        assert_eq!(
            e.detector::<HostSweep>().unwrap().phase(src, Service::Echo),
            Phase::Suspicious
        );
        for h in 9..=254u8 {
            ev.extend(e.observe(&echo(
                "10.9.0.1",
                &format!("10.9.1.{h}"),
                T0 + u64::from(h) * MS,
                false,
            )));
        }
        assert_eq!(
            e.detector::<HostSweep>().unwrap().phase(src, Service::Echo),
            Phase::Alerting
        );
        ev.extend(e.finish());
        let news = new_alerts(&ev, AlertKind::HOST_SWEEP);
        assert_eq!(news.len(), 1);
        assert_eq!(news[0].count, 25);
        assert_eq!(news[0].proto, "icmp");
        assert_eq!(finals(&ev)[0].count, 254);
    }

    #[test]
    fn answered_pings_and_many_services_are_not_a_sweep() {
        let mut recs = Vec::new();
        for h in 1..=100u8 {
            // A monitoring host whose pings are answered.
            recs.push(echo("10.9.0.1", &format!("10.9.1.{h}"), T0, true));
            // Failed TCP attempts to many hosts, each on a different port (P2P peers).
            recs.push(Record::Flow(failed_syn(
                "10.9.0.2",
                &format!("10.9.2.{h}"),
                6000 + u16::from(h),
                T0,
            )));
        }
        let (_, ev) = run(DfaConfig::default(), recs);
        assert!(ev.is_empty());
    }

    #[test]
    fn peers_all_over_the_internet_need_many_more_hosts() {
        let peer = |i: u64| format!("{}.{}.{}.7", 11 + i % 100, (i * 7) % 250, (i * 13) % 250);
        let recs: Vec<Record> = (0..249u64)
            .map(|i| Record::Flow(failed_syn("10.9.0.4", &peer(i), 6346, T0 + i * MS)))
            .collect();
        let (e, ev) = run(DfaConfig::default(), recs.clone());
        assert!(ev.is_empty());
        assert_eq!(
            e.detector::<HostSweep>()
                .unwrap()
                .phase(ip("10.9.0.4"), Service::Tcp(6346)),
            Phase::Suspicious
        );
        let mut more = recs;
        more.push(Record::Flow(failed_syn(
            "10.9.0.4",
            &peer(249),
            6346,
            T0 + 249 * MS,
        )));
        let (_, ev) = run(DfaConfig::default(), more);
        let news = new_alerts(&ev, AlertKind::HOST_SWEEP);
        assert_eq!(news.len(), 1);
        assert_eq!(news[0].count, 250);
    }

    #[test]
    fn unused_preconnections_are_not_probes() {
        // A browser opens connections to 30 CDN addresses of one /24 and never uses them.
        let recs = (1..=30u8).map(|h| {
            let mut f = failed_syn(
                "10.9.0.5",
                &format!("203.0.113.{h}"),
                443,
                T0 + u64::from(h) * MS,
            );
            f.fwd.flags.ack = 2;
            f.fwd.flags.fin = 1;
            f.rev.packets = 2;
            f.rev.flags.synack = 1;
            f.rev.flags.ack = 2;
            Record::Flow(f)
        });
        let (_, ev) = run(DfaConfig::default(), recs);
        assert!(ev.is_empty());
    }

    #[test]
    fn tcp_sweep_keyed_by_port() {
        let recs = (1..=30u8).map(|h| {
            Record::Flow(failed_syn(
                "10.9.0.3",
                &format!("10.9.3.{h}"),
                80,
                T0 + u64::from(h) * S,
            ))
        });
        let (e, ev) = run(DfaConfig::default(), recs);
        let news = new_alerts(&ev, AlertKind::HOST_SWEEP);
        assert_eq!(news.len(), 1);
        assert_eq!(news[0].dest_port, Some(80));
        assert_eq!(
            e.detector::<HostSweep>()
                .unwrap()
                .phase(ip("10.9.0.3"), Service::Tcp(80)),
            Phase::Alerting
        );
    }
}
