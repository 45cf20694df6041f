//! Store health: whether writes reach the disk (`ok`) or fail (`degraded`, with the last
//! error and since when), and the counters `/status` and `/metrics` show about it: fsyncs,
//! alerts the sink had to drop or still holds for a retry, alerts pruned by the size cap,
//! recoveries. Shared by every clone of a [`super::Store`]; each change is mirrored into the
//! Prometheus metrics at once ([`crate::telemetry`]).
use std::sync::Mutex;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;
use time::OffsetDateTime;

use super::{Store, StoreError, format_rfc3339};
use crate::telemetry;

/// Whether the store currently takes writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    /// The last write reached the disk.
    Ok,
    /// Writes fail (disk full, I/O error, database closed); alerts wait in the sink's retry
    /// queue or are dropped (counted) until the store recovers.
    Degraded,
}

/// Snapshot of the store's health (`GET /status` field `store`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StoreHealth {
    pub state: HealthState,
    /// The last storage error, kept after a recovery (then `state` is `ok` again).
    pub last_error: Option<String>,
    /// When `last_error` happened (RFC 3339).
    pub last_error_at: Option<String>,
    /// Since when the store is degraded (RFC 3339); `None` while ok.
    pub degraded_since: Option<String>,
    /// Size of the database on disk (the last size read while it was readable).
    pub bytes: u64,
    /// The `[store] max_bytes` cap; 0 = none.
    pub max_bytes: u64,
    /// Alerts lost because the store failed and the retry queue was full.
    pub alerts_dropped: u64,
    /// Alerts (and updates) waiting in the sink's retry queue for the store to recover.
    pub alerts_queued: u64,
    /// Oldest alerts deleted to keep the store under `max_bytes`.
    pub alerts_pruned: u64,
    /// fsyncs (sled flushes) since start: one per group commit of the sink.
    pub fsyncs: u64,
    /// Times the store recovered from degraded.
    pub recoveries: u64,
}

#[derive(Default)]
struct ErrorState {
    last: Option<(String, OffsetDateTime)>,
    degraded_since: Option<OffsetDateTime>,
}

/// The shared, mutable side of [`StoreHealth`].
#[derive(Default)]
pub(super) struct HealthCell {
    errors: Mutex<ErrorState>,
    fsyncs: AtomicU64,
    dropped: AtomicU64,
    queued: AtomicU64,
    pruned: AtomicU64,
    recoveries: AtomicU64,
    pub(super) max_bytes: AtomicU64,
    bytes: AtomicU64,
    /// Alerts stored before the last size-cap prune ([`super::cap`]); 0 = none since the
    /// store was under the cap.
    pub(super) prune_floor: AtomicU64,
    /// The last counts read, for `/status` while the store is unreadable.
    pub(super) last_counts: Mutex<Option<super::Counts>>,
}

impl HealthCell {
    fn errors(&self) -> std::sync::MutexGuard<'_, ErrorState> {
        self.errors.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn fsync(&self) {
        self.fsyncs.fetch_add(1, Relaxed);
        telemetry::record_store_fsync();
    }

    pub(super) fn last_error_text(&self) -> String {
        self.errors()
            .last
            .as_ref()
            .map_or_else(|| "closed".to_string(), |(e, _)| e.clone())
    }

    pub(super) fn pruned(&self, n: u64) {
        self.pruned.fetch_add(n, Relaxed);
        telemetry::record_store_pruned(n);
    }
}

/// Errors that say the storage fails (rather than a bad request or record).
fn is_storage_failure(e: &StoreError) -> bool {
    match e {
        StoreError::Sled(
            sled::Error::Io(_) | sled::Error::Corruption { .. } | sled::Error::ReportableBug(_),
        )
        | StoreError::Unavailable(_) => true,
        StoreError::Sled(_)
        | StoreError::NotFound(_)
        | StoreError::BadCursor(_)
        | StoreError::Corrupt(_)
        | StoreError::UnsupportedVersion { .. }
        | StoreError::Busy => false,
    }
}

impl Store {
    /// Records `e` if it is a storage failure (I/O, sled corruption, database closed): the
    /// store turns degraded until [`Store::note_recovered`]. Other errors are ignored.
    /// Returns whether `e` was a storage failure.
    pub fn note_error(&self, e: &StoreError) -> bool {
        if !is_storage_failure(e) {
            return false;
        }
        let now = OffsetDateTime::now_utc();
        let mut st = self.shared.health.errors();
        st.last = Some((e.to_string(), now));
        if st.degraded_since.is_none() {
            st.degraded_since = Some(now);
            telemetry::record_store_healthy(false);
        }
        true
    }

    /// Writes reach the disk again; returns how long the store was degraded, if it was.
    pub fn note_recovered(&self) -> Option<std::time::Duration> {
        let since = self.shared.health.errors().degraded_since.take()?;
        self.shared.health.recoveries.fetch_add(1, Relaxed);
        telemetry::record_store_healthy(true);
        telemetry::record_store_recovery();
        Some((OffsetDateTime::now_utc() - since).unsigned_abs())
    }

    /// Whether the store is degraded now.
    pub fn degraded(&self) -> bool {
        self.shared.health.errors().degraded_since.is_some()
    }

    /// `n` alerts (or updates) lost for good: the store failed and the retry queue was full.
    pub fn note_dropped(&self, n: u64) {
        self.shared.health.dropped.fetch_add(n, Relaxed);
        telemetry::record_alerts_dropped(n);
    }

    /// How many alerts (and updates) wait in the sink's retry queue now.
    pub fn set_queued(&self, n: u64) {
        self.shared.health.queued.store(n, Relaxed);
        telemetry::record_alerts_queued(n);
    }

    /// The current health. Reads the size on disk when the database is readable.
    pub fn health(&self) -> StoreHealth {
        let h = &self.shared.health;
        if let Ok(b) = self.size_on_disk() {
            h.bytes.store(b, Relaxed);
        }
        let st = h.errors();
        StoreHealth {
            state: if st.degraded_since.is_some() {
                HealthState::Degraded
            } else {
                HealthState::Ok
            },
            last_error: st.last.as_ref().map(|(e, _)| e.clone()),
            last_error_at: st.last.as_ref().map(|(_, t)| format_rfc3339(*t)),
            degraded_since: st.degraded_since.map(format_rfc3339),
            bytes: h.bytes.load(Relaxed),
            max_bytes: h.max_bytes.load(Relaxed),
            alerts_dropped: h.dropped.load(Relaxed),
            alerts_queued: h.queued.load(Relaxed),
            alerts_pruned: h.pruned.load(Relaxed),
            fsyncs: h.fsyncs.load(Relaxed),
            recoveries: h.recoveries.load(Relaxed),
        }
    }
}
