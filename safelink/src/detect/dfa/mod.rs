//! Rule automata: one deterministic automaton per attack family, keyed per source (per victim
//! for floods and amplification), over sliding windows of capture time.
//!
//! [`Engine`] takes the record stream of [`crate::replay`] or the live capture
//! ([`Record::FlowStart`], [`Record::Flow`], [`Record::Arp`]) and returns [`AlertEvent`]s: one
//! `New` per incident, then `Updated` (count, last_seen) at most once per
//! [`DfaConfig::update_interval_secs`] while the incident grows, and a final `Updated` when it
//! closes (when it changed since the last report). Every automaton goes through the same [`automaton::Phase`]s (idle → suspicious →
//! alerting → cool-down). Time is the records' own timestamps: flow records arrive when flows
//! end, after records of later packets, and every window accepts such late evidence. The
//! clock is a [`crate::clock::RecordClock`]: a lone far-future timestamp does not move it (it
//! would empty every window), a far jump the next record confirms does; ticks move it by at
//! most one tick's worth ([`EngineStats::clock_outliers`], `clock_steps`, `tick_jumps`).
//!
//! Families (one module each): [`port_scan`], [`host_sweep`], [`arp_scan`], [`arp_spoof`],
//! [`ssh_brute_force`], [`login_brute_force`], [`syn_flood`], [`udp_flood`], [`icmp_flood`],
//! [`amplification`]. Defaults and how they compare with Zeek's: [`config`] and
//! `safelink/src/detect/README.md`.
pub mod amplification;
pub mod arp_scan;
pub mod arp_spoof;
pub mod automaton;
pub mod classify;
pub mod config;
pub mod family;
pub mod flood;
pub mod host_sweep;
pub mod icmp_flood;
pub mod login_brute_force;
pub mod port_scan;
pub mod session;
pub mod ssh_brute_force;
pub mod syn_flood;
pub mod udp_flood;
pub mod window;

#[cfg(test)]
pub(crate) mod testutil;

use std::{any::Any, collections::HashMap, hash::Hash, net::IpAddr};

use thiserror::Error;

pub use automaton::{Phase, Verdict};
pub use config::DfaConfig;
pub use family::{FAMILIES, Family};

use crate::{
    alert::{Alert, AlertBook, AlertEvent, Timestamp},
    clock::{Follow, RecordClock, Ticks},
    record::{ArpRecord, FlowRecord, FlowStartRecord, Record},
};
use automaton::{Incident, Step};
use config::ns;

/// Errors of the detection engine.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DetectError {
    #[error("invalid detection config: {field}: {reason}")]
    InvalidConfig { field: &'static str, reason: String },
}

/// Counters of the engine's own work.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub records: u64,
    pub flow_starts: u64,
    pub flows: u64,
    pub flow_updates: u64,
    pub arp: u64,
    pub alerts_raised: u64,
    /// Keys forgotten (least recently updated first) to make room for new ones when an
    /// automaton already tracked `max_keys` keys, or because its keys' windows together held
    /// more than `max_items` items.
    pub evicted_keys: u64,
    /// Far jumps of record time that no later record confirmed (the clock did not follow).
    pub clock_outliers: u64,
    /// Far jumps of record time that the next record confirmed (a capture gap or a clock
    /// step; the clock followed).
    pub clock_steps: u64,
    /// Ticks whose source jumped far (the clock followed by one tick's worth).
    pub tick_jumps: u64,
}

/// Settings every automaton shares.
pub(crate) struct Common {
    pub cooldown_ns: u64,
    pub max_keys: usize,
    pub cap: usize,
    /// Slots the windows of all keys of one automaton may hold together (their tables'
    /// allocated room, about one to two per item).
    pub max_items: usize,
}

/// Latest Ethernet source seen for each source IP (flow records carry no MAC).
#[derive(Default)]
pub(crate) struct MacCache {
    macs: HashMap<IpAddr, String>,
}

impl MacCache {
    const MAX: usize = 1 << 16;

    fn note(&mut self, ip: IpAddr, mac: &str) {
        if self.macs.get(&ip).is_some_and(|m| m == mac) {
            return;
        }
        if self.macs.len() >= Self::MAX {
            self.macs.clear();
        }
        self.macs.insert(ip, mac.to_owned());
    }

    pub fn get(&self, ip: &IpAddr) -> Option<String> {
        self.macs.get(ip).cloned()
    }
}

/// What a detector sees besides the record.
pub(crate) struct Cx<'a> {
    pub now: u64,
    pub book: &'a mut AlertBook,
    pub macs: &'a MacCache,
    pub common: &'a Common,
    pub stats: &'a mut EngineStats,
}

impl Cx<'_> {
    /// Feeds evidence to an incident and carries out the step: raise a new alert (built by
    /// `build`) or refresh the open one (`count`, `first_seen`, `last_seen`, then `refresh`).
    /// Every family ends its evidence handling here.
    pub fn drive(
        &mut self,
        inc: &mut Incident,
        ts: u64,
        n: u64,
        verdict: Verdict,
        build: impl FnOnce(&Incident) -> Alert,
        refresh: impl FnOnce(&Incident, &mut Alert),
    ) {
        match inc.observe(ts, n, verdict) {
            Step::Raise => {
                let mut a = build(inc);
                a.count = inc.count;
                a.first_seen = Timestamp::from_ns(inc.first_ns);
                a.last_seen = Timestamp::from_ns(inc.last_ns);
                let id = self.book.raise(a, self.now);
                self.stats.alerts_raised += 1;
                inc.opened(id);
            }
            Step::Update(id) => {
                let (count, first, last) = (inc.count, inc.first_ns, inc.last_ns);
                self.book.update(id, |a| {
                    a.count = count;
                    a.first_seen = Timestamp::from_ns(first);
                    a.last_seen = Timestamp::from_ns(last);
                    refresh(inc, a);
                });
            }
            _ => {}
        }
    }

    /// Time passes for every key of a map: phase transitions, closing quiet alerts, forgetting
    /// idle keys after `keep_ns`; then the automaton's memory budget.
    ///
    /// `expire` drops from a key what its windows no longer count and returns the items they
    /// still hold. A key outlives its windows (an alerted victim is kept through the cool-down,
    /// ten minutes by default): without it, a quiet key would hold its last burst's thousands
    /// of sources until then, since a window prunes itself only when it gets new evidence.
    ///
    /// When the keys' windows together hold more than `max_items` items, the least recently
    /// updated keys are forgotten until they do not (counted in
    /// [`EngineStats::evicted_keys`], their open alerts closed, as for a full table): `max_keys`
    /// keys of `max_items_per_key` items each is far more than a host's memory, and traffic
    /// that fills many windows at once (a spoofed flood, a scan of many hosts) chooses how full
    /// they are. Checked once a tick, so the windows can outgrow it by one tick's evidence.
    pub fn tick_map<K: Eq + Hash, E>(
        &mut self,
        map: &mut window::KeyMap<K, E>,
        quiet_ns: u64,
        keep_ns: u64,
        inc: impl Fn(&mut E) -> &mut Incident,
        mut expire: impl FnMut(&mut E, u64) -> usize,
    ) {
        let (now, cooldown) = (self.now, self.common.cooldown_ns);
        let book = &mut *self.book;
        let mut held = 0usize;
        map.retain(|_, e| {
            let i = inc(e);
            if let Step::Close(id) = i.tick(now, quiet_ns, cooldown) {
                book.close(id);
            }
            if i.forgettable(now, keep_ns) {
                return false;
            }
            held = held.saturating_add(expire(e, now));
            true
        });
        while held > self.common.max_items {
            let Some((_, mut e)) = map.pop_front() else {
                break;
            };
            held = held.saturating_sub(expire(&mut e, now));
            self.stats.evicted_keys += 1;
            if let Some(id) = inc(&mut e).alert_id() {
                book.close(id);
            }
        }
    }

    /// The entry of `key`, created with `make`; when the automaton already tracks `max_keys`
    /// keys, the least recently updated one is forgotten (counted in
    /// [`EngineStats::evicted_keys`]); its open alert, if any, is closed (it stays stored).
    pub fn slot<'m, K: Eq + Hash, E>(
        &mut self,
        map: &'m mut window::KeyMap<K, E>,
        key: K,
        inc: impl Fn(&E) -> &Incident,
        make: impl FnOnce() -> E,
    ) -> Option<&'m mut E> {
        let (book, stats) = (&mut *self.book, &mut *self.stats);
        Some(window::slot(map, key, self.common.max_keys, make, |e| {
            stats.evicted_keys += 1;
            if let Some(id) = inc(&e).alert_id() {
                book.close(id);
            }
        }))
    }
}

/// The automaton of one family (see [`family`]).
pub(crate) trait Detector: Any + Send {
    fn on_start(&mut self, _s: &FlowStartRecord, _cx: &mut Cx) {}
    fn on_flow(&mut self, _f: &FlowRecord, _cx: &mut Cx) {}
    /// A running flow's interim counters ([`Record::FlowUpdate`]); only rate automata care.
    fn on_update(&mut self, _f: &FlowRecord, _cx: &mut Cx) {}
    fn on_arp(&mut self, _a: &ArpRecord, _cx: &mut Cx) {}
    fn tick(&mut self, cx: &mut Cx);
}

/// All automata, driven record by record.
pub struct Engine {
    clock: RecordClock,
    ticks: Ticks,
    /// A record far ahead of the clock, waiting for the next one.
    held: Option<Record>,
    next_tick: u64,
    common: Common,
    book: AlertBook,
    macs: MacCache,
    stats: EngineStats,
    detectors: Vec<Box<dyn Detector>>,
}

/// Housekeeping period (capture time).
const TICK_NS: u64 = 1_000_000_000;

impl Engine {
    /// The engine of every family of [`FAMILIES`].
    pub fn new(cfg: DfaConfig) -> Result<Self, DetectError> {
        Self::with_families(cfg, &FAMILIES)
    }

    /// The engine of the given families (tests add their own).
    pub fn with_families(cfg: DfaConfig, families: &[&Family]) -> Result<Self, DetectError> {
        cfg.validate()?;
        Ok(Self {
            clock: RecordClock::new(Follow::Forward),
            ticks: Ticks::default(),
            held: None,
            next_tick: 0,
            common: Common {
                cooldown_ns: ns(cfg.cooldown_secs),
                max_keys: cfg.max_keys,
                cap: cfg.max_items_per_key,
                max_items: cfg.max_items,
            },
            book: AlertBook::new(ns(cfg.update_interval_secs)),
            macs: MacCache::default(),
            stats: EngineStats::default(),
            detectors: families.iter().map(|f| (f.build)(&cfg)).collect(),
        })
    }

    /// The automaton of type `T`, to read its state (tests, diagnostics).
    pub fn detector<T: 'static>(&self) -> Option<&T> {
        self.detectors
            .iter()
            .find_map(|d| (d.as_ref() as &dyn Any).downcast_ref::<T>())
    }

    /// Engine clock (ns since the Unix epoch): the newest record timestamp seen, except far
    /// jumps no later record confirmed, moved on by ticks (see [`crate::clock`]).
    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    fn sync_clock_stats(&mut self) {
        let c = self.clock.stats();
        self.stats.clock_outliers = c.outliers;
        self.stats.clock_steps = c.steps;
        self.stats.tick_jumps = c.tick_jumps;
    }

    /// Alerts currently open (alerting or cooling down).
    pub fn open_alerts(&self) -> usize {
        self.book.open_count()
    }

    /// Feeds one record; returns the alert events it caused.
    pub fn observe(&mut self, r: &Record) -> Vec<AlertEvent> {
        let mut out = Vec::new();
        self.observe_into(r, &mut out);
        out
    }

    /// Like [`Self::observe`], appending to `out` (no allocation when nothing happens). A
    /// record far ahead of the clock waits for the next record to tell a lone outlier (then
    /// it is taken at the current time) from a jump of record time (then the clock follows
    /// first); [`Self::finish`] takes one still waiting.
    ///
    /// An outer flow of a tunnel ([`Record::OuterFlow`]) is ignored: it is no detector input
    /// (its packets are the inner flows'), so it neither counts nor moves the clock.
    pub fn observe_into(&mut self, r: &Record, out: &mut Vec<AlertEvent>) {
        let ts = match r {
            Record::FlowStart(s) => s.ts_ns,
            Record::Flow(f) | Record::FlowUpdate(f) => f.last_ns,
            Record::Arp(a) => a.ts_ns,
            Record::OuterFlow(_) => return,
        };
        let seen = self.clock.observe(ts);
        if seen.released.is_some()
            && let Some(h) = self.held.take()
        {
            self.process(&h, out);
        }
        if seen.ts.is_some() {
            self.process(r, out);
        } else {
            self.sync_clock_stats();
            self.held = Some(r.clone());
        }
    }

    fn process(&mut self, r: &Record, out: &mut Vec<AlertEvent>) {
        self.advance();
        self.stats.records += 1;
        if let Record::FlowStart(s) = r {
            self.macs.note(s.src_ip, &s.src_mac);
        }
        let mut cx = Cx {
            now: self.clock.now(),
            book: &mut self.book,
            macs: &self.macs,
            common: &self.common,
            stats: &mut self.stats,
        };
        match r {
            Record::FlowStart(s) => {
                cx.stats.flow_starts += 1;
                for d in &mut self.detectors {
                    d.on_start(s, &mut cx);
                }
            }
            Record::Flow(f) => {
                cx.stats.flows += 1;
                for d in &mut self.detectors {
                    d.on_flow(f, &mut cx);
                }
            }
            Record::FlowUpdate(f) => {
                cx.stats.flow_updates += 1;
                for d in &mut self.detectors {
                    d.on_update(f, &mut cx);
                }
            }
            Record::Arp(a) => {
                cx.stats.arp += 1;
                for d in &mut self.detectors {
                    d.on_arp(a, &mut cx);
                }
            }
            Record::OuterFlow(_) => {}
        }
        self.book.drain_into(out);
    }

    /// Moves the clock (for a live sensor with no traffic: call it once a second with the
    /// records' clock so quiet incidents cool down and close). The clock follows the
    /// increments of `now_ns` between ticks, at most [`crate::clock::MAX_TICK_STEP_NS`] per
    /// tick: a step of the tick source cannot jump the engine past its records. Returns the
    /// events it caused.
    pub fn tick(&mut self, now_ns: u64) -> Vec<AlertEvent> {
        self.ticks.tick(now_ns, &mut self.clock);
        self.advance();
        let mut out = Vec::new();
        self.book.drain_into(&mut out);
        out
    }

    fn advance(&mut self) {
        self.sync_clock_stats();
        let now = self.clock.now();
        if now >= self.next_tick {
            self.housekeeping(false);
            self.next_tick = now.saturating_add(TICK_NS);
        }
    }

    fn housekeeping(&mut self, force: bool) {
        let mut cx = Cx {
            now: self.clock.now(),
            book: &mut self.book,
            macs: &self.macs,
            common: &self.common,
            stats: &mut self.stats,
        };
        for d in &mut self.detectors {
            d.tick(&mut cx);
        }
        self.book.flush(self.clock.now(), force);
    }

    /// End of input: reports the final state of every alert that changed since its last
    /// report. Open alerts stay open (a live engine may go on after a flush).
    pub fn finish(&mut self) -> Vec<AlertEvent> {
        let mut out = Vec::new();
        if self.clock.finish().is_some()
            && let Some(h) = self.held.take()
        {
            self.process(&h, &mut out);
        }
        self.sync_clock_stats();
        self.housekeeping(true);
        self.book.drain_into(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::AlertKind;
    use testutil::*;

    #[test]
    fn config_errors_are_typed() {
        let mut c = DfaConfig::default();
        c.arp_scan.targets = 0;
        assert!(matches!(
            Engine::new(c),
            Err(DetectError::InvalidConfig { .. })
        ));
    }

    #[test]
    fn garbage_records_do_not_panic() {
        let mut e = Engine::new(DfaConfig::default()).unwrap();
        let mut f = flow("0.0.0.0", 0, "255.255.255.255", 0, 6, 0);
        f.first_ns = u64::MAX;
        f.last_ns = 0;
        e.observe(&Record::Flow(f));
        let mut s = start("::", 0, "::", 0, 17, 0);
        s.ts_ns = u64::MAX;
        e.observe(&Record::FlowStart(s));
        e.observe(&Record::Arp(arp(
            1,
            "00:00:00:00:00:00",
            "0.0.0.0",
            "0.0.0.0",
            0,
        )));
        e.finish();
    }

    #[test]
    fn ids_are_sequential_and_final_state_is_reported() {
        let mut e = Engine::new(DfaConfig::default()).unwrap();
        let mut events = Vec::new();
        for port in 1..=40u16 {
            let f = failed_syn("10.0.0.1", "10.0.0.2", port, S + u64::from(port) * MS);
            events.extend(e.observe(&Record::Flow(f)));
        }
        events.extend(e.finish());
        let news: Vec<&Alert> = events
            .iter()
            .filter_map(|e| match e {
                AlertEvent::New(a) => Some(a),
                _ => None,
            })
            .collect();
        assert_eq!(news.len(), 1);
        assert_eq!(news[0].id, 1);
        assert_eq!(news[0].kind, AlertKind::PORT_SCAN);
        assert_eq!(news[0].count, 15);
        let last = events.last().unwrap().alert();
        assert_eq!((last.id, last.count), (1, 40));
    }

    /// 20 failed connections to 20 ports, 10 ms apart from `t0`.
    fn scan(t0: u64, ports: std::ops::RangeInclusive<u16>) -> Vec<Record> {
        ports
            .map(|p| {
                Record::Flow(failed_syn(
                    "10.0.0.1",
                    "10.0.0.2",
                    p,
                    t0 + u64::from(p) * 10 * MS,
                ))
            })
            .collect()
    }

    fn port_scans(events: &[AlertEvent]) -> Vec<(u64, u64)> {
        events
            .iter()
            .filter_map(|e| match e {
                AlertEvent::New(a) if a.kind == AlertKind::PORT_SCAN => Some((a.id, a.count)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_far_future_record_or_tick_does_not_blind_the_engine() {
        // One garbage record in the middle of a 20-port scan: the scan still alerts.
        let mut e = Engine::new(DfaConfig::default()).unwrap();
        let mut events = Vec::new();
        let recs = scan(T0, 1..=20);
        for (i, r) in recs.iter().enumerate() {
            if i == 10 {
                let mut s = start("10.9.9.9", 1, "10.0.0.3", 80, 6, 0);
                s.ts_ns = u64::MAX;
                events.extend(e.observe(&Record::FlowStart(s)));
            }
            events.extend(e.observe(r));
        }
        events.extend(e.finish());
        assert_eq!(port_scans(&events), vec![(1, 15)]);
        assert_eq!(e.now(), T0 + 200 * MS);
        assert_eq!((e.stats().clock_outliers, e.stats().clock_steps), (1, 0));

        // The tick source steps an hour ahead in the middle: the engine moves one tick.
        let mut e = Engine::new(DfaConfig::default()).unwrap();
        let mut events = Vec::new();
        for (i, r) in recs.iter().enumerate() {
            if i == 5 {
                events.extend(e.tick(T0 + 50 * MS));
            }
            if i == 10 {
                events.extend(e.tick(T0 + 3600 * S + 50 * MS));
            }
            events.extend(e.observe(r));
        }
        events.extend(e.finish());
        assert_eq!(port_scans(&events), vec![(1, 15)]);
        assert_eq!(e.now(), T0 + S + 50 * MS);
        assert_eq!(e.stats().tick_jumps, 1);

        // A real gap of hours: the second half is a scan of its own, on its own time.
        let mut e = Engine::new(DfaConfig::default()).unwrap();
        let mut events = Vec::new();
        for r in scan(T0, 1..=10)
            .iter()
            .chain(&scan(T0 + 3 * 3600 * S, 11..=30))
        {
            events.extend(e.observe(r));
        }
        events.extend(e.finish());
        assert_eq!(port_scans(&events), vec![(1, 15)]);
        assert_eq!(e.now(), T0 + 3 * 3600 * S + 300 * MS);
        assert_eq!((e.stats().clock_outliers, e.stats().clock_steps), (0, 1));
    }
}
