//! Batched scoring of flow records against the live model ([`BatchScorer`]): feature vectors
//! are written straight into one input tensor, the model is taken from the [`ModelHandle`]
//! once per batch (so a whole batch is scored by one model, old or new), and tract's state is
//! reused until the model changes. Also the occlusion explanation ([`explain`]).
use std::sync::Arc;

use serde_json::json;
use tract_onnx::prelude::TractResult;

use super::features::{FEATURES, N_FEATURES, extract_into};
use super::model::{AnnModel, Scorer};
use super::swap::ModelHandle;
use crate::record::FlowRecord;

/// Scores of one batch and the model that produced them.
pub struct ScoredBatch {
    pub model: Arc<AnnModel>,
    /// One per input flow, in order.
    pub scores: Vec<f32>,
    /// The input rows, row-major ([`N_FEATURES`] per flow), so nothing extracts them again.
    pub rows: Vec<f32>,
}

impl ScoredBatch {
    /// The feature row of flow `i`.
    pub fn row(&self, i: usize) -> &[f32; N_FEATURES] {
        self.rows[i * N_FEATURES..(i + 1) * N_FEATURES]
            .try_into()
            .expect("rows hold N_FEATURES per flow")
    }
}

impl ScoredBatch {
    pub fn generation(&self) -> u64 {
        self.model.generation
    }
}

/// Scores batches against whatever model the handle serves at the start of each batch.
pub struct BatchScorer {
    handle: ModelHandle,
    scorer: Option<Scorer>,
}

impl BatchScorer {
    pub fn new(handle: ModelHandle) -> Self {
        BatchScorer {
            handle,
            scorer: None,
        }
    }

    pub fn handle(&self) -> &ModelHandle {
        &self.handle
    }

    /// The scorer for the model serving now (respawned when the model changed).
    fn scorer(&mut self) -> TractResult<&mut Scorer> {
        let m = self.handle.current();
        let stale = self
            .scorer
            .as_ref()
            .is_none_or(|s| !Arc::ptr_eq(s.model(), &m));
        if stale {
            self.scorer = Some(Scorer::new(m)?);
        }
        Ok(self.scorer.as_mut().expect("scorer set above"))
    }

    /// Feature vectors of `flows` → one tract run → one score per flow.
    pub fn score_flows<'a, I>(&mut self, flows: I) -> TractResult<ScoredBatch>
    where
        I: ExactSizeIterator<Item = &'a FlowRecord>,
    {
        let n = flows.len();
        let scorer = self.scorer()?;
        let model = scorer.model().clone();
        if n == 0 {
            return Ok(ScoredBatch {
                model,
                scores: Vec::new(),
                rows: Vec::new(),
            });
        }
        let mut rows = vec![0f32; n * N_FEATURES];
        for (row, f) in rows.chunks_exact_mut(N_FEATURES).zip(flows) {
            extract_into(f, row);
        }
        let scores = scorer.run(super::model::input_tensor(&rows)?)?;
        Ok(ScoredBatch {
            model,
            scores,
            rows,
        })
    }

    /// Scores row-major raw feature vectors.
    pub fn score_features(&mut self, x: &[f32]) -> TractResult<ScoredBatch> {
        let scorer = self.scorer()?;
        let model = scorer.model().clone();
        let scores = if x.is_empty() {
            Vec::new()
        } else {
            scorer.run(super::model::input_tensor(x)?)?
        };
        Ok(ScoredBatch {
            model,
            scores,
            rows: x.to_vec(),
        })
    }
}

/// One feature's share of a score.
#[derive(Clone, Debug, PartialEq)]
pub struct Contribution {
    pub index: usize,
    pub value: f32,
    pub baseline: f32,
    /// Score minus the score with this feature set to its baseline: > 0 pushed the flow
    /// towards "attack".
    pub delta: f32,
}

/// Occlusion on the model's own scale: for each feature, the score drop when that one
/// feature is replaced by the training mean (`model.baseline`, i.e. 0 after the graph's
/// normalisation). One extra batch of [`N_FEATURES`] rows per explained flow. Returns the `k`
/// largest |delta|, largest first.
pub fn explain(
    model: &AnnModel,
    x: &[f32; N_FEATURES],
    score: f32,
    k: usize,
) -> TractResult<Vec<Contribution>> {
    let mut rows = Vec::with_capacity(N_FEATURES * N_FEATURES);
    for i in 0..N_FEATURES {
        rows.extend_from_slice(x);
        rows[i * N_FEATURES + i] = model.baseline[i];
    }
    let occluded = model.score(&rows)?;
    let mut c: Vec<Contribution> = occluded
        .iter()
        .enumerate()
        .map(|(i, s)| Contribution {
            index: i,
            value: x[i],
            baseline: model.baseline[i],
            delta: score - s,
        })
        .collect();
    c.sort_by(|a, b| {
        b.delta
            .abs()
            .total_cmp(&a.delta.abs())
            .then(a.index.cmp(&b.index))
    });
    c.truncate(k);
    Ok(c)
}

/// The `explanation` JSON of an ANN alert.
pub fn explanation_json(score: f32, top: &[Contribution]) -> serde_json::Value {
    json!({
        "method": "occlusion",
        "baseline": "training mean (log1p space)",
        "score": score,
        "top": top.iter().map(|c| json!({
            "feature": FEATURES[c.index].name,
            "unit": FEATURES[c.index].unit,
            "value": c.value,
            "baseline": c.baseline,
            "contribution": c.delta,
        })).collect::<Vec<_>>(),
    })
}
