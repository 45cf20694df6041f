//! The background learner: one thread that runs training cycles when they are due (every
//! `learning_interval_s` with at least `min_samples` new samples) or on demand, and answers
//! status, history and version queries. Detection never waits on it: the model swap is one
//! atomic store in the shared [`ModelHandle`], and a stop request ends a running cycle between
//! two steps.
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;
use tracing::{info, warn};

use super::LearnError;
use super::baseline::{LocalBaseline, Phase};
use super::config::LearningParams;
use super::cycle::{CycleContext, CycleReport, Golden, run_cycle};
use super::history::{CycleRecord, VersionRecord};
use super::models::{ModelDir, open_registry};
use super::sample::{LabelSource, TrainingSample};
use crate::ann::ModelHandle;
use crate::store::{Store, format_rfc3339};

/// The answer of `GET /learning/status`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct LearningStatus {
    pub enabled: bool,
    pub is_training: bool,
    /// `active`, `training` or `inactive`.
    pub state: &'static str,
    pub profile: &'static str,
    pub last_training_time: Option<String>,
    pub total_training_cycles: u64,
    pub model_versions: u64,
    pub current_version: Option<u64>,
    pub new_samples: u64,
    pub total_samples: u64,
    pub min_samples: usize,
    pub next_due: Option<String>,
    pub last_outcome: Option<String>,
    /// Why no cycle ran at the last due check (e.g. "need 100 new samples, have 45").
    pub reason: Option<String>,
    /// The ANN's phase: `baseline` (scores, learns this host, no ANN alert) or `live`.
    pub phase: &'static str,
    /// When the baseline's first local check is due (RFC 3339; unset once live).
    pub baseline_ends: Option<String>,
    /// When the ANN went live.
    pub live_since: Option<String>,
    /// The last local check: share of held-out local flows the serving model flags at the
    /// alert threshold, and how many flows that was measured on.
    pub local_fpr: Option<f64>,
    pub local_heldout_flows: u64,
    /// Flows scored during the baseline (this run), and the local benign samples stored.
    pub baseline_flows_seen: u64,
    pub baseline_samples: u64,
    /// Why the ANN is still in baseline, or how it went live.
    pub baseline_reason: Option<String>,
    /// Services (server address and port) whose high ANN scores are not labelled attack.
    pub known_benign_services: usize,
    /// Operator verdicts stored as samples.
    pub operator_verdicts: u64,
}

impl LearningStatus {
    /// The answer when the sensor runs without a learner (`reason` says why).
    pub fn off(reason: &str) -> Self {
        LearningStatus {
            enabled: false,
            is_training: false,
            state: "inactive",
            profile: "",
            last_training_time: None,
            total_training_cycles: 0,
            model_versions: 0,
            current_version: None,
            new_samples: 0,
            total_samples: 0,
            min_samples: 0,
            next_due: None,
            last_outcome: None,
            reason: Some(reason.to_owned()),
            phase: Phase::Live.as_str(),
            baseline_ends: None,
            live_since: None,
            local_fpr: None,
            local_heldout_flows: 0,
            baseline_flows_seen: 0,
            baseline_samples: 0,
            baseline_reason: None,
            known_benign_services: 0,
            operator_verdicts: 0,
        }
    }
}

/// Why `train-now` was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TrainNowError {
    #[error("a training cycle is already running")]
    Busy,
    #[error("nothing to train on: {0}")]
    NothingToTrain(String),
    #[error("{0}")]
    Failed(String),
}

enum Cmd {
    TrainNow,
    Wake,
    Shutdown,
}

struct Shared {
    store: Store,
    dir: ModelDir,
    params: LearningParams,
    handle: ModelHandle,
    golden: Option<Golden>,
    enabled: bool,
    active: AtomicBool,
    training: AtomicBool,
    stop_cycle: AtomicBool,
    next_due: Mutex<Option<OffsetDateTime>>,
    reason: Mutex<Option<String>>,
    baseline: LocalBaseline,
    /// Next local baseline check (while in baseline).
    next_check: Mutex<Option<OffsetDateTime>>,
    /// Serialises cycles and activations.
    models_lock: Mutex<()>,
}

impl Shared {
    /// Claims the single training slot (cycles and activations are exclusive); false if a
    /// cycle holds it.
    fn begin_training(&self) -> bool {
        self.training
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }
}

/// Handle on the learner thread. Cheap to clone.
#[derive(Clone)]
pub struct Learner {
    shared: Arc<Shared>,
    tx: Sender<Cmd>,
    join: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl std::fmt::Debug for Learner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Learner").finish_non_exhaustive()
    }
}

impl Learner {
    /// Opens the model registry in `<data_dir>/models` (see [`open_registry`]) and starts the
    /// thread, inactive until [`Learner::start`]. `enabled` is what the configuration says (it
    /// is reported; a disabled learner still answers queries and `train-now`).
    pub fn open(
        store: Store,
        data_dir: &Path,
        params: LearningParams,
        golden: Option<Golden>,
        base_model: Option<&Path>,
        enabled: bool,
    ) -> Result<Learner, LearnError> {
        let dir = ModelDir::new(data_dir)
            .map_err(|e| LearnError::Io(data_dir.join("models").display().to_string(), e))?;
        let (handle, mut state) = open_registry(&store, &dir, base_model)?;
        if state.baseline.started_ns.is_none() {
            // A new sensor: the baseline starts now (or is skipped with baseline_s = 0).
            let now = OffsetDateTime::now_utc();
            state.baseline.started_ns = Some(now.unix_timestamp_nanos() as u64);
            if params.baseline_s == 0 {
                state.baseline.live_since = Some(format_rfc3339(now));
                state.baseline.reason = Some("no baseline configured (baseline_s = 0)".into());
            }
            store.put_learning_state(&state)?;
        }
        let baseline = LocalBaseline::new(state.baseline.phase() == Phase::Live);
        baseline.reload(&store.samples_from(&[LabelSource::Baseline, LabelSource::Operator])?);
        crate::telemetry::record_baseline(
            state.baseline.phase() == Phase::Live,
            state.baseline.local_fpr,
        );
        info!(
            phase = state.baseline.phase().as_str(),
            known_benign_services = baseline.known_benign_services(),
            "ANN phase"
        );
        if let Some(v) = state.current_version {
            metrics::gauge!(crate::telemetry::MODEL_VERSION).set(v as f64);
        }
        if golden.is_none() {
            warn!("no golden set: cycles are validated on held-out new samples only");
        }
        let shared = Arc::new(Shared {
            store,
            dir,
            params,
            handle,
            golden,
            enabled,
            active: AtomicBool::new(false),
            training: AtomicBool::new(false),
            stop_cycle: AtomicBool::new(false),
            next_due: Mutex::new(None),
            reason: Mutex::new(None),
            baseline,
            next_check: Mutex::new(None),
            models_lock: Mutex::new(()),
        });
        let (tx, rx) = channel();
        let s = shared.clone();
        let join = std::thread::Builder::new()
            .name("safelink-learn".into())
            .spawn(move || worker(s, rx))
            .map_err(|e| LearnError::Io("learner thread".into(), e))?;
        Ok(Learner {
            shared,
            tx,
            join: Arc::new(Mutex::new(Some(join))),
        })
    }

    /// The live model (shared with the detector).
    pub fn handle(&self) -> ModelHandle {
        self.shared.handle.clone()
    }

    pub fn params(&self) -> &LearningParams {
        &self.shared.params
    }

    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// The local baseline (the ANN's alert gate and the known-benign services).
    pub fn baseline(&self) -> LocalBaseline {
        self.shared.baseline.clone()
    }

    /// Runs the local baseline check now on the calling thread (`safelink learn baseline`,
    /// tests): trains on the new samples, then measures the serving model on held-out local
    /// flows and goes live if it passes. Returns the phase after it.
    pub fn baseline_check_here(&self) -> Result<Phase, LearnError> {
        if !self.shared.begin_training() {
            return Err(LearnError::Busy);
        }
        let r = baseline_check(&self.shared);
        self.shared.training.store(false, Ordering::SeqCst);
        r
    }

    /// Stores an operator's verdict on a stored alert (see [`super::verdict`]).
    pub fn verdict(
        &self,
        alert: &crate::alert::Alert,
        v: super::Verdict,
    ) -> Result<super::VerdictOutcome, super::VerdictError> {
        let s = &self.shared;
        let sample = super::verdict::sample_of(alert, v)?;
        let id = alert.id;
        let replaced = s
            .store
            .delete_samples_matching(|x| {
                x.source == LabelSource::Operator && x.alert_id == Some(id)
            })
            .map_err(LearnError::from)?;
        let label = sample.label;
        let relabelled = s
            .store
            .relabel_samples(0, |x| {
                if x.source.is_automatic() && super::verdict::same_flow(x, &sample) {
                    x.label = label;
                    x.source = LabelSource::Operator;
                    x.confidence = 1.0;
                    true
                } else {
                    false
                }
            })
            .map_err(LearnError::from)?;
        let sample_id = s
            .store
            .insert_samples(std::slice::from_ref(&sample))
            .map_err(LearnError::from)?[0];
        // The known-benign services follow the stored verdicts (a replaced false_positive
        // no longer counts).
        self.reload_baseline()?;
        let known = (v == super::Verdict::FalsePositive)
            .then(|| std::net::SocketAddr::new(sample.dst_ip, sample.dst_port).to_string());
        info!(
            alert = id,
            verdict = v.as_str(),
            relabelled,
            "operator verdict stored"
        );
        Ok(super::VerdictOutcome {
            alert_id: id,
            verdict: v,
            sample_id,
            replaced,
            relabelled,
            known_benign_service: known,
        })
    }

    /// Rebuilds the known-benign services from the store (after samples were deleted).
    pub fn reload_baseline(&self) -> Result<(), LearnError> {
        let s = &self.shared;
        s.baseline.reload(
            &s.store
                .samples_from(&[LabelSource::Baseline, LabelSource::Operator])?,
        );
        Ok(())
    }

    /// Starts interval cycles (first due check after one interval). Returns false if it was
    /// already active.
    pub fn start(&self) -> bool {
        let was = self.shared.active.swap(true, Ordering::SeqCst);
        self.shared.stop_cycle.store(false, Ordering::SeqCst);
        if !was {
            *self.shared.next_due.lock().expect("lock") = Some(
                OffsetDateTime::now_utc() + Duration::from_secs(self.shared.params.interval_s),
            );
            info!("continuous learning started");
            let _ = self.tx.send(Cmd::Wake);
        }
        !was
    }

    /// Stops interval cycles; a running cycle ends at its next step boundary as `failed`
    /// (stopped). Returns false if it was already inactive.
    pub fn stop(&self) -> bool {
        let was = self.shared.active.swap(false, Ordering::SeqCst);
        // Ends a running (or just starting) cycle; cleared by `start` and `train_now`.
        self.shared.stop_cycle.store(true, Ordering::SeqCst);
        *self.shared.next_due.lock().expect("lock") = None;
        if was {
            info!("continuous learning stopped");
        }
        was
    }

    pub fn is_active(&self) -> bool {
        self.shared.active.load(Ordering::SeqCst)
    }

    pub fn is_training(&self) -> bool {
        self.shared.training.load(Ordering::SeqCst)
    }

    /// Starts a cycle now on the learner thread.
    pub fn train_now(&self) -> Result<(), TrainNowError> {
        let st = self
            .shared
            .store
            .learning_state()
            .map_err(|e| TrainNowError::Failed(e.to_string()))?;
        let (_, new) = self
            .shared
            .store
            .sample_counts(st.watermark)
            .map_err(|e| TrainNowError::Failed(e.to_string()))?;
        if new < super::cycle::MIN_NEW_SAMPLES as u64 {
            return Err(TrainNowError::NothingToTrain(format!(
                "need at least {} new labelled samples, have {new}",
                super::cycle::MIN_NEW_SAMPLES
            )));
        }
        if !self.shared.begin_training() {
            return Err(TrainNowError::Busy);
        }
        self.shared.stop_cycle.store(false, Ordering::SeqCst);
        self.tx.send(Cmd::TrainNow).map_err(|_| {
            self.shared.training.store(false, Ordering::SeqCst);
            TrainNowError::Failed("the learner thread has stopped".into())
        })
    }

    /// Runs one cycle on the calling thread (offline `safelink learn train`, benchmarks).
    pub fn run_cycle_here(&self, trigger: &str) -> Result<CycleReport, LearnError> {
        if !self.shared.begin_training() {
            return Err(LearnError::Busy);
        }
        self.shared.stop_cycle.store(false, Ordering::SeqCst);
        let r = cycle(&self.shared, trigger);
        self.shared.training.store(false, Ordering::SeqCst);
        r
    }

    pub fn status(&self) -> Result<LearningStatus, LearnError> {
        let s = &self.shared;
        let st = s.store.learning_state()?;
        let (total, new) = s.store.sample_counts(st.watermark)?;
        let (cycles, last) = s.store.cycles(1)?;
        let versions = s.store.versions()?.len() as u64;
        let training = s.training.load(Ordering::SeqCst);
        let active = s.active.load(Ordering::SeqCst);
        let b = &st.baseline;
        let counted = s
            .store
            .samples_from(&[LabelSource::Baseline, LabelSource::Operator])?;
        let operator = counted
            .iter()
            .filter(|x| x.source == LabelSource::Operator)
            .count() as u64;
        Ok(LearningStatus {
            enabled: s.enabled,
            is_training: training,
            state: if training {
                "training"
            } else if active {
                "active"
            } else {
                "inactive"
            },
            profile: s.params.profile.as_str(),
            last_training_time: st.last_training_time,
            total_training_cycles: cycles,
            model_versions: versions,
            current_version: st.current_version,
            new_samples: new,
            total_samples: total,
            min_samples: s.params.min_samples,
            next_due: s.next_due.lock().expect("lock").map(format_rfc3339),
            last_outcome: last.first().map(|c| c.outcome.as_str().to_string()),
            reason: s.reason.lock().expect("lock").clone(),
            // From the same snapshot as `local_fpr` and `reason`: the in-memory gate opens just
            // after the check saves them, and reading it here could say live beside a local FPR
            // not yet measured (ann_lab saw that in CI).
            phase: b.phase().as_str(),
            baseline_ends: match (b.phase(), b.started_ns) {
                (Phase::Baseline, Some(ns)) => {
                    baseline_end(ns, s.params.baseline_s).map(format_rfc3339)
                }
                _ => None,
            },
            live_since: b.live_since.clone(),
            local_fpr: b.local_fpr,
            local_heldout_flows: b.heldout_flows,
            baseline_flows_seen: s.baseline.flows_seen(),
            baseline_samples: counted.len() as u64 - operator,
            baseline_reason: b.reason.clone(),
            known_benign_services: s.baseline.known_benign_services(),
            operator_verdicts: operator,
        })
    }

    pub fn history(&self, limit: usize) -> Result<(u64, Vec<CycleRecord>), LearnError> {
        Ok(self.shared.store.cycles(limit)?)
    }

    pub fn versions(&self) -> Result<(Option<u64>, Vec<VersionRecord>), LearnError> {
        let st = self.shared.store.learning_state()?;
        Ok((st.current_version, self.shared.store.versions()?))
    }

    /// Serves a kept version again (manual rollback). Refused while a cycle runs.
    pub fn activate(&self, version: u64) -> Result<VersionRecord, LearnError> {
        let s = &self.shared;
        if s.training.load(Ordering::SeqCst) {
            return Err(LearnError::Busy);
        }
        // A cycle that started meanwhile holds the lock: refuse rather than wait for it.
        let _g = match s.models_lock.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::WouldBlock) => return Err(LearnError::Busy),
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
        };
        let v = s
            .store
            .version(version)?
            .ok_or(LearnError::UnknownVersion(version))?;
        let model = s.dir.load(&v).map_err(LearnError::Model)?;
        let mut st = s.store.learning_state()?;
        st.current_version = Some(version);
        s.store.put_learning_state(&st)?;
        s.handle.install(model);
        metrics::gauge!(crate::telemetry::MODEL_VERSION).set(version as f64);
        info!(version, "model version activated");
        Ok(v)
    }

    /// Stops the thread (a running cycle ends at its next step) and waits for it.
    pub fn shutdown(&self) {
        self.shared.active.store(false, Ordering::SeqCst);
        self.shared.stop_cycle.store(true, Ordering::SeqCst);
        let _ = self.tx.send(Cmd::Shutdown);
        if let Some(j) = self.join.lock().expect("lock").take() {
            let _ = j.join();
        }
    }
}

/// Runs a cycle under the models lock; a panic inside is caught and reported as an error, so
/// the flags and the lock stay usable.
fn cycle(s: &Shared, trigger: &str) -> Result<CycleReport, LearnError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cycle_inner(s, trigger)))
        .unwrap_or_else(|p| {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            tracing::error!(panic = msg, "training cycle panicked");
            Err(LearnError::Train(format!("panic: {msg}")))
        })
}

fn cycle_inner(s: &Shared, trigger: &str) -> Result<CycleReport, LearnError> {
    let _g = s
        .models_lock
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let ctx = CycleContext {
        store: &s.store,
        dir: &s.dir,
        params: &s.params,
        handle: &s.handle,
        golden: s.golden.as_ref(),
        stop: &s.stop_cycle,
    };
    let r = run_cycle(&ctx, trigger);
    // Retention may have removed samples since: the known-benign services follow the store.
    if let Ok(kept) = s
        .store
        .samples_from(&[LabelSource::Baseline, LabelSource::Operator])
    {
        s.baseline.reload(&kept);
    }
    if let Ok(rep) = &r {
        metrics::counter!(crate::telemetry::LEARNING_CYCLES, "outcome" => rep.record.outcome.as_str())
            .increment(1);
        if let Ok(st) = s.store.learning_state()
            && let Some(v) = st.current_version
        {
            metrics::gauge!(crate::telemetry::MODEL_VERSION).set(v as f64);
        }
    }
    r
}

/// Runs a cycle on the worker (the training slot is claimed), logs how it ended and frees the
/// slot.
fn run_logged(s: &Shared, trigger: &str) {
    match cycle(s, trigger) {
        Ok(r) => info!(
            outcome = r.record.outcome.as_str(),
            secs = r.times.total,
            "cycle done"
        ),
        Err(e) => warn!(error = %e, "training cycle not run"),
    }
    s.training.store(false, Ordering::SeqCst);
}

fn worker(s: Arc<Shared>, rx: Receiver<Cmd>) {
    crate::ann::train::single_thread();
    super::background_priority();
    loop {
        let cmd = match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(c) => Some(c),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        match cmd {
            Some(Cmd::Shutdown) => return,
            Some(Cmd::TrainNow) => {
                // `training` was set by train_now.
                run_logged(&s, "manual");
            }
            Some(Cmd::Wake) | None => {}
        }
        if !s.active.load(Ordering::SeqCst) {
            continue;
        }
        let now = OffsetDateTime::now_utc();
        if s.baseline.phase() == Phase::Baseline {
            // No interval cycles in baseline: its check trains when it is due.
            if baseline_due(&s, now) && s.begin_training() {
                if let Err(e) = baseline_check(&s) {
                    warn!(error = %e, "local baseline check failed");
                }
                s.training.store(false, Ordering::SeqCst);
                *s.next_check.lock().expect("lock") =
                    Some(OffsetDateTime::now_utc() + Duration::from_secs(s.params.interval_s));
            }
            continue;
        }
        let due = *s.next_due.lock().expect("lock");
        if due.is_some_and(|d| now < d) {
            continue;
        }
        *s.next_due.lock().expect("lock") = Some(now + Duration::from_secs(s.params.interval_s));
        let new = s
            .store
            .learning_state()
            .and_then(|st| s.store.sample_counts(st.watermark))
            .map(|(_, n)| n)
            .unwrap_or(0);
        if (new as usize) < s.params.min_samples {
            let why = format!("need {} new samples, have {new}", s.params.min_samples);
            info!(reason = why, "training cycle not due");
            *s.reason.lock().expect("lock") = Some(why);
            continue;
        }
        *s.reason.lock().expect("lock") = None;
        if !s.begin_training() {
            continue;
        }
        // A stop that came in meanwhile wins.
        if !s.active.load(Ordering::SeqCst) {
            s.training.store(false, Ordering::SeqCst);
            continue;
        }
        run_logged(&s, "interval");
    }
}

/// When a baseline started at `started_ns` (Unix ns) ends.
fn baseline_end(started_ns: u64, baseline_s: u64) -> Option<OffsetDateTime> {
    let end = i128::from(started_ns) + i128::from(baseline_s) * 1_000_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(end).ok()
}

/// Whether the baseline's next local check is due.
fn baseline_due(s: &Shared, now: OffsetDateTime) -> bool {
    let started = match s.store.learning_state() {
        Ok(st) => st.baseline.started_ns,
        Err(_) => return false,
    };
    let ended = started
        .and_then(|ns| baseline_end(ns, s.params.baseline_s))
        .is_some_and(|end| now >= end);
    ended && s.next_check.lock().expect("lock").is_none_or(|t| now >= t)
}

/// The local baseline check: a cycle on the new samples (the host's own benign flows and any
/// rule-labelled attacks), then the serving model's false-positive rate on the held-out local
/// flows at the alert threshold. Live when enough flows were measured and the rate is at most
/// `baseline_max_fpr`; otherwise the reason is recorded and the ANN stays in baseline.
fn baseline_check(s: &Shared) -> Result<Phase, LearnError> {
    let p = &s.params;
    let st = s.store.learning_state()?;
    let (_, new) = s.store.sample_counts(st.watermark)?;
    if new as usize >= super::cycle::MIN_NEW_SAMPLES {
        match cycle(s, "baseline") {
            Ok(r) => info!(
                outcome = r.record.outcome.as_str(),
                "baseline training cycle"
            ),
            Err(e) => warn!(error = %e, "baseline training cycle not run"),
        }
    }
    let local: Vec<TrainingSample> = s
        .store
        .samples_from(&[LabelSource::Baseline])?
        .into_iter()
        .filter(|x| x.valid() && super::cycle::local_holdout(x, p.holdout_fraction))
        .collect();
    let x: Vec<f32> = local
        .iter()
        .flat_map(|x| x.features.iter().copied())
        .collect();
    let scores = if x.is_empty() {
        Vec::new()
    } else {
        s.handle
            .current()
            .score(&x)
            .map_err(|e| LearnError::Model(format!("scoring the local flows: {e}")))?
    };
    let n = scores.len() as u64;
    let fp = scores.iter().filter(|&&v| v >= p.alert_threshold).count() as u64;
    let fpr = if n == 0 {
        None
    } else {
        Some(fp as f64 / n as f64)
    };
    let mut st = s.store.learning_state()?;
    let b = &mut st.baseline;
    b.checks += 1;
    b.local_fpr = fpr;
    b.heldout_flows = n;
    b.false_positives = fp;
    let pct = |v: f64| format!("{:.2} %", v * 100.0);
    let phase = if (n as usize) < p.baseline_min_flows {
        b.reason = Some(format!(
            "only {n} held-out local flows, need {} to measure the false-positive rate; \
             staying in baseline",
            p.baseline_min_flows
        ));
        Phase::Baseline
    } else if fpr.is_some_and(|r| r > p.baseline_max_fpr) {
        // The flow scored highest, so the operator sees which service it is.
        let top = local
            .iter()
            .zip(&scores)
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(x, v)| {
                format!(
                    "; highest: {} -> {} port {} proto {}, {v:.3}",
                    x.src_ip, x.dst_ip, x.dst_port, x.proto
                )
            })
            .unwrap_or_default();
        b.reason = Some(format!(
            "the model flags {fp} of {n} held-out local flows ({}), above the {} allowed{top}; \
             staying in baseline and retraining at the next check",
            pct(fpr.unwrap_or(0.0)),
            pct(p.baseline_max_fpr)
        ));
        Phase::Baseline
    } else {
        b.live_since = Some(format_rfc3339(OffsetDateTime::now_utc()));
        b.reason = Some(format!(
            "live: the model flags {fp} of {n} held-out local flows ({}, at most {} allowed)",
            pct(fpr.unwrap_or(0.0)),
            pct(p.baseline_max_fpr)
        ));
        Phase::Live
    };
    info!(
        phase = phase.as_str(),
        local_fpr = ?fpr,
        heldout = n,
        reason = b.reason.as_deref().unwrap_or(""),
        "local baseline check"
    );
    crate::telemetry::record_baseline(phase == Phase::Live, fpr);
    s.store.put_learning_state(&st)?;
    s.baseline.set_phase(phase);
    if phase == Phase::Live {
        // Interval cycles from now on.
        *s.next_due.lock().expect("lock") =
            Some(OffsetDateTime::now_utc() + Duration::from_secs(p.interval_s));
    }
    Ok(phase)
}
