//! The per-victim rate automaton shared by [`super::syn_flood`], [`super::udp_flood`] and
//! [`super::icmp_flood`]: a sliding sum of new flows (or packets) towards one victim, the
//! distinct sources behind it (spoofed floods have thousands), and the dominant source when
//! there is one (a single attacker, named in `src_ip`).
//!
//! A single heavy flow is a flood by itself. It reaches the table while it runs, through
//! interim updates ([`crate::record::Record::FlowUpdate`]), and once more when it ends: the
//! table remembers how much of each heavy flow it counted ([`FloodTable::uncounted`]), so the
//! final record adds only the rest.
use std::{collections::HashMap, hash::Hash, net::IpAddr};

use super::window::KeyMap;
use super::{
    Cx,
    automaton::{Incident, Phase, Verdict},
    config::{FloodConfig, ns},
    window::{DistinctWindow, RateWindow},
};
use crate::{alert::Alert, expiry::EndReason, record::FlowRecord};

/// A flow's identity as its records carry it: the 5-tuple, VLAN and tunnel (id and outer
/// endpoints), so two tenants' identical inner flows are counted apart.
type FlowId = (
    IpAddr,
    u16,
    IpAddr,
    u16,
    u8,
    u16,
    Option<(u32, IpAddr, IpAddr)>,
);

/// A heavy flow's evidence counted so far is forgotten after this long without a record
/// (the flow was evicted in the kernel and will never end).
const HEAVY_FORGET_NS: u64 = 3_600_000_000_000;

/// Sources counted exactly per entry (enough to find a dominant one).
const TOP_SOURCES: usize = 64;

pub struct Entry {
    rate: RateWindow,
    /// The same over the last second.
    peak: RateWindow,
    sources: DistinctWindow<IpAddr>,
    per_source: HashMap<IpAddr, u64>,
    total: u64,
    pub incident: Incident,
}

/// What the alert builder gets to know.
pub struct Summary {
    /// Evidence within the window (new flows or packets).
    pub in_window: u64,
    /// Distinct sources within the window (capped at `max_items_per_key`).
    pub sources: u64,
    /// The source of at least half of all evidence, if any.
    pub dominant: Option<IpAddr>,
    /// Evidence of the incident so far.
    pub count: u64,
}

/// One flood family's victims.
pub struct FloodTable<K> {
    pub cfg: FloodConfig,
    pub window_ns: u64,
    keys: KeyMap<K, Entry>,
    /// Heavy flows still running: evidence counted from their interim updates, last record.
    heavy: HashMap<FlowId, (u64, u64)>,
}

impl<K: Eq + Hash> FloodTable<K> {
    pub fn new(cfg: FloodConfig) -> Self {
        Self {
            window_ns: ns(cfg.window_secs),
            cfg,
            keys: KeyMap::new(),
            heavy: HashMap::new(),
        }
    }

    /// Of `evidence` (what the flow `f` amounts to so far), the part earlier records of the
    /// same flow have not counted yet; remembers it while the flow runs, forgets it when `f`
    /// is the final record.
    pub fn uncounted(&mut self, f: &FlowRecord, evidence: u64) -> u64 {
        let tunnel = f.tunnel.as_ref().map(|t| (t.id, t.outer_src, t.outer_dst));
        let id = (
            f.src_ip, f.src_port, f.dst_ip, f.dst_port, f.proto, f.vlan, tunnel,
        );
        let before = if f.end_reason == EndReason::Open {
            self.heavy.insert(id, (evidence, f.last_ns))
        } else {
            self.heavy.remove(&id)
        };
        evidence.saturating_sub(before.map_or(0, |(n, _)| n))
    }

    pub fn phase(&self, key: &K) -> Phase {
        self.keys
            .get(key)
            .map_or(Phase::Idle, |e| e.incident.phase())
    }

    /// `n` units of evidence from `src` at `ts`; `heavy` when a single flow is a flood by
    /// itself (alert regardless of the window's sum).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn observe(
        &mut self,
        cx: &mut Cx,
        key: K,
        ts: u64,
        n: u64,
        src: IpAddr,
        heavy: bool,
        make: impl FnOnce(&Summary) -> Alert,
    ) {
        let (window_ns, cap, now) = (self.window_ns, cx.common.cap, cx.now);
        let (threshold, peak_threshold) = (self.cfg.new_flows, self.cfg.peak_flows_per_sec);
        let Some(e) = cx.slot(
            &mut self.keys,
            key,
            |e| &e.incident,
            || Entry {
                rate: RateWindow::new(window_ns),
                peak: RateWindow::new(1_000_000_000),
                sources: DistinctWindow::new(window_ns, cap),
                per_source: HashMap::new(),
                total: 0,
                incident: Incident::default(),
            },
        ) else {
            return;
        };
        e.rate.add(ts, n, now);
        if !heavy {
            e.peak.add(ts, n, now);
        }
        e.total = e.total.saturating_add(n);
        if e.per_source.len() < TOP_SOURCES || e.per_source.contains_key(&src) {
            *e.per_source.entry(src).or_default() += n;
        }
        let open = matches!(e.incident.phase(), Phase::Alerting | Phase::CoolDown);
        if !open {
            e.sources.insert(src, ts, now);
        }
        let in_window = e.rate.sum(now);
        let verdict = if open {
            Verdict::Noise
        } else if heavy || in_window >= threshold || e.peak.sum(now) >= peak_threshold {
            Verdict::Alert
        } else if in_window >= threshold / 4 {
            Verdict::Suspicious
        } else {
            Verdict::Noise
        };
        let Entry {
            sources,
            per_source,
            total,
            incident,
            ..
        } = e;
        let total = *total;
        let build = |inc: &Incident| {
            let dominant = per_source
                .iter()
                .max_by_key(|(ip, c)| (**c, *ip))
                .filter(|(_, c)| **c * 2 >= total)
                .map(|(ip, _)| *ip);
            make(&Summary {
                in_window,
                sources: sources.len(now),
                dominant,
                count: inc.count,
            })
        };
        cx.drive(incident, ts, n, verdict, build, |_, _| {});
    }

    /// Takes back evidence that turned out benign (a SYN whose connection completed).
    pub fn retract(&mut self, key: &K, ts: u64, n: u64) {
        if let Some(e) = self.keys.get_mut(key) {
            e.rate.sub(ts, n);
        }
    }

    pub(crate) fn tick(&mut self, cx: &mut Cx) {
        let w = self.window_ns;
        cx.tick_map(
            &mut self.keys,
            w,
            w,
            |e| &mut e.incident,
            |e, now| e.sources.expire(now),
        );
        let now = cx.now;
        self.heavy
            .retain(|_, (_, last)| now.saturating_sub(*last) < HEAVY_FORGET_NS);
    }
}

#[cfg(test)]
impl<K> FloodTable<K> {
    /// Keys held, and the source slots their windows hold allocated (tests).
    pub fn held(&self) -> (usize, usize) {
        let slots = self.keys.values().map(|e| e.sources.allocated()).sum();
        (self.keys.len(), slots)
    }
}

/// One-way packet rate of a flow's forward direction (packets/s over its duration; a flow
/// shorter than a millisecond counts as one millisecond).
pub fn one_way_pps(packets: u64, first_ns: u64, last_ns: u64) -> u64 {
    let dur_ns = last_ns.saturating_sub(first_ns).max(1_000_000);
    ((packets as u128 * 1_000_000_000) / dur_ns as u128).min(u64::MAX as u128) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pps() {
        assert_eq!(one_way_pps(1000, 0, 1_000_000_000), 1000);
        assert_eq!(one_way_pps(5, 10, 10), 5000);
        assert_eq!(one_way_pps(u64::MAX, 0, 0), u64::MAX);
    }

    /// Every flood and amplification alert, from flow starts (spoofed or many-flow floods)
    /// and from heavy flows, carries the tunnel of the flow that triggered it.
    #[test]
    fn flood_and_amplification_alerts_carry_the_tunnel() {
        use crate::{
            alert::AlertKind,
            detect::dfa::{DfaConfig, testutil::*},
            expiry::EndReason,
            record::{FlowStartRecord, Record},
            tunnel::Tunnel,
        };
        let tunnel = |id: u32| Tunnel {
            kind: "vxlan".into(),
            id,
            outer_src: ip("192.0.2.2"),
            outer_dst: ip("192.0.2.1"),
        };
        let starts = |id: u32, n: u64, make: &dyn Fn(u64) -> FlowStartRecord| {
            (0..n)
                .map(|i| {
                    let mut s = make(i);
                    s.ts_ns = T0 + i * MS / 2;
                    s.tunnel = Some(tunnel(id));
                    Record::FlowStart(s)
                })
                .collect::<Vec<_>>()
        };
        let heavy = |id: u32, mut f: FlowRecord, open: bool| {
            f.tunnel = Some(tunnel(id));
            f.last_ns = f.first_ns + 2 * S;
            if open {
                f.end_reason = EndReason::Open;
                vec![Record::FlowUpdate(f)]
            } else {
                vec![Record::Flow(f)]
            }
        };
        let (att, vic) = ("198.51.100.2", "198.51.100.1");
        let cases: Vec<(AlertKind, u32, Vec<Record>)> = vec![
            // 600 SYNs from new source ports (hping3 -S).
            (
                AlertKind::SYN_FLOOD,
                1,
                starts(1, 600, &|i| start(att, 20_000 + i as u16, vic, 80, 6, 0)),
            ),
            // One flow of SYNs (hping3 -S -k), while it runs.
            (AlertKind::SYN_FLOOD, 2, {
                let mut f = flow(att, 3000, vic, 80, 6, T0);
                f.fwd.packets = 400;
                f.fwd.flags.syn = 400;
                heavy(2, f, true)
            }),
            // 1200 UDP flows in 0.6 s, and one heavy one-way UDP flow.
            (
                AlertKind::UDP_FLOOD,
                3,
                starts(3, 1200, &|i| {
                    start(att, 20_000 + i as u16, vic, 9999, 17, 0)
                }),
            ),
            (AlertKind::UDP_FLOOD, 4, {
                let mut f = flow(att, 3000, vic, 9999, 17, T0);
                f.fwd.packets = 30_000;
                heavy(4, f, true)
            }),
            // ICMP echo from 1200 (spoofed) sources, and one ping flood.
            (
                AlertKind::ICMP_FLOOD,
                5,
                starts(5, 1200, &|i| {
                    let mut s = start(
                        &format!("2001:db8::{:x}", i + 1),
                        0,
                        "2001:db8::ffff",
                        0,
                        58,
                        0,
                    );
                    s.icmp_type = 128;
                    s
                }),
            ),
            (AlertKind::ICMP_FLOOD, 6, {
                let mut f = flow(att, 0, vic, 0, 1, T0);
                f.icmp_type = 8;
                f.fwd.packets = 5000;
                heavy(6, f, true)
            }),
            // A monlist-sized NTP reply nobody asked for; SYN-ACKs from 60 servers; one
            // megabyte of DNS answers with nothing sent back.
            (
                AlertKind::AMPLIFICATION,
                7,
                starts(7, 1, &|_| {
                    let mut s = start("198.51.100.7", 123, vic, 40_000, 17, 0);
                    s.l3_len = 468;
                    s
                }),
            ),
            (
                AlertKind::AMPLIFICATION,
                8,
                starts(8, 60, &|i| {
                    let mut s = start(&format!("198.51.100.{}", 100 + i), 443, vic, 40_000, 6, 0);
                    s.tcp_flags = 0x12;
                    s
                }),
            ),
            (AlertKind::AMPLIFICATION, 9, {
                let mut f = flow("198.51.100.53", 53, vic, 40_000, 17, T0);
                f.fwd.packets = 1000;
                f.fwd.l3_sum = 1_500_000;
                f.fwd.l3_max = 1500;
                heavy(9, f, false)
            }),
        ];
        for (kind, id, records) in cases {
            let (_, ev) = run(DfaConfig::default(), records);
            let news = new_alerts(&ev, kind);
            assert!(!news.is_empty(), "case {id}: no {kind:?} alert");
            for a in &news {
                assert_eq!(a.tunnel, Some(tunnel(id)), "case {id}: {a:?}");
            }
        }
    }
}
