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
        let mut records = 0u64;
        let mut failed: Option<anyhow::Error> = None;
        let mut stored = 0usize;
        let mut since_drain = 0usize;
        // As the daemon's collector thread: alerts first (a fresh attacker relabels what is
        // already stored), then the scored flows; labelled samples are stored as they settle.
        let mut feed = |collector: &mut Collector,
                        events: &mut Vec<AlertEvent>,
                        force: bool|
         -> anyhow::Result<()> {
            for ev in events.drain(..) {
                if let AlertEvent::New(a) = &ev {
                    sum.rule_alerts += 1;
                    if let Some((ip, kind)) = collector.alert(a) {
                        let mut ready = collector.ready(false);
                        stored += super::collect::store_batch(store, policy, &mut ready)?;
                        sum.collect.relabelled += super::collect::relabel(store, policy, ip, kind);
                    }
                }
            }
            for s in scored.lock().expect("tap lock").drain(..) {
                collector.scored_sample(s);
                since_drain += 1;
            }
            if force || since_drain >= 4096 {
                since_drain = 0;
                let mut ready = collector.ready(force);
                stored += super::collect::store_batch(store, policy, &mut ready)?;
            }
            Ok(())
        };
        replay_file(
            file,
            timeouts,
            |_, _| {},
            |r: Record| {
                records += 1;
                engine.observe_into(&r, &mut events);
                ann.observe_into(&r, &mut sink);
                sink.clear();
                if failed.is_none()
                    && let Err(e) = feed(&mut collector, &mut events, false)
                {
                    failed = Some(e);
                }
            },
        )
        .with_context(|| format!("replaying {}", file.display()))?;
        if let Some(e) = failed.take() {
            return Err(e);
        }
        events.extend(engine.finish());
        ann.finish();
        // The file is done: what is still pending settles with the file's alerts known.
        feed(&mut collector, &mut events, true)?;
        sum.records += records;
        sum.files += 1;
        sum.samples_stored += stored;
    }
    let relabelled = sum.collect.relabelled;
    sum.collect = collector.stats.clone();
    sum.collect.relabelled = relabelled;
    Ok(sum)
}
