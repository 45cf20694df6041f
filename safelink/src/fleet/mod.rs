//! Fleet mode on NATS JetStream: every sensor's labelled samples go to one learner, which
//! publishes a signed model that every sensor verifies and hot-swaps.
//!
//! - [`config`]: the `[fleet]` section (server URL, sensor id, credentials, trusted keys,
//!   channel) and the names every component shares ([`names`]);
//! - [`manifest`]: the signed manifest and bundle, ed25519 keys, and the sensor's verifier
//!   with its typed refusal reasons;
//! - [`connect`]: the connection and the streams and buckets (created by hand: async-nats
//!   0.51's `create_key_value` fails against nats-server 2.9);
//! - sensor side: [`buffer`] (bounded on-disk queue with exact drop counters), [`publisher`]
//!   (store → buffer → JetStream with `Nats-Msg-Id`, heartbeats), [`watcher`] (one KV watch,
//!   verify, hot-swap through the local deploy path), [`status`] (what `GET /fleet/status`
//!   and `/metrics` show);
//! - learner side: [`lease`] (one learner at a time, KV create + compare-and-swap) and
//!   [`learner`] (durable consumer, per-sensor cap, the single-host cycle, sign, publish);
//! - [`sensor`]: the sensor side started and stopped as one;
//! - [`bench`]: the in-process fleet benchmark;
//! - [`ops`]: the operator's `safelink fleet sensors|models|promote|rollback`.
pub mod bench;
pub mod buffer;
pub mod config;
pub mod connect;
pub mod learner;
pub mod lease;
pub mod manifest;
pub mod ops;
pub mod publisher;
pub mod sensor;
pub mod status;
pub mod watcher;

pub use config::{Channel, FleetSection, names};
pub use manifest::{Bundle, Manifest, Refusal, Verifier};
pub use status::{FleetHandle, FleetStatus};

/// What can go wrong talking to the fleet.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("fleet server: {0}")]
    Nats(String),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("buffer: {0}")]
    Buffer(#[from] sled::Error),
    #[error("key: {0}")]
    Key(String),
    #[error("{0}")]
    Invalid(String),
}

impl FleetError {
    /// Any client error, with its text.
    pub fn nats(e: impl std::fmt::Display) -> Self {
        FleetError::Nats(e.to_string())
    }
}
