//! `arp_spoof`: ARP cache poisoning (arpspoof, ettercap, bettercap).
//!
//! The automaton learns IP → MAC bindings from ARP traffic: sender fields of requests and of
//! solicited replies and the target fields of replies (a reply is addressed to the asker's real
//! MAC) are *trusted*; sender fields of unsolicited replies and announcements are not. A MAC
//! that claims an IP bound to another, still-alive MAC makes a *conflict*. Key: the claiming
//! frame's Ethernet source. The alert rises when, within the window:
//! - one MAC claims `mitm_ips` (2) different IPs owned by others: poisoning two hosts about
//!   each other, the man-in-the-middle pattern; or
//! - one MAC makes `conflicts` (3) conflicting claims (an IP claimed by a second MAC, repeated:
//!   a re-addressed host announces once or twice); or
//! - one MAC sends `storm_replies` (10) unsolicited replies / gratuitous announcements.
//!
//! Bindings are not moved to a conflicting MAC until the owner has been silent for
//! `binding_ttl_secs`, so the real owner is never blamed for answering for its own address.
//! `count` = spoofing ARP packets (conflicting or unsolicited).
use std::{collections::HashMap, net::Ipv4Addr};

use super::family::Family;
use super::window::KeyMap;
use super::{
    Cx, Detector,
    automaton::{Incident, Phase, Verdict},
    config::{ArpSpoofConfig, ns},
    window::{DistinctWindow, RateWindow},
};
use crate::alert::build::base_alert;
use crate::{
    alert::{AlertKind, AlertSource, KindInfo, Severity},
    record::ArpRecord,
};

/// What a claim of an address amounts to.
enum Claim {
    Fine,
    /// The address is owned by this other MAC.
    Conflict(String),
    /// The claim proves that this other MAC had claimed the address falsely.
    Exposes(String),
}

struct Binding {
    mac: String,
    last_ns: u64,
    trusted: bool,
}

pub struct Entry {
    /// IPs owned by others that this MAC claimed → (owner MAC) for the description.
    claimed: DistinctWindow<Ipv4Addr>,
    owners: HashMap<Ipv4Addr, String>,
    conflicts: RateWindow,
    unsolicited: RateWindow,
    /// Unsolicited replies sent to one host (not gratuitous, not broadcast).
    directed: RateWindow,
    pub incident: Incident,
}

pub struct ArpSpoof {
    cfg: ArpSpoofConfig,
    window_ns: u64,
    ttl_ns: u64,
    solicit_ns: u64,
    bindings: HashMap<Ipv4Addr, Binding>,
    /// (asker IP, asked IP) → time of the latest request.
    requests: HashMap<(Ipv4Addr, Ipv4Addr), u64>,
    /// asker IP → time of its latest request (for anything).
    askers: HashMap<Ipv4Addr, u64>,
    /// MAC → the address it owns (trusted), to name an attacker's own IP.
    own_ip: HashMap<String, Ipv4Addr>,
    keys: KeyMap<String, Entry>,
    /// MAC → every sender address it used within the window.
    claims: HashMap<String, DistinctWindow<Ipv4Addr>>,
}

const MAX_TABLE: usize = 1 << 16;

fn real_mac(m: &str) -> bool {
    m != "00:00:00:00:00:00" && m != "ff:ff:ff:ff:ff:ff"
}

/// What one ARP packet amounts to for its sender.
struct Evidence<'a> {
    rec: &'a ArpRecord,
    /// The IP claimed against its owner (conflict), with the owner's MAC.
    conflict: Option<(Ipv4Addr, String)>,
    unsolicited: bool,
    /// An unsolicited reply addressed to one host.
    directed: bool,
    /// Packets this adds to the count (0 when re-judging a packet already counted).
    n: u64,
}

impl ArpSpoof {
    pub fn new(cfg: ArpSpoofConfig) -> Self {
        Self {
            window_ns: ns(cfg.window_secs),
            ttl_ns: ns(cfg.binding_ttl_secs),
            solicit_ns: ns(cfg.solicit_window_secs),
            cfg,
            bindings: HashMap::new(),
            requests: HashMap::new(),
            askers: HashMap::new(),
            own_ip: HashMap::new(),
            keys: KeyMap::new(),
            claims: HashMap::new(),
        }
    }

    pub fn phase(&self, mac: &str) -> Phase {
        self.keys
            .get(mac)
            .map_or(Phase::Idle, |e| e.incident.phase())
    }

    /// The MAC currently owning `ip`, if any.
    pub fn owner(&self, ip: Ipv4Addr) -> Option<&str> {
        self.bindings.get(&ip).map(|b| b.mac.as_str())
    }

    fn suspect(&self, mac: &str) -> bool {
        self.keys
            .get(mac)
            .is_some_and(|e| matches!(e.incident.phase(), Phase::Alerting | Phase::CoolDown))
    }

    fn bind(&mut self, ip: Ipv4Addr, mac: &str, ts: u64, trusted: bool) {
        if self.bindings.len() >= MAX_TABLE && !self.bindings.contains_key(&ip) {
            return;
        }
        if trusted {
            self.own_ip.insert(mac.to_owned(), ip);
            if self.own_ip.len() > MAX_TABLE {
                self.own_ip.clear();
            }
        }
        self.bindings.insert(
            ip,
            Binding {
                mac: mac.to_owned(),
                last_ns: ts,
                trusted,
            },
        );
    }

    /// Learns from a trusted source (request sender, solicited reply sender, reply target).
    /// Returns the MAC that had claimed `ip` without trust, if this contradicts it.
    fn learn_trusted(&mut self, ip: Ipv4Addr, mac: &str, ts: u64) -> Option<String> {
        if ip.is_unspecified() || !real_mac(mac) {
            return None;
        }
        match self.bindings.get_mut(&ip) {
            Some(b) if b.mac == mac => {
                b.last_ns = b.last_ns.max(ts);
                b.trusted = true;
                None
            }
            Some(b) if !b.trusted || ts.saturating_sub(b.last_ns) > self.ttl_ns => {
                let old = (!b.trusted).then(|| b.mac.clone());
                self.bind(ip, mac, ts, true);
                old
            }
            Some(_) => None,
            None => {
                self.bind(ip, mac, ts, true);
                None
            }
        }
    }

    /// The sender claims `ip` (a trusted claim: request sender, solicited reply).
    fn claim(&mut self, ip: Ipv4Addr, mac: &str, ts: u64, trusted: bool) -> Claim {
        let suspect = self.suspect(mac);
        let ttl = self.ttl_ns;
        let fresh = |b: &Binding| ts.saturating_sub(b.last_ns) <= ttl;
        match self.bindings.get_mut(&ip) {
            Some(b) if b.mac == mac => {
                b.last_ns = b.last_ns.max(ts);
                b.trusted |= trusted;
                Claim::Fine
            }
            // A trusted claim overrides an unproven one, and exposes it.
            Some(b) if trusted && !suspect && !b.trusted => {
                let liar = fresh(b).then(|| b.mac.clone());
                self.bind(ip, mac, ts, true);
                liar.map_or(Claim::Fine, Claim::Exposes)
            }
            Some(b) if fresh(b) || suspect => Claim::Conflict(b.mac.clone()),
            _ => {
                self.bind(ip, mac, ts, trusted);
                Claim::Fine
            }
        }
    }

    fn evidence(&mut self, ev: Evidence, cx: &mut Cx) {
        let a = ev.rec;
        let (window_ns, cap, now) = (self.window_ns, cx.common.cap, cx.now);
        let cfg = &self.cfg;
        let own_ip = self.own_ip.get(&a.eth_src).copied();
        let mut all_claims: Vec<Ipv4Addr> = self
            .claims
            .get(&a.eth_src)
            .map(|w| w.iter(now).copied().collect())
            .unwrap_or_default();
        all_claims.sort_unstable();
        let Some(e) = cx.slot(
            &mut self.keys,
            a.eth_src.clone(),
            |e| &e.incident,
            || Entry {
                claimed: DistinctWindow::new(window_ns, cap),
                owners: HashMap::new(),
                conflicts: RateWindow::new(window_ns),
                unsolicited: RateWindow::new(window_ns),
                directed: RateWindow::new(window_ns),
                incident: Incident::default(),
            },
        ) else {
            return;
        };
        if let Some((ip, owner)) = &ev.conflict {
            e.claimed.insert(*ip, a.ts_ns, now);
            if e.owners.len() < 64 {
                e.owners.insert(*ip, owner.clone());
            }
            e.conflicts.add(a.ts_ns, 1, now);
        }
        if ev.unsolicited {
            e.unsolicited.add(a.ts_ns, 1, now);
        }
        if ev.directed {
            e.directed.add(a.ts_ns, 1, now);
        }
        let ips = e.claimed.len(now);
        let conflicts = e.conflicts.sum(now);
        let unsolicited = e.unsolicited.sum(now);
        let directed = e.directed.sum(now);
        let poisoner = directed > 0 && all_claims.len() as u64 >= cfg.mitm_ips;
        let verdict = if ips >= cfg.mitm_ips
            || conflicts >= cfg.conflicts
            || unsolicited >= cfg.storm_replies
            || poisoner
        {
            Verdict::Alert
        } else if conflicts > 0 || unsolicited >= 3 {
            Verdict::Suspicious
        } else {
            Verdict::Noise
        };
        let Entry {
            claimed,
            owners,
            incident,
            ..
        } = e;
        let build = |inc: &Incident| {
            let mut al = base_alert(AlertKind::ARP_SPOOF, now, a.ts_ns, a.ts_ns);
            al.src_ip = own_ip.map(Into::into);
            al.dest_ip = Some(a.target_ip.into());
            al.proto = "arp".into();
            al.src_mac = Some(a.eth_src.clone());
            let mut ips: Vec<Ipv4Addr> = claimed.iter(now).copied().collect();
            ips.sort_unstable();
            let list: Vec<String> = ips
                .iter()
                .map(|ip| match owners.get(ip) {
                    Some(o) => format!("{ip} (owned by {o})"),
                    None => ip.to_string(),
                })
                .collect();
            let why = if ips.len() as u64 >= cfg.mitm_ips {
                "man-in-the-middle: one MAC claims the addresses of several hosts"
            } else if poisoner {
                "unsolicited replies sent to a host by a MAC that claims several addresses"
            } else if conflicts >= cfg.conflicts {
                "an address claimed by a second MAC, repeatedly"
            } else {
                "storm of unsolicited ARP replies"
            };
            let list = if list.is_empty() {
                all_claims.iter().map(|ip| ip.to_string()).collect()
            } else {
                list
            };
            al.description = format!(
                "ARP spoofing by {}: {why}; claims {}; {conflicts} conflicting and {unsolicited} unsolicited replies within {}s ({} spoofing packets); count = spoofing ARP packets",
                a.eth_src,
                if list.is_empty() {
                    "-".to_owned()
                } else {
                    list.join(", ")
                },
                cfg.window_secs,
                inc.count
            );
            al
        };
        cx.drive(incident, a.ts_ns, ev.n, verdict, build, |_, _| {});
    }
}

impl Detector for ArpSpoof {
    fn on_arp(&mut self, a: &ArpRecord, cx: &mut Cx) {
        let ts = a.ts_ns;
        let mut retro: Option<(String, Ipv4Addr)> = None;
        let gratuitous = a.sender_ip == a.target_ip;
        let solicited = a.op == 2
            && !gratuitous
            && self
                .requests
                .get(&(a.target_ip, a.sender_ip))
                .is_some_and(|&t| {
                    ts.saturating_sub(t) <= self.solicit_ns
                        && t <= ts.saturating_add(self.solicit_ns)
                });
        if a.op == 1
            && !a.sender_ip.is_unspecified()
            && !gratuitous
            && self.requests.len() < MAX_TABLE
        {
            self.requests.insert((a.sender_ip, a.target_ip), ts);
            self.askers.insert(a.sender_ip, ts);
        }
        if a.op == 2 && !gratuitous {
            // The target fields are the asker's own binding.
            if let Some(liar) = self.learn_trusted(a.target_ip, &a.target_mac, ts) {
                retro = Some((liar, a.target_ip));
            }
        }
        if let Some((liar, ip)) = retro {
            // An earlier unsolicited claim of `ip` by `liar` turned out to contradict its owner.
            let owner = a.target_mac.clone();
            let fake = ArpRecord {
                eth_src: liar,
                ..a.clone()
            };
            self.evidence(
                Evidence {
                    rec: &fake,
                    conflict: Some((ip, owner)),
                    unsolicited: false,
                    directed: false,
                    n: 0,
                },
                cx,
            );
        }
        if a.sender_ip.is_unspecified() || !real_mac(&a.sender_mac) {
            return;
        }
        let unsolicited = (a.op == 2 && !solicited) || gratuitous;
        // Sent to one host that asked nothing at all lately: forged, not a confused answer.
        let asked_lately = self
            .askers
            .get(&a.target_ip)
            .is_some_and(|&t| ts.saturating_sub(t) <= self.solicit_ns);
        let directed =
            a.op == 2 && !solicited && !asked_lately && !gratuitous && real_mac(&a.target_mac);
        let trusted = !unsolicited;
        let mut new_claim = false;
        if self.claims.len() < MAX_TABLE || self.claims.contains_key(&a.eth_src) {
            let (w, cap) = (self.window_ns, cx.common.cap.min(64));
            new_claim = self
                .claims
                .entry(a.eth_src.clone())
                .or_insert_with(|| DistinctWindow::new(w, cap))
                .insert(a.sender_ip, ts, cx.now);
        }
        let conflict = match self.claim(a.sender_ip, &a.sender_mac, ts, trusted) {
            Claim::Fine => None,
            Claim::Conflict(owner) => Some((a.sender_ip, owner)),
            Claim::Exposes(liar) => {
                let fake = ArpRecord {
                    eth_src: liar,
                    ..a.clone()
                };
                self.evidence(
                    Evidence {
                        rec: &fake,
                        conflict: Some((a.sender_ip, a.sender_mac.clone())),
                        unsolicited: false,
                        directed: false,
                        n: 0,
                    },
                    cx,
                );
                None
            }
        };
        // A MAC already under watch that claims one more address is re-judged too.
        let watched = new_claim && self.keys.contains_key(&a.eth_src);
        if conflict.is_some() || unsolicited || watched {
            let n = u64::from(conflict.is_some() || unsolicited);
            self.evidence(
                Evidence {
                    rec: a,
                    conflict,
                    unsolicited,
                    directed,
                    n,
                },
                cx,
            );
        }
    }

    fn tick(&mut self, cx: &mut Cx) {
        let now = cx.now;
        let (solicit, ttl, w) = (self.solicit_ns, self.ttl_ns, self.window_ns);
        self.requests
            .retain(|_, t| now.saturating_sub(*t) <= solicit);
        self.askers.retain(|_, t| now.saturating_sub(*t) <= solicit);
        self.bindings
            .retain(|_, b| now.saturating_sub(b.last_ns) <= ttl);
        self.claims.retain(|_, c| {
            c.prune(now);
            !c.is_empty()
        });
        cx.tick_map(&mut self.keys, w, w, |e| &mut e.incident, |_, _| 0);
    }
}

impl AlertKind {
    /// A MAC claiming addresses that belong to others (ARP cache poisoning).
    pub const ARP_SPOOF: AlertKind = AlertKind::declare(&KindInfo {
        name: "arp_spoof",
        number: 4,
        severity: Severity::High,
        source: AlertSource::Dfa,
        summary: "a MAC claiming addresses that belong to others (ARP cache poisoning)",
    });
}

/// The `arp_spoof` family (see [`super::family`]).
pub const FAMILY: Family = Family {
    kind: AlertKind::ARP_SPOOF,
    section: "arp_spoof",
    build: |c| Box::new(ArpSpoof::new(c.arp_spoof.clone())),
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        detect::dfa::{DfaConfig, testutil::*},
        record::Record,
    };

    const ATT: &str = "00:e0:4d:3c:25:7b";
    const A_MAC: &str = "dc:f5:05:75:0b:cd";
    const B_MAC: &str = "b0:7f:b9:4e:f0:9c";

    /// arpspoof -t A B and -t B A: unsolicited replies telling each host the other is at ATT.
    fn mitm(rounds: u64) -> Vec<Record> {
        let mut v = Vec::new();
        for i in 0..rounds {
            let t = T0 + i * 10 * S;
            v.push(Record::Arp(arp_full(
                2,
                ATT,
                "10.0.0.153",
                B_MAC,
                "10.0.0.157",
                t,
            )));
            v.push(Record::Arp(arp_full(
                2,
                ATT,
                "10.0.0.157",
                A_MAC,
                "10.0.0.153",
                t + 10_000,
            )));
        }
        v
    }

    #[test]
    fn mitm_between_two_hosts_is_one_alert_against_the_attacker() {
        let mut e = crate::detect::dfa::Engine::new(DfaConfig::default()).unwrap();
        let recs = mitm(18);
        let mut ev = e.observe(&recs[0]);
        assert_eq!(e.detector::<ArpSpoof>().unwrap().phase(ATT), Phase::Idle);
        ev.extend(e.observe(&recs[1]));
        // The second reply reveals A's real MAC: ATT claimed .153 (owned by A) and .157 (B).
        assert_eq!(
            e.detector::<ArpSpoof>().unwrap().phase(ATT),
            Phase::Alerting
        );
        assert_eq!(
            e.detector::<ArpSpoof>()
                .unwrap()
                .owner("10.0.0.153".parse().unwrap()),
            Some(A_MAC)
        );
        for r in &recs[2..] {
            ev.extend(e.observe(r));
        }
        ev.extend(e.finish());
        let news = new_alerts(&ev, AlertKind::ARP_SPOOF);
        assert_eq!(news.len(), 1, "{news:?}");
        assert_eq!(news[0].src_mac.as_deref(), Some(ATT));
        assert!(
            news[0].description.contains("man-in-the-middle"),
            "{}",
            news[0].description
        );
        assert_eq!(news[0].count, 2);
        assert_eq!(finals(&ev)[0].count, 36);
        assert_eq!(e.detector::<ArpSpoof>().unwrap().phase(A_MAC), Phase::Idle);
        assert_eq!(e.detector::<ArpSpoof>().unwrap().phase(B_MAC), Phase::Idle);
    }

    #[test]
    fn gateway_impersonation_is_a_conflict_and_the_owner_is_not_blamed() {
        let gw = "02:00:00:00:00:fe";
        let mut recs = vec![
            // Host asks for the gateway, the gateway answers: trusted binding.
            Record::Arp(arp(1, "02:00:00:00:00:05", "10.1.0.5", "10.1.0.1", T0)),
            Record::Arp(arp_full(
                2,
                gw,
                "10.1.0.1",
                "02:00:00:00:00:05",
                "10.1.0.5",
                T0 + MS,
            )),
        ];
        for i in 1..=5u64 {
            recs.push(Record::Arp(arp_full(
                2,
                ATT,
                "10.1.0.1",
                "02:00:00:00:00:05",
                "10.1.0.5",
                T0 + i * 2 * S,
            )));
            // The real gateway keeps answering requests.
            recs.push(Record::Arp(arp(
                1,
                "02:00:00:00:00:07",
                "10.1.0.7",
                "10.1.0.1",
                T0 + i * 2 * S + MS,
            )));
            recs.push(Record::Arp(arp_full(
                2,
                gw,
                "10.1.0.1",
                "02:00:00:00:00:07",
                "10.1.0.7",
                T0 + i * 2 * S + 2 * MS,
            )));
        }
        let (e, ev) = run(DfaConfig::default(), recs);
        let news = new_alerts(&ev, AlertKind::ARP_SPOOF);
        assert_eq!(news.len(), 1);
        assert_eq!(news[0].src_mac.as_deref(), Some(ATT));
        assert_eq!(news[0].count, 3, "alert at the third conflicting claim");
        assert_eq!(e.detector::<ArpSpoof>().unwrap().phase(gw), Phase::Idle);
    }

    #[test]
    fn attacker_first_then_the_real_gateway_speaks() {
        let gw = "02:00:00:00:00:fe";
        let mut recs = Vec::new();
        for i in 0..10u64 {
            let t = T0 + i * 2 * S;
            // arpspoof -t 10.1.0.5 10.1.0.1: unsolicited, before the gateway was ever seen.
            recs.push(Record::Arp(arp_full(
                2,
                ATT,
                "10.1.0.1",
                "02:00:00:00:00:05",
                "10.1.0.5",
                t,
            )));
            // The gateway asks for another host: its own sender fields are trusted.
            recs.push(Record::Arp(arp(
                1,
                gw,
                "10.1.0.1",
                &format!("10.1.0.{}", 50 + i),
                t + S,
            )));
        }
        let mut e = crate::detect::dfa::Engine::new(DfaConfig::default()).unwrap();
        let mut ev = Vec::new();
        for r in &recs {
            ev.extend(e.observe(r));
        }
        ev.extend(e.finish());
        let news = new_alerts(&ev, AlertKind::ARP_SPOOF);
        assert_eq!(news.len(), 1, "{news:?}");
        assert_eq!(news[0].src_mac.as_deref(), Some(ATT));
        assert_eq!(e.detector::<ArpSpoof>().unwrap().phase(gw), Phase::Idle);
        assert_eq!(
            e.detector::<ArpSpoof>()
                .unwrap()
                .owner("10.1.0.1".parse().unwrap()),
            Some(gw)
        );
    }

    #[test]
    fn cain_style_poisoning_without_any_owner_seen() {
        // Cain & Abel: a request claiming the gateway, an unsolicited reply to the victim, and
        // a request claiming another host, all from one MAC; the gateway itself never speaks.
        let recs = [
            Record::Arp(arp(1, ATT, "172.16.0.1", "172.16.0.107", T0)),
            Record::Arp(arp_full(
                2,
                B_MAC,
                "172.16.0.107",
                ATT,
                "172.16.0.1",
                T0 + MS,
            )),
            Record::Arp(arp_full(
                2,
                ATT,
                "172.16.0.1",
                B_MAC,
                "172.16.0.107",
                T0 + 2 * MS,
            )),
            Record::Arp(arp(1, ATT, "172.16.0.105", "172.16.0.1", T0 + 10 * S)),
        ];
        let (e, ev) = run(DfaConfig::default(), recs);
        let news = new_alerts(&ev, AlertKind::ARP_SPOOF);
        assert_eq!(news.len(), 1, "{news:?}");
        assert_eq!(news[0].src_mac.as_deref(), Some(ATT));
        assert!(
            news[0].description.contains("claims several"),
            "{}",
            news[0].description
        );
        assert_eq!(e.detector::<ArpSpoof>().unwrap().phase(B_MAC), Phase::Idle);
    }

    #[test]
    fn router_with_two_addresses_stays_quiet() {
        let r = "02:00:00:00:00:01";
        let mut recs = Vec::new();
        for i in 0..20u64 {
            let t = T0 + i * 3 * S;
            // It asks from both of its addresses and answers requests for both.
            recs.push(Record::Arp(arp(
                1,
                r,
                "10.1.0.1",
                &format!("10.1.0.{}", 10 + i % 5),
                t,
            )));
            recs.push(Record::Arp(arp(
                1,
                r,
                "10.2.0.1",
                &format!("10.2.0.{}", 10 + i % 5),
                t + MS,
            )));
            recs.push(Record::Arp(arp(
                1,
                "02:00:00:00:00:09",
                "10.2.0.9",
                "10.2.0.1",
                t + 2 * MS,
            )));
            recs.push(Record::Arp(arp_full(
                2,
                r,
                "10.2.0.1",
                "02:00:00:00:00:09",
                "10.2.0.9",
                t + 3 * MS,
            )));
        }
        // Boot-time announcements of both addresses.
        recs.push(Record::Arp(arp(1, r, "10.1.0.1", "10.1.0.1", T0 + 100 * S)));
        recs.push(Record::Arp(arp(1, r, "10.2.0.1", "10.2.0.1", T0 + 100 * S)));
        let (_, ev) = run(DfaConfig::default(), recs);
        assert!(ev.is_empty(), "{ev:?}");
    }

    #[test]
    fn ordinary_arp_and_a_readdressed_host_stay_quiet() {
        let mut recs = Vec::new();
        for i in 0..50u64 {
            let t = T0 + i * 30 * S;
            recs.push(Record::Arp(arp(
                1,
                "02:00:00:00:00:05",
                "10.1.0.5",
                "10.1.0.1",
                t,
            )));
            recs.push(Record::Arp(arp_full(
                2,
                "02:00:00:00:00:fe",
                "10.1.0.1",
                "02:00:00:00:00:05",
                "10.1.0.5",
                t + MS,
            )));
        }
        // Two gratuitous announcements after a (stale) address change.
        let late = T0 + 50 * 30 * S + 700 * S;
        recs.push(Record::Arp(arp(
            1,
            "02:00:00:00:00:99",
            "10.1.0.5",
            "10.1.0.5",
            late,
        )));
        recs.push(Record::Arp(arp(
            1,
            "02:00:00:00:00:99",
            "10.1.0.5",
            "10.1.0.5",
            late + S,
        )));
        let (_, ev) = run(DfaConfig::default(), recs);
        assert!(ev.is_empty(), "{ev:?}");
    }

    #[test]
    fn unsolicited_storm() {
        let recs = (0..10u64).map(|i| {
            Record::Arp(arp_full(
                2,
                ATT,
                "10.2.0.1",
                "ff:ff:ff:ff:ff:ff",
                "10.2.0.255",
                T0 + i * S,
            ))
        });
        let (_, ev) = run(DfaConfig::default(), recs);
        let news = new_alerts(&ev, AlertKind::ARP_SPOOF);
        assert_eq!(news.len(), 1);
        assert!(
            news[0].description.contains("storm"),
            "{}",
            news[0].description
        );
        assert_eq!(news[0].count, 10);
    }
}
