//! Offline feeding: runs capture files through the same path as the live daemon — replay →
//! rule automata and ANN scoring → [`Collector`] — and stores the labelled samples. Used by
//! `safelink learn ingest` (seed the learner from captures of your own network) and by tests.
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use serde::Serialize;

use super::collect::{CollectStats, Collector};
use super::config::LearningParams;
use super::sample::TrainingSample;
use crate::ann::{AnnConfig, AnnDetector, ModelHandle};
use crate::config::FlowTimeouts;
use crate::detect::dfa::{AlertEvent, DfaConfig, Engine};
use crate::record::Record;
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

/// Runs `files` through the automata and the ANN (scoring only) and stores the labelled
/// samples in `store`, addresses in the stored form of `policy`.
pub fn ingest(
    files: &[&Path],
    timeouts: &FlowTimeouts,
    dfa: &DfaConfig,
    handle: &ModelHandle,
    params: &LearningParams,
    store: &Store,
    policy: &crate::privacy::Policy,
) -> anyhow::Result<IngestSummary> {
    let mut sum = IngestSummary::default();
    let mut collector = Collector::new(params);
    let scored: Arc<Mutex<Vec<TrainingSample>>> = Arc::default();
    for file in files {
        let mut engine = Engine::new(dfa.clone()).context("invalid [dfa] configuration")?;
        let tap_buf = scored.clone();
        let mut ann = AnnDetector::new(handle.clone(), AnnConfig::default()).with_tap(Box::new(
            move |f, s, _| {
                tap_buf
                    .lock()
                    .expect("tap lock")
                    .push(TrainingSample::of_flow(f, s))
            },
        ));
        let mut events: Vec<AlertEvent> = Vec::new();
        let mut sink = Vec::new();
        let mut feed = |collector: &mut Collector, events: &mut Vec<AlertEvent>| {
            for ev in events.drain(..) {
                if let AlertEvent::New(a) = &ev {
                    sum.rule_alerts += 1;
                    collector.alert(a);
                }
            }
            for s in scored.lock().expect("tap lock").drain(..) {
                collector.scored_sample(s);
            }
        };
        replay_file(
            file,
            timeouts,
            |_, _| {},
            |r: Record| {
                sum.records += 1;
                engine.observe_into(&r, &mut events);
                ann.observe_into(&r, &mut sink);
                sink.clear();
                feed(&mut collector, &mut events);
            },
        )
        .with_context(|| format!("replaying {}", file.display()))?;
        events.extend(engine.finish());
        ann.finish();
        feed(&mut collector, &mut events);
        sum.files += 1;
    }
    let mut samples = collector.ready(true);
    sum.samples_stored = samples.len();
    super::collect::store_batch(store, policy, &mut samples)?;
    sum.collect = collector.stats.clone();
    Ok(sum)
}
