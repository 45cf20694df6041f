//! Training samples and the auto-labelling rules, first match wins:
//!
//! | evidence                                              | label  | source     | confidence |
//! |-------------------------------------------------------|--------|------------|------------|
//! | an endpoint of the flow raised a rule alert           | attack | `dfa`      | 1.0        |
//! | scored during the local baseline (no rule alert)      | benign | `baseline` | 1.0        |
//! | ANN score > `attack_score` (0.95), service not known benign | attack | `ann_high` | score |
//! | ANN score > `attack_score`, service known benign      | —      | skipped (overruled) |   |
//! | ANN score < `benign_score` (0.30)                     | benign | `ann_low`  | 1 − score  |
//! | anything else                                         | —      | skipped    |            |
//!
//! A rule alert wins over the ANN: a flow from an address the automata flagged is an attack
//! whatever its score. A "known benign" service (server address and port) is one the local
//! baseline saw without any rule alert, or one an operator marked `false_positive`: there the
//! ANN's own high score is no evidence (it would teach the next model its own false positive).
//! Operator verdicts (`operator`) are not made here: they are stored by
//! [`crate::learn::Learner::verdict`] and outrank every rule above. Samples carry the flow's
//! features and addresses, never payload bytes.
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::alert::AlertKind;
use crate::ann::N_FEATURES;
use crate::ann::features::extract;
use crate::record::FlowRecord;

/// What produced a label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelSource {
    /// A rule automaton alerted on an endpoint of the flow.
    Dfa,
    /// The ANN scored the flow above the attack threshold.
    AnnHigh,
    /// The ANN scored the flow below the benign threshold.
    AnnLow,
    /// Put in by hand (tests, imports).
    Manual,
    /// Scored during the local baseline phase, no rule alert about it: benign.
    Baseline,
    /// An operator's verdict on an alert (`POST /alerts/{id}/verdict`): outranks every
    /// automatic label, survives history pruning.
    Operator,
}

impl LabelSource {
    pub fn as_str(self) -> &'static str {
        match self {
            LabelSource::Dfa => "dfa",
            LabelSource::AnnHigh => "ann_high",
            LabelSource::AnnLow => "ann_low",
            LabelSource::Manual => "manual",
            LabelSource::Baseline => "baseline",
            LabelSource::Operator => "operator",
        }
    }

    /// Automatic labels may be replaced by later evidence; an operator's may not.
    pub fn is_automatic(self) -> bool {
        !matches!(self, LabelSource::Operator | LabelSource::Manual)
    }
}

/// What is known about a scored flow when it is labelled.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Evidence {
    /// The kind of a rule alert about an endpoint of the flow.
    pub rule_alert: Option<AlertKind>,
    pub score: f32,
    /// Scored while the ANN was in its local baseline phase.
    pub baseline: bool,
    /// Its service (server address and port) is known benign: seen in the local baseline
    /// without rule alerts, or marked `false_positive` by an operator.
    pub known_benign: bool,
}

/// What [`auto_label`] decided.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Decision {
    Label(Label),
    /// Between the thresholds.
    Skipped,
    /// Scored above `attack_score` on a known-benign service: not labelled attack.
    Overruled,
}

/// A label with where it came from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Label {
    pub attack: bool,
    pub source: LabelSource,
    pub confidence: f32,
}

/// The rules of the module doc.
pub fn auto_label(e: &Evidence, attack_score: f32, benign_score: f32) -> Decision {
    let label = |attack, source, confidence| {
        Decision::Label(Label {
            attack,
            source,
            confidence,
        })
    };
    if e.rule_alert.is_some() {
        label(true, LabelSource::Dfa, 1.0)
    } else if e.baseline {
        label(false, LabelSource::Baseline, 1.0)
    } else if e.score > attack_score {
        if e.known_benign {
            Decision::Overruled
        } else {
            label(true, LabelSource::AnnHigh, e.score)
        }
    } else if e.score < benign_score {
        label(false, LabelSource::AnnLow, 1.0 - e.score)
    } else {
        Decision::Skipped
    }
}

/// One labelled flow in the learner's history (sled tree `samples`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainingSample {
    /// Assigned by the store (monotonic from 1).
    #[serde(default)]
    pub id: u64,
    /// Unix time of the flow's last packet, nanoseconds.
    pub ts_ns: u64,
    pub src_ip: IpAddr,
    pub src_port: u16,
    pub dst_ip: IpAddr,
    pub dst_port: u16,
    pub proto: u8,
    /// 1.0 attack, 0.0 benign.
    pub label: f32,
    pub source: LabelSource,
    pub confidence: f32,
    /// The ANN score when the flow was collected.
    pub score: f32,
    /// The rule alert kind behind a `dfa` label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<AlertKind>,
    /// The flow's feature vector (`ann::features`), never payload bytes.
    pub features: Vec<f32>,
    /// Scored during the local baseline phase (in memory only, until it is labelled).
    #[serde(skip)]
    pub baseline: bool,
    /// An operator verdict's alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_id: Option<u64>,
}

impl TrainingSample {
    /// An unlabelled sample of `f` (label filled in by [`TrainingSample::labelled`]).
    pub fn of_flow(f: &FlowRecord, score: f32) -> Self {
        Self::of_scored(f, &extract(f), score)
    }

    /// [`Self::of_flow`] with the feature row the ANN already extracted to score it.
    pub fn of_scored(f: &FlowRecord, row: &[f32; N_FEATURES], score: f32) -> Self {
        TrainingSample {
            id: 0,
            ts_ns: f.last_ns,
            src_ip: f.src_ip,
            src_port: f.src_port,
            dst_ip: f.dst_ip,
            dst_port: f.dst_port,
            proto: f.proto,
            label: 0.0,
            source: LabelSource::AnnLow,
            confidence: 0.0,
            score,
            kind: None,
            features: row.to_vec(),
            baseline: false,
            alert_id: None,
        }
    }

    pub fn labelled(mut self, l: Label, kind: Option<AlertKind>) -> Self {
        self.label = if l.attack { 1.0 } else { 0.0 };
        self.source = l.source;
        self.confidence = l.confidence;
        self.kind = kind.filter(|_| l.source == LabelSource::Dfa);
        self
    }

    pub fn is_attack(&self) -> bool {
        self.label > 0.5
    }

    /// Whether the sample is about `ip` (either endpoint).
    pub fn involves(&self, ip: IpAddr) -> bool {
        self.src_ip == ip || self.dst_ip == ip
    }

    pub fn valid(&self) -> bool {
        self.features.len() == N_FEATURES && self.features.iter().all(|v| v.is_finite())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(rule_alert: Option<AlertKind>, score: f32, baseline: bool, known: bool) -> Decision {
        let e = Evidence {
            rule_alert,
            score,
            baseline,
            known_benign: known,
        };
        auto_label(&e, 0.95, 0.30)
    }

    fn l(rule_alert: Option<AlertKind>, score: f32) -> Option<(bool, LabelSource)> {
        match decide(rule_alert, score, false, false) {
            Decision::Label(l) => Some((l.attack, l.source)),
            _ => None,
        }
    }

    #[test]
    fn rules() {
        assert_eq!(
            l(Some(AlertKind::SSH_BRUTE_FORCE), 0.01),
            Some((true, LabelSource::Dfa))
        );
        assert_eq!(l(None, 0.96), Some((true, LabelSource::AnnHigh)));
        assert_eq!(l(None, 0.95), None);
        assert_eq!(l(None, 0.5), None);
        assert_eq!(l(None, 0.30), None);
        assert_eq!(l(None, 0.29), Some((false, LabelSource::AnnLow)));
        let Decision::Label(c) = decide(None, 0.1, false, false) else {
            panic!("labelled")
        };
        assert!((c.confidence - 0.9).abs() < 1e-6);
    }

    /// The baseline makes every flow without a rule alert benign, whatever the ANN says; after
    /// it, a high score on a known-benign service is overruled, not an attack label; a rule
    /// alert still wins over both.
    #[test]
    fn baseline_and_known_benign_services_outrank_a_high_score() {
        let Decision::Label(b) = decide(None, 0.99, true, false) else {
            panic!("baseline labels")
        };
        assert_eq!(
            (b.attack, b.source, b.confidence),
            (false, LabelSource::Baseline, 1.0)
        );
        assert_eq!(decide(None, 0.99, false, true), Decision::Overruled);
        // Known benign does not stop a low score from labelling benign.
        assert!(matches!(
            decide(None, 0.1, false, true),
            Decision::Label(Label {
                attack: false,
                source: LabelSource::AnnLow,
                ..
            })
        ));
        for (baseline, known) in [(true, false), (false, true), (true, true)] {
            assert!(matches!(
                decide(Some(AlertKind::PORT_SCAN), 0.99, baseline, known),
                Decision::Label(Label {
                    attack: true,
                    source: LabelSource::Dfa,
                    ..
                })
            ));
        }
    }
}
