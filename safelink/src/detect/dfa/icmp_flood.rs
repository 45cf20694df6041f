//! `icmp_flood`: ICMP/ICMPv6 towards one victim at flood rate.
//!
//! Key: victim IP. ICMP flows are keyed per host pair, so a flood from many (spoofed) sources
//! shows as many new flows: flow-start records are counted at once. A flood from one source
//! (`ping -f`, `hping3 --icmp --flood`) is one flow, judged by its rate while it runs (interim updates) and when it ends; a flow of ICMP errors
//! (a victim's answers) never is. Alert at
//! `new_flows` flows within the window (default 1000 in 5 s) or one flow of 2500+ packets at
//! 500+ packets/s. `count` = new flows, plus the packets of heavy flows.
use std::net::IpAddr;

use super::family::Family;
use super::{
    Cx, Detector,
    automaton::Phase,
    classify::{self, ICMP, ICMPV6},
    config::FloodConfig,
    flood::{FloodTable, one_way_pps},
};
use crate::alert::build::{base_alert, community_id, proto_name, start_features};
use crate::{
    alert::{AlertKind, AlertSource, KindInfo, Severity},
    record::{FlowRecord, FlowStartRecord},
};

pub struct IcmpFlood {
    table: FloodTable<IpAddr>,
}

impl IcmpFlood {
    pub fn new(cfg: FloodConfig) -> Self {
        Self {
            table: FloodTable::new(cfg),
        }
    }

    pub fn phase(&self, victim: IpAddr) -> Phase {
        self.table.phase(&victim)
    }
}

impl Detector for IcmpFlood {
    fn on_start(&mut self, s: &FlowStartRecord, cx: &mut Cx) {
        if !(s.proto == ICMP || s.proto == ICMPV6) || !classify::is_unicast(&s.dst_ip) {
            return;
        }
        let (now, window) = (cx.now, self.table.cfg.window_secs);
        let mac = cx.macs.get(&s.src_ip);
        self.table.observe(cx, s.dst_ip, s.ts_ns, 1, s.src_ip, false, |sum| {
            let mut a = base_alert(AlertKind::ICMP_FLOOD, now, s.ts_ns, s.ts_ns);
            a.src_ip = sum.dominant;
            if sum.dominant == Some(s.src_ip) {
                a.src_mac = mac.or_else(|| Some(s.src_mac.clone()));
            }
            a.dest_ip = Some(s.dst_ip);
            a.proto = proto_name(s.proto);
            a.description = format!(
                "ICMP flood against {}: {} new ICMP flows (sources) within {window}s from {} distinct sources ({} in all); count = new flows and packets of heavy flows",
                s.dst_ip, sum.in_window, sum.sources, sum.count
            );
            a.community_id = community_id(s.proto, s.src_ip, 0, s.dst_ip, 0, Some((s.icmp_type, s.icmp_code)));
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
        // A flow of ICMP errors is a host answering other traffic (the port-unreachables of a
        // UDP flood's victim), not a flood by itself.
        if !(f.proto == ICMP || f.proto == ICMPV6)
            || classify::is_icmp_error(f.proto, f.icmp_type)
            || !classify::is_unicast(&f.dst_ip)
            || !cfg.heavy_enough(f.fwd.packets, f.fwd.l3_sum)
        {
            return;
        }
        let pps = one_way_pps(f.fwd.packets, f.first_ns, f.last_ns);
        if pps < cfg.heavy_flow_pps {
            return;
        }
        let now = cx.now;
        let n = self.table.uncounted(f, f.fwd.packets - 1);
        if n == 0 {
            return;
        }
        let mac = cx.macs.get(&f.src_ip);
        self.table.observe(cx, f.dst_ip, f.last_ns, n, f.src_ip, true, |_| {
            let mut a = base_alert(AlertKind::ICMP_FLOOD, now, f.first_ns, f.last_ns).with_flow(f);
            a.src_mac = mac;
            a.description = format!(
                "ICMP flood against {} from {}: {} packets (type {}) at {pps} packets/s; count = new flows and packets of heavy flows",
                f.dst_ip, f.src_ip, f.fwd.packets, f.icmp_type
            );
            a
        });
    }

    fn tick(&mut self, cx: &mut Cx) {
        self.table.tick(cx);
    }
}

impl AlertKind {
    /// A flood of ICMP echo requests at one victim.
    pub const ICMP_FLOOD: AlertKind = AlertKind::declare(&KindInfo {
        name: "icmp_flood",
        number: 9,
        severity: Severity::High,
        source: AlertSource::Dfa,
        summary: "a flood of ICMP echo requests at one victim",
    });
}

/// The `icmp_flood` family (see [`super::family`]).
pub const FAMILY: Family = Family {
    kind: AlertKind::ICMP_FLOOD,
    section: "icmp_flood",
    build: |c| Box::new(IcmpFlood::new(c.icmp_flood.clone())),
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        detect::dfa::{DfaConfig, testutil::*},
        record::Record,
    };

    #[test]
    fn ping_flood_is_one_heavy_flow() {
        let mut f = flow("198.51.100.3", 0, "192.0.2.9", 0, 1, T0);
        f.icmp_type = 8;
        f.fwd.packets = 10_000;
        f.rev.packets = 10_000;
        f.last_ns = T0 + 5 * S;
        let (e, ev) = run(DfaConfig::default(), [Record::Flow(f)]);
        let news = new_alerts(&ev, AlertKind::ICMP_FLOOD);
        assert_eq!(news.len(), 1);
        assert_eq!(news[0].count, 9_999);
        assert_eq!(news[0].src_ip, Some(ip("198.51.100.3")));
        assert_eq!(
            e.detector::<IcmpFlood>().unwrap().phase(ip("192.0.2.9")),
            Phase::Alerting
        );
    }

    #[test]
    fn interim_updates_alert_early_and_the_final_record_counts_the_rest() {
        use crate::{alert::AlertEvent, expiry::EndReason};
        let at = |packets: u64, secs: u64, open: bool| {
            let mut f = flow("198.51.100.3", 0, "192.0.2.9", 0, 1, T0);
            f.icmp_type = 8;
            f.fwd.packets = packets;
            f.last_ns = T0 + secs * S;
            f.end_reason = if open {
                EndReason::Open
            } else {
                EndReason::Idle
            };
            f
        };
        let (_, ev) = run(
            DfaConfig::default(),
            [
                Record::FlowUpdate(at(4_000, 1, true)),
                Record::FlowUpdate(at(8_000, 2, true)),
                Record::Flow(at(10_000, 3, false)),
            ],
        );
        let news = new_alerts(&ev, AlertKind::ICMP_FLOOD);
        assert_eq!(news.len(), 1, "raised on the first update");
        assert_eq!(news[0].count, 3_999);
        let last = ev
            .iter()
            .rev()
            .find_map(|e| match e {
                AlertEvent::Updated(a) => Some(a.count),
                _ => None,
            })
            .expect("updated");
        assert_eq!(last, 9_999, "every packet counted once");
    }

    #[test]
    fn a_flow_of_icmp_errors_is_an_answer_not_a_flood() {
        // The port-unreachables a UDP flood's victim sends back.
        let mut f = flow("192.0.2.4", 0, "192.0.2.19", 0, 1, T0);
        f.icmp_type = 3;
        f.icmp_code = 3;
        f.fwd.packets = 10_000;
        f.last_ns = T0 + 2 * S;
        let (_, ev) = run(DfaConfig::default(), [Record::Flow(f)]);
        assert!(new_alerts(&ev, AlertKind::ICMP_FLOOD).is_empty());
    }

    #[test]
    fn spoofed_flood_and_traceroute() {
        let mut recs: Vec<Record> = (0..1200u64)
            .map(|i| {
                let mut s = start(
                    &format!("203.0.{}.{}", i / 250, 1 + i % 250),
                    0,
                    "192.0.2.10",
                    0,
                    1,
                    T0 + i * MS,
                );
                s.icmp_type = 8;
                Record::FlowStart(s)
            })
            .collect();
        // A traceroute: 30 routers answer "time exceeded" to the tracer.
        for h in 0..30u64 {
            let mut s = start(
                &format!("198.18.0.{}", h + 1),
                0,
                "192.0.2.11",
                0,
                1,
                T0 + h * 100 * MS,
            );
            s.icmp_type = 11;
            recs.push(Record::FlowStart(s));
        }
        let (_, ev) = run(DfaConfig::default(), recs);
        let news = new_alerts(&ev, AlertKind::ICMP_FLOOD);
        assert_eq!(news.len(), 1);
        assert_eq!(news[0].dest_ip, Some(ip("192.0.2.10")));
        assert_eq!(news[0].src_ip, None);
        // 1000 sources a second: the one-second peak tier (500) fires first.
        assert_eq!(news[0].count, 500);
    }
}
