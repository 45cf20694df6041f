//! Operator verdicts: `false_positive` or `confirmed` on a stored alert becomes a labelled
//! training sample of the alert's flow (its feature row, never payload) with source
//! `operator`. It outranks every automatic label: it is never relabelled, never pruned from
//! the history (privacy deletion and retention still remove it), always trained on (with
//! [`super::cycle::OPERATOR_WEIGHT`]), and a `false_positive` makes the flow's service (server
//! address and port) known benign, so the ANN's own high score no longer labels its flows
//! attack. Stored automatic samples of the same flow (source, destination, port, protocol) take
//! the operator's label. A second verdict on the same alert replaces the first. The row of an
//! alert a flow start raised (a scan's or a flood's) holds that start's host context so far,
//! the 60 s before it, which counts lower than a finished flow's 60 s either side; the
//! relabelled automatic samples of the same flow carry the whole context.
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::LearnError;
use super::sample::{LabelSource, TrainingSample};
use crate::alert::Alert;
use crate::ann::N_FEATURES;

/// What the operator says about an alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum Verdict {
    /// Not an attack: the flow is benign.
    FalsePositive,
    /// A real attack.
    Confirmed,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::FalsePositive => "false_positive",
            Verdict::Confirmed => "confirmed",
        }
    }

    fn attack(self) -> bool {
        self == Verdict::Confirmed
    }
}

/// Why a verdict cannot be taken.
#[derive(Debug, thiserror::Error)]
pub enum VerdictError {
    #[error("alert {0} has no flow features (an ARP alert): there is no flow to learn from")]
    NoFlow(u64),
    #[error(transparent)]
    Learn(#[from] LearnError),
}

/// What a verdict did.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct VerdictOutcome {
    pub alert_id: u64,
    pub verdict: Verdict,
    /// The operator sample stored.
    pub sample_id: u64,
    /// Earlier verdict samples of this alert replaced.
    pub replaced: u64,
    /// Stored automatic samples of the same flow that took the operator's label.
    pub relabelled: u64,
    /// With `false_positive`: the service now known benign (`address:port`).
    pub known_benign_service: Option<String>,
}

/// The protocol number of an alert's `proto` text.
fn proto_number(p: &str) -> u8 {
    match p {
        "tcp" => 6,
        "udp" => 17,
        "icmp" => 1,
        "icmpv6" => 58,
        other => other.parse().unwrap_or(0),
    }
}

/// The operator sample of `alert` (addresses as stored, i.e. already in the `[privacy]`
/// form).
pub fn sample_of(alert: &Alert, v: Verdict) -> Result<TrainingSample, VerdictError> {
    let (Some(src_ip), Some(dst_ip)) = (alert.src_ip, alert.dest_ip) else {
        return Err(VerdictError::NoFlow(alert.id));
    };
    if alert.features.len() != N_FEATURES || !alert.features.iter().all(|x| x.is_finite()) {
        return Err(VerdictError::NoFlow(alert.id));
    }
    Ok(TrainingSample {
        id: 0,
        ts_ns: alert.last_seen.ns(),
        src_ip,
        src_port: alert.src_port.unwrap_or(0),
        dst_ip,
        dst_port: alert.dest_port.unwrap_or(0),
        proto: proto_number(&alert.proto),
        label: if v.attack() { 1.0 } else { 0.0 },
        source: LabelSource::Operator,
        confidence: 1.0,
        score: alert.confidence as f32,
        kind: Some(alert.kind),
        features: alert.features.clone(),
        baseline: false,
        alert_id: Some(alert.id),
    })
}

/// Whether a stored sample is of the same flow as the verdict's (ports of the client aside).
pub fn same_flow(s: &TrainingSample, v: &TrainingSample) -> bool {
    s.src_ip == v.src_ip && s.dst_ip == v.dst_ip && s.dst_port == v.dst_port && s.proto == v.proto
}
