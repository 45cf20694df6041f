//! The ANN detector: the same shape as the rule engine (`detect::dfa::Engine`). Records go in
//! with [`AnnDetector::observe_into`], flows are buffered and scored in batches, a score ≥ the
//! threshold raises (or updates) an `anomalous_flow` alert with `source: "ann"`, `confidence`
//! = the score, `explanation` = the top contributing features (occlusion, see
//! [`super::batch::explain`]), `resembles` = the attack family the flow is nearest to (with a
//! [`FamilyIndex`], see [`super::family`]) and `features` = the raw vector. Alerts are grouped into
//! incidents (by initiator address, by default) reported as `New`/`Updated` events, exactly
//! like the automata's. The pipeline (`crate::pipeline`) drives it; the daemon scores a partial
//! batch after `batch_wait_ms`.
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::batch::{BatchScorer, explain, explanation_json};
use super::family::{FamilyIndex, Resemblance};
use super::features::{FEATURES, N_FEATURES};
use super::swap::ModelHandle;
use crate::alert::build::base_alert;
use crate::alert::{AlertBook, AlertEvent, AlertKind, AlertSource, KindInfo, Severity, Timestamp};
use crate::record::{FlowRecord, Record};

impl AlertKind {
    /// A flow the ANN scored at or above its threshold, without a more specific kind.
    pub const ANOMALOUS_FLOW: AlertKind = AlertKind::declare(&KindInfo {
        name: "anomalous_flow",
        number: 11,
        severity: Severity::Medium,
        source: AlertSource::Ann,
        summary: "a flow the neural classifier scored as an attack",
    });
}

/// How ANN alerts are grouped into incidents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// One incident per initiator address (flows from the same source update one alert);
    /// once `fan_in_limit` sources have open incidents towards one destination, further
    /// sources towards it share one incident for that destination (spoofed floods,
    /// reflection).
    Source,
    /// One alert per flow.
    Flow,
}

/// Settings of the ANN detector (all optional in a config file).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnnConfig {
    /// A flow scoring at least this raises an alert.
    #[serde(serialize_with = "crate::config::f32_short")]
    pub threshold: f32,
    /// Score a batch once this many flows are waiting...
    pub batch_size: usize,
    /// ...or once the oldest waiting flow has waited this long (daemon path), milliseconds.
    pub batch_wait_ms: u64,
    /// Features listed in an alert's explanation.
    pub top_k: usize,
    pub group_by: GroupBy,
    /// See [`GroupBy::Source`].
    pub fan_in_limit: usize,
    /// An incident with no new alerting flow for this long (record time) is closed, seconds.
    pub incident_idle_secs: u64,
    /// Least time between two `Updated` events of one incident, seconds.
    pub update_interval_secs: u64,
}

impl Default for AnnConfig {
    fn default() -> Self {
        AnnConfig {
            threshold: 0.9,
            batch_size: 256,
            batch_wait_ms: 20,
            top_k: 5,
            group_by: GroupBy::Source,
            fan_in_limit: 16,
            incident_idle_secs: 300,
            update_interval_secs: 10,
        }
    }
}

/// An `[ann]` setting out of range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AnnConfigError {
    #[error("ann threshold must be in (0, 1], got {0}")]
    Threshold(f32),
    #[error("ann batch_size must be at least 1")]
    BatchSize,
}

impl AnnConfig {
    pub fn validate(&self) -> Result<(), AnnConfigError> {
        if !(self.threshold > 0.0 && self.threshold <= 1.0) {
            return Err(AnnConfigError::Threshold(self.threshold));
        }
        if self.batch_size == 0 {
            return Err(AnnConfigError::BatchSize);
        }
        Ok(())
    }
}

/// Counters of one detector.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AnnStats {
    /// Flow records received.
    pub flows_in: u64,
    /// Flow records scored (equals `flows_in` once everything is flushed).
    pub flows_scored: u64,
    pub batches: u64,
    /// Flows at or above the threshold.
    pub flows_alerting: u64,
    pub alerts_raised: u64,
    /// Batches tract failed to score (their flows are counted in neither `flows_scored`).
    pub score_errors: u64,
    /// Flows the model scored NaN or infinite (counted in `flows_scored`): they never alert
    /// and never reach the tap, so never become training samples.
    pub nonfinite_scores: u64,
    /// Flows scored per model generation.
    pub scored_by_generation: BTreeMap<u64, u64>,
    /// Incidents closed before their idle time because [`MAX_OPEN_INCIDENTS`] were open.
    pub incidents_shed: u64,
}

/// Open incidents at most. Each holds its alert and explanation twice (about 11 KB in all);
/// traffic with a new alerting source every few milliseconds (address churn, spoofing) would
/// otherwise hold `incident_idle_secs` worth of them: about 65 MB after two minutes of the
/// `bench soak --unique-ip` replay, and growing. Beyond it, the least recently active quarter
/// is closed early (a later flow of theirs opens a new incident). Many sources against one
/// destination are one incident already (`fan_in_limit`).
pub const MAX_OPEN_INCIDENTS: usize = 1024;

/// Called with every scored flow: (flow, its feature row, score, model generation).
pub type ScoreTap = Box<dyn FnMut(&FlowRecord, &[f32; N_FEATURES], f32, u64) + Send>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum GroupKey {
    Src(IpAddr),
    Dst(IpAddr),
}

struct Incident {
    id: u64,
    /// For source incidents: the destination counted in `fan_in`.
    dst: Option<IpAddr>,
    last_ns: u64,
    max_score: f32,
    explanation: Option<serde_json::Value>,
    top: Vec<&'static str>,
    /// Of the flow that scored `max_score`.
    resembles: Option<Resemblance>,
}

/// Batched ANN scoring plus alert bookkeeping.
pub struct AnnDetector {
    cfg: AnnConfig,
    scorer: BatchScorer,
    pending: Vec<FlowRecord>,
    book: AlertBook,
    open: HashMap<GroupKey, Incident>,
    /// Open source incidents per destination.
    fan_in: HashMap<IpAddr, usize>,
    stats: AnnStats,
    /// Latest time of a scored flow (ns): incidents close on it, so where batches begin and
    /// end never changes which flows share an alert.
    now_ns: u64,
    /// No open incident was last seen before this (a lower bound; ns).
    oldest_ns: u64,
    tap: Option<ScoreTap>,
    /// False: score (for the tap) but raise no alerts.
    emit: bool,
    /// With `emit`: alerts only while this is open (the learner's local baseline).
    gate: Option<super::AlertGate>,
    /// Names the family an alerting flow resembles (none: no `resembles`).
    families: Option<Arc<FamilyIndex>>,
}

impl AnnDetector {
    pub fn new(handle: ModelHandle, cfg: AnnConfig) -> Self {
        let update = Duration::from_secs(cfg.update_interval_secs).as_nanos() as u64;
        AnnDetector {
            pending: Vec::with_capacity(cfg.batch_size),
            cfg,
            scorer: BatchScorer::new(handle),
            book: AlertBook::new(update),
            open: HashMap::new(),
            fan_in: HashMap::new(),
            stats: AnnStats::default(),
            now_ns: 0,
            oldest_ns: u64::MAX,
            tap: None,
            emit: true,
            gate: None,
            families: None,
        }
    }

    /// Alerts name the attack family their flow resembles, from `index`.
    pub fn with_families(mut self, index: Arc<FamilyIndex>) -> Self {
        self.families = Some(index);
        self
    }

    /// Raises alerts only while `gate` is open (closed: scores for the tap only).
    pub fn with_gate(mut self, gate: super::AlertGate) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Scores flows for the tap only (the learner with `[ann] enabled = false`): no alerts.
    pub fn scoring_only(mut self) -> Self {
        self.emit = false;
        self
    }

    /// Calls `tap` with every scored flow (for the learner, or for tests).
    pub fn with_tap(mut self, tap: ScoreTap) -> Self {
        self.tap = Some(tap);
        self
    }

    /// Whether it raises alerts (false: scores for the tap only).
    pub fn emits(&self) -> bool {
        self.emit
    }

    /// Latest record time seen (ns).
    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    pub fn config(&self) -> &AnnConfig {
        &self.cfg
    }

    pub fn handle(&self) -> &ModelHandle {
        self.scorer.handle()
    }

    pub fn stats(&self) -> &AnnStats {
        &self.stats
    }

    /// Flows waiting for the next batch.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Takes one record; scores a batch when `batch_size` flows are waiting. Only
    /// `Record::Flow` is scored (flow starts and ARP are ignored).
    pub fn observe_into(&mut self, r: &Record, out: &mut Vec<AlertEvent>) {
        if let Record::Flow(f) = r {
            self.stats.flows_in += 1;
            self.pending.push(f.clone());
            if self.pending.len() >= self.cfg.batch_size {
                self.score_pending(out);
            }
        }
    }

    /// [`Self::observe_into`] returning the events.
    pub fn observe(&mut self, r: &Record) -> Vec<AlertEvent> {
        let mut out = Vec::new();
        self.observe_into(r, &mut out);
        out
    }

    /// Scores the waiting flows now (the daemon calls this when the batch timer fires).
    pub fn score_pending(&mut self, out: &mut Vec<AlertEvent>) {
        if self.pending.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.pending);
        let t0 = std::time::Instant::now();
        let res = self.scorer.score_flows(batch.iter());
        crate::telemetry::record_ann_batch(batch.len(), t0.elapsed());
        match res {
            Ok(scored) => {
                let g = scored.generation();
                self.stats.batches += 1;
                self.stats.flows_scored += batch.len() as u64;
                *self.stats.scored_by_generation.entry(g).or_default() += batch.len() as u64;
                let mut nonfinite = 0;
                for (i, (f, &s)) in batch.iter().zip(&scored.scores).enumerate() {
                    let row = scored.row(i);
                    self.now_ns = self.now_ns.max(f.last_ns);
                    if !s.is_finite() {
                        // A NaN compares false with the threshold and would silently never
                        // alert; counted instead, and kept away from the learner.
                        nonfinite += 1;
                        continue;
                    }
                    if let Some(tap) = self.tap.as_mut() {
                        tap(f, row, s, g);
                    }
                    if self.emit
                        && s >= self.cfg.threshold
                        && self.gate.as_ref().is_none_or(super::AlertGate::is_open)
                    {
                        self.stats.flows_alerting += 1;
                        self.close_idle(self.now_ns);
                        self.alert(f, row, s, &scored.model);
                    }
                }
                if nonfinite > 0 {
                    self.stats.nonfinite_scores += nonfinite;
                    crate::telemetry::record_ann_nonfinite(nonfinite);
                    tracing::warn!(
                        flows = nonfinite,
                        generation = g,
                        "ANN model scored flows NaN or infinite: no alert, no training sample"
                    );
                }
            }
            Err(e) => {
                self.stats.score_errors += 1;
                tracing::error!(flows = batch.len(), "ANN scoring failed: {e:#}");
            }
        }
        self.pending = batch;
        self.pending.clear();
        self.tick(self.now_ns, out);
    }

    fn alert(
        &mut self,
        f: &FlowRecord,
        x: &[f32; N_FEATURES],
        score: f32,
        model: &super::model::AnnModel,
    ) {
        let key = match self.cfg.group_by {
            GroupBy::Flow => None,
            GroupBy::Source => {
                let (src, dst) = (GroupKey::Src(f.src_ip), GroupKey::Dst(f.dst_ip));
                if self.open.contains_key(&src) {
                    Some(src)
                } else if self.open.contains_key(&dst)
                    || self.fan_in.get(&f.dst_ip).copied().unwrap_or(0) >= self.cfg.fan_in_limit
                {
                    Some(dst)
                } else {
                    Some(src)
                }
            }
        };
        let thr = self.cfg.threshold;
        let top_k = self.cfg.top_k;
        let explained = || match explain(model, x, score, top_k) {
            Ok(top) => (
                Some(explanation_json(score, &top)),
                top.iter().map(|c| FEATURES[c.index].name).collect(),
            ),
            Err(e) => {
                tracing::warn!("ANN explanation failed: {e:#}");
                (None, Vec::new())
            }
        };
        let families = self.families.clone();
        let resemble = || families.as_ref().map(|i| i.classify(x));
        let who = match key {
            Some(GroupKey::Dst(d)) => format!("many sources to {d}"),
            _ => f.src_ip.to_string(),
        };
        let by_dst = matches!(key, Some(GroupKey::Dst(_)));
        if let Some(inc) = key.and_then(|k| self.open.get_mut(&k)) {
            inc.last_ns = inc.last_ns.max(f.last_ns);
            let better = score > inc.max_score;
            if better {
                inc.max_score = score;
                (inc.explanation, inc.top) = explained();
                inc.resembles = resemble();
            }
            let (max, last) = (inc.max_score, inc.last_ns);
            let (top, expl, like) = (inc.top.clone(), inc.explanation.clone(), inc.resembles);
            self.book.update(inc.id, |a| {
                a.count += 1;
                a.last_seen = Timestamp::from_ns(last);
                if better {
                    fill_flow(a, f, score, x);
                    if by_dst {
                        a.src_ip = None;
                        a.src_port = None;
                    }
                    a.explanation = expl;
                    a.resembles = like;
                    if score >= 0.99 {
                        a.severity = Severity::High;
                    }
                }
                a.description = description(a.count, &who, thr, max, like.as_ref(), &top);
            });
            return;
        }
        let sev = if score >= 0.99 {
            Severity::High
        } else {
            Severity::Medium
        };
        let mut a = base_alert(AlertKind::ANOMALOUS_FLOW, f.last_ns, f.first_ns, f.last_ns);
        a.severity = sev;
        a.count = 1;
        fill_flow(&mut a, f, score, x);
        let (explanation, top) = explained();
        let resembles = resemble();
        a.explanation = explanation.clone();
        a.resembles = resembles;
        a.description = description(1, &who, thr, score, resembles.as_ref(), &top);
        if by_dst {
            // The incident is about the destination: no single source.
            a.src_ip = None;
            a.src_port = None;
        }
        let id = self.book.raise(a, f.last_ns);
        self.stats.alerts_raised += 1;
        match key {
            Some(k) => {
                let dst = match k {
                    GroupKey::Src(_) => {
                        *self.fan_in.entry(f.dst_ip).or_default() += 1;
                        Some(f.dst_ip)
                    }
                    GroupKey::Dst(_) => None,
                };
                self.oldest_ns = self.oldest_ns.min(f.last_ns);
                self.open.insert(
                    k,
                    Incident {
                        id,
                        dst,
                        last_ns: f.last_ns,
                        max_score: score,
                        explanation,
                        top,
                        resembles,
                    },
                );
                self.shed_incidents();
            }
            None => self.book.close(id),
        }
    }

    /// Closes incidents idle for `incident_idle_secs` at record time `now_ns` and reports
    /// throttled updates.
    pub fn tick(&mut self, now_ns: u64, out: &mut Vec<AlertEvent>) {
        self.book.flush(now_ns, false);
        self.close_idle(now_ns);
        self.book.drain_into(out);
    }

    /// Closes the incidents idle for `incident_idle_secs` at `now_ns` (cheap when none is).
    fn close_idle(&mut self, now_ns: u64) {
        let idle = Duration::from_secs(self.cfg.incident_idle_secs).as_nanos() as u64;
        if now_ns.saturating_sub(self.oldest_ns) < idle {
            return;
        }
        let keys: Vec<GroupKey> = self
            .open
            .iter()
            .filter(|(_, i)| now_ns.saturating_sub(i.last_ns) >= idle)
            .map(|(k, _)| *k)
            .collect();
        self.close_incidents(keys);
    }

    /// Closes the least recently active quarter of the open incidents when more than
    /// [`MAX_OPEN_INCIDENTS`] are open.
    fn shed_incidents(&mut self) {
        if self.open.len() <= MAX_OPEN_INCIDENTS {
            return;
        }
        let mut by_age: Vec<(u64, GroupKey)> =
            self.open.iter().map(|(k, i)| (i.last_ns, *k)).collect();
        let n = self.open.len() - MAX_OPEN_INCIDENTS * 3 / 4;
        by_age.select_nth_unstable_by_key(n - 1, |&(t, _)| t);
        self.close_incidents(by_age[..n].iter().map(|&(_, k)| k).collect());
        self.stats.incidents_shed += n as u64;
        crate::telemetry::record_ann_incidents_shed(n as u64);
    }

    /// Closes the open incidents of `keys` (their alerts in id order) and recomputes the
    /// oldest activity.
    fn close_incidents(&mut self, keys: Vec<GroupKey>) {
        let mut closed: Vec<u64> = keys.into_iter().map(|k| self.forget(k)).collect();
        closed.sort_unstable();
        for id in closed {
            self.book.close(id);
        }
        self.oldest_ns = self.oldest_open();
    }

    /// The last activity of the least recently active open incident (`u64::MAX`: none).
    fn oldest_open(&self) -> u64 {
        self.open
            .values()
            .map(|i| i.last_ns)
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Drops an open incident (and its fan-in count); returns its alert id.
    fn forget(&mut self, k: GroupKey) -> u64 {
        let inc = self.open.remove(&k).expect("open incident");
        if let Some(d) = inc.dst
            && let Some(n) = self.fan_in.get_mut(&d)
        {
            *n -= 1;
            if *n == 0 {
                self.fan_in.remove(&d);
            }
        }
        inc.id
    }

    /// Scores everything waiting and reports every pending update (incidents stay open).
    pub fn flush(&mut self) -> Vec<AlertEvent> {
        let mut out = Vec::new();
        self.score_pending(&mut out);
        self.book.flush(self.now_ns, true);
        self.book.drain_into(&mut out);
        out
    }

    /// End of input: scores everything waiting and closes every incident.
    pub fn finish(&mut self) -> Vec<AlertEvent> {
        let mut out = self.flush();
        self.fan_in.clear();
        let mut ids: Vec<u64> = self.open.drain().map(|(_, i)| i.id).collect();
        ids.sort_unstable();
        for id in ids {
            self.book.close(id);
        }
        self.book.drain_into(&mut out);
        out
    }
}

fn fill_flow(a: &mut crate::alert::Alert, f: &FlowRecord, score: f32, row: &[f32]) {
    a.set_flow(f, row.to_vec());
    a.confidence = f64::from(score);
}

fn description(
    count: u64,
    who: &str,
    thr: f32,
    max: f32,
    like: Option<&Resemblance>,
    top: &[&str],
) -> String {
    let like = like.map_or(String::new(), |r| {
        format!("; resembles {} ({:.2})", r.family, r.probability)
    });
    format!(
        "ANN: {count} flow(s) from {who} scored >= {thr:.2} (max {max:.3}){like}; top features: {}",
        if top.is_empty() {
            "-".to_string()
        } else {
            top.join(", ")
        }
    )
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use prost::Message as _;
    use tract_onnx::pb;

    use super::*;
    use crate::ann::export::{Activation, Dense, ExportSpec, build_model};
    use crate::ann::features::extract;
    use crate::ann::features::tests::sample_flow;
    use crate::ann::model::{load_bytes, meta};

    const FWD_BYTES: usize = 8;
    const REV_BYTES: usize = 9;

    fn f32_tensor(name: &str, dims: &[i64], v: &[f32]) -> pb::TensorProto {
        pb::TensorProto {
            name: name.into(),
            dims: dims.to_vec(),
            data_type: pb::tensor_proto::DataType::Float as i32,
            float_data: v.to_vec(),
            ..Default::default()
        }
    }

    fn node(op: &str, inputs: &[&str], output: &str) -> pb::NodeProto {
        pb::NodeProto {
            op_type: op.into(),
            name: output.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            ..Default::default()
        }
    }

    /// The exporter's graph (normalisation without scaling, one output layer, sigmoid)
    /// times a gate `w / w`, `w = relu(log1p(rev_bytes) - 1) + relu(15 - log1p(fwd_bytes))`:
    /// 1 while `w > 0`, NaN (0/0) on flows with more than ~3.3 MB one way and at most one
    /// byte back. The probe rows give every feature the same value, so `w > 0` on all of
    /// them: the load-time probe accepts the model, and only the run-time guard stands
    /// between its NaN scores and the alerts and samples.
    fn nan_off_probe_model() -> crate::ann::AnnModel {
        let spec = ExportSpec {
            n_features: N_FEATURES,
            mean: vec![0.0; N_FEATURES],
            std: vec![1.0; N_FEATURES],
            layers: vec![Dense {
                out_dim: 1,
                in_dim: N_FEATURES,
                weight: vec![0.01; N_FEATURES],
                bias: vec![0.0],
            }],
            activation: Activation::Relu,
            metadata: meta::for_this_build("nan-off-probe"),
        };
        let mut proto = build_model(&spec);
        let g = proto.graph.as_mut().unwrap();
        g.node.last_mut().unwrap().output = vec!["s".into()];
        let mut pick = |name: &str, i: usize, sign: f32, bias: f32| {
            let mut w = vec![0.0; N_FEATURES];
            w[i] = sign;
            g.initializer.push(f32_tensor(
                &format!("{name}.w"),
                &[1, N_FEATURES as i64],
                &w,
            ));
            g.initializer
                .push(f32_tensor(&format!("{name}.b"), &[1], &[bias]));
            let mut gemm = node(
                "Gemm",
                &["x_norm", &format!("{name}.w"), &format!("{name}.b")],
                &format!("{name}_pre"),
            );
            gemm.attribute.push(pb::AttributeProto {
                name: "transB".into(),
                r#type: pb::attribute_proto::AttributeType::Int as i32,
                i: 1,
                ..Default::default()
            });
            g.node.push(gemm);
            g.node.push(node("Relu", &[&format!("{name}_pre")], name));
        };
        pick("u", REV_BYTES, 1.0, -1.0);
        pick("v", FWD_BYTES, -1.0, 15.0);
        g.node.push(node("Add", &["u", "v"], "w"));
        g.node.push(node("Div", &["w", "w"], "gate"));
        g.node.push(node("Mul", &["s", "gate"], "score"));
        load_bytes(&proto.encode_to_vec(), "nan-off-probe")
            .expect("finite on the probe rows, so the load-time probe accepts it")
    }

    #[test]
    fn a_nan_score_never_alerts_and_never_reaches_the_tap() {
        let model = nan_off_probe_model();
        let benign = sample_flow();
        let mut hostile = sample_flow();
        hostile.fwd.bytes = 1_000_000_000;
        hostile.rev.bytes = 0;
        let rows: Vec<f32> = [&benign, &hostile]
            .iter()
            .flat_map(|f| extract(f))
            .collect();
        let scores = model.score(&rows).unwrap();
        assert!(scores[0].is_finite(), "{scores:?}");
        assert!(scores[1].is_nan(), "{scores:?}");

        let tapped: Arc<Mutex<Vec<f32>>> = Arc::default();
        let t = tapped.clone();
        // Every finite score alerts at this threshold.
        let cfg = AnnConfig {
            threshold: 1e-6,
            ..AnnConfig::default()
        };
        let mut det = AnnDetector::new(ModelHandle::new(model), cfg)
            .with_tap(Box::new(move |_, _, s, _| t.lock().unwrap().push(s)));
        let mut events = det.observe(&Record::Flow(hostile.clone()));
        events.extend(det.finish());
        assert!(events.is_empty(), "{events:?}");
        let s = det.stats();
        assert_eq!(
            (s.flows_scored, s.nonfinite_scores, s.flows_alerting),
            (1, 1, 0)
        );
        assert!(tapped.lock().unwrap().is_empty());

        // The same detector still alerts on (and taps) a finite score.
        let events = det.observe(&Record::Flow(benign));
        assert!(events.is_empty());
        let events = det.finish();
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(tapped.lock().unwrap().len(), 1);
        assert_eq!(det.stats().nonfinite_scores, 1);
    }

    #[test]
    fn open_incidents_stay_bounded_under_source_churn() {
        // Every finite score alerts: each new source opens an incident (grouped by source).
        let cfg = AnnConfig {
            threshold: 1e-6,
            ..AnnConfig::default()
        };
        let metrics = crate::telemetry::install();
        let mut det = AnnDetector::new(ModelHandle::new(nan_off_probe_model()), cfg);
        let n = MAX_OPEN_INCIDENTS as u32 + 1000;
        let flow_from = |i: u32| {
            let mut f = sample_flow();
            f.src_ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            // A destination of its own too (many sources to one destination are grouped by it).
            f.dst_ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0b00_0000 + i));
            f.first_ns = 1_000_000_000 + u64::from(i) * 1_000_000;
            f.last_ns = f.first_ns;
            f
        };
        let mut raised = 0;
        for i in 0..n {
            det.observe(&Record::Flow(flow_from(i)));
            raised += det
                .flush()
                .iter()
                .filter(|e| matches!(e, AlertEvent::New(_)))
                .count();
        }
        assert_eq!(raised, n as usize, "every source raised its alert");
        assert!(det.open.len() <= MAX_OPEN_INCIDENTS, "{}", det.open.len());
        assert_eq!(det.book.open_count(), det.open.len());
        assert!(det.stats().incidents_shed >= 1000);
        // The same count reaches /metrics (no other test of this process sheds incidents).
        let line = format!(
            "{} {}\n",
            crate::telemetry::ANN_INCIDENTS_SHED,
            det.stats().incidents_shed
        );
        assert!(metrics.render().contains(&line), "{line}");
        // The newest source's incident is still open: its next flow updates it...
        det.observe(&Record::Flow(flow_from(n - 1)));
        let ev = det.flush();
        assert!(
            !ev.iter().any(|e| matches!(e, AlertEvent::New(_))),
            "{ev:?}"
        );
        // ...while the oldest one's was closed early: its next flow opens a new incident.
        det.observe(&Record::Flow(flow_from(0)));
        let ev = det.flush();
        assert_eq!(
            ev.iter()
                .filter(|e| matches!(e, AlertEvent::New(_)))
                .count(),
            1,
            "{ev:?}"
        );
    }
}
