//! Training samples and the auto-labelling rules.
//!
//! | evidence                                   | label  | source    | confidence |
//! |--------------------------------------------|--------|-----------|------------|
//! | an endpoint of the flow raised a rule alert| attack | `dfa`     | 1.0        |
//! | ANN score > `attack_score` (0.95)          | attack | `ann`     | score      |
//! | ANN score < `benign_score` (0.30)          | benign | `ann`     | 1 − score  |
//! | anything else                              | —      | skipped   |            |
//!
//! A rule alert wins over the ANN: a flow from an address the automata flagged is an attack
//! whatever its score. Samples carry the flow's features and addresses, never payload bytes.
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
}

impl LabelSource {
    pub fn as_str(self) -> &'static str {
        match self {
            LabelSource::Dfa => "dfa",
            LabelSource::AnnHigh => "ann_high",
            LabelSource::AnnLow => "ann_low",
            LabelSource::Manual => "manual",
        }
    }
}

/// A label with where it came from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Label {
    pub attack: bool,
    pub source: LabelSource,
    pub confidence: f32,
}

/// The rules of the module doc. `rule_alert` is the kind of a rule alert about an endpoint.
pub fn auto_label(
    rule_alert: Option<AlertKind>,
    score: f32,
    attack_score: f32,
    benign_score: f32,
) -> Option<Label> {
    if rule_alert.is_some() {
        Some(Label {
            attack: true,
            source: LabelSource::Dfa,
            confidence: 1.0,
        })
    } else if score > attack_score {
        Some(Label {
            attack: true,
            source: LabelSource::AnnHigh,
            confidence: score,
        })
    } else if score < benign_score {
        Some(Label {
            attack: false,
            source: LabelSource::AnnLow,
            confidence: 1.0 - score,
        })
    } else {
        None
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

    #[test]
    fn rules() {
        let l = |k, s| auto_label(k, s, 0.95, 0.30).map(|l| (l.attack, l.source));
        assert_eq!(
            l(Some(AlertKind::SSH_BRUTE_FORCE), 0.01),
            Some((true, LabelSource::Dfa))
        );
        assert_eq!(l(None, 0.96), Some((true, LabelSource::AnnHigh)));
        assert_eq!(l(None, 0.95), None);
        assert_eq!(l(None, 0.5), None);
        assert_eq!(l(None, 0.30), None);
        assert_eq!(l(None, 0.29), Some((false, LabelSource::AnnLow)));
        let c = auto_label(None, 0.1, 0.95, 0.30).unwrap().confidence;
        assert!((c - 0.9).abs() < 1e-6);
    }
}
