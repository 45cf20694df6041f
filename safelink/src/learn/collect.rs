//! The sample collector: sees every flow the ANN scored and every rule alert, labels the
//! flows by the rules of [`super::sample`], and writes the samples to the store in batches.
//!
//! A scored flow waits `settle_s` (record time) before it is labelled, so a rule alert that
//! fires a few flows later still makes it an attack sample; when an alert names an address
//! whose flows were already stored as ANN-labelled new samples, they are relabelled (the
//! addresses alerted since the last flush in one pass, about once a second). Benign
//! samples are bounded per window: the first `benign_reservoir` are kept, then each with
//! probability `benign_reservoir / seen`. Attack samples are capped per group and window
//! (`attack_group_cap`; a group is the rule alert kind and attacker, or the destination of an
//! ANN-flagged flow), so one flood cannot fill the history with thousands of copies of itself,
//! and bounded per window like the benign ones (`attack_reservoir`), so address churn, a new
//! group per source, cannot either.
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
/// Most flows waiting to be labelled (the oldest are labelled early beyond this): about 17 MB
/// (a sample is about 140 bytes and its feature vector 160 on the heap; the queue's capacity
/// is the next power of two). 200,000 held about 70 MB under `bench soak --unique-ip`, where
/// every scored flow waits. A flow labelled early whose address a rule alerts on later is
/// relabelled in the store ([`relabel`]), so early labelling loses no rule label.
const MAX_PENDING: usize = 50_000;

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
    /// Attack samples not taken once `attack_reservoir` were taken in the window.
    pub attack_dropped: u64,
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
        self.attack_dropped += o.attack_dropped;
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
    attack_cap: u64,
    window_ns: u64,
    pending: VecDeque<TrainingSample>,
    attackers: HashMap<IpAddr, (AlertKind, u64)>,
    now_ns: u64,
    window_start: u64,
    benign_seen: u64,
    attack_seen: u64,
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
            attack_cap: p.attack_reservoir as u64,
            window_ns: p.interval_s.saturating_mul(1_000_000_000),
            pending: VecDeque::new(),
            attackers: HashMap::new(),
            now_ns: 0,
            window_start: 0,
            benign_seen: 0,
            attack_seen: 0,
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
            self.attack_seen = 0;
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
                if !take(&mut self.attack_seen, self.attack_cap, &mut self.rng) {
                    self.stats.attack_dropped += 1;
                    continue;
                }
            }
            match l.source {
                LabelSource::Dfa => self.stats.attack_dfa += 1,
                LabelSource::AnnHigh => self.stats.attack_ann += 1,
                _ => {
                    if !take(&mut self.benign_seen, self.benign_cap, &mut self.rng) {
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

/// Whether to keep one more labelled sample of a per-window reservoir that has `seen` before
/// it: the first `cap`, then each with probability `cap / seen`.
fn take(seen: &mut u64, cap: u64, rng: &mut Rng) -> bool {
    *seen += 1;
    *seen <= cap || rng.uniform() < cap as f64 / *seen as f64
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

/// Makes the stored new samples about the addresses of `attackers` rule-labelled attacks of
/// their kind (alerts that came after their flows were labelled), in one pass over the new
/// samples however many addresses there are: the collector gathers the new attackers and
/// relabels once per flush, not once per alert (under address churn a pass per alert kept
/// its thread busier than detection). Skipped when the stored form of an address is not
/// one-to-one (`truncate`): it would relabel the attacker's whole prefix.
pub(crate) fn relabel(
    store: &Store,
    policy: &Policy,
    attackers: &HashMap<IpAddr, AlertKind>,
) -> u64 {
    if attackers.is_empty() || policy.mode() == crate::privacy::IpMode::Truncate {
        return 0;
    }
    let stored: HashMap<IpAddr, AlertKind> = attackers
        .iter()
        .map(|(ip, kind)| (policy.ip(*ip), *kind))
        .collect();
    let watermark = store.learning_state().map(|s| s.watermark).unwrap_or(0);
    let r = store.relabel_samples(watermark, |s| {
        // An operator's verdict is never replaced by an automatic label.
        if s.source == LabelSource::Dfa || !s.source.is_automatic() {
            return false;
        }
        let Some(kind) = stored.get(&s.src_ip).or_else(|| stored.get(&s.dst_ip)) else {
            return false;
        };
        s.label = 1.0;
        s.source = LabelSource::Dfa;
        s.confidence = 1.0;
        s.kind = Some(*kind);
        true
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
    // Rule-alerted addresses new since the last flush (the first alert's kind).
    let mut attackers: HashMap<IpAddr, AlertKind> = HashMap::new();
    loop {
        let msg = rx.recv_timeout(Duration::from_millis(500));
        let closed = matches!(msg, Err(RecvTimeoutError::Disconnected));
        match msg {
            Ok(Msg::Scored(s)) => c.scored_sample(*s),
            Ok(Msg::Alert(a)) => {
                if let Some((ip, kind)) = c.alert(&a) {
                    attackers.entry(ip).or_insert(kind);
                }
            }
            Ok(Msg::Tick(now)) => c.advance(now),
            Err(_) => {}
        }
        if closed || last_flush.elapsed() >= Duration::from_secs(1) || batch.len() >= 1024 {
            batch.extend(c.ready(closed));
            c.stats.stored += store_logged(&store, &policy, &mut batch);
            // Samples stored before their address's alert become rule-labelled (those labelled
            // since already were).
            c.stats.relabelled += relabel(&store, &policy, &attackers);
            attackers.clear();
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

    /// Address churn: every flow is from a new rule-alerted attacker (a group of its own, far
    /// under `attack_group_cap`); past `attack_reservoir` in the window, attack samples are
    /// taken with probability `cap / seen`, and the window's end resets the count.
    #[test]
    fn attack_samples_of_many_groups_are_bounded_per_window() {
        let section = crate::learn::config::LearningSection {
            attack_reservoir: 10,
            ..Default::default()
        };
        let mut c = Collector::new(&section.params().unwrap());
        let churn = |c: &mut Collector, from: u32, start_ns: u64| {
            for i in from..from + 1000 {
                let mut f = sample_flow();
                f.src_ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
                f.first_ns = start_ns + u64::from(i - from) * 1_000_000;
                f.last_ns = f.first_ns;
                let mut a = crate::alert::build::base_alert(
                    AlertKind::PORT_SCAN,
                    f.last_ns,
                    f.first_ns,
                    f.last_ns,
                );
                a.src_ip = Some(f.src_ip);
                c.alert(&a);
                c.scored(&f, 0.5);
            }
            c.ready(true).len() as u64
        };
        let kept = churn(&mut c, 0, 1_000_000_000);
        assert_eq!(c.stats.attack_dfa, kept);
        assert_eq!(kept + c.stats.attack_dropped, 1000);
        // The first 10, then about 10 * ln(1000 / 10) more.
        assert!((20..=80).contains(&kept), "{kept}");
        // A window (learning_interval_s, 3600 s) later the first 10 are taken again.
        let later = 1_000_000_000 + 3601 * 1_000_000_000;
        let kept_later = churn(&mut c, 1000, later);
        assert!((20..=80).contains(&kept_later), "{kept_later}");
        assert_eq!(c.stats.attack_capped, 0);
    }

    /// One pass relabels the stored automatic samples of every new attacker, with its own
    /// kind, at either end of the flow; other addresses' samples, samples already labelled by
    /// a rule and operator verdicts stay as they are.
    #[test]
    fn stored_samples_of_new_attackers_are_relabelled_in_one_pass() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let (scanner, brute, other) = (ip("192.0.2.7"), ip("192.0.2.8"), ip("192.0.2.9"));
        let sample = |src: IpAddr, dst: IpAddr, source: LabelSource| {
            let mut f = sample_flow();
            f.src_ip = src;
            f.dst_ip = dst;
            let mut s = TrainingSample::of_flow(&f, 0.1);
            s.source = source;
            s
        };
        let victim = ip("198.51.100.1");
        store
            .insert_samples(&[
                sample(scanner, victim, LabelSource::AnnLow),
                sample(victim, brute, LabelSource::AnnLow),
                sample(other, victim, LabelSource::AnnLow),
                sample(scanner, victim, LabelSource::Operator),
            ])
            .unwrap();
        let policy = Policy::default();
        let attackers: HashMap<IpAddr, AlertKind> = [
            (scanner, AlertKind::PORT_SCAN),
            (brute, AlertKind::SSH_BRUTE_FORCE),
        ]
        .into();
        assert_eq!(relabel(&store, &policy, &attackers), 2);
        let got: Vec<(LabelSource, f32, Option<AlertKind>)> = store
            .samples_after(0)
            .unwrap()
            .iter()
            .map(|s| (s.source, s.label, s.kind))
            .collect();
        assert_eq!(
            got,
            [
                (LabelSource::Dfa, 1.0, Some(AlertKind::PORT_SCAN)),
                (LabelSource::Dfa, 1.0, Some(AlertKind::SSH_BRUTE_FORCE)),
                (LabelSource::AnnLow, 0.0, None),
                (LabelSource::Operator, 0.0, None),
            ]
        );
        // Nothing new: the same pass changes nothing.
        assert_eq!(relabel(&store, &policy, &attackers), 0);
        assert_eq!(relabel(&store, &policy, &HashMap::new()), 0);
    }
}
