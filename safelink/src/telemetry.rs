//! Prometheus metrics: one process-wide `metrics` recorder ([`install`], idempotent) whose
//! handle `GET /metrics` renders. No listener of the exporter's own: the API serves the text.
//!
//! Every metric is named here (`safelink_` prefix) and documented in the README ("Metrics").
//! The daemon's sweeper copies the kernel counters ([`record_kernel`]), the alert sink counts
//! new alerts ([`record_alert`]), the ANN detector times its batches ([`record_ann_batch`]) and
//! the API handler refreshes the store size at scrape time, the store reports its health
//! (fsyncs, degraded/ok, recoveries, pruning) and the sink what it could not store. The learning and retention names
//! are reserved here for the engineers who emit them.
use std::sync::OnceLock;
use std::time::Duration;

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::alert::{AlertKind, AlertSource};

pub const PACKETS: &str = "safelink_packets_total";
pub const BYTES: &str = "safelink_bytes_total";
pub const FLOWS_ACTIVE: &str = "safelink_flows_active";
pub const FLOWS_CREATED: &str = "safelink_flows_created_total";
pub const MALFORMED: &str = "safelink_malformed_packets_total";
pub const RINGBUF_EVENTS: &str = "safelink_ringbuf_events_total";
pub const RINGBUF_DROPS: &str = "safelink_ringbuf_drops_total";
pub const FLOWS_PROMOTED: &str = "safelink_flows_promoted_total";
pub const FLOWS_EVICTED: &str = "safelink_flows_evicted_total";
pub const FLOW_UPDATES: &str = "safelink_flow_updates_total";
pub const ARP_THROTTLED: &str = "safelink_arp_events_throttled_total";
pub const TUNNELED: &str = "safelink_tunneled_packets_total";
pub const TUNNEL_MALFORMED: &str = "safelink_tunnel_malformed_total";
pub const KEYS_EVICTED: &str = "safelink_detector_keys_evicted_total";
pub const SWEEP_SECONDS: &str = "safelink_sweep_seconds";
pub const SNIFFER_RUNNING: &str = "safelink_sniffer_running";
pub const ALERTS: &str = "safelink_alerts_total";
pub const ANN_INFERENCE: &str = "safelink_ann_inference_seconds";
pub const ANN_BATCH: &str = "safelink_ann_batch_size";
pub const ANN_NONFINITE: &str = "safelink_ann_nonfinite_scores_total";
pub const ANN_INCIDENTS_SHED: &str = "safelink_ann_incidents_shed_total";
pub const STORE_SIZE: &str = "safelink_store_size_bytes";
pub const STORE_HEALTHY: &str = "safelink_store_healthy";
pub const STORE_FSYNCS: &str = "safelink_store_fsyncs_total";
pub const STORE_RECOVERIES: &str = "safelink_store_recoveries_total";
pub const STORE_PRUNED: &str = "safelink_store_pruned_total";
pub const ALERTS_DROPPED: &str = "safelink_alerts_dropped_total";
pub const ALERTS_QUEUED: &str = "safelink_alerts_queued";
pub const CLOCK_ANOMALIES: &str = "safelink_clock_anomalies_total";
/// Reserved: emitted by the continuous learner, label `outcome` (deployed, rejected, failed).
pub const LEARNING_CYCLES: &str = "safelink_learning_cycles_total";
/// Reserved: the model version serving now (gauge), set by the learner / rollback.
pub const MODEL_VERSION: &str = "safelink_model_version";
/// 1 when the ANN is live (raises alerts), 0 in its local baseline phase.
pub const ANN_LIVE: &str = "safelink_ann_live";
pub const ANN_LOCAL_FPR: &str = "safelink_ann_local_false_positive_rate";
pub const BASELINE_FLOWS: &str = "safelink_ann_baseline_flows_total";
/// Fleet mode (emitted by `crate::fleet`): connection up, messages acknowledged / buffered /
/// dropped (label `kind`), the fleet model version, models accepted and refused (label
/// `reason`).
pub const FLEET_CONNECTED: &str = "safelink_fleet_connected";
pub const FLEET_PUBLISHED: &str = "safelink_fleet_published_total";
pub const FLEET_BUFFERED: &str = "safelink_fleet_buffered";
pub const FLEET_DROPPED: &str = "safelink_fleet_dropped_total";
pub const FLEET_MODEL_VERSION: &str = "safelink_fleet_model_version";
pub const FLEET_ACCEPTED: &str = "safelink_fleet_models_accepted_total";
pub const FLEET_REFUSED: &str = "safelink_fleet_models_refused_total";
/// Reserved: records deleted by retention, label `tree`.
pub const RETENTION_DELETED: &str = "safelink_retention_deleted_total";

/// Histogram buckets of one ANN scoring batch (seconds): 10 µs .. 1 s.
const LATENCY_BUCKETS: [f64; 12] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.1,
    1.0,
];
/// Histogram buckets of the flows per ANN batch.
const BATCH_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 256.0, 1024.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder on first call and returns its handle (every later call
/// returns the same handle). If some other recorder was installed first, metrics go there and
/// this handle renders an empty (but valid) page; that is logged once.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(ANN_INFERENCE.into()), &LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(ANN_BATCH.into()), &BATCH_BUCKETS)
                })
                .expect("non-empty bucket lists");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if let Err(e) = metrics::set_global_recorder(recorder) {
                tracing::warn!(error = %e, "another metrics recorder is installed; /metrics stays empty");
            }
            describe();
            // The store's health series exist from the start (healthy, nothing dropped).
            gauge!(STORE_HEALTHY).set(1.0);
            counter!(ALERTS_DROPPED).increment(0);
            counter!(ANN_INCIDENTS_SHED).increment(0);
            gauge!(ALERTS_QUEUED).set(0.0);
            // Every kind's alert counter exists from the start, at 0 (dashboards and rate()
            // see a series before the first alert of a kind).
            for k in AlertKind::known() {
                counter!(ALERTS, "kind" => k.as_str(), "source" => k.info().source.as_str())
                    .increment(0);
            }
            handle
        })
        .clone()
}

fn describe() {
    describe_counter!(
        PACKETS,
        "Packets seen by the XDP/TC programs (kernel counter, all CPUs)."
    );
    describe_counter!(
        BYTES,
        Unit::Bytes,
        "Bytes seen by the XDP/TC programs (whole frames)."
    );
    describe_gauge!(
        FLOWS_ACTIVE,
        "Flows currently tracked in the kernel flow map."
    );
    describe_counter!(
        FLOWS_CREATED,
        "Flows created in the kernel (every flow starts in EMBRYOS)."
    );
    describe_counter!(
        FLOWS_PROMOTED,
        "Flows moved from EMBRYOS to FLOWS once they proved two-way."
    );
    describe_counter!(
        FLOWS_EVICTED,
        "Flows the kernel's LRU maps evicted before they were exported (created - exported - active)."
    );
    describe_counter!(
        FLOW_UPDATES,
        "Interim updates of running heavy flows sent to the detectors."
    );
    describe_counter!(
        ARP_THROTTLED,
        "ARP packets over the kernel's per-CPU ARP event budget (no event)."
    );
    describe_counter!(
        TUNNELED,
        "Packets decapsulated from a tunnel (VXLAN, Geneve, GRE, IP-in-IP, 6in4/6in6)."
    );
    describe_counter!(
        TUNNEL_MALFORMED,
        "Truncated or inconsistent tunnels: counted, the outer packet kept as a flow."
    );
    describe_gauge!(
        SWEEP_SECONDS,
        Unit::Seconds,
        "Wall time of the last sweep of the kernel flow maps."
    );
    describe_counter!(
        KEYS_EVICTED,
        "Detector keys forgotten (least recently updated first) because an automaton's table was full."
    );
    describe_counter!(MALFORMED, "Packets the parser counted as malformed.");
    describe_counter!(RINGBUF_EVENTS, "Events the kernel put on the ring buffer.");
    describe_counter!(
        RINGBUF_DROPS,
        "Events the kernel dropped because the ring buffer was full."
    );
    describe_gauge!(
        SNIFFER_RUNNING,
        "1 while the XDP program is attached, else 0."
    );
    describe_counter!(
        ALERTS,
        "New alerts stored, by kind and source (updates not counted)."
    );
    describe_histogram!(
        ANN_INFERENCE,
        Unit::Seconds,
        "Wall time of one ANN scoring batch."
    );
    describe_histogram!(ANN_BATCH, "Flows per ANN scoring batch.");
    describe_counter!(
        ANN_NONFINITE,
        "Flows the ANN scored NaN or infinite (never alerted on, never training samples)."
    );
    describe_counter!(
        ANN_INCIDENTS_SHED,
        "ANN incidents closed before their idle time because too many were open (address churn)."
    );
    describe_gauge!(STORE_SIZE, Unit::Bytes, "Size of the sled store on disk.");
    describe_gauge!(
        STORE_HEALTHY,
        "1 while store writes reach the disk, 0 while the store is degraded."
    );
    describe_counter!(
        STORE_FSYNCS,
        "Store flushes to disk (one per group commit of the alert sink)."
    );
    describe_counter!(STORE_RECOVERIES, "Times the store recovered from degraded.");
    describe_counter!(
        STORE_PRUNED,
        "Oldest alerts deleted to keep the store under [store] max_bytes."
    );
    describe_counter!(
        ALERTS_DROPPED,
        "Alert writes lost: the store failed and the sink's retry queue was full."
    );
    describe_gauge!(
        ALERTS_QUEUED,
        "Alert writes waiting in the sink's retry queue for the store to recover."
    );
    describe_counter!(
        CLOCK_ANOMALIES,
        "Implausible time seen by the rule engine, by kind: outlier (a lone far jump, ignored), step (a confirmed far jump, followed), tick_jump (the tick clock jumped; followed by one tick)."
    );
    describe_counter!(LEARNING_CYCLES, "Continuous-learning cycles by outcome.");
    describe_gauge!(MODEL_VERSION, "Version of the ANN model serving now.");
    describe_gauge!(
        ANN_LIVE,
        "1 when the ANN raises alerts, 0 while it is in its local baseline phase."
    );
    describe_gauge!(
        ANN_LOCAL_FPR,
        "Share of held-out local baseline flows the serving model flags (last baseline check)."
    );
    describe_counter!(
        BASELINE_FLOWS,
        "Flows the ANN scored during its local baseline phase."
    );
    describe_counter!(RETENTION_DELETED, "Records deleted by retention, by tree.");
}

/// The kernel counters as a snapshot (already summed over CPUs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelCounters {
    pub packets: u64,
    pub bytes: u64,
    pub flows_active: u64,
    pub flows_created: u64,
    pub malformed: u64,
    pub ringbuf_events: u64,
    pub ringbuf_drops: u64,
    pub flows_promoted: u64,
    pub flows_evicted: u64,
    pub flow_updates: u64,
    pub arp_throttled: u64,
    pub tunneled: u64,
    pub tunnel_malformed: u64,
}

/// Copies the kernel counters (monotonic in the pinned map) into the metrics.
pub fn record_kernel(c: &KernelCounters) {
    counter!(PACKETS).absolute(c.packets);
    counter!(BYTES).absolute(c.bytes);
    gauge!(FLOWS_ACTIVE).set(c.flows_active as f64);
    counter!(FLOWS_CREATED).absolute(c.flows_created);
    counter!(MALFORMED).absolute(c.malformed);
    counter!(RINGBUF_EVENTS).absolute(c.ringbuf_events);
    counter!(RINGBUF_DROPS).absolute(c.ringbuf_drops);
    counter!(FLOWS_PROMOTED).absolute(c.flows_promoted);
    counter!(FLOWS_EVICTED).absolute(c.flows_evicted);
    counter!(FLOW_UPDATES).absolute(c.flow_updates);
    counter!(ARP_THROTTLED).absolute(c.arp_throttled);
    counter!(TUNNELED).absolute(c.tunneled);
    counter!(TUNNEL_MALFORMED).absolute(c.tunnel_malformed);
}

/// The last sweep's duration.
pub fn record_sweep(took: Duration) {
    gauge!(SWEEP_SECONDS).set(took.as_secs_f64());
}

/// Copies the detection engine's own counters into the metrics.
pub fn record_engine(s: &crate::detect::dfa::EngineStats) {
    counter!(KEYS_EVICTED).absolute(s.evicted_keys);
}

/// The ANN phase and the last local check's false-positive rate.
pub fn record_baseline(live: bool, local_fpr: Option<f64>) {
    gauge!(ANN_LIVE).set(if live { 1.0 } else { 0.0 });
    if let Some(r) = local_fpr {
        gauge!(ANN_LOCAL_FPR).set(r);
    }
}

/// A flow scored during the local baseline.
pub fn record_baseline_flow() {
    counter!(BASELINE_FLOWS).increment(1);
}

pub fn record_sniffer_running(running: bool) {
    gauge!(SNIFFER_RUNNING).set(if running { 1.0 } else { 0.0 });
}

/// One new alert stored.
pub fn record_alert(kind: AlertKind, source: AlertSource) {
    let source = match source {
        AlertSource::Dfa => "dfa",
        AlertSource::Ann => "ann",
    };
    counter!(ALERTS, "kind" => kind.as_str(), "source" => source).increment(1);
}

/// One ANN scoring batch of `flows` flows that took `elapsed`.
pub fn record_ann_batch(flows: usize, elapsed: Duration) {
    histogram!(ANN_INFERENCE).record(elapsed.as_secs_f64());
    histogram!(ANN_BATCH).record(flows as f64);
}

/// Flows of one batch the model scored NaN or infinite.
pub fn record_ann_nonfinite(flows: u64) {
    counter!(ANN_NONFINITE).increment(flows);
}

/// ANN incidents closed early because the detector's table of open incidents was full.
pub fn record_ann_incidents_shed(incidents: u64) {
    counter!(ANN_INCIDENTS_SHED).increment(incidents);
}

pub fn record_store_size(bytes: u64) {
    gauge!(STORE_SIZE).set(bytes as f64);
}

pub fn record_store_healthy(healthy: bool) {
    gauge!(STORE_HEALTHY).set(if healthy { 1.0 } else { 0.0 });
}

/// One flush of the store to disk.
pub fn record_store_fsync() {
    counter!(STORE_FSYNCS).increment(1);
}

pub fn record_store_recovery() {
    counter!(STORE_RECOVERIES).increment(1);
}

pub fn record_store_pruned(n: u64) {
    counter!(STORE_PRUNED).increment(n);
}

pub fn record_alerts_dropped(n: u64) {
    counter!(ALERTS_DROPPED).increment(n);
}

/// The rule engine's clock counters (label `kind`: `outlier`, `step`, `tick_jump`).
pub fn record_clock(s: &crate::detect::dfa::EngineStats) {
    counter!(CLOCK_ANOMALIES, "kind" => "outlier").absolute(s.clock_outliers);
    counter!(CLOCK_ANOMALIES, "kind" => "step").absolute(s.clock_steps);
    counter!(CLOCK_ANOMALIES, "kind" => "tick_jump").absolute(s.tick_jumps);
}

pub fn record_alerts_queued(n: u64) {
    gauge!(ALERTS_QUEUED).set(n as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_is_idempotent_and_renders_alerts_by_kind_and_source() {
        let h = install();
        let h2 = install();
        record_alert(AlertKind::ARP_SPOOF, AlertSource::Dfa);
        record_alert(AlertKind::ARP_SPOOF, AlertSource::Dfa);
        record_ann_batch(3, Duration::from_micros(30));
        let text = h2.render();
        assert!(
            text.contains("safelink_alerts_total{kind=\"arp_spoof\",source=\"dfa\"} 2\n"),
            "{text}"
        );
        // Other unit tests score ANN batches in this process too: only the shape is exact.
        assert!(
            text.contains("safelink_ann_batch_size_bucket{le=\"4\"} "),
            "{text}"
        );
        assert!(text.contains("# TYPE safelink_ann_inference_seconds histogram\n"));
        // Both handles render the one global recorder.
        assert!(
            h.render()
                .contains("safelink_alerts_total{kind=\"arp_spoof\",source=\"dfa\"} 2\n")
        );
    }
}
