//! `[learning]`: the continuous learner's settings. A profile (`default`, `single`, `mass`)
//! gives the training cadence and hyper-parameters; every value can be overridden one by one.
//! [`LearningSection::params`] resolves the two into the [`LearningParams`] the worker uses.
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A named set of defaults.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// One busy host or a small fleet: hourly cycles at 100 new samples, lr 1e-3 and 10
    /// epochs (learns a new attack family, or a local false positive, in one cycle:
    /// docs/learning.md).
    #[default]
    Default,
    /// The seed's original defaults (lr 1e-4, 3 epochs): follows drift gently, but one cycle
    /// does not learn a new class.
    Seed,
    /// One quiet host: fewer, gentler cycles (every 2 h at 50 samples, lr 5e-5).
    Single,
    /// Aggregated alerts of many sensors: bigger batches and history.
    Mass,
}

impl Profile {
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Default => "default",
            Profile::Seed => "seed",
            Profile::Single => "single",
            Profile::Mass => "mass",
        }
    }

    /// (interval s, min samples, batch, learning rate, max history, epochs).
    fn base(self) -> (u64, usize, usize, f64, usize, usize) {
        match self {
            Profile::Default => (3600, 100, 32, 1e-3, 10_000, 10),
            Profile::Seed => (3600, 100, 32, 1e-4, 10_000, 3),
            Profile::Single => (7200, 50, 16, 5e-5, 5_000, 3),
            Profile::Mass => (3600, 500, 128, 2e-4, 20_000, 3),
        }
    }
}

/// The `[learning]` section as written in the file (unset values come from the profile).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LearningSection {
    /// Run the learner with the sniffer (on by default). It needs the ANN model (loaded for
    /// scoring even when `[ann] enabled = false`; ANN alerts stay off then).
    pub enabled: bool,
    pub profile: Profile,
    /// Seconds between due checks (a cycle runs when `min_samples` new samples exist).
    pub learning_interval_s: Option<u64>,
    pub min_samples: Option<usize>,
    pub batch_size: Option<usize>,
    pub learning_rate: Option<f64>,
    pub epochs: Option<usize>,
    /// Samples kept for training (oldest dropped first).
    pub max_history: Option<usize>,
    /// A flow the ANN scores above this is labelled attack...
    #[serde(serialize_with = "crate::config::f32_short")]
    pub attack_score: f32,
    /// ...below this benign; in between it is skipped.
    #[serde(serialize_with = "crate::config::f32_short")]
    pub benign_score: f32,
    /// Benign samples taken per cycle window before acceptance decays (probability
    /// `cap / seen`), so quiet benign traffic cannot flood the history.
    pub benign_reservoir: usize,
    /// Attack samples kept per group (rule alert kind and attacker, or destination of an
    /// ANN-flagged flow) and window.
    pub attack_group_cap: usize,
    /// Attack samples taken per cycle window, all groups together, before acceptance decays
    /// (probability `cap / seen`), so address churn (a new group per spoofed or scanning
    /// source) cannot make the collector rewrite the history many times an hour.
    pub attack_reservoir: usize,
    /// Validation: a new model is deployed only if its held-out accuracy is above this...
    pub min_accuracy: f64,
    /// ...its held-out loss below this...
    pub max_loss: f64,
    /// ...and its golden-set accuracy is at most this much (0.02 = 2 points) below both the
    /// serving model's and the base model's...
    pub golden_margin: f64,
    /// ...and it flags at most this share (0.001 = 0.1 point) more of the golden set's benign
    /// rows at the alert threshold than both the serving model and the base model do: the
    /// accuracy margin alone lets the false-positive rate on benign traffic no cycle trained
    /// on grow twentyfold past the ANN's 0.1 % target.
    pub golden_fpr_margin: f64,
    /// The golden margin holds for every family's rows of the golden set too, not only
    /// overall (unset: on for `safelink learner`, whose samples come from other machines;
    /// off for a sensor's own learner, where the local baseline and the operator's verdicts
    /// are meant to move the boundary: a verdict on an SSH session the base model took for
    /// brute force may cost that family its golden rows).
    pub golden_per_family: Option<bool>,
    /// Share of the new samples held out for validation.
    pub holdout_fraction: f64,
    /// History samples replayed per new training sample (against forgetting).
    pub replay_ratio: f64,
    /// Rows of the base model's training set rehearsed per training sample of a cycle (0 =
    /// none): that many benign rows ([`Self::rehearsal_rows`]) and a quarter as many attack rows
    /// ([`Self::rehearsal_attack_rows`]; a third of them of the families the cycle's rule
    /// labels name). A cycle's few local benign flows cannot cover what the base model
    /// learned is benign, and without them a cycle that learns a new attack family widens
    /// the attack side over benign traffic it never saw; benign rows alone
    /// pull the boundary away from the attack families a cycle has few samples of, which the
    /// attack rows keep (docs/learning.md, "Learning curves").
    pub rehearsal: f64,
    /// The benign feature rows rehearsed (unset: the shipped `benign/flows.csv.gz`, found like
    /// the base model). Only the rows outside the golden set are used.
    pub rehearsal_rows: Option<PathBuf>,
    /// The attack rows rehearsed (unset: the shipped `attack_rows.jsonl`, written by
    /// `safelink model train-base` next to the base model; never golden rows).
    pub rehearsal_attack_rows: Option<PathBuf>,
    /// Seconds a scored flow waits before it is labelled, so a rule alert that fires a little
    /// later still labels it attack.
    pub settle_s: u64,
    /// The fixed golden set of the base model (unset: the shipped `golden.jsonl`, found like
    /// the base model, see [`crate::shipped`]).
    pub golden: Option<PathBuf>,
    /// Model files kept in `<data_dir>/models` (the current one is always kept).
    pub keep_versions: usize,
    /// Share of wall time a training cycle may compute; it sleeps the rest after each batch,
    /// leaving the CPU to detection (1.0 = flat out).
    pub train_duty: f64,
    /// Seconds of local baseline before the ANN may go live: it scores every flow but raises
    /// no ANN alert, and learns this host's own benign traffic (0 = no baseline: live at
    /// once with the model it has).
    pub baseline_s: u64,
    /// The ANN goes live only when the serving model flags at most this share of held-out
    /// local baseline flows (at `[ann] threshold`)...
    pub baseline_max_fpr: f64,
    /// ...measured on at least this many held-out local flows (the rate's resolution is one
    /// flow in this many).
    pub baseline_min_flows: usize,
}

impl Default for LearningSection {
    fn default() -> Self {
        LearningSection {
            enabled: true,
            profile: Profile::Default,
            learning_interval_s: None,
            min_samples: None,
            batch_size: None,
            learning_rate: None,
            epochs: None,
            max_history: None,
            attack_score: 0.95,
            benign_score: 0.30,
            benign_reservoir: 2000,
            attack_group_cap: 200,
            attack_reservoir: 5000,
            min_accuracy: 0.70,
            max_loss: 2.0,
            golden_margin: 0.02,
            golden_fpr_margin: 0.001,
            golden_per_family: None,
            holdout_fraction: 0.2,
            replay_ratio: 1.0,
            rehearsal: 1.0,
            rehearsal_rows: None,
            rehearsal_attack_rows: None,
            settle_s: 120,
            golden: None,
            keep_versions: 20,
            train_duty: 0.5,
            baseline_s: 86_400,
            baseline_max_fpr: 0.001,
            baseline_min_flows: 200,
        }
    }
}

/// The shipped golden set's file name, looked for by [`crate::shipped::find`] when
/// `[learning] golden` is unset.
pub const SHIPPED_GOLDEN: &str = "golden.jsonl";

/// The shipped benign feature rows (the base model's benign training set), looked for by
/// [`crate::shipped::find`] when `[learning] rehearsal_rows` is unset.
pub const SHIPPED_BENIGN_ROWS: &str = "benign/flows.csv.gz";

/// The shipped attack rows rehearsed (see [`crate::ann::recipe::REHEARSAL_ATTACK_ROWS`]),
/// looked for when `[learning] rehearsal_attack_rows` is unset.
pub const SHIPPED_ATTACK_ROWS: &str = crate::ann::recipe::REHEARSAL_ATTACK_ROWS;

/// Resolved settings.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LearningParams {
    pub profile: Profile,
    pub interval_s: u64,
    pub min_samples: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub epochs: usize,
    pub max_history: usize,
    pub attack_score: f32,
    pub benign_score: f32,
    pub benign_reservoir: usize,
    pub attack_group_cap: usize,
    pub attack_reservoir: usize,
    pub min_accuracy: f64,
    pub max_loss: f64,
    pub golden_margin: f64,
    pub golden_fpr_margin: f64,
    /// Resolved `golden_per_family` (off unless set; the fleet learner turns it on).
    pub golden_per_family: bool,
    pub holdout_fraction: f64,
    pub replay_ratio: f64,
    pub rehearsal: f64,
    /// Resolved: the configured file, else the shipped one if found.
    pub rehearsal_rows: Option<PathBuf>,
    /// Resolved like `rehearsal_rows`.
    pub rehearsal_attack_rows: Option<PathBuf>,
    pub settle_s: u64,
    pub keep_versions: usize,
    pub train_duty: f64,
    pub baseline_s: u64,
    pub baseline_max_fpr: f64,
    pub baseline_min_flows: usize,
    /// The ANN alert threshold (`[ann] threshold`), for the baseline's local check: set by
    /// [`crate::config::Config::learning_params`].
    #[serde(serialize_with = "crate::config::f32_short")]
    pub alert_threshold: f32,
}

impl Default for LearningParams {
    fn default() -> Self {
        LearningSection::default()
            .params()
            .expect("defaults are valid")
    }
}

/// A `[learning]` value out of range, named with its constraint.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("[learning] {0}")]
pub struct LearningConfigError(pub String);

impl LearningSection {
    /// The profile's values with this section's overrides, checked.
    pub fn params(&self) -> Result<LearningParams, LearningConfigError> {
        let (interval, min, batch, lr, history, epochs) = self.profile.base();
        let p = LearningParams {
            profile: self.profile,
            interval_s: self.learning_interval_s.unwrap_or(interval),
            min_samples: self.min_samples.unwrap_or(min),
            batch_size: self.batch_size.unwrap_or(batch),
            learning_rate: self.learning_rate.unwrap_or(lr),
            epochs: self.epochs.unwrap_or(epochs),
            max_history: self.max_history.unwrap_or(history),
            attack_score: self.attack_score,
            benign_score: self.benign_score,
            benign_reservoir: self.benign_reservoir,
            attack_group_cap: self.attack_group_cap,
            attack_reservoir: self.attack_reservoir,
            min_accuracy: self.min_accuracy,
            max_loss: self.max_loss,
            golden_margin: self.golden_margin,
            golden_fpr_margin: self.golden_fpr_margin,
            golden_per_family: self.golden_per_family.unwrap_or(false),
            holdout_fraction: self.holdout_fraction,
            replay_ratio: self.replay_ratio,
            rehearsal: self.rehearsal,
            rehearsal_rows: (self.rehearsal > 0.0)
                .then(|| {
                    self.rehearsal_rows
                        .clone()
                        .or_else(|| crate::shipped::find(SHIPPED_BENIGN_ROWS))
                })
                .flatten(),
            rehearsal_attack_rows: (self.rehearsal > 0.0)
                .then(|| {
                    self.rehearsal_attack_rows
                        .clone()
                        .or_else(|| crate::shipped::find(SHIPPED_ATTACK_ROWS))
                })
                .flatten(),
            settle_s: self.settle_s,
            keep_versions: self.keep_versions,
            train_duty: self.train_duty,
            baseline_s: self.baseline_s,
            baseline_max_fpr: self.baseline_max_fpr,
            baseline_min_flows: self.baseline_min_flows,
            alert_threshold: crate::ann::AnnConfig::default().threshold,
        };
        let bad = |m: String| Err(LearningConfigError(m));
        if p.interval_s == 0 {
            return bad("learning_interval_s must be at least 1".into());
        }
        if p.batch_size == 0 || p.epochs == 0 || p.max_history == 0 {
            return bad("batch_size, epochs and max_history must be at least 1".into());
        }
        if !(p.learning_rate > 0.0 && p.learning_rate < 1.0) {
            return bad(format!(
                "learning_rate must be in (0, 1), got {}",
                p.learning_rate
            ));
        }
        if !(0.0 <= p.benign_score && p.benign_score < p.attack_score && p.attack_score <= 1.0) {
            return bad(format!(
                "need 0 <= benign_score < attack_score <= 1, got {} and {}",
                p.benign_score, p.attack_score
            ));
        }
        if !(p.holdout_fraction > 0.0 && p.holdout_fraction < 1.0) {
            return bad(format!(
                "holdout_fraction must be in (0, 1), got {}",
                p.holdout_fraction
            ));
        }
        if !(0.0..=1.0).contains(&p.min_accuracy) || p.max_loss <= 0.0 || p.golden_margin < 0.0 {
            return bad("min_accuracy must be in [0, 1], max_loss > 0, golden_margin >= 0".into());
        }
        if !(0.0..=1.0).contains(&p.golden_fpr_margin) {
            return bad(format!(
                "golden_fpr_margin must be in [0, 1], got {}",
                p.golden_fpr_margin
            ));
        }
        if !(p.train_duty > 0.0 && p.train_duty <= 1.0) {
            return bad(format!(
                "train_duty must be in (0, 1], got {}",
                p.train_duty
            ));
        }
        if !(0.0..1.0).contains(&p.baseline_max_fpr) || p.baseline_min_flows == 0 {
            return bad(format!(
                "baseline_max_fpr must be in [0, 1) and baseline_min_flows at least 1, got {} and {}",
                p.baseline_max_fpr, p.baseline_min_flows
            ));
        }
        if !(0.0..=100.0).contains(&p.rehearsal) {
            return bad(format!(
                "rehearsal must be in [0, 100], got {}",
                p.rehearsal
            ));
        }
        if p.keep_versions < 2 {
            return bad("keep_versions must be at least 2 (current and parent)".into());
        }
        Ok(p)
    }

    /// The golden set to validate against: the configured file, else the shipped
    /// [`SHIPPED_GOLDEN`].
    pub fn golden_path(&self) -> Option<PathBuf> {
        self.golden
            .clone()
            .or_else(|| crate::shipped::find(SHIPPED_GOLDEN))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_and_overrides() {
        let d = LearningParams::default();
        assert_eq!(
            (
                d.interval_s,
                d.min_samples,
                d.batch_size,
                d.learning_rate,
                d.max_history,
                d.epochs
            ),
            (3600, 100, 32, 1e-3, 10_000, 10)
        );
        let seed = LearningSection {
            profile: Profile::Seed,
            ..Default::default()
        }
        .params()
        .unwrap();
        assert_eq!(
            (
                seed.learning_rate,
                seed.epochs,
                seed.interval_s,
                seed.min_samples
            ),
            (1e-4, 3, 3600, 100)
        );
        let s = LearningSection {
            profile: Profile::Single,
            ..Default::default()
        }
        .params()
        .unwrap();
        assert_eq!(
            (
                s.interval_s,
                s.min_samples,
                s.batch_size,
                s.learning_rate,
                s.max_history
            ),
            (7200, 50, 16, 5e-5, 5_000)
        );
        let m = LearningSection {
            profile: Profile::Mass,
            min_samples: Some(7),
            ..Default::default()
        }
        .params()
        .unwrap();
        assert_eq!(
            (
                m.interval_s,
                m.min_samples,
                m.batch_size,
                m.learning_rate,
                m.max_history
            ),
            (3600, 7, 128, 2e-4, 20_000)
        );
        let e = LearningSection {
            benign_score: 0.99,
            ..Default::default()
        }
        .params()
        .unwrap_err()
        .to_string();
        assert!(e.contains("benign_score"), "{e}");
    }
}
