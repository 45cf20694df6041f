//! The alert sink: writes detector alert events into the store on a blocking thread (every
//! write is fsynced before it returns), maps engine alert ids to store ids, and coalesces bursts
//! of updates of one alert into a single write. Counts new alerts in `safelink_alerts_total`.
use std::collections::HashMap;

use tokio::sync::mpsc;
use tracing::{error, warn};

use crate::{alert::AlertSource, detect::dfa::AlertEvent, store::Store, telemetry};

/// Runs until the channel closes; returns how many alerts were stored (new) and updated.
pub fn run_sink(store: Store, mut rx: mpsc::Receiver<AlertEvent>) -> (u64, u64) {
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
                AlertEvent::New(a) => {
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
                    match store.insert(a) {
                        Ok(sid) => {
                            telemetry::record_alert(kind, source);
                            ids.insert(engine_id, sid);
                            new += 1;
                        }
                        Err(e) => error!(error = %e, "storing an alert failed"),
                    }
                }
                AlertEvent::Updated(a) => {
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
                s.last_seen.clone_from(&a.last_seen);
                s.confidence = a.confidence;
                s.severity = a.severity;
                s.description.clone_from(&a.description);
                if a.explanation.is_some() {
                    s.explanation.clone_from(&a.explanation);
                }
            });
            match r {
                Ok(_) => updated += 1,
                Err(e) => error!(error = %e, id = sid, "updating an alert failed"),
            }
        }
    }
    (new, updated)
}
