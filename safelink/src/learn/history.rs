//! What the learner records: model versions ([`VersionRecord`]), training cycles
//! ([`CycleRecord`]) and its small persistent state ([`LearningState`]). They live in the
//! store (trees `models`, `cycles`, `learning`), and a cycle's outcome, its version and the
//! new current version are committed in one transaction, so the store never names a model
//! that was not completely written.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How a cycle ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Still running (or interrupted: fixed to `failed` when the learner next starts).
    Running,
    /// Validated and serving.
    Deployed,
    /// Trained, but validation refused it; the previous model kept serving.
    Rejected,
    /// An error, a stop or a crash ended it before a decision.
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Running => "running",
            Outcome::Deployed => "deployed",
            Outcome::Rejected => "rejected",
            Outcome::Failed => "failed",
        }
    }
}

/// Validation figures of a candidate model.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CycleMetrics {
    /// Held-out new samples, at score 0.5.
    pub loss: f64,
    pub accuracy: f64,
    pub precision: f64,
    pub recall: f64,
    pub holdout_samples: usize,
    /// Golden set accuracy of the candidate and of the model it would replace.
    pub golden_accuracy: Option<f64>,
    pub golden_accuracy_before: Option<f64>,
    /// Golden set accuracy of the base model (version of origin `base`): every cycle is held
    /// within the golden margin of it too, so small losses cannot add up over cycles. Unset
    /// when the learner has no readable base version (records of earlier releases too).
    #[serde(default)]
    pub golden_accuracy_base: Option<f64>,
    /// Share of the golden set's benign rows flagged at the alert threshold by the candidate,
    /// the model it would replace and the base model (unset in records of earlier releases).
    #[serde(default)]
    pub golden_fpr: Option<f64>,
    #[serde(default)]
    pub golden_fpr_before: Option<f64>,
    #[serde(default)]
    pub golden_fpr_base: Option<f64>,
    /// Mean training loss of each epoch.
    pub epoch_loss: Vec<f64>,
}

/// One model the learner knows (the base model is version 1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VersionRecord {
    pub version: u64,
    pub parent: Option<u64>,
    /// RFC 3339 UTC.
    pub created: String,
    /// File name inside `<data_dir>/models`.
    pub file: String,
    pub sha256: String,
    /// Training samples used (0 for the base model).
    pub samples: usize,
    /// Samples per label source (`dfa`, `ann_high`, `ann_low`, ...).
    pub label_sources: BTreeMap<String, usize>,
    pub metrics: Option<CycleMetrics>,
    /// `base` (the model the learner started from) or `deployed` (made by a cycle).
    pub origin: String,
    /// The cycle that produced it.
    pub cycle: Option<u64>,
}

/// One training cycle.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CycleRecord {
    pub id: u64,
    /// Start, RFC 3339 UTC.
    pub timestamp: String,
    /// `interval` or `manual`.
    pub trigger: String,
    pub outcome: Outcome,
    pub reason: Option<String>,
    /// Seconds from start to decision.
    pub training_time: f64,
    pub num_samples: usize,
    pub new_samples: usize,
    pub label_sources: BTreeMap<String, usize>,
    pub metrics: Option<CycleMetrics>,
    /// The model serving when the cycle started.
    pub parent_version: Option<u64>,
    /// The version it produced (deployed ones only).
    pub version: Option<u64>,
    /// Backup of the parent model, relative to `<data_dir>/models`.
    pub backup: Option<String>,
    /// Sample ids `(first, last)` this cycle took as new.
    pub new_range: Option<(u64, u64)>,
}

/// The learner's persistent state (one record).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LearningState {
    pub current_version: Option<u64>,
    /// Samples with an id above this are new (not yet taken by a cycle).
    pub watermark: u64,
    /// Sample id ranges of rejected cycles: never replayed as history.
    pub quarantine: Vec<(u64, u64)>,
    pub last_training_time: Option<String>,
    /// The local baseline phase of the ANN.
    #[serde(default)]
    pub baseline: super::baseline::BaselineState,
}

impl LearningState {
    pub fn quarantined(&self, id: u64) -> bool {
        self.quarantine.iter().any(|(a, b)| (*a..=*b).contains(&id))
    }
}
