//! Retention: deletes alerts, archived alerts and training samples whose last evidence is
//! older than the configured ages. [`sweep`] takes the current time as a parameter so tests
//! run it at chosen times; the daemon runs it from [`run_periodic`] on the wall clock. The
//! counts are logged and added to the `safelink_retention_deleted_total{tree}` counter.
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::store::{AlertTree, Store, StoreError, TreeCounts};

/// Retention ages in days per tree; 0 keeps that tree's records forever.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RetentionAges {
    pub alerts: u64,
    pub archive: u64,
    pub samples: u64,
}

/// `now` minus `days`, or `None` when the tree is kept forever (0) or the age reaches before
/// any representable time.
fn cutoff(now: OffsetDateTime, days: u64) -> Option<OffsetDateTime> {
    if days == 0 {
        return None;
    }
    let days = i64::try_from(days).ok()?;
    now.checked_sub(time::Duration::days(days))
}

/// One retention pass at time `now`: deletes what is older than its tree's age. Returns the
/// counts per tree after the deletions are durable; logs them and adds them to the metrics.
pub fn sweep(
    store: &Store,
    ages: RetentionAges,
    now: OffsetDateTime,
) -> Result<TreeCounts, StoreError> {
    let mut deleted = TreeCounts::default();
    if let Some(c) = cutoff(now, ages.alerts) {
        deleted.alerts = store.delete_older_than(AlertTree::Active, c)?;
    }
    if let Some(c) = cutoff(now, ages.archive) {
        deleted.archive = store.delete_older_than(AlertTree::Archive, c)?;
    }
    if let Some(c) = cutoff(now, ages.samples) {
        let ns = u64::try_from(c.unix_timestamp_nanos()).unwrap_or(0);
        deleted.samples = store.delete_samples_older_than(ns)?;
    }
    for (tree, n) in deleted.per_tree() {
        metrics::counter!(crate::telemetry::RETENTION_DELETED, "tree" => tree).increment(n);
    }
    info!(
        alerts = deleted.alerts,
        archive = deleted.archive,
        samples = deleted.samples,
        "retention sweep"
    );
    Ok(deleted)
}

/// Runs [`sweep`] every `interval` on the wall clock (the first at once) on the blocking
/// pool, until `stop` turns true. A zero interval disables the sweeps.
pub async fn run_periodic(
    store: Store,
    ages: RetentionAges,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    if interval.is_zero() {
        info!("retention sweeps disabled ([privacy] retention_interval_s = 0)");
        // A stage that ends early is a failure to the daemon: wait for the stop instead.
        let _ = stop.wait_for(|s| *s).await;
        return;
    }
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let s = store.clone();
        let r =
            tokio::task::spawn_blocking(move || sweep(&s, ages, OffsetDateTime::now_utc())).await;
        match r {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warn!(error = %e, "retention sweep failed"),
            Err(e) => warn!(error = %e, "retention sweep task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use metrics::{
        Counter, CounterFn, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
    };

    use super::*;
    use crate::alert::Alert;

    type Totals = Arc<Mutex<BTreeMap<String, u64>>>;

    /// A recorder keeping counter totals by `name{label=value}`.
    #[derive(Default)]
    struct Totaller(Totals);

    struct Cell(String, Totals);

    impl CounterFn for Cell {
        fn increment(&self, value: u64) {
            *self.1.lock().unwrap().entry(self.0.clone()).or_default() += value;
        }

        fn absolute(&self, value: u64) {
            self.1.lock().unwrap().insert(self.0.clone(), value);
        }
    }

    impl Recorder for Totaller {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            let name = format!("{}{{{}}}", key.name(), labels.join(","));
            Counter::from_arc(Arc::new(Cell(name, self.0.clone())))
        }

        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }

        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    fn alert(ts: &str) -> Alert {
        serde_json::from_value(serde_json::json!({
            "id": 0, "timestamp": ts, "source": "dfa", "kind": "port_scan",
            "severity": "low", "confidence": 1.0, "src_ip": "192.0.2.9", "src_port": null,
            "dest_ip": null, "dest_port": null, "proto": "tcp", "src_mac": null,
            "first_seen": ts, "last_seen": ts, "count": 1, "description": "test",
            "community_id": null
        }))
        .unwrap()
    }

    #[test]
    fn sweep_counts_go_to_the_metrics() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for ts in [
            "2024-01-01T00:00:00Z",
            "2024-02-01T00:00:00Z",
            "2024-04-30T00:00:00Z",
        ] {
            store.insert(alert(ts)).unwrap();
        }
        let archived = store.insert(alert("2023-01-01T00:00:00Z")).unwrap();
        store.archive_ids(&[archived]).unwrap();
        let now = crate::store::parse_rfc3339("2024-05-01T00:00:00Z").unwrap();
        let ages = RetentionAges {
            alerts: 30,
            archive: 365,
            samples: 30,
        };
        let rec = Totaller::default();
        let deleted = metrics::with_local_recorder(&rec, || sweep(&store, ages, now)).unwrap();
        assert_eq!(
            deleted,
            TreeCounts {
                alerts: 2,
                archive: 1,
                samples: 0
            }
        );
        let totals = rec.0.lock().unwrap().clone();
        let expected: BTreeMap<String, u64> = [
            ("safelink_retention_deleted_total{tree=alerts}", 2),
            ("safelink_retention_deleted_total{tree=archive}", 1),
            ("safelink_retention_deleted_total{tree=samples}", 0),
            // One flush per tree swept with deletions (the store counts its fsyncs).
            ("safelink_store_fsyncs_total{}", 2),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(totals, expected);
    }

    #[test]
    fn cutoffs() {
        let now = crate::store::parse_rfc3339("2024-05-01T00:00:00Z").unwrap();
        assert_eq!(cutoff(now, 0), None);
        assert_eq!(
            cutoff(now, 30),
            Some(crate::store::parse_rfc3339("2024-04-01T00:00:00Z").unwrap())
        );
        assert_eq!(cutoff(now, u64::MAX), None);
    }
}
