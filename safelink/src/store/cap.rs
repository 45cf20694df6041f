//! The size cap (`[store] max_bytes`): while the database on disk is larger than the cap,
//! the oldest alerts (by `timestamp`, active and archived alike) are deleted, a tenth of them
//! per step ([`Store::enforce_cap`], run by the alert sink after each group commit).
//!
//! sled reuses the space of deleted records for new writes but seldom gives it back to the
//! filesystem, so the size on disk hardly drops after a prune. The next prune therefore waits
//! until the store holds as many alerts as before the last prune (the space freed is used
//! up by then): the number of alerts oscillates between the count that first filled the cap
//! and nine tenths of it, instead of the store emptying itself. Training samples, model
//! versions and cycles are bounded by the learner, not here.
use std::sync::atomic::Ordering::Relaxed;

use super::keys::split_suffix;
use super::{Result, Store};

/// Share of the stored alerts one prune step deletes (1 / `PRUNE_DIVISOR`).
const PRUNE_DIVISOR: u64 = 10;

impl Store {
    /// Sets the cap on the size on disk; 0 = no cap.
    pub fn set_max_bytes(&self, max_bytes: u64) {
        self.shared.health.max_bytes.store(max_bytes, Relaxed);
    }

    /// When the store is larger than its cap: deletes the oldest tenth of the alerts (at least
    /// one), unless fewer are stored than before the last prune. Returns how many alerts were
    /// deleted (durable on return).
    pub fn enforce_cap(&self) -> Result<u64> {
        let h = &self.shared.health;
        let max = h.max_bytes.load(Relaxed);
        if max == 0 {
            return Ok(0);
        }
        if self.size_on_disk()? <= max {
            h.prune_floor.store(0, Relaxed);
            return Ok(0);
        }
        let c = self.counts()?;
        let total = c.active + c.archived;
        if total < h.prune_floor.load(Relaxed) {
            return Ok(0);
        }
        let n = (total / PRUNE_DIVISOR).max(1);
        let deleted = self.prune_oldest(n)?;
        h.prune_floor.store(total, Relaxed);
        if deleted > 0 {
            h.pruned(deleted);
            tracing::warn!(
                deleted,
                kept = total - deleted,
                max_bytes = max,
                "alert store over its size cap: oldest alerts deleted"
            );
        }
        Ok(deleted)
    }

    /// Deletes the `n` oldest alerts by `timestamp` (active and archived merged; ties by id)
    /// and returns how many went, after the deletion is durable.
    pub fn prune_oldest(&self, n: u64) -> Result<u64> {
        let t = self.trees()?;
        let mut active = t.idx_time.iter().keys().peekable();
        let mut archived = t.archive_time.iter().keys().peekable();
        let mut ids = Vec::new();
        while (ids.len() as u64) < n {
            let a = active.peek().map(|k| k.clone().map(|k| split_suffix(&k)));
            let b = archived.peek().map(|k| k.clone().map(|k| split_suffix(&k)));
            let (a, b) = (a.transpose()?.transpose()?, b.transpose()?.transpose()?);
            let next = match (a, b) {
                (Some(a), Some(b)) if a <= b => active.next().map(|_| a),
                (Some(_), Some(b)) => archived.next().map(|_| b),
                (Some(a), None) => active.next().map(|_| a),
                (None, Some(b)) => archived.next().map(|_| b),
                (None, None) => None,
            };
            let Some((_, id)) = next else { break };
            ids.push(id);
        }
        let mut deleted = 0;
        for chunk in ids.chunks(super::privacy::DELETE_BATCH) {
            let (a, r) = Self::delete_batch(&t, chunk, None, &|_| true)?;
            deleted += a + r;
        }
        self.sync(&t)?;
        Ok(deleted)
    }
}
