//! What a fleet sensor knows about itself, shared by the publisher, the watcher, the API
//! (`GET /fleet/status`, the dashboard card) and `/metrics`: one [`FleetHandle`], cheap to
//! clone, read as a [`FleetStatus`] snapshot.
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::Channel;

/// The fleet's metric names (named in [`crate::telemetry`], documented in the README).
pub mod metric {
    pub use crate::telemetry::{
        FLEET_ACCEPTED as ACCEPTED, FLEET_BUFFERED as BUFFERED, FLEET_CONNECTED as CONNECTED,
        FLEET_DROPPED as DROPPED, FLEET_MODEL_VERSION as MODEL_VERSION,
        FLEET_PUBLISHED as PUBLISHED, FLEET_REFUSED as REFUSED,
    };
}

/// The last bundle refused, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LastRefusal {
    pub version: Option<u64>,
    pub code: String,
    pub reason: String,
    pub at: String,
}

/// The model a fleet sensor serves.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FleetModel {
    pub version: u64,
    pub sha256: String,
    /// `fleet:<channel>` for a verified fleet model.
    pub origin: String,
    pub accepted_at: String,
}

/// The answer of `GET /fleet/status` (and the heartbeat's body).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FleetStatus {
    pub sensor_id: String,
    pub channel: Channel,
    pub url: String,
    pub connected: bool,
    /// Messages (samples and alerts) the server acknowledged.
    pub published: u64,
    pub published_samples: u64,
    pub published_alerts: u64,
    /// Messages waiting on disk.
    pub buffered: u64,
    /// Messages dropped because the buffer was full.
    pub dropped: u64,
    /// Replays the server recognised by `Nats-Msg-Id` (not stored twice).
    pub duplicates: u64,
    /// The fleet model serving now (none: the local model file).
    pub model: Option<FleetModel>,
    /// Highest version ever accepted (kept across restarts).
    pub highest_version: Option<u64>,
    pub accepted: u64,
    /// Refused bundles by reason code.
    pub refused: BTreeMap<String, u64>,
    pub last_refusal: Option<LastRefusal>,
    pub daemon_version: String,
}

/// Shared, cheaply cloneable.
#[derive(Clone, Debug)]
pub struct FleetHandle {
    inner: Arc<Mutex<FleetStatus>>,
    connected: Arc<AtomicBool>,
}

impl FleetHandle {
    pub fn new(sensor_id: &str, channel: Channel, url: &str) -> Self {
        FleetHandle {
            inner: Arc::new(Mutex::new(FleetStatus {
                sensor_id: sensor_id.into(),
                channel,
                url: url.into(),
                connected: false,
                published: 0,
                published_samples: 0,
                published_alerts: 0,
                buffered: 0,
                dropped: 0,
                duplicates: 0,
                model: None,
                highest_version: None,
                accepted: 0,
                refused: refusal_codes(),
                last_refusal: None,
                daemon_version: env!("CARGO_PKG_VERSION").into(),
            })),
            connected: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn snapshot(&self) -> FleetStatus {
        let mut s = self.inner.lock().expect("lock").clone();
        s.connected = self.connected.load(Ordering::Relaxed);
        s
    }

    pub fn set_connected(&self, c: bool) {
        self.connected.store(c, Ordering::Relaxed);
        metrics::gauge!(metric::CONNECTED).set(if c { 1.0 } else { 0.0 });
    }

    /// Changes the status under its lock and refreshes the gauges.
    pub fn update(&self, f: impl FnOnce(&mut FleetStatus)) {
        let mut s = self.inner.lock().expect("lock");
        f(&mut s);
        metrics::gauge!(metric::BUFFERED).set(s.buffered as f64);
        if let Some(m) = &s.model {
            metrics::gauge!(metric::MODEL_VERSION).set(m.version as f64);
        }
    }
}

#[allow(non_snake_case)]
fn refusal_codes() -> BTreeMap<String, u64> {
    super::Refusal::CODES
        .iter()
        .map(|c| (c.to_string(), 0))
        .collect()
}

/// Registers the fleet metrics at 0 (so a scrape sees them before the first event).
pub fn describe() {
    use metrics::{counter, describe_counter, describe_gauge, gauge};
    describe_gauge!(
        metric::CONNECTED,
        "1 while the fleet server connection is up."
    );
    describe_counter!(
        metric::PUBLISHED,
        "Messages the fleet server acknowledged, by kind (samples, alerts)."
    );
    describe_gauge!(
        metric::BUFFERED,
        "Fleet messages waiting on disk for the server."
    );
    describe_counter!(
        metric::DROPPED,
        "Fleet messages dropped because the on-disk buffer was full, by kind."
    );
    describe_gauge!(metric::MODEL_VERSION, "Fleet model version serving now.");
    describe_counter!(metric::ACCEPTED, "Fleet models verified and swapped in.");
    describe_counter!(metric::REFUSED, "Fleet models refused, by reason.");
    gauge!(metric::CONNECTED).set(0.0);
    gauge!(metric::BUFFERED).set(0.0);
    counter!(metric::ACCEPTED).increment(0);
    for k in ["samples", "alerts"] {
        counter!(metric::PUBLISHED, "kind" => k).increment(0);
        counter!(metric::DROPPED, "kind" => k).increment(0);
    }
    for c in super::Refusal::CODES {
        counter!(metric::REFUSED, "reason" => c).increment(0);
    }
}
