//! The alert sink, the pipeline's last stage: writes alert events into the store on its own
//! thread ([`SinkThread`]; every write is fsynced before it returns), maps detector alert ids
//! to store ids, and coalesces bursts of updates of one alert into a single write. Every alert passes through the privacy
//! [`Policy`] first: what is stored and what is logged is the anonymised form (the detectors
//! upstream keep the real addresses). Counts new alerts in
//! `safelink_alerts_total`.
use std::collections::HashMap;

use tokio::sync::mpsc;
use tracing::{debug, error, warn};

use super::eve_log::EveLog;
use crate::{
    alert::{AlertEvent, AlertSource},
    privacy::Policy,
    store::{Store, StoreError},
    telemetry,
};

/// The sink on its own thread, fed through a bounded queue.
pub struct SinkThread {
    tx: mpsc::Sender<AlertEvent>,
    join: std::thread::JoinHandle<(u64, u64)>,
}

impl SinkThread {
    /// The sink of `store`, and of `eve` when given (new alerts appended as EVE lines).
    pub fn spawn(store: Store, privacy: Policy, eve: Option<EveLog>) -> Self {
        let (tx, rx) = mpsc::channel(4096);
        let join = std::thread::Builder::new()
            .name("safelink-sink".into())
            .spawn(move || run_sink_with(store, rx, &privacy, eve))
            .expect("spawn the alert sink thread");
        Self { tx, join }
    }

    /// Hands an event over, waiting while the queue is full (no alert is dropped). Call from
    /// a thread that may block, never from the async runtime.
    pub fn send(&self, ev: AlertEvent) {
        // The sink ends only when this sender is dropped, so this cannot fail.
        let _ = self.tx.blocking_send(ev);
    }

    /// Waits for everything queued to be stored; returns (new, updated).
    pub fn finish(self) -> (u64, u64) {
        drop(self.tx);
        self.join.join().unwrap_or_else(|_| {
            error!("the alert sink thread panicked");
            (0, 0)
        })
    }
}

/// Runs until the channel closes; returns how many alerts were stored (new) and updated.
/// Alerts are anonymised by `privacy` before they are logged or stored.
pub fn run_sink(store: Store, rx: mpsc::Receiver<AlertEvent>, privacy: &Policy) -> (u64, u64) {
    run_sink_with(store, rx, privacy, None)
}

/// [`run_sink`], each stored new alert also appended to `eve` (with its store id).
pub fn run_sink_with(
    store: Store,
    mut rx: mpsc::Receiver<AlertEvent>,
    privacy: &Policy,
    mut eve: Option<EveLog>,
) -> (u64, u64) {
    // Engine ids are per detector (DFA and ANN both start at 1): key by (source, id).
    let mut ids: HashMap<(AlertSource, u64), u64> = HashMap::new();
    let (mut new, mut updated) = (0u64, 0u64);
    while let Some(first) = rx.blocking_recv() {
        // Take everything already queued: new alerts in order, only the last update per alert.
        let mut batch = vec![first];
        while let Ok(ev) = rx.try_recv() {
            batch.push(ev);
        }
        let mut latest: HashMap<(AlertSource, u64), crate::alert::Alert> = HashMap::new();
        for ev in batch {
            match ev {
                AlertEvent::New(mut a) => {
                    privacy.apply(&mut a);
                    let engine_id = (a.source, a.id);
                    let (kind, source) = (a.kind, a.source);
                    warn!(
                        kind = a.kind.as_str(),
                        src = ?a.src_ip,
                        dest = ?a.dest_ip,
                        src_mac = ?a.src_mac,
                        "{}",
                        a.description
                    );
                    let for_eve = eve.as_ref().map(|_| a.clone());
                    match store.insert(a) {
                        Ok(sid) => {
                            if let (Some(log), Some(mut a)) = (eve.as_mut(), for_eve) {
                                a.id = sid;
                                log.write(&a);
                            }
                            telemetry::record_alert(kind, source);
                            ids.insert(engine_id, sid);
                            new += 1;
                        }
                        Err(e) => error!(error = %e, "storing an alert failed"),
                    }
                }
                AlertEvent::Updated(mut a) => {
                    privacy.apply(&mut a);
                    latest.insert((a.source, a.id), a);
                }
            }
        }
        for (engine_id, a) in latest {
            let Some(&sid) = ids.get(&engine_id) else {
                continue;
            };
            let r = store.update(sid, |s| {
                s.count = a.count;
                s.last_seen = a.last_seen;
                s.confidence = a.confidence;
                s.severity = a.severity;
                s.description.clone_from(&a.description);
                if a.explanation.is_some() {
                    s.explanation.clone_from(&a.explanation);
                }
            });
            match r {
                Ok(_) => updated += 1,
                Err(StoreError::NotFound(_)) => {
                    // Deleted meanwhile (retention, or forgotten on request): stays deleted.
                    debug!(id = sid, "update of a deleted alert dropped");
                    ids.remove(&engine_id);
                }
                Err(e) => error!(error = %e, id = sid, "updating an alert failed"),
            }
        }
    }
    (new, updated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{Alert, AlertKind, Severity, Timestamp};

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }
    use crate::config::PrivacyConfig;
    use crate::privacy::IpMode;

    fn alert(id: u64, count: u64) -> Alert {
        Alert {
            id,
            timestamp: ts("2024-05-01T12:00:00Z"),
            source: AlertSource::Dfa,
            kind: AlertKind::PORT_SCAN,
            severity: Severity::Medium,
            confidence: 1.0,
            src_ip: Some("198.51.100.7".parse().unwrap()),
            src_port: Some(4000),
            dest_ip: Some("192.0.2.1".parse().unwrap()),
            dest_port: Some(22),
            proto: "tcp".into(),
            src_mac: None,
            first_seen: ts("2024-05-01T12:00:00Z"),
            last_seen: ts("2024-05-01T12:00:00Z"),
            count,
            description: format!("port scan of 192.0.2.1 from 198.51.100.7 ({count})"),
            community_id: Some("1:x=".into()),
            explanation: None,
            features: vec![],
        }
    }

    #[test]
    fn stores_the_anonymised_form_and_a_deleted_alert_stays_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let policy = Policy::new(
            &PrivacyConfig {
                ip_mode: IpMode::Truncate,
                ..Default::default()
            },
            None,
        )
        .unwrap();
        let (tx, rx) = mpsc::channel(16);
        tx.blocking_send(AlertEvent::New(alert(1, 1))).unwrap();
        tx.blocking_send(AlertEvent::Updated(alert(1, 5))).unwrap();
        drop(tx);
        assert_eq!(run_sink(store.clone(), rx, &policy), (1, 1));
        let stored = store.get(1).unwrap().unwrap();
        assert_eq!(stored.src_ip, Some("198.51.100.0".parse().unwrap()));
        assert_eq!(stored.dest_ip, Some("192.0.2.0".parse().unwrap()));
        assert_eq!(
            stored.description,
            "port scan of 192.0.2.0 from 198.51.100.0 (5)"
        );
        assert_eq!(stored.community_id, None);
        assert_eq!(stored.count, 5);

        // Deleted (forgotten) between two updates of the same incident: not recreated.
        let (tx, rx) = mpsc::channel(16);
        let p = policy.clone();
        let s = store.clone();
        let sink = std::thread::spawn(move || run_sink(s, rx, &p));
        tx.blocking_send(AlertEvent::New(alert(2, 1))).unwrap();
        while store.get(2).unwrap().is_none() {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(store.delete_matching(|a| a.id == 2).unwrap().alerts, 1);
        tx.blocking_send(AlertEvent::Updated(alert(2, 7))).unwrap();
        tx.blocking_send(AlertEvent::Updated(alert(2, 8))).unwrap();
        drop(tx);
        assert_eq!(sink.join().unwrap(), (1, 0));
        assert_eq!(store.get(2).unwrap(), None);
        assert_eq!(store.get_archived(2).unwrap(), None);
    }
}
