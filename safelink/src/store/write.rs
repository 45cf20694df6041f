//! Writes: insert (assigns the monotonic id), update (count / last_seen and friends) and
//! archive (by ids or by age). Each is one multi-tree sled transaction followed by a flush;
//! the `_deferred` forms leave the flush to [`Store::commit`] (the sink's group commit).
use sled::Transactional;
use sled::transaction::{
    ConflictableTransactionError, ConflictableTransactionResult, TransactionalTree,
};
use time::OffsetDateTime;

use super::keys::{IndexKeys, alert_ts, id_key, split_suffix, suffix, ts_key};
use super::{
    META_ACTIVE, META_ARCHIVED, META_NEXT_ID, Result, Store, StoreError, Trees, decode, encode,
    read_u64,
};
use crate::alert::Alert;

/// Alerts moved per archive transaction (bounds the transaction's write set).
const ARCHIVE_BATCH: usize = 512;

type TxResult<T> = ConflictableTransactionResult<T, StoreError>;

fn abort<T>(e: StoreError) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(e))
}

fn tx_decode(raw: &[u8]) -> TxResult<Alert> {
    decode(raw).or_else(abort)
}

fn tx_encode(alert: &Alert) -> TxResult<Vec<u8>> {
    encode(alert).or_else(abort)
}

fn tx_ts(alert: &Alert) -> TxResult<u64> {
    Ok(alert_ts(alert))
}

/// Adds `delta` to a counter in `meta`.
fn bump(meta: &TransactionalTree, key: &[u8], delta: i64) -> TxResult<()> {
    let current = read_u64(meta.get(key)?.as_deref())
        .or_else(abort)?
        .unwrap_or(0);
    let next = current.saturating_add_signed(delta);
    meta.insert(key, &next.to_be_bytes())?;
    Ok(())
}

/// The three secondary indexes over active alerts, inside a transaction.
struct ActiveIndexes<'a> {
    time: &'a TransactionalTree,
    kind: &'a TransactionalTree,
    src: &'a TransactionalTree,
}

impl ActiveIndexes<'_> {
    fn put(&self, k: &IndexKeys) -> TxResult<()> {
        self.time.insert(k.time.as_slice(), &[])?;
        self.kind.insert(k.kind.as_slice(), &[])?;
        if let Some(src) = &k.src {
            self.src.insert(src.as_slice(), &[])?;
        }
        Ok(())
    }

    fn remove(&self, k: &IndexKeys) -> TxResult<()> {
        self.time.remove(k.time.as_slice())?;
        self.kind.remove(k.kind.as_slice())?;
        if let Some(src) = &k.src {
            self.src.remove(src.as_slice())?;
        }
        Ok(())
    }
}

impl Store {
    /// Stores a new alert and returns its id (monotonic, from 1; the `id` field of the
    /// argument is ignored). Returns after the write is durable.
    pub fn insert(&self, alert: Alert) -> Result<u64> {
        let t = self.trees()?;
        let id = Self::insert_in(&t, alert).inspect_err(|e| {
            self.note_error(e);
        })?;
        self.sync(&t)?;
        Ok(id)
    }

    /// [`Store::insert`] without the flush: the alert is visible at once but durable only
    /// after the next [`Store::commit`] (group commit: many writes, one fsync).
    pub fn insert_deferred(&self, alert: Alert) -> Result<u64> {
        let t = self.trees()?;
        Self::insert_in(&t, alert).inspect_err(|e| {
            self.note_error(e);
        })
    }

    /// Makes every write so far durable (one fsync), e.g. a group of
    /// [`Store::insert_deferred`] and [`Store::update_deferred`].
    pub fn commit(&self) -> Result<()> {
        let t = self.trees()?;
        self.sync(&t)
    }

    fn insert_in(t: &Trees, alert: Alert) -> Result<u64> {
        let ts = alert_ts(&alert);
        let id = (&t.alerts, &t.idx_time, &t.idx_kind, &t.idx_src, &t.meta).transaction(
            |(alerts, time, kind, src, meta)| {
                let id = read_u64(meta.get(META_NEXT_ID)?.as_deref())
                    .or_else(abort)?
                    .unwrap_or(1);
                meta.insert(META_NEXT_ID, &(id + 1).to_be_bytes())?;
                bump(meta, META_ACTIVE, 1)?;
                let mut stored = alert.clone();
                stored.id = id;
                alerts.insert(&id_key(id), tx_encode(&stored)?)?;
                ActiveIndexes { time, kind, src }.put(&IndexKeys::of(&stored, ts, id))?;
                Ok(id)
            },
        )?;
        Ok(id)
    }

    /// Changes alert `id` (active or archived) with `change` — typically `count` and
    /// `last_seen` — and keeps its index entries consistent. `change` may run more than once
    /// (transaction retries), so it must only set fields. The id cannot be changed. Returns
    /// the alert as stored, after the write is durable.
    pub fn update<F: Fn(&mut Alert)>(&self, id: u64, change: F) -> Result<Alert> {
        let t = self.trees()?;
        let stored = Self::update_in(&t, id, change).inspect_err(|e| {
            self.note_error(e);
        })?;
        self.sync(&t)?;
        Ok(stored)
    }

    /// [`Store::update`] without the flush (durable after the next [`Store::commit`]).
    pub fn update_deferred<F: Fn(&mut Alert)>(&self, id: u64, change: F) -> Result<Alert> {
        let t = self.trees()?;
        Self::update_in(&t, id, change).inspect_err(|e| {
            self.note_error(e);
        })
    }

    fn update_in<F: Fn(&mut Alert)>(t: &Trees, id: u64, change: F) -> Result<Alert> {
        let stored = (
            &t.alerts,
            &t.archive,
            &t.idx_time,
            &t.idx_kind,
            &t.idx_src,
            &t.archive_time,
        )
            .transaction(|(alerts, archive, time, kind, src, archive_time)| {
                let key = id_key(id);
                let (tree, archived, raw) = match alerts.get(key)? {
                    Some(raw) => (alerts, false, raw),
                    None => match archive.get(key)? {
                        Some(raw) => (archive, true, raw),
                        None => return abort(StoreError::NotFound(id)),
                    },
                };
                let old = tx_decode(&raw)?;
                let mut new = old.clone();
                change(&mut new);
                new.id = id;
                let (old_ts, new_ts) = (tx_ts(&old)?, tx_ts(&new)?);
                if archived {
                    if old_ts != new_ts {
                        archive_time.remove(&suffix(old_ts, id))?;
                        archive_time.insert(&suffix(new_ts, id), &[])?;
                    }
                } else {
                    let indexes = ActiveIndexes { time, kind, src };
                    indexes.remove(&IndexKeys::of(&old, old_ts, id))?;
                    indexes.put(&IndexKeys::of(&new, new_ts, id))?;
                }
                tree.insert(&key, tx_encode(&new)?)?;
                Ok(new)
            })?;
        Ok(stored)
    }

    /// Moves the given active alerts to the archive; ids that are unknown or already
    /// archived are skipped. Returns how many moved, after the move is durable.
    pub fn archive_ids(&self, ids: &[u64]) -> Result<u64> {
        let t = self.trees()?;
        let mut moved = 0;
        for chunk in ids.chunks(ARCHIVE_BATCH) {
            moved += Self::archive_batch(&t, chunk)?;
        }
        self.sync(&t)?;
        Ok(moved)
    }

    /// Moves every active alert raised (`timestamp`) strictly before `cutoff` to the archive.
    /// Returns how many moved, after the move is durable.
    pub fn archive_older_than(&self, cutoff: OffsetDateTime) -> Result<u64> {
        let t = self.trees()?;
        let end = suffix(ts_key(cutoff), 0);
        let mut moved = 0;
        loop {
            // Re-scan from the start each round: archived entries leave the index.
            let mut ids = Vec::with_capacity(ARCHIVE_BATCH);
            for item in t.idx_time.range(..end.as_slice()).take(ARCHIVE_BATCH) {
                let (key, _) = item?;
                ids.push(split_suffix(&key)?.1);
            }
            if ids.is_empty() {
                break;
            }
            let n = Self::archive_batch(&t, &ids)?;
            moved += n;
            if n == 0 {
                // Index entries without an alert (should not happen): do not loop forever.
                break;
            }
        }
        self.sync(&t)?;
        Ok(moved)
    }

    /// One transaction moving up to [`ARCHIVE_BATCH`] alerts; does not flush.
    fn archive_batch(t: &Trees, ids: &[u64]) -> Result<u64> {
        let moved = (
            &t.alerts,
            &t.archive,
            &t.idx_time,
            &t.idx_kind,
            &t.idx_src,
            &t.archive_time,
            &t.meta,
        )
            .transaction(|(alerts, archive, time, kind, src, archive_time, meta)| {
                let indexes = ActiveIndexes { time, kind, src };
                let mut moved = 0u64;
                for &id in ids {
                    let key = id_key(id);
                    let Some(raw) = alerts.remove(&key)? else {
                        continue;
                    };
                    let alert = tx_decode(&raw)?;
                    let ts = tx_ts(&alert)?;
                    indexes.remove(&IndexKeys::of(&alert, ts, id))?;
                    archive.insert(&key, raw)?;
                    archive_time.insert(&suffix(ts, id), &[])?;
                    moved += 1;
                }
                bump(meta, META_ACTIVE, -(moved as i64))?;
                bump(meta, META_ARCHIVED, moved as i64)?;
                Ok(moved)
            })?;
        Ok(moved)
    }
}
