//! `udp_flood`: UDP towards one victim at flood rate.
//!
//! Key: victim IP. Evidence: flow-start records of UDP flows to a unicast victim (a flood with
//! random or spoofed ports and sources makes a new flow per packet), except unsolicited
//! responses from reflection-service ports, which are [`super::amplification`]'s. A single
//! one-way flow at flood rate (fixed ports, e.g. `hping3 --udp -k`) is an alert by itself while
//! it runs (interim updates) or when it ends: 1000 packets/s for 10 000 packets, or for 1000
//! when they are small ([`FloodConfig::heavy_enough`]). Alert at `new_flows` flows within the
//! window (default 2500 in 5 s). `count` = new flows, plus the packets of heavy flows.
use std::{collections::HashSet, net::IpAddr};

use super::family::Family;
use super::family::amp_ports;
use super::{
    Cx, Detector,
    automaton::Phase,
    classify::{self, UDP},
    config::FloodConfig,
    flood::{FloodTable, Summary, one_way_pps},
};
use crate::alert::build::{base_alert, community_id, flow_features, start_features};
use crate::{
    alert::{Alert, AlertKind, AlertSource, KindInfo, Severity},
    record::{FlowRecord, FlowStartRecord},
};

pub struct UdpFlood {
    table: FloodTable<IpAddr>,
    amp_ports: HashSet<u16>,
}

fn alert(s: &Summary, now: u64, ts: u64, window: u64, dst: IpAddr) -> Alert {
    let mut a = base_alert(AlertKind::UDP_FLOOD, now, ts, ts);
    a.src_ip = s.dominant;
    a.dest_ip = Some(dst);
    a.proto = "udp".into();
    let who = match s.dominant {
        Some(d) => format!("mostly from {d}"),
        None => format!("from {} distinct sources", s.sources),
    };
    a.description = format!(
        "UDP flood against {dst}: {} new flows within {window}s, {who} ({} in all); count = new flows and packets of heavy flows",
        s.in_window, s.count
    );
    a
}

impl UdpFlood {
    pub fn new(cfg: FloodConfig, amp_ports: &[u16]) -> Self {
        Self {
            table: FloodTable::new(cfg),
            amp_ports: amp_ports.iter().copied().collect(),
        }
    }

    pub fn phase(&self, victim: IpAddr) -> Phase {
        self.table.phase(&victim)
    }
}

impl Detector for UdpFlood {
    fn on_start(&mut self, s: &FlowStartRecord, cx: &mut Cx) {
        if s.proto != UDP
            || !classify::is_unicast(&s.dst_ip)
            || self.amp_ports.contains(&s.src_port)
        {
            return;
        }
        let (now, window) = (cx.now, self.table.cfg.window_secs);
        let mac = cx.macs.get(&s.src_ip);
        self.table
            .observe(cx, s.dst_ip, s.ts_ns, 1, s.src_ip, false, |sum| {
                let mut a = alert(sum, now, s.ts_ns, window, s.dst_ip);
                if sum.dominant == Some(s.src_ip) {
                    a.src_port = Some(s.src_port);
                    a.src_mac = mac.or_else(|| Some(s.src_mac.clone()));
                }
                a.dest_port = Some(s.dst_port);
                a.community_id =
                    community_id(UDP, s.src_ip, s.src_port, s.dst_ip, s.dst_port, None);
                a.tunnel = s.tunnel.clone();
                a.features = start_features(s);
                a
            });
    }

    fn on_update(&mut self, f: &FlowRecord, cx: &mut Cx) {
        self.on_flow(f, cx);
    }

    fn on_flow(&mut self, f: &FlowRecord, cx: &mut Cx) {
        let cfg = &self.table.cfg;
        if f.proto != UDP
            || !classify::is_unicast(&f.dst_ip)
            || self.amp_ports.contains(&f.src_port)
            || !cfg.heavy_enough(f.fwd.packets, f.fwd.l3_sum)
            || f.rev.packets.saturating_mul(10) > f.fwd.packets
            || one_way_pps(f.fwd.packets, f.first_ns, f.last_ns) < cfg.heavy_flow_pps
        {
            return;
        }
        let (now, window) = (cx.now, cfg.window_secs);
        // The flow's first packet was counted from its flow-start record.
        let n = self.table.uncounted(f, f.fwd.packets - 1);
        if n == 0 {
            return;
        }
        let mac = cx.macs.get(&f.src_ip);
        self.table.observe(cx, f.dst_ip, f.last_ns, n, f.src_ip, true, |sum| {
            let mut a = alert(sum, now, f.first_ns, window, f.dst_ip);
            a.src_ip = Some(f.src_ip);
            a.src_port = Some(f.src_port);
            a.dest_port = Some(f.dst_port);
            a.src_mac = mac;
            a.description = format!(
                "UDP flood against {}:{} from {}: one flow of {} packets at {} packets/s, no replies; count = new flows and packets of heavy flows",
                f.dst_ip,
                f.dst_port,
                f.src_ip,
                f.fwd.packets,
                one_way_pps(f.fwd.packets, f.first_ns, f.last_ns)
            );
            a.community_id = community_id(UDP, f.src_ip, f.src_port, f.dst_ip, f.dst_port, None);
            a.tunnel = f.tunnel.clone();
            a.features = flow_features(f);
            a
        });
    }

    fn tick(&mut self, cx: &mut Cx) {
        self.table.tick(cx);
    }
}

impl AlertKind {
    /// A flood of UDP datagrams at one victim.
    pub const UDP_FLOOD: AlertKind = AlertKind::declare(&KindInfo {
        name: "udp_flood",
        number: 8,
        severity: Severity::High,
        source: AlertSource::Dfa,
        summary: "a flood of UDP datagrams at one victim",
    });
}

/// The `udp_flood` family (see [`super::family`]).
pub const FAMILY: Family = Family {
    kind: AlertKind::UDP_FLOOD,
    section: "udp_flood",
    build: |c| Box::new(UdpFlood::new(c.udp_flood.clone(), &amp_ports(c))),
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        detect::dfa::{DfaConfig, testutil::*},
        record::Record,
    };

    /// One one-way flow of `packets` datagrams of `l3` bytes over `secs` seconds.
    fn one_way(packets: u64, l3: u16, secs: u64) -> Record {
        let mut f = flow("198.51.100.7", 5555, "192.0.2.8", 9999, 17, T0);
        f.last_ns = T0 + secs * 1_000_000_000;
        f.fwd.packets = packets;
        (f.fwd.l3_min, f.fwd.l3_max) = (l3, l3);
        f.fwd.l3_sum = packets * u64::from(l3);
        Record::Flow(f)
    }

    #[test]
    fn one_flow_of_small_datagrams_is_a_flood_sooner_than_one_of_large() {
        let kinds = |r: Record| {
            let (_, ev) = run(DfaConfig::default(), [r]);
            new_alerts(&ev, AlertKind::UDP_FLOOD).len()
        };
        // `hping3 --udp -k -c 2000 -i u1000`: empty datagrams (28 L3 bytes), 2 s.
        assert_eq!(kinds(one_way(2000, 28, 2)), 1);
        // 128 bytes on average is still small; 129 is not.
        assert_eq!(kinds(one_way(1000, 128, 1)), 1);
        assert_eq!(kinds(one_way(1000, 129, 1)), 0);
        // iperf3 at 12 Mbit/s: 1000 packets/s of 1500 bytes for 5 s is not (yet) a flood...
        assert_eq!(kinds(one_way(5000, 1500, 5)), 0);
        // ...at 10 s it is, as before.
        assert_eq!(kinds(one_way(10_000, 1500, 10)), 1);
        // Small but slow (VoIP at 50 packets/s for a minute): no.
        assert_eq!(kinds(one_way(3000, 60, 60)), 0);
        // Below the small tier's count: no.
        assert_eq!(kinds(one_way(999, 28, 0)), 0);
    }

    #[test]
    fn random_port_flood() {
        let mut e = crate::detect::dfa::Engine::new(DfaConfig::default()).unwrap();
        let v = ip("192.0.2.53");
        let mut ev = Vec::new();
        for i in 0..5000u64 {
            let r = Record::FlowStart(start(
                "198.51.100.1",
                40_000 + (i % 20_000) as u16,
                "192.0.2.53",
                (i % 65_000) as u16,
                17,
                T0 + i * 500_000,
            ));
            ev.extend(e.observe(&r));
            if i == 623 {
                assert_eq!(e.detector::<UdpFlood>().unwrap().phase(v), Phase::Idle);
            }
            if i == 624 {
                assert_eq!(
                    e.detector::<UdpFlood>().unwrap().phase(v),
                    Phase::Suspicious
                );
            }
        }
        assert_eq!(e.detector::<UdpFlood>().unwrap().phase(v), Phase::Alerting);
        ev.extend(e.finish());
        let news = new_alerts(&ev, AlertKind::UDP_FLOOD);
        assert_eq!(news.len(), 1);
        // 2000 flows a second: the one-second peak tier (1000) fires first.
        assert_eq!(news[0].count, 1000);
        assert_eq!(news[0].src_ip, Some(ip("198.51.100.1")));
        // One source to random ports also looks like a UDP port scan (burst tier): both alerts.
        let f: Vec<_> = finals(&ev)
            .into_iter()
            .filter(|a| a.kind == AlertKind::UDP_FLOOD)
            .collect();
        assert_eq!(f[0].count, 5000);
    }

    #[test]
    fn heavy_single_flow_and_dns_server_load() {
        let mut heavy = flow("198.51.100.2", 4444, "192.0.2.54", 80, 17, T0);
        heavy.fwd.packets = 50_000;
        heavy.last_ns = T0 + 10 * S;
        // A resolver answering 300 queries/s from 300 clients: 1500 new flows per 5 s.
        let mut recs: Vec<Record> = (0..3000u64)
            .map(|i| {
                Record::FlowStart(start(
                    &format!("10.1.{}.{}", i / 250, 1 + i % 250),
                    33000,
                    "192.0.2.1",
                    53,
                    17,
                    T0 + i * S / 300,
                ))
            })
            .collect();
        recs.push(Record::Flow(heavy));
        let (_, ev) = run(DfaConfig::default(), recs);
        let news = new_alerts(&ev, AlertKind::UDP_FLOOD);
        assert_eq!(news.len(), 1, "{news:?}");
        assert_eq!(news[0].dest_ip, Some(ip("192.0.2.54")));
        assert_eq!(news[0].src_ip, Some(ip("198.51.100.2")));
        assert_eq!(news[0].count, 49_999);
    }
}
