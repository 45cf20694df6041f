//! Continuous learning: detect and learn at the same time.
//!
//! - [`collect`]: every flow the ANN scored and every rule alert go to a collector thread that
//!   labels flows ([`sample`]: rule alert → attack, score > 0.95 → attack, < 0.30 → benign,
//!   else skipped) and stores them as training samples.
//! - [`worker`]: the [`Learner`] thread runs a [`cycle`] every `learning_interval_s` once
//!   `min_samples` new samples exist, or on demand: back up the serving model, fine-tune it
//!   from its own weights on the new samples plus a replay of history, validate on held-out
//!   new samples and on the fixed golden set, then commit and swap atomically, or reject and
//!   keep serving.
//! - [`models`] and [`history`]: model versions, backups, cycle history, crash recovery.
//! - [`config`]: the `[learning]` section and its profiles.
pub mod baseline;
pub mod bench;
pub mod collect;
pub mod config;
pub mod cycle;
pub mod history;
pub mod ingest;
pub mod models;
pub mod sample;
pub mod verdict;
pub mod worker;

pub use baseline::{BaselineState, LocalBaseline, Phase};
pub use collect::{CollectStats, Collector, CollectorHandle, CollectorThread};
pub use config::{LearningParams, LearningSection, Profile};
pub use cycle::{CycleReport, Golden, StepTimes};
pub use history::{CycleMetrics, CycleRecord, LearningState, Outcome, VersionRecord};
pub use sample::{Decision, Evidence, LabelSource, TrainingSample, auto_label};
pub use verdict::{Verdict, VerdictError, VerdictOutcome};
pub use worker::{Learner, LearningStatus, TrainNowError};

use crate::store::StoreError;

/// What can go wrong in the learner.
#[derive(Debug, thiserror::Error)]
pub enum LearnError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("model: {0}")]
    Model(String),
    #[error("training: {0}")]
    Train(String),
    #[error("nothing to train on: {0}")]
    NothingToTrain(String),
    #[error("stopped during the {0} step")]
    Stopped(String),
    #[error("a training cycle is running")]
    Busy,
    #[error("no model version {0}")]
    UnknownVersion(u64),
}

/// Lowers the calling thread's scheduling priority (nice 10, Linux per-thread), so a
/// training cycle never takes CPU time from the detection threads.
pub fn background_priority() {
    // SAFETY: plain syscalls on the calling thread.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 10);
    }
}

/// Reads the golden set file into a [`Golden`].
pub fn load_golden(path: &std::path::Path) -> anyhow::Result<Golden> {
    let s = crate::ann::dataset::read_jsonl(path)?;
    Ok(Golden::from_samples(&s))
}
