//! Binary classification metrics of a scored set: confusion counts at a threshold, accuracy,
//! precision, recall, false-positive rate, and ROC-AUC (Mann–Whitney, ties counted half).
use serde::{Deserialize, Serialize};

/// Metrics of scores against 0/1 labels at one threshold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub n: u64,
    pub positives: u64,
    pub negatives: u64,
    pub threshold: f32,
    pub tp: u64,
    pub fp: u64,
    pub tn: u64,
    #[serde(rename = "fn")]
    pub fn_: u64,
    pub accuracy: f64,
    pub precision: f64,
    pub recall: f64,
    pub false_positive_rate: f64,
    pub roc_auc: f64,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Metrics of `scores` (higher = attack) against `labels` (1.0 = attack) at `threshold`
/// (score ≥ threshold counts as positive).
pub fn compute(scores: &[f32], labels: &[f32], threshold: f32) -> Metrics {
    assert_eq!(scores.len(), labels.len());
    let (mut tp, mut fp, mut tn, mut fn_) = (0u64, 0u64, 0u64, 0u64);
    for (&s, &y) in scores.iter().zip(labels) {
        match (s >= threshold, y >= 0.5) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, false) => tn += 1,
            (false, true) => fn_ += 1,
        }
    }
    let n = tp + fp + tn + fn_;
    Metrics {
        n,
        positives: tp + fn_,
        negatives: tn + fp,
        threshold,
        tp,
        fp,
        tn,
        fn_,
        accuracy: ratio(tp + tn, n),
        precision: ratio(tp, tp + fp),
        recall: ratio(tp, tp + fn_),
        false_positive_rate: ratio(fp, fp + tn),
        roc_auc: roc_auc(scores, labels),
    }
}

/// Area under the ROC curve: the probability that a random positive scores above a random
/// negative (ties count one half). 0.5 when one class is missing.
pub fn roc_auc(scores: &[f32], labels: &[f32]) -> f64 {
    let mut v: Vec<(f32, bool)> = scores
        .iter()
        .zip(labels)
        .map(|(&s, &y)| (s, y >= 0.5))
        .collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let pos = v.iter().filter(|p| p.1).count() as f64;
    let neg = v.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return 0.5;
    }
    // Sum of the (average, 1-based) ranks of the positives.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1].0 == v[i].0 {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += avg * v[i..=j].iter().filter(|p| p.1).count() as f64;
        i = j + 1;
    }
    (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        let s = [0.1, 0.4, 0.35, 0.8];
        let y = [0.0, 0.0, 1.0, 1.0];
        assert!((roc_auc(&s, &y) - 0.75).abs() < 1e-12);
        let m = compute(&s, &y, 0.5);
        assert_eq!((m.tp, m.fp, m.tn, m.fn_), (1, 0, 2, 1));
        assert_eq!(m.recall, 0.5);
        assert_eq!(m.precision, 1.0);
        assert_eq!(m.false_positive_rate, 0.0);
        assert_eq!(m.accuracy, 0.75);
        // ties count half
        assert_eq!(roc_auc(&[0.5, 0.5], &[0.0, 1.0]), 0.5);
        assert_eq!(roc_auc(&[0.1, 0.9], &[1.0, 1.0]), 0.5);
    }
}
