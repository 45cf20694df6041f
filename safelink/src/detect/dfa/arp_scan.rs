//! `arp_scan`: one MAC asking ARP who-has for many addresses (arp-scan, nmap -sn on a LAN,
//! netdiscover).
//!
//! Key: Ethernet source MAC. Evidence: ARP requests, except gratuitous announcements (sender
//! IP = target IP). Alert at `targets` distinct target IPs within the window. `count` =
//! requests.
use std::net::Ipv4Addr;

use super::family::Family;
use super::window::KeyMap;
use super::{
    Cx, Detector,
    automaton::{Incident, Phase, Verdict},
    config::{ArpScanConfig, ns},
    window::DistinctWindow,
};
use crate::alert::build::base_alert;
use crate::{
    alert::{AlertKind, AlertSource, KindInfo, Severity},
    record::ArpRecord,
};

pub struct Entry {
    targets: DistinctWindow<Ipv4Addr>,
    pub incident: Incident,
}

pub struct ArpScan {
    cfg: ArpScanConfig,
    window_ns: u64,
    keys: KeyMap<String, Entry>,
}

impl ArpScan {
    pub fn new(cfg: ArpScanConfig) -> Self {
        Self {
            window_ns: ns(cfg.window_secs),
            cfg,
            keys: KeyMap::new(),
        }
    }

    pub fn phase(&self, mac: &str) -> Phase {
        self.keys
            .get(mac)
            .map_or(Phase::Idle, |e| e.incident.phase())
    }
}

impl Detector for ArpScan {
    fn on_arp(&mut self, a: &ArpRecord, cx: &mut Cx) {
        if a.op != 1 || a.sender_ip == a.target_ip {
            return;
        }
        let (window_ns, cap, now) = (self.window_ns, cx.common.cap, cx.now);
        let cfg = &self.cfg;
        let key = a.eth_src.clone();
        let Some(e) = cx.slot(
            &mut self.keys,
            key,
            |e| &e.incident,
            || Entry {
                targets: DistinctWindow::new(window_ns, cap),
                incident: Incident::default(),
            },
        ) else {
            return;
        };
        e.targets.insert(a.target_ip, a.ts_ns, now);
        let verdict = match e.incident.phase() {
            Phase::Alerting | Phase::CoolDown => Verdict::Noise,
            _ => {
                let n = e.targets.len(now);
                Verdict::ladder(n, cfg.suspicious_targets, cfg.targets)
            }
        };
        let targets = &e.targets;
        let build = |inc: &Incident| {
            let mut al = base_alert(AlertKind::ARP_SCAN, now, a.ts_ns, a.ts_ns);
            al.src_ip = (!a.sender_ip.is_unspecified()).then_some(a.sender_ip.into());
            al.dest_ip = Some(a.target_ip.into());
            al.proto = "arp".into();
            al.src_mac = Some(a.eth_src.clone());
            al.description = format!(
                "ARP scan from {} ({}): who-has for {} distinct addresses within {}s ({} requests); count = requests",
                a.eth_src,
                a.sender_ip,
                targets.count_since(now.saturating_sub(window_ns)),
                cfg.window_secs,
                inc.count
            );
            al
        };
        cx.drive(&mut e.incident, a.ts_ns, 1, verdict, build, |_, _| {});
    }

    fn tick(&mut self, cx: &mut Cx) {
        let w = self.window_ns;
        cx.tick_map(&mut self.keys, w, w, |e| &mut e.incident);
    }
}

impl AlertKind {
    /// One MAC asking ARP who-has for many addresses.
    pub const ARP_SCAN: AlertKind = AlertKind::declare(&KindInfo {
        name: "arp_scan",
        number: 3,
        severity: Severity::Medium,
        source: AlertSource::Dfa,
        summary: "one MAC asking ARP who-has for many addresses",
    });
}

/// The `arp_scan` family (see [`super::family`]).
pub const FAMILY: Family = Family {
    kind: AlertKind::ARP_SCAN,
    section: "arp_scan",
    build: |c| Box::new(ArpScan::new(c.arp_scan.clone())),
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        detect::dfa::{DfaConfig, testutil::*},
        record::Record,
    };

    const MAC: &str = "00:0c:29:20:a8:7f";

    #[test]
    fn subnet_sweep_raises_one_alert() {
        let mut e = crate::detect::dfa::Engine::new(DfaConfig::default()).unwrap();
        let mut ev = Vec::new();
        for round in 0..2u64 {
            for h in 1..=254u64 {
                let r = arp(
                    1,
                    MAC,
                    "10.0.0.128",
                    &format!("10.0.0.{h}"),
                    T0 + round * S + h * MS,
                );
                ev.extend(e.observe(&Record::Arp(r)));
                if round == 0 && h == 9 {
                    assert_eq!(e.detector::<ArpScan>().unwrap().phase(MAC), Phase::Idle);
                }
                if round == 0 && h == 10 {
                    assert_eq!(
                        e.detector::<ArpScan>().unwrap().phase(MAC),
                        Phase::Suspicious
                    );
                }
            }
        }
        ev.extend(e.finish());
        let news = new_alerts(&ev, AlertKind::ARP_SCAN);
        assert_eq!(news.len(), 1);
        assert_eq!(news[0].count, 30);
        assert_eq!(news[0].src_mac.as_deref(), Some(MAC));
        assert_eq!(news[0].src_ip, Some(ip("10.0.0.128")));
        assert_eq!(news[0].community_id, None);
        // 2 × 254 requests, less the two for its own address (gratuitous, not a probe).
        assert_eq!(finals(&ev)[0].count, 506);
    }

    #[test]
    fn gateway_resolving_neighbours_and_announcements_stay_quiet() {
        let mut recs = Vec::new();
        // A router asks for 20 neighbours a minute, for 10 minutes.
        for m in 0..10u64 {
            for h in 1..=20u64 {
                recs.push(Record::Arp(arp(
                    1,
                    "02:aa:00:00:00:01",
                    "10.0.0.1",
                    &format!("10.0.0.{h}"),
                    T0 + m * 60 * S + h * S,
                )));
            }
        }
        // A host announcing its address 100 times.
        for i in 0..100u64 {
            recs.push(Record::Arp(arp(
                1,
                "02:bb:00:00:00:01",
                "10.0.0.50",
                "10.0.0.50",
                T0 + i * S,
            )));
        }
        let (_, ev) = run(DfaConfig::default(), recs);
        assert!(new_alerts(&ev, AlertKind::ARP_SCAN).is_empty());
    }
}
