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
use super::config::LearningParams;
use super::cycle::{CycleContext, CycleReport, Golden, run_cycle};
use super::history::{CycleRecord, VersionRecord};
use super::models::{ModelDir, open_registry};
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
        let (handle, state) = open_registry(&store, &dir, base_model)?;
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
