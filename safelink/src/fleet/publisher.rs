//! The sensor's outgoing side: store → [`Buffer`] → JetStream.
//!
//! - The tailer (a thread) takes new training samples (already labelled by the collector and
//!   anonymised by `[privacy]` when stored; features and labels, never payloads) and new
//!   alerts from the store every half second and queues them in the on-disk buffer, moving
//!   its cursors in the same atomic write.
//! - The sender (a task) publishes the oldest queued messages on `safelink.samples.<id>` /
//!   `safelink.alerts.<id>` with `Nats-Msg-Id: <id>.<seq>`, waits for the server's
//!   acknowledgements, and removes what was acknowledged. With the server down it retries
//!   while the buffer fills up to its bound; a replay of a message the server already stored
//!   is recognised by its id (counted as a duplicate, not stored twice).
//! - The heartbeat (a task) puts this sensor's [`super::FleetStatus`] in the sensors bucket.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use tracing::{debug, warn};

use super::buffer::{Buffer, Item, Kind};
use super::names;
use super::status::{FleetHandle, metric};
use crate::store::Store;

/// Samples and alerts taken from the store per tail round.
const TAIL_BATCH: usize = 4096;
/// Messages in flight per send round.
const SEND_BATCH: usize = 256;

/// Shared by the tailer and the sender.
pub type SharedBuffer = Arc<Mutex<Buffer>>;

/// Copies the buffer's counters into the status.
pub fn refresh(fleet: &FleetHandle, buf: &Buffer) {
    let c = buf.counters();
    fleet.update(|s| {
        s.published_samples = c.published_samples;
        s.published_alerts = c.published_alerts;
        s.published = c.published_samples + c.published_alerts;
        s.buffered = c.queued;
        s.dropped = c.dropped_samples + c.dropped_alerts;
    });
}

/// One tail round: queues what the store has beyond the cursors. Returns how many messages
/// were taken from the store.
pub fn tail_once(store: &Store, buf: &SharedBuffer, fleet: &FleetHandle) -> anyhow::Result<usize> {
    let c = buf.lock().expect("lock").counters();
    let mut taken = 0;
    let samples = store.samples_after(c.sample_cursor)?;
    for chunk in samples.chunks(TAIL_BATCH) {
        let last = chunk.last().map_or(c.sample_cursor, |s| s.id);
        let payloads = chunk
            .iter()
            .map(|s| serde_json::to_vec(s).expect("sample serialises"))
            .collect();
        let dropped = buf
            .lock()
            .expect("lock")
            .push(Kind::Samples, payloads, last)?;
        if dropped > 0 {
            metrics::counter!(metric::DROPPED, "kind" => "samples").increment(dropped);
        }
        taken += chunk.len();
    }
    let alerts = store.alerts_after(c.alert_cursor, TAIL_BATCH)?;
    if let Some(last) = alerts.last().map(|a| a.id) {
        let payloads = alerts
            .iter()
            .map(|a| serde_json::to_vec(a).expect("alert serialises"))
            .collect();
        let dropped = buf
            .lock()
            .expect("lock")
            .push(Kind::Alerts, payloads, last)?;
        if dropped > 0 {
            metrics::counter!(metric::DROPPED, "kind" => "alerts").increment(dropped);
        }
        taken += alerts.len();
    }
    refresh(fleet, &buf.lock().expect("lock"));
    Ok(taken)
}

/// The tailer thread: a round every `every` until `stop`.
pub fn spawn_tailer(
    store: Store,
    buf: SharedBuffer,
    fleet: FleetHandle,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("safelink-fleet-tail".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Err(e) = tail_once(&store, &buf, &fleet) {
                    warn!(error = %e, "fleet: reading the store failed");
                }
                std::thread::sleep(every);
            }
            let _ = tail_once(&store, &buf, &fleet);
            let _ = buf.lock().expect("lock").flush();
        })
        .expect("spawn fleet tailer")
}

fn subject(sensor: &str, k: Kind) -> String {
    match k {
        Kind::Samples => names::samples_subject(sensor),
        Kind::Alerts => names::alerts_subject(sensor),
    }
}

/// The `Nats-Msg-Id` of queued message `seq` of `sensor`.
pub fn msg_id(sensor: &str, seq: u64) -> String {
    format!("{sensor}.{seq}")
}

/// One send round: publishes up to [`SEND_BATCH`] queued messages and removes the
/// acknowledged prefix. Returns (acknowledged, an error that ended the round).
pub async fn send_once(
    js: &jetstream::Context,
    sensor: &str,
    buf: &SharedBuffer,
    fleet: &FleetHandle,
) -> (usize, Option<String>) {
    let items: Vec<Item> = match buf.lock().expect("lock").head(SEND_BATCH) {
        Ok(v) => v,
        Err(e) => return (0, Some(e.to_string())),
    };
    if items.is_empty() {
        return (0, None);
    }
    let mut pending = Vec::with_capacity(items.len());
    let mut err = None;
    for it in &items {
        let p = PublishMessage::build()
            .payload(it.payload.clone().into())
            .message_id(msg_id(sensor, it.seq));
        match js.send_publish(subject(sensor, it.kind), p).await {
            Ok(f) => pending.push(f),
            Err(e) => {
                err = Some(e.to_string());
                break;
            }
        }
    }
    let mut acked = 0;
    let mut dups = 0;
    for f in pending {
        match f.await {
            Ok(ack) => {
                acked += 1;
                if ack.duplicate {
                    dups += 1;
                }
            }
            Err(e) => {
                err.get_or_insert(e.to_string());
                break;
            }
        }
    }
    let done = &items[..acked];
    if !done.is_empty() {
        let mut b = buf.lock().expect("lock");
        if let Err(e) = b.ack(done) {
            return (0, Some(e.to_string()));
        }
        refresh(fleet, &b);
    }
    let (s, a) = done.iter().fold((0u64, 0u64), |(s, a), i| match i.kind {
        Kind::Samples => (s + 1, a),
        Kind::Alerts => (s, a + 1),
    });
    metrics::counter!(metric::PUBLISHED, "kind" => "samples").increment(s);
    metrics::counter!(metric::PUBLISHED, "kind" => "alerts").increment(a);
    if dups > 0 {
        fleet.update(|st| st.duplicates += dups);
    }
    (acked, err)
}

/// The sender task: send rounds until `stop`; idle or failing rounds wait a little.
pub async fn run_sender(
    js: jetstream::Context,
    sensor: String,
    buf: SharedBuffer,
    fleet: FleetHandle,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        if *stop.borrow() {
            return;
        }
        // A stop ends a round waiting for acknowledgements; what was not acknowledged stays
        // queued (and is recognised by its id if it did arrive).
        let (n, err) = tokio::select! {
            r = send_once(&js, &sensor, &buf, &fleet) => r,
            _ = stop.changed() => return,
        };
        let wait = match (&err, n) {
            (Some(e), _) => {
                debug!(error = %e, "fleet: publishing paused");
                Duration::from_millis(500)
            }
            (None, 0) => Duration::from_millis(200),
            (None, _) => continue,
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
        }
    }
}

/// The heartbeat task: puts the status in the sensors bucket every `every`.
pub async fn run_heartbeat(
    sensors: jetstream::kv::Store,
    fleet: FleetHandle,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let s = fleet.snapshot();
        let mut v = serde_json::to_value(&s).expect("status serialises");
        v["at"] = serde_json::Value::String(crate::learn::models::now_rfc3339());
        if let Err(e) = sensors
            .put(&s.sensor_id, serde_json::to_vec(&v).expect("json").into())
            .await
        {
            debug!(error = %e, "fleet: heartbeat not sent");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
    }
}
