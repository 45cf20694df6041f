//! "ANN alone" evaluation on labelled captures: every capture of a manifest is replayed
//! through the real detector path (host context, then [`AnnDetector`], default batching and
//! threshold, no DFA),
//! and flows at or above the threshold are counted against the manifest labels.
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, Result};
use serde::Serialize;

use super::dataset::read_manifest;
use super::detector::{AnnConfig, AnnDetector};
use super::swap::ModelHandle;
use crate::config::FlowTimeouts;
use crate::context::ContextTracker;
use crate::replay::replay_file;

/// (manifest label, score) of one scored flow.
type LabelScore = (Option<f32>, f32);

/// Result of one capture.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CaptureEval {
    pub file: String,
    pub class: String,
    pub flows: u64,
    pub attack: u64,
    pub benign: u64,
    pub unlabelled: u64,
    /// Flows at or above the threshold, by label.
    pub attack_alerting: u64,
    pub benign_alerting: u64,
    pub unlabelled_alerting: u64,
    /// Alerts (incidents) the detector raised.
    pub alerts: u64,
}

/// Totals over the captures.
#[derive(Clone, Debug, Serialize)]
pub struct EvalSummary {
    pub threshold: f32,
    pub attack_flows: u64,
    pub attack_flows_alerting: u64,
    pub flow_recall: f64,
    pub benign_flows: u64,
    pub benign_flows_alerting: u64,
    pub flow_false_positive_rate: f64,
    pub attack_captures: u64,
    pub attack_captures_alerting: u64,
    pub benign_captures: u64,
    pub benign_captures_alerting: u64,
    pub captures: Vec<CaptureEval>,
}

/// Replays every capture of `dir/MANIFEST.tsv` through an [`AnnDetector`] on `handle`.
pub fn evaluate(dir: &Path, handle: &ModelHandle, cfg: &AnnConfig) -> Result<EvalSummary> {
    let mut captures = Vec::new();
    for e in read_manifest(dir)? {
        let scored: Arc<Mutex<Vec<LabelScore>>> = Arc::default();
        let tap_sink = scored.clone();
        let entry = e.clone();
        let mut det =
            AnnDetector::new(handle.clone(), cfg.clone()).with_tap(Box::new(move |f, _, s, _| {
                tap_sink.lock().expect("tap lock").push((entry.label(f), s));
            }));
        // The host context first, as the pipeline does.
        let mut context = ContextTracker::new();
        replay_file(
            &dir.join(&e.file),
            &FlowTimeouts::default(),
            |_, _| {},
            |r| {
                det.observe_into(&context.annotate(&r), &mut Vec::new());
            },
        )
        .with_context(|| format!("replaying {}", e.file))?;
        det.finish();
        let mut c = CaptureEval {
            file: e.file.clone(),
            class: e.class.clone(),
            alerts: det.stats().alerts_raised,
            ..Default::default()
        };
        for &(label, s) in scored.lock().expect("tap lock").iter() {
            c.flows += 1;
            let hit = u64::from(s >= cfg.threshold);
            match label {
                Some(l) if l > 0.5 => {
                    c.attack += 1;
                    c.attack_alerting += hit;
                }
                Some(_) => {
                    c.benign += 1;
                    c.benign_alerting += hit;
                }
                None => {
                    c.unlabelled += 1;
                    c.unlabelled_alerting += hit;
                }
            }
        }
        captures.push(c);
    }
    let sum = |f: fn(&CaptureEval) -> u64| captures.iter().map(f).sum::<u64>();
    let (af, afa, bf, bfa) = (
        sum(|c| c.attack),
        sum(|c| c.attack_alerting),
        sum(|c| c.benign),
        sum(|c| c.benign_alerting),
    );
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let attack_caps = captures.iter().filter(|c| c.class != "benign");
    let benign_caps = captures.iter().filter(|c| c.class == "benign");
    Ok(EvalSummary {
        threshold: cfg.threshold,
        attack_flows: af,
        attack_flows_alerting: afa,
        flow_recall: ratio(afa, af),
        benign_flows: bf,
        benign_flows_alerting: bfa,
        flow_false_positive_rate: ratio(bfa, bf),
        attack_captures: attack_caps.clone().count() as u64,
        attack_captures_alerting: attack_caps.filter(|c| c.alerts > 0).count() as u64,
        benign_captures: benign_caps.clone().count() as u64,
        benign_captures_alerting: benign_caps.filter(|c| c.alerts > 0).count() as u64,
        captures,
    })
}
