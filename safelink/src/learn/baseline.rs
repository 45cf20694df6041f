//! The local baseline: what this host's own traffic looks like, and the phase it puts the ANN
//! in. A new sensor starts in [`Phase::Baseline`]: the ANN scores every flow but raises no
//! alert ([`AlertGate`] closed); flows no rule alert touches are stored as `baseline` benign
//! samples. After `baseline_s` the learner trains on them and measures the false-positive rate
//! of the serving model on held-out local flows; at or below `baseline_max_fpr` the phase turns
//! [`Phase::Live`] (gate open) and stays live across restarts, otherwise it stays in baseline,
//! says why and tries again at the next interval.
//!
//! [`LocalBaseline`] is the shared, in-memory side: the gate, the flows seen during the
//! baseline, and the known-benign services (server address and port, in the stored
//! `[privacy]` form) — those seen in the baseline and those an operator marked
//! `false_positive`. The collector reads it to label; the learner and the verdict API write it.
use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use super::sample::{LabelSource, TrainingSample};
use crate::ann::AlertGate;

/// Where the ANN is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Scores, learns the host's traffic, raises no ANN alert.
    Baseline,
    /// Raises ANN alerts.
    Live,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Baseline => "baseline",
            Phase::Live => "live",
        }
    }
}

/// The persistent record of the baseline (part of [`super::LearningState`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BaselineState {
    /// When the baseline started, Unix ns (unset: never started, a new sensor).
    pub started_ns: Option<u64>,
    /// When the ANN went live (RFC 3339); unset while in baseline.
    pub live_since: Option<String>,
    /// The last local check: false-positive rate of the serving model on held-out local flows
    /// at the ANN alert threshold, and how many flows it was measured on.
    pub local_fpr: Option<f64>,
    pub heldout_flows: u64,
    pub false_positives: u64,
    /// Checks run so far.
    pub checks: u64,
    /// Why the ANN is still in baseline (or how it went live).
    pub reason: Option<String>,
}

impl BaselineState {
    pub fn phase(&self) -> Phase {
        if self.live_since.is_some() {
            Phase::Live
        } else {
            Phase::Baseline
        }
    }
}

/// A service: the server side of a flow (address in stored form, port).
pub type Service = (IpAddr, u16);

#[derive(Debug, Default)]
struct Inner {
    gate: AlertGate,
    flows_seen: AtomicU64,
    benign: RwLock<HashSet<Service>>,
}

/// Shared baseline knowledge. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct LocalBaseline(Arc<Inner>);

impl LocalBaseline {
    /// `live`: the phase the learner starts in.
    pub fn new(live: bool) -> Self {
        LocalBaseline(Arc::new(Inner {
            gate: AlertGate::new(live),
            ..Inner::default()
        }))
    }

    /// The gate the ANN detector alerts through.
    pub fn gate(&self) -> AlertGate {
        self.0.gate.clone()
    }

    pub fn phase(&self) -> Phase {
        if self.0.gate.is_open() {
            Phase::Live
        } else {
            Phase::Baseline
        }
    }

    pub fn set_phase(&self, p: Phase) {
        self.0.gate.set(p == Phase::Live);
    }

    /// A flow scored during the baseline.
    pub fn saw_flow(&self) {
        self.0.flows_seen.fetch_add(1, Ordering::Relaxed);
        crate::telemetry::record_baseline_flow();
    }

    /// Flows scored during the baseline by this process.
    pub fn flows_seen(&self) -> u64 {
        self.0.flows_seen.load(Ordering::Relaxed)
    }

    pub fn is_known_benign(&self, s: &Service) -> bool {
        self.0.benign.read().expect("baseline lock").contains(s)
    }

    pub fn add_benign(&self, s: Service) {
        self.0.benign.write().expect("baseline lock").insert(s);
    }

    pub fn known_benign_services(&self) -> usize {
        self.0.benign.read().expect("baseline lock").len()
    }

    /// Rebuilds the known-benign services from the stored samples (start-up, and after
    /// samples were deleted: privacy forget or retention).
    pub fn reload(&self, samples: &[TrainingSample]) {
        let set: HashSet<Service> = samples.iter().filter_map(benign_service).collect();
        *self.0.benign.write().expect("baseline lock") = set;
    }
}

/// The service a sample makes known benign: a baseline sample, or an operator's
/// `false_positive`.
pub fn benign_service(s: &TrainingSample) -> Option<Service> {
    let benign = !s.is_attack();
    match s.source {
        LabelSource::Baseline | LabelSource::Operator if benign => Some((s.dst_ip, s.dst_port)),
        _ => None,
    }
}
