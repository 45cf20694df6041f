//! The sample collector: sees every flow the ANN scored and every rule alert, labels the
//! flows by the rules of [`super::sample`], and writes the samples to the store in batches.
//!
//! A scored flow waits `settle_s` (record time) before it is labelled, so a rule alert that
//! fires a few flows later still makes it an attack sample; when an alert names an address
//! whose flows were already stored as ANN-labelled new samples, they are relabelled. Benign
//! samples are bounded per window: the first `benign_reservoir` are kept, then each with
//! probability `benign_reservoir / seen`. Attack samples are capped per group and window
//! (`attack_group_cap`; a group is the rule alert kind and attacker, or the destination of an
//! ANN-flagged flow), so one flood cannot fill the history with thousands of copies of itself.
//!
//! [`Collector`] is the logic (pure, driven by record time); [`CollectorHandle`] runs it on its
//! own thread behind a bounded queue that the detection path feeds with `try_send`, so
//! detection never waits on the learner.
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::{debug, error, info};

use super::baseline::LocalBaseline;
use super::config::LearningParams;
use super::sample::{Decision, Evidence, LabelSource, TrainingSample, auto_label};
use crate::alert::{Alert, AlertKind, AlertSource};
use crate::ann::N_FEATURES;
use crate::ann::train::Rng;
use crate::privacy::Policy;
use crate::record::FlowRecord;
use crate::store::Store;

/// A rule-alerted address labels its flows within this long of the alert (record time).
const ATTACKER_TTL_NS: u64 = 3600 * 1_000_000_000;
/// Most addresses remembered as attackers.
const MAX_ATTACKERS: usize = 65_536;
/// Most flows waiting to be labelled (the oldest are labelled early beyond this).
const MAX_PENDING: usize = 200_000;

/// Counters of the collector.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CollectStats {
    pub flows_seen: u64,
    pub attack_dfa: u64,
    pub attack_ann: u64,
    pub benign: u64,
    pub benign_dropped: u64,
    /// Attack samples beyond the per-group cap.
    pub attack_capped: u64,
    pub skipped: u64,
    pub relabelled: u64,
    /// Benign samples of the local baseline phase (included in `benign`).
    pub baseline: u64,
    /// Flows the ANN scored above `attack_score` on a known-benign service: not labelled
    /// attack (see `sample::auto_label`).
    pub ann_high_overruled: u64,
    /// Messages dropped because the queue was full (detection never waits).
    pub queue_full: u64,
    /// Flows whose score was NaN or infinite: never labelled, never stored.
    pub nonfinite: u64,
    /// Samples written to the store.
    pub stored: u64,
}

impl CollectStats {
    /// Adds another run's counters to these.
    pub fn add(&mut self, o: &CollectStats) {
        self.flows_seen += o.flows_seen;
        self.attack_dfa += o.attack_dfa;
        self.attack_ann += o.attack_ann;
        self.benign += o.benign;
        self.benign_dropped += o.benign_dropped;
        self.attack_capped += o.attack_capped;
        self.skipped += o.skipped;
        self.relabelled += o.relabelled;
        self.baseline += o.baseline;
        self.ann_high_overruled += o.ann_high_overruled;
        self.queue_full += o.queue_full;
        self.nonfinite += o.nonfinite;
        self.stored += o.stored;
    }
}

/// The labelling logic.
pub struct Collector {
    attack_score: f32,
    benign_score: f32,
    settle_ns: u64,
    benign_cap: u64,
    window_ns: u64,
    pending: VecDeque<TrainingSample>,
    attackers: HashMap<IpAddr, (AlertKind, u64)>,
    now_ns: u64,
    window_start: u64,
    benign_seen: u64,
    max_history: usize,
    group_cap: u64,
    groups: HashMap<(Option<AlertKind>, IpAddr), u64>,
    rng: Rng,
    /// The local baseline (live sensor): phase and known-benign services, with the policy
    /// that gives addresses their stored form.
    baseline: Option<(LocalBaseline, Policy)>,
    pub stats: CollectStats,
}

impl Collector {
    pub fn new(p: &LearningParams) -> Self {
        Collector {
            attack_score: p.attack_score,
            benign_score: p.benign_score,
            settle_ns: p.settle_s.saturating_mul(1_000_000_000),
            benign_cap: p.benign_reservoir as u64,
            window_ns: p.interval_s.saturating_mul(1_000_000_000),
            pending: VecDeque::new(),
            attackers: HashMap::new(),
            now_ns: 0,
            window_start: 0,
            benign_seen: 0,
            max_history: p.max_history,
            group_cap: p.attack_group_cap as u64,
            groups: HashMap::new(),
            rng: Rng(0x0C01_1EC7),
            baseline: None,
            stats: CollectStats::default(),
        }
    }

    /// Labels by the local baseline too: flows scored in its phase are benign `baseline`
    /// samples, and a high score on a known-benign service is overruled.
    pub fn with_baseline(mut self, b: LocalBaseline, policy: Policy) -> Self {
        self.baseline = Some((b, policy));
        self
    }

    /// Advances the clock (record time or wall clock, whichever is later).
    pub fn advance(&mut self, now_ns: u64) {
        self.now_ns = self.now_ns.max(now_ns);
    }

    /// A flow the ANN scored.
    pub fn scored(&mut self, f: &FlowRecord, score: f32) {
        self.scored_sample(TrainingSample::of_flow(f, score));
    }

    pub fn scored_sample(&mut self, mut s: TrainingSample) {
        self.stats.flows_seen += 1;
        if let Some((b, _)) = &self.baseline
            && b.phase() == super::Phase::Baseline
        {
            s.baseline = true;
            b.saw_flow();
        }
        if !s.score.is_finite() {
            // No label can come from it (and a rule label would store a NaN score).
            self.stats.nonfinite += 1;
            return;
        }
        self.advance(s.ts_ns);
        self.pending.push_back(s);
    }

    /// A rule alert: its source address becomes an attacker. Returns the address when it is
    /// new (the caller relabels stored samples about it).
    pub fn alert(&mut self, a: &Alert) -> Option<(IpAddr, AlertKind)> {
        if a.source != AlertSource::Dfa {
            return None;
        }
        let ip = a.src_ip?;
        let ts = a.last_seen.ns();
        self.advance(ts);
        if self.groups.len() > MAX_ATTACKERS {
            self.groups.clear();
        }
        if self.attackers.len() >= MAX_ATTACKERS && !self.attackers.contains_key(&ip) {
            let now = self.now_ns;
            self.attackers
                .retain(|_, (_, t)| now.saturating_sub(*t) < ATTACKER_TTL_NS);
            if self.groups.len() > MAX_ATTACKERS {
                self.groups.clear();
            }
            if self.attackers.len() >= MAX_ATTACKERS {
                return None;
            }
        }
        let fresh = self.attackers.insert(ip, (a.kind, ts)).is_none();
        fresh.then_some((ip, a.kind))
    }

    fn attacker_kind(&self, s: &TrainingSample) -> Option<AlertKind> {
        [s.src_ip, s.dst_ip].iter().find_map(|ip| {
            self.attackers
                .get(ip)
                .filter(|(_, t)| s.ts_ns.abs_diff(*t) < ATTACKER_TTL_NS)
                .map(|(k, _)| *k)
        })
    }

    /// Labels the flows whose settle time has passed (all of them with `force`) and returns
    /// the samples to store.
    pub fn ready(&mut self, force: bool) -> Vec<TrainingSample> {
        if self.window_ns > 0 && self.now_ns.saturating_sub(self.window_start) >= self.window_ns {
            self.window_start = self.now_ns;
            self.benign_seen = 0;
            self.groups.clear();
        }
        let mut out = Vec::new();
        while let Some(front) = self.pending.front() {
            let due = front.ts_ns.saturating_add(self.settle_ns) <= self.now_ns;
            if !(force || due || self.pending.len() > MAX_PENDING) {
                break;
            }
            let s = self.pending.pop_front().expect("front exists");
            let kind = self.attacker_kind(&s);
            let service = self
                .baseline
                .as_ref()
                .map(|(b, p)| (b, (p.ip(s.dst_ip), s.dst_port)));
            let e = Evidence {
                rule_alert: kind,
                score: s.score,
                baseline: s.baseline,
                known_benign: service.is_some_and(|(b, svc)| b.is_known_benign(&svc)),
            };
            let l = match auto_label(&e, self.attack_score, self.benign_score) {
                Decision::Label(l) => l,
                Decision::Skipped => {
                    self.stats.skipped += 1;
                    continue;
                }
                Decision::Overruled => {
                    self.stats.ann_high_overruled += 1;
                    continue;
                }
            };
            if l.attack {
                let group = match (l.source, kind) {
                    (LabelSource::Dfa, Some(k)) => {
                        let ip = if self.attackers.contains_key(&s.src_ip) {
                            s.src_ip
                        } else {
                            s.dst_ip
                        };
                        (Some(k), ip)
                    }
                    _ => (None, s.dst_ip),
                };
                let n = self.groups.entry(group).or_default();
                *n += 1;
                if *n > self.group_cap {
                    self.stats.attack_capped += 1;
                    continue;
                }
            }
            match l.source {
                LabelSource::Dfa => self.stats.attack_dfa += 1,
                LabelSource::AnnHigh => self.stats.attack_ann += 1,
                _ => {
                    self.benign_seen += 1;
                    let keep = self.benign_seen <= self.benign_cap
                        || self.rng.uniform() < self.benign_cap as f64 / self.benign_seen as f64;
                    if !keep {
                        self.stats.benign_dropped += 1;
                        continue;
                    }
                    self.stats.benign += 1;
                    if l.source == LabelSource::Baseline {
                        self.stats.baseline += 1;
                        if let Some((b, svc)) = service {
                            b.add_benign(svc);
                        }
                    }
                }
            }
            out.push(s.labelled(l, kind));
        }
        out
    }
}

enum Msg {
    Scored(Box<TrainingSample>),
    Alert(Box<Alert>),
    Tick(u64),
}

/// Sender side of the collector thread. Cheap to clone.
#[derive(Clone)]
pub struct CollectorHandle {
    tx: SyncSender<Msg>,
    dropped: Arc<AtomicU64>,
    /// Offline drivers: wait for room instead of dropping.
    lossless: bool,
}

/// The running collector thread.
pub struct CollectorThread {
    pub handle: CollectorHandle,
    join: JoinHandle<CollectStats>,
}

impl CollectorHandle {
    fn send(&self, m: Msg) {
        if self.lossless {
            // Fails only when the thread is gone, which finish() reports.
            let _ = self.tx.send(m);
        } else if let Err(TrySendError::Full(_)) = self.tx.try_send(m) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A scored flow and the feature row it was scored on (live: never blocks; a full queue
    /// drops it and counts it).
    pub fn scored(&self, f: &FlowRecord, row: &[f32; N_FEATURES], score: f32) {
        self.send(Msg::Scored(Box::new(TrainingSample::of_scored(
            f, row, score,
        ))));
    }

    /// A rule alert (ANN alerts are ignored).
    pub fn alert(&self, a: &Alert) {
        if a.source == AlertSource::Dfa && a.src_ip.is_some() {
            self.send(Msg::Alert(Box::new(a.clone())));
        }
    }

    /// Wall-clock time, so quiet periods still settle pending flows.
    pub fn tick(&self, now_ns: u64) {
        self.send(Msg::Tick(now_ns));
    }
}

impl CollectorThread {
    /// Starts the thread writing into `store`, addresses written as `policy` says. `lossless`
    /// (offline drivers): senders wait for room instead of dropping.
    pub fn spawn(
        store: Store,
        params: &LearningParams,
        policy: Policy,
        lossless: bool,
        baseline: Option<LocalBaseline>,
    ) -> Self {
        let (tx, rx) = sync_channel(16_384);
        let dropped = Arc::new(AtomicU64::new(0));
        let mut c = Collector::new(params);
        if let Some(b) = baseline {
            c = c.with_baseline(b, policy.clone());
        }
        let d = dropped.clone();
        let join = std::thread::Builder::new()
            .name("safelink-collect".into())
            .spawn(move || run(c, rx, store, d, policy))
            .expect("spawn collector thread");
        CollectorThread {
            handle: CollectorHandle {
                tx,
                dropped,
                lossless,
            },
            join,
        }
    }

    /// Drops this handle's sender and waits for the thread to label and store everything
    /// still queued (other clones of the handle must be dropped first).
    pub fn finish(self) -> CollectStats {
        drop(self.handle);
        self.join.join().unwrap_or_default()
    }
}

/// Writes `batch` with its addresses in the stored form of `policy` (detection and labelling
/// use the real ones in memory).
pub fn store_batch(
    store: &Store,
    policy: &Policy,
    batch: &mut Vec<TrainingSample>,
) -> Result<usize, crate::store::StoreError> {
    if batch.is_empty() {
        return Ok(0);
    }
    for s in batch.iter_mut() {
        s.src_ip = policy.ip(s.src_ip);
        s.dst_ip = policy.ip(s.dst_ip);
    }
    let n = store.insert_samples(batch)?.len();
    batch.clear();
    Ok(n)
}

/// Stores `batch`; returns how many samples were written.
fn store_logged(store: &Store, policy: &Policy, batch: &mut Vec<TrainingSample>) -> u64 {
    match store_batch(store, policy, batch) {
        Ok(n) => {
            if n > 0 {
                debug!(samples = n, "stored training samples");
            }
            n as u64
        }
        Err(e) => {
            error!(error = %e, samples = batch.len(), "storing training samples failed");
            batch.clear();
            0
        }
    }
}

/// Makes the stored new samples about `ip` rule-labelled attacks (an alert that came after
/// their flows were labelled). Skipped when the stored form of an address is not one-to-one
/// (`truncate`): it would relabel the attacker's whole prefix.
pub(crate) fn relabel(store: &Store, policy: &Policy, ip: IpAddr, kind: AlertKind) -> u64 {
    if policy.mode() == crate::privacy::IpMode::Truncate {
        return 0;
    }
    let ip = policy.ip(ip);
    let watermark = store.learning_state().map(|s| s.watermark).unwrap_or(0);
    let r = store.relabel_samples(watermark, |s| {
        // An operator's verdict is never replaced by an automatic label.
        if s.involves(ip) && s.source != LabelSource::Dfa && s.source.is_automatic() {
            s.label = 1.0;
            s.source = LabelSource::Dfa;
            s.confidence = 1.0;
            s.kind = Some(kind);
            true
        } else {
            false
        }
    });
    r.unwrap_or_else(|e| {
        error!(error = %e, "relabelling samples failed");
        0
    })
}

fn run(
    mut c: Collector,
    rx: Receiver<Msg>,
    store: Store,
    dropped: Arc<AtomicU64>,
    policy: Policy,
) -> CollectStats {
    let mut last_flush = Instant::now();
    let mut last_prune = Instant::now();
    let mut batch = Vec::new();
    loop {
        let msg = rx.recv_timeout(Duration::from_millis(500));
        let closed = matches!(msg, Err(RecvTimeoutError::Disconnected));
        match msg {
            Ok(Msg::Scored(s)) => c.scored_sample(*s),
            Ok(Msg::Alert(a)) => {
                if let Some((ip, kind)) = c.alert(&a) {
                    // Samples already stored about this address become rule-labelled.
                    c.stats.stored += store_logged(&store, &policy, &mut batch);
                    let n = relabel(&store, &policy, ip, kind);
                    c.stats.relabelled += n;
                }
            }
            Ok(Msg::Tick(now)) => c.advance(now),
            Err(_) => {}
        }
        if closed || last_flush.elapsed() >= Duration::from_secs(1) || batch.len() >= 1024 {
            batch.extend(c.ready(closed));
            c.stats.stored += store_logged(&store, &policy, &mut batch);
            last_flush = Instant::now();
        } else if c.pending.len() > 4096 {
            batch.extend(c.ready(false));
        }
        // Keep the history bounded even while no cycle runs (a cycle prunes too).
        if last_prune.elapsed() >= Duration::from_secs(60) {
            last_prune = Instant::now();
            match store.prune_samples(c.max_history) {
                Ok(0) => {}
                Ok(n) => info!(
                    pruned = n,
                    max_history = c.max_history,
                    "dropped the oldest samples"
                ),
                Err(e) => error!(error = %e, "pruning samples failed"),
            }
        }
        if closed {
            break;
        }
    }
    c.stats.queue_full = dropped.load(Ordering::Relaxed);
    info!(stats = ?c.stats, "sample collector stopped");
    c.stats
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ann::features::tests::sample_flow;

    /// A NaN or infinite score labels nothing, even for a flow from a rule-alerted attacker
    /// (whose label would not need the score): such a sample would carry the bad score into
    /// training.
    #[test]
    fn non_finite_scores_never_become_samples() {
        let mut c = Collector::new(&LearningParams::default());
        let f = sample_flow();
        let mut alert =
            crate::alert::build::base_alert(AlertKind::PORT_SCAN, f.last_ns, f.first_ns, f.last_ns);
        alert.src_ip = Some(f.src_ip);
        assert!(c.alert(&alert).is_some());
        for s in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            c.scored(&f, s);
        }
        c.scored(&f, 0.5);
        let out = c.ready(true);
        assert_eq!(c.stats.nonfinite, 3);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!((out[0].score, out[0].label), (0.5, 1.0));
    }
}
