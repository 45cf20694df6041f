//! Offline feeding (`safelink learn ingest`, tests, `bench learn`): replays capture files
//! through the [`Pipeline`] — the same stages as the live daemon: rule automata, ANN scoring
//! and the sample collector — and stores the labelled samples.
use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

use super::collect::CollectStats;
use super::config::LearningParams;
use crate::ann::ModelHandle;
use crate::config::Config;
use crate::pipeline::{Pipeline, Stages};
use crate::privacy::Policy;
use crate::replay::replay_file;
use crate::store::Store;

/// What [`ingest`] did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct IngestSummary {
    pub files: usize,
    pub records: u64,
    pub rule_alerts: u64,
    pub samples_stored: usize,
    pub collect: CollectStats,
}

/// Runs `files` (one pipeline each) through the stages `cfg` configures, the ANN on `handle`
/// (scoring only unless `[ann] enabled`), and stores the labelled samples in `store`,
/// addresses in the stored form of `policy`.
pub fn ingest(
    files: &[&Path],
    cfg: &Config,
    policy: &Policy,
    handle: &ModelHandle,
    params: &LearningParams,
    store: &Store,
) -> anyhow::Result<IngestSummary> {
    let mut sum = IngestSummary::default();
    for file in files {
        let mut p = Pipeline::new(
            cfg,
            Stages {
                dfa: true,
                model: Some(handle.clone()),
                samples: Some((store.clone(), params.clone())),
                policy: policy.clone(),
                lossless: true,
                ..Stages::default()
            },
        )?;
        replay_file(file, &cfg.flows.timeouts(), |_, _| {}, |r| p.feed(&r))
            .with_context(|| format!("replaying {}", file.display()))?;
        let rep = p.finish();
        let c = rep.samples.unwrap_or_default();
        sum.records += rep.records;
        sum.rule_alerts += rep.dfa.map_or(0, |d| d.alerts_raised);
        sum.samples_stored += c.stored as usize;
        sum.files += 1;
        sum.collect.add(&c);
    }
    Ok(sum)
}
