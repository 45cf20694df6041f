//! `arp_scan`: one MAC asking ARP who-has (IPv4) or IPv6 neighbour solicitation for many
//! addresses (arp-scan, nmap -sn on a LAN, netdiscover; nmap -6 -sn on a LAN).
//!
//! Key: Ethernet source MAC. Evidence: ARP requests, except gratuitous announcements (sender
//! IP = target IP); neighbour solicitations (flow starts of ICMPv6 type 135 to a
//! solicited-node group), except duplicate address detection (unspecified source): each group
//! stands for its target (it carries the target's last 24 bits). Alert at `targets` distinct
//! targets within the window. `count` = requests and solicitations.
use std::net::{IpAddr, Ipv6Addr};

use super::family::Family;
use super::window::KeyMap;
use super::{
    Cx, Detector,
    automaton::{Incident, Phase, Verdict},
    config::{ArpScanConfig, ns},
    window::DistinctWindow,
};
use crate::alert::build::{base_alert, community_id, start_features};
use crate::{
    alert::{AlertKind, AlertSource, KindInfo, Severity},
    record::{ArpRecord, FlowStartRecord},
};

/// ICMPv6 neighbour solicitation.
const ND_SOLICIT: u8 = 135;

/// ff02::1:ff00:0/104, the solicited-node multicast groups.
fn solicited_node(ip: &IpAddr) -> bool {
    let IpAddr::V6(a) = ip else { return false };
    let s = a.segments();
    s[..5] == [0xff02, 0, 0, 0, 0] && s[5] == 1 && s[6] >> 8 == 0xff
}

pub struct Entry {
    targets: DistinctWindow<IpAddr>,
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

/// One request for one target, from ARP or from neighbour discovery.
struct Ask<'a> {
    ts_ns: u64,
    mac: &'a str,
    sender: Option<IpAddr>,
    target: IpAddr,
    proto: &'static str,
    /// Community ID and ANN features of a solicitation's flow (none for ARP).
    flow: Option<(Option<String>, Vec<f32>)>,
}

impl Detector for ArpScan {
    fn on_arp(&mut self, a: &ArpRecord, cx: &mut Cx) {
        if a.op != 1 || a.sender_ip == a.target_ip {
            return;
        }
        self.ask(
            Ask {
                ts_ns: a.ts_ns,
                mac: &a.eth_src,
                sender: (!a.sender_ip.is_unspecified()).then_some(a.sender_ip.into()),
                target: a.target_ip.into(),
                proto: "arp",
                flow: None,
            },
            cx,
        );
    }

    fn on_start(&mut self, s: &FlowStartRecord, cx: &mut Cx) {
        if s.proto != 58
            || s.icmp_type != ND_SOLICIT
            || !solicited_node(&s.dst_ip)
            || s.src_ip == IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        {
            return;
        }
        self.ask(
            Ask {
                ts_ns: s.ts_ns,
                mac: &s.src_mac,
                sender: Some(s.src_ip),
                target: s.dst_ip,
                proto: "ipv6-icmp",
                flow: Some((
                    community_id(58, s.src_ip, 0, s.dst_ip, 0, Some((ND_SOLICIT, 0))),
                    start_features(s),
                )),
            },
            cx,
        );
    }

    fn tick(&mut self, cx: &mut Cx) {
        let w = self.window_ns;
        cx.tick_map(&mut self.keys, w, w, |e| &mut e.incident, |_, _| 0);
    }
}

impl ArpScan {
    fn ask(&mut self, a: Ask<'_>, cx: &mut Cx) {
        let (window_ns, cap, now) = (self.window_ns, cx.common.cap, cx.now);
        let cfg = &self.cfg;
        let key = a.mac.to_string();
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
        e.targets.insert(a.target, a.ts_ns, now);
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
            al.src_ip = a.sender;
            al.dest_ip = Some(a.target);
            al.proto = a.proto.into();
            al.src_mac = Some(a.mac.to_string());
            if let Some((cid, features)) = &a.flow {
                al.community_id = cid.clone();
                al.features = features.clone();
            }
            let sender = a
                .sender
                .map_or_else(|| "0.0.0.0".to_string(), |s| s.to_string());
            al.description = if a.proto == "arp" {
                format!(
                    "ARP scan from {} ({sender}): who-has for {} distinct addresses within {}s ({} requests); count = requests",
                    a.mac,
                    targets.count_since(now.saturating_sub(window_ns)),
                    cfg.window_secs,
                    inc.count
                )
            } else {
                format!(
                    "IPv6 neighbour discovery scan from {} ({sender}): solicitations for {} distinct addresses within {}s ({} requests); count = requests",
                    a.mac,
                    targets.count_since(now.saturating_sub(window_ns)),
                    cfg.window_secs,
                    inc.count
                )
            };
            al
        };
        cx.drive(&mut e.incident, a.ts_ns, 1, verdict, build, |_, _| {});
    }
}

impl AlertKind {
    /// One MAC asking ARP who-has for many addresses.
    pub const ARP_SCAN: AlertKind = AlertKind::declare(&KindInfo {
        name: "arp_scan",
        number: 3,
        severity: Severity::Medium,
        source: AlertSource::Dfa,
        summary: "one MAC asking ARP who-has (or IPv6 neighbour solicitation) for many addresses",
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

    /// A neighbour solicitation from `src` for the solicited-node group of `low` at `t`.
    fn solicit(src: &str, low: u32, t: u64) -> Record {
        let group = format!("ff02::1:ff{:02x}:{:x}", low >> 16 & 0xff, low & 0xffff);
        let mut s = start(src, 0, &group, 0, 58, t);
        s.icmp_type = ND_SOLICIT;
        Record::FlowStart(s)
    }

    #[test]
    fn ipv6_neighbour_discovery_sweep_raises_one_alert() {
        // nmap -6 -sn 2001:db8::100/121 on the link: one solicitation per address.
        let recs = (0..128u32).map(|i| solicit("2001:db8::2", 0x100 + i, T0 + u64::from(i) * MS));
        let (e, ev) = run(DfaConfig::default(), recs);
        let news = new_alerts(&ev, AlertKind::ARP_SCAN);
        assert_eq!(news.len(), 1);
        assert_eq!(news[0].src_mac.as_deref(), Some("02:00:00:00:00:01"));
        assert_eq!(news[0].src_ip, Some(ip("2001:db8::2")));
        assert_eq!(news[0].proto, "ipv6-icmp");
        assert!(
            news[0].description.starts_with(
                "IPv6 neighbour discovery scan from 02:00:00:00:00:01 (2001:db8::2): solicitations for 30 distinct addresses"
            ),
            "{}",
            news[0].description
        );
        assert_eq!(
            e.detector::<ArpScan>().unwrap().phase("02:00:00:00:00:01"),
            Phase::Alerting
        );
    }

    #[test]
    fn address_checks_and_a_few_neighbours_stay_quiet() {
        // Duplicate address detection (from ::) for 40 addresses, and a host resolving 8
        // neighbours, some twice; a solicitation to a unicast address (reachability check).
        let mut recs: Vec<Record> = (0..40u32)
            .map(|i| solicit("::", i, T0 + u64::from(i) * MS))
            .collect();
        recs.extend((0..16u32).map(|i| solicit("fe80::1", i % 8, T0 + u64::from(i) * 100 * MS)));
        let mut s = start("fe80::1", 0, "fe80::2", 0, 58, T0);
        s.icmp_type = ND_SOLICIT;
        recs.push(Record::FlowStart(s));
        let (_, ev) = run(DfaConfig::default(), recs);
        assert!(new_alerts(&ev, AlertKind::ARP_SCAN).is_empty());
    }

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
