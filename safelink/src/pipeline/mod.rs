//! The detection pipeline, one shape for every driver:
//!
//! ```text
//! record ─► host context ─► rule engine (DFA) ──────────┐ alert events
//!          ([`ContextTracker`]) └► ANN (batched scoring) ─┤──────────► alert sink (store, [`sink`])
//!                                  │ scored flows + rows  └──────────► sample collector (rule alerts)
//!                                  └─────────────────────────────────► sample collector (scored flows)
//! ```
//!
//! [`Pipeline`] owns the stages, built once from one [`Config`] (`[dfa]`, `[ann]`, `[learning]`;
//! the `[privacy]` policy comes resolved, as [`Stages::policy`]). It is fed records and ticked
//! with time — [`Pipeline::feed`], [`Pipeline::tick`], [`Pipeline::finish`] — and knows nothing
//! of where they come from: the daemon drives it from the ring buffer and the sweeper
//! (`daemon::detect`), `safelink analyze` and `safelink learn ingest` from replay. Data flows
//! one way: no stage calls back into an earlier one.
pub mod eve_log;
pub mod sink;

use std::borrow::Cow;
use std::collections::BTreeMap;

use thiserror::Error;

use crate::{
    alert::{Alert, AlertEvent, AlertSource},
    ann::{AnnDetector, AnnStats, ModelHandle, ScoreTap},
    config::Config,
    context::ContextTracker,
    detect::dfa::{DetectError, Engine, EngineStats},
    learn::{CollectStats, CollectorHandle, CollectorThread, LearningParams, LocalBaseline},
    privacy::Policy,
    record::Record,
    store::Store,
};
use eve_log::EveLog;
use sink::{SinkOptions, SinkThread};

/// Why a pipeline cannot be built.
#[derive(Debug, Error)]
pub enum PipelineError {
    #[error("invalid [dfa] configuration: {0}")]
    Dfa(#[from] DetectError),
    #[error("invalid [ann] configuration: {0}")]
    Ann(#[from] crate::ann::detector::AnnConfigError),
}

/// What the driver provides besides the configuration: the resolved privacy policy, the model
/// and where alerts and samples go. Every stage is optional.
#[derive(Default)]
pub struct Stages {
    /// Run the rule automata (`analyze --no-dfa` turns them off).
    pub dfa: bool,
    /// The model the ANN scores with. It raises alerts when `[ann] enabled`; with samples to
    /// collect and `[ann]` off, it scores for the collector only.
    pub model: Option<ModelHandle>,
    /// Store alerts here (through the privacy policy).
    pub alerts: Option<Store>,
    /// With `alerts`: also append every new alert to this EVE file.
    pub eve_log: Option<EveLog>,
    /// Collect labelled training samples into this store, with these learning parameters.
    pub samples: Option<(Store, LearningParams)>,
    /// The live sensor's local baseline: the ANN alerts only once it is live, and the
    /// collector labels by it.
    pub baseline: Option<LocalBaseline>,
    /// How stored alerts and samples write addresses.
    pub policy: Policy,
    /// Offline drivers: the collector waits instead of dropping when its queue is full.
    pub lossless: bool,
    /// Keep the final state of every alert, for [`Report::alerts`] (`analyze` prints them).
    pub keep_alerts: bool,
    /// Also called with every flow the ANN scores (tests, diagnostics).
    pub score_tap: Option<ScoreTap>,
}

/// What a pipeline did, from [`Pipeline::finish`].
#[derive(Debug, Default)]
pub struct Report {
    pub records: u64,
    pub dfa: Option<EngineStats>,
    pub ann: Option<AnnStats>,
    /// Alerts stored new and updated by the sink.
    pub stored: (u64, u64),
    pub samples: Option<CollectStats>,
    /// With [`Stages::keep_alerts`]: the final state of every alert, by (source, detector id).
    pub alerts: Vec<Alert>,
}

/// The stages and their wiring.
pub struct Pipeline {
    dfa: Option<Engine>,
    ann: Option<AnnDetector>,
    sink: Option<SinkThread>,
    collector: Option<CollectorThread>,
    kept: Option<BTreeMap<(AlertSource, u64), Alert>>,
    events: Vec<AlertEvent>,
    records: u64,
    context: ContextTracker,
}

impl Pipeline {
    /// Builds the stages of `stages` from `cfg`.
    pub fn new(cfg: &Config, stages: Stages) -> Result<Self, PipelineError> {
        cfg.ann.detector.validate()?;
        let dfa = if stages.dfa {
            Some(Engine::new(cfg.dfa.clone())?)
        } else {
            None
        };
        let baseline = stages.baseline;
        let collector = stages.samples.map(|(store, params)| {
            CollectorThread::spawn(
                store,
                &params,
                stages.policy.clone(),
                stages.lossless,
                baseline.clone(),
            )
        });
        let mut observer = stages.score_tap;
        let ann = stages.model.and_then(|h| {
            let mut det = AnnDetector::new(h, cfg.ann.detector.clone());
            if cfg.ann.enabled
                && let Some(i) = cfg.ann.family_index()
            {
                det = det.with_families(i);
            }
            if let Some(b) = &baseline {
                det = det.with_gate(b.gate());
            }
            let c: Option<CollectorHandle> = collector.as_ref().map(|c| c.handle.clone());
            if c.is_some() || observer.is_some() {
                det = det.with_tap(Box::new(move |f, row, score, generation| {
                    if let Some(c) = &c {
                        c.scored(f, row, score);
                    }
                    if let Some(o) = observer.as_mut() {
                        o(f, row, score, generation);
                    }
                }));
            }
            match (cfg.ann.enabled, collector.is_some()) {
                (true, _) => Some(det),
                (false, true) => Some(det.scoring_only()),
                (false, false) => None,
            }
        });
        Ok(Self {
            context: ContextTracker::new(),
            dfa,
            ann,
            sink: stages.alerts.map(|store| {
                SinkThread::spawn(
                    store,
                    stages.policy,
                    stages.eve_log,
                    SinkOptions::from(&cfg.store),
                )
            }),
            collector,
            kept: stages.keep_alerts.then(BTreeMap::new),
            events: Vec::new(),
            records: 0,
        })
    }

    /// Whether the ANN raises alerts (not only scores for the collector).
    pub fn ann_alerts(&self) -> bool {
        self.ann.as_ref().is_some_and(AnnDetector::emits)
    }

    /// One record through every stage. An outer flow of a tunnel ([`Record::OuterFlow`]) goes
    /// to none: its packets are those of the inner flows the detectors already count.
    /// Flows get their host context first ([`ContextTracker`]).
    pub fn feed(&mut self, r: &Record) {
        self.feed_seen(r);
    }

    /// [`Self::feed`], returning the record as the detectors saw it (a flow with its host
    /// context), for drivers that print it.
    pub fn feed_seen<'r>(&mut self, r: &'r Record) -> Cow<'r, Record> {
        if let Record::OuterFlow(_) = r {
            return Cow::Borrowed(r);
        }
        let annotated = self.context.annotate(r);
        let r = annotated.as_ref();
        self.records += 1;
        if let Some(e) = self.dfa.as_mut() {
            e.observe_into(r, &mut self.events);
        }
        // Rule alerts reach the collector before the flows the ANN scores next.
        self.deliver();
        if let Some(a) = self.ann.as_mut() {
            a.observe_into(r, &mut self.events);
        }
        self.deliver();
        annotated
    }

    /// Time passes (ns since the epoch; the daemon's clock, never earlier than the records):
    /// waiting flows are scored, quiet incidents cool down and close, settled samples are
    /// labelled.
    pub fn tick(&mut self, now_ns: u64) {
        if let Some(e) = self.dfa.as_mut() {
            self.events.extend(e.tick(now_ns));
            crate::telemetry::record_engine(e.stats());
        }
        if let Some(a) = self.ann.as_mut() {
            a.score_pending(&mut self.events);
            a.tick(now_ns.max(a.now_ns()), &mut self.events);
        }
        if let Some(c) = &self.collector {
            c.handle.tick(now_ns);
        }
        self.deliver();
    }

    /// Scores the flows waiting for a batch (the daemon's batch timer).
    pub fn score_pending(&mut self) {
        if let Some(a) = self.ann.as_mut() {
            a.score_pending(&mut self.events);
        }
        self.deliver();
    }

    /// Flows waiting for the ANN's next batch.
    /// The rule engine's counters so far (`None` without the rule stage).
    pub fn dfa_stats(&self) -> Option<&EngineStats> {
        self.dfa.as_ref().map(Engine::stats)
    }

    pub fn ann_pending(&self) -> usize {
        self.ann.as_ref().map_or(0, AnnDetector::pending)
    }

    /// End of input: scores what waits, reports every alert's final state, stores everything
    /// and labels every pending sample.
    pub fn finish(mut self) -> Report {
        if let Some(e) = self.dfa.as_mut() {
            self.events.extend(e.finish());
        }
        if let Some(a) = self.ann.as_mut() {
            self.events.extend(a.finish());
        }
        self.deliver();
        // The tap holds a collector handle: drop the ANN before waiting for the collector.
        let ann = self.ann.take().map(|a| a.stats().clone());
        Report {
            records: self.records,
            dfa: self.dfa.as_ref().map(|e| e.stats().clone()),
            ann,
            stored: self.sink.take().map_or((0, 0), SinkThread::finish),
            samples: self.collector.take().map(CollectorThread::finish),
            alerts: self
                .kept
                .take()
                .map_or_else(Vec::new, |k| k.into_values().collect()),
        }
    }

    /// Whether the alert sink's thread stopped (a failure: alerts would be lost).
    pub fn sink_stopped(&self) -> bool {
        self.sink.as_ref().is_some_and(|s| s.stopped())
    }

    /// Hands the events so far to the later stages.
    fn deliver(&mut self) {
        for ev in self.events.drain(..) {
            if let (Some(c), AlertEvent::New(a)) = (&self.collector, &ev) {
                c.handle.alert(a);
            }
            if let Some(k) = self.kept.as_mut() {
                let a = ev.alert();
                k.insert((a.source, a.id), a.clone());
            }
            if let Some(s) = &self.sink {
                s.send(ev);
            }
        }
    }
}
