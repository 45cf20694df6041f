//! Deletion for the privacy lifecycle: everything about one subject (any predicate over the
//! alert, active and archived), and everything whose last evidence is older than a cutoff
//! (retention). Each batch is one multi-tree transaction that keeps the indexes and the
//! `meta` counts consistent; every call returns after a flush, with the per-tree counts.
use serde::Serialize;
use sled::Transactional;
use time::OffsetDateTime;

use super::keys::{IndexKeys, alert_ts, id_key, split_suffix, suffix, ts_key};
use super::{META_ACTIVE, META_ARCHIVED, Result, Store, StoreError, Trees, decode, read_u64};
use crate::alert::{Alert, Timestamp};

/// Alerts deleted per transaction (bounds the transaction's write set).
pub(super) const DELETE_BATCH: usize = 512;

/// Records per tree (deleted by a call, or stored). `samples` counts the learner's training
/// samples.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TreeCounts {
    pub alerts: u64,
    pub archive: u64,
    pub samples: u64,
}

impl TreeCounts {
    pub fn total(&self) -> u64 {
        self.alerts + self.archive + self.samples
    }

    /// `(tree name, count)` pairs, for logs and metrics labels.
    pub fn per_tree(&self) -> [(&'static str, u64); 3] {
        [
            ("alerts", self.alerts),
            ("archive", self.archive),
            ("samples", self.samples),
        ]
    }
}

/// One of the two alert trees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertTree {
    /// Active alerts (`alerts`).
    Active,
    /// Archived alerts (`archive`).
    Archive,
}

/// When the last evidence of `alert` was seen.
pub fn last_evidence(alert: &Alert) -> OffsetDateTime {
    alert.last_seen.datetime()
}

impl Store {
    /// Deletes every active and archived alert for which `about` is true; it is checked again
    /// inside each transaction, so it may run more than once per alert. Returns the counts per
    /// tree, after the deletion is durable.
    pub fn delete_matching<F: Fn(&Alert) -> bool>(&self, about: F) -> Result<TreeCounts> {
        let t = self.trees()?;
        let mut ids = Vec::new();
        for tree in [&t.alerts, &t.archive] {
            for item in tree.iter() {
                let (key, raw) = item?;
                if about(&decode(&raw)?) {
                    ids.push(id_of(&key)?);
                }
            }
        }
        let mut counts = TreeCounts::default();
        for chunk in ids.chunks(DELETE_BATCH) {
            let (a, r) = Self::delete_batch(&t, chunk, None, &about)?;
            counts.alerts += a;
            counts.archive += r;
        }
        self.sync(&t)?;
        Ok(counts)
    }

    /// Deletes the alerts of `tree` whose last evidence ([`last_evidence`]) is strictly
    /// before `cutoff`. An alert raised before the cutoff but updated since stays. Returns how
    /// many were deleted, after the deletion is durable.
    pub fn delete_older_than(&self, tree: AlertTree, cutoff: OffsetDateTime) -> Result<u64> {
        let t = self.trees()?;
        let (index, data) = match tree {
            AlertTree::Active => (&t.idx_time, &t.alerts),
            AlertTree::Archive => (&t.archive_time, &t.archive),
        };
        let old = |a: &Alert| last_evidence(a) < cutoff;
        // Raised (`timestamp`) before the cutoff is necessary for last evidence before it.
        let end = suffix(ts_key(cutoff), 0);
        let mut ids = Vec::new();
        for item in index.range(..end.as_slice()) {
            let (key, _) = item?;
            let (_, id) = split_suffix(&key)?;
            if let Some(raw) = data.get(id_key(id))?
                && old(&decode(&raw)?)
            {
                ids.push(id);
            }
        }
        let mut deleted = 0;
        for chunk in ids.chunks(DELETE_BATCH) {
            let (a, r) = Self::delete_batch(&t, chunk, Some(tree), &old)?;
            deleted += a + r;
        }
        self.sync(&t)?;
        Ok(deleted)
    }

    /// `timestamp` of the oldest alert in `tree`, if any.
    pub fn oldest(&self, tree: AlertTree) -> Result<Option<Timestamp>> {
        let t = self.trees()?;
        let (index, data) = match tree {
            AlertTree::Active => (&t.idx_time, &t.alerts),
            AlertTree::Archive => (&t.archive_time, &t.archive),
        };
        for item in index.iter() {
            let (key, _) = item?;
            let (_, id) = split_suffix(&key)?;
            if let Some(raw) = data.get(id_key(id))? {
                return Ok(Some(decode(&raw)?.timestamp));
            }
        }
        Ok(None)
    }

    /// Records stored per tree (from the `meta` counts, without scanning).
    pub fn tree_counts(&self) -> Result<TreeCounts> {
        let t = self.trees()?;
        Ok(TreeCounts {
            alerts: read_u64(t.meta.get(META_ACTIVE)?.as_deref())?.unwrap_or(0),
            archive: read_u64(t.meta.get(META_ARCHIVED)?.as_deref())?.unwrap_or(0),
            samples: self.sample_total(),
        })
    }

    /// One transaction deleting those of `ids` (in `only`, or in either alert tree) whose
    /// current record satisfies `pred`; does not flush. Returns (active, archived) deleted.
    pub(super) fn delete_batch<F: Fn(&Alert) -> bool>(
        t: &Trees,
        ids: &[u64],
        only: Option<AlertTree>,
        pred: &F,
    ) -> Result<(u64, u64)> {
        let counts = (
            &t.alerts,
            &t.archive,
            &t.idx_time,
            &t.idx_kind,
            &t.idx_src,
            &t.archive_time,
            &t.meta,
        )
            .transaction(|(alerts, archive, time, kind, src, archive_time, meta)| {
                let (mut active, mut archived) = (0u64, 0u64);
                for &id in ids {
                    let key = id_key(id);
                    if only != Some(AlertTree::Archive)
                        && let Some(raw) = alerts.get(key)?
                    {
                        let alert = tx_decode(&raw)?;
                        if pred(&alert) {
                            let ts = tx_ts(&alert)?;
                            let k = IndexKeys::of(&alert, ts, id);
                            alerts.remove(&key)?;
                            time.remove(k.time.as_slice())?;
                            kind.remove(k.kind.as_slice())?;
                            if let Some(s) = &k.src {
                                src.remove(s.as_slice())?;
                            }
                            active += 1;
                        }
                        continue;
                    }
                    if only != Some(AlertTree::Active)
                        && let Some(raw) = archive.get(key)?
                    {
                        let alert = tx_decode(&raw)?;
                        if pred(&alert) {
                            let ts = tx_ts(&alert)?;
                            archive.remove(&key)?;
                            archive_time.remove(&suffix(ts, id))?;
                            archived += 1;
                        }
                    }
                }
                sub(meta, META_ACTIVE, active)?;
                sub(meta, META_ARCHIVED, archived)?;
                Ok((active, archived))
            })?;
        Ok(counts)
    }
}

type TxResult<T> = sled::transaction::ConflictableTransactionResult<T, StoreError>;

fn tx_abort<T>(e: StoreError) -> TxResult<T> {
    Err(sled::transaction::ConflictableTransactionError::Abort(e))
}

fn tx_decode(raw: &[u8]) -> TxResult<Alert> {
    decode(raw).or_else(tx_abort)
}

fn tx_ts(alert: &Alert) -> TxResult<u64> {
    Ok(alert_ts(alert))
}

/// Subtracts `n` from a counter in `meta` (saturating at 0).
fn sub(meta: &sled::transaction::TransactionalTree, key: &[u8], n: u64) -> TxResult<()> {
    if n == 0 {
        return Ok(());
    }
    let current = read_u64(meta.get(key)?.as_deref())
        .or_else(tx_abort)?
        .unwrap_or(0);
    meta.insert(key, &current.saturating_sub(n).to_be_bytes())?;
    Ok(())
}

/// The id of a data-tree key.
fn id_of(key: &[u8]) -> Result<u64> {
    <[u8; 8]>::try_from(key)
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt(format!("alert key of {} bytes", key.len())))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{alert, assert_consistent, seeded};
    use super::*;
    use crate::alert::AlertKind;
    use crate::store::AlertFilter;

    fn t(s: &str) -> OffsetDateTime {
        crate::store::parse_rfc3339(s).unwrap()
    }

    #[test]
    fn delete_matching_clears_both_trees_and_their_indexes() {
        let (_d, store) = seeded();
        // Ids 1 and 3 (from .2) archived; the others active.
        assert_eq!(store.archive_ids(&[1, 3]).unwrap(), 2);
        let from_2 = |a: &Alert| a.src_ip == Some("198.51.100.2".parse().unwrap());
        assert_eq!(
            store.delete_matching(from_2).unwrap(),
            TreeCounts {
                alerts: 3,
                archive: 2,
                samples: 0
            }
        );
        assert_consistent(&store);
        let c = store.counts().unwrap();
        assert_eq!((c.active, c.archived), (5, 0));
        let filter = AlertFilter {
            kind: Some(AlertKind::SSH_BRUTE_FORCE),
            ..Default::default()
        };
        assert!(store.query(&filter, 10, None).unwrap().alerts.is_empty());
        // A deleted alert cannot be updated back into existence.
        assert!(matches!(
            store.update(5, |a| a.count = 9),
            Err(StoreError::NotFound(5))
        ));
        assert_eq!(
            store.delete_matching(from_2).unwrap(),
            TreeCounts::default()
        );
    }

    #[test]
    fn delete_older_than_uses_the_last_evidence() {
        let (_d, store) = seeded();
        // Alert 2 (raised 12:02) was seen again at 12:30.
        store
            .update(2, |a| {
                a.last_seen = Timestamp::parse("2024-05-01T12:30:00Z").unwrap()
            })
            .unwrap();
        assert_eq!(store.archive_ids(&[1, 4]).unwrap(), 2);
        let cutoff = t("2024-05-01T12:05:00Z");
        // Active raised before 12:05: 2 (kept, seen at 12:30) and 3.
        assert_eq!(
            store.delete_older_than(AlertTree::Active, cutoff).unwrap(),
            1
        );
        assert_eq!(
            store.delete_older_than(AlertTree::Archive, cutoff).unwrap(),
            2
        );
        assert_consistent(&store);
        assert!(store.get(2).unwrap().is_some());
        assert_eq!(
            store.tree_counts().unwrap(),
            TreeCounts {
                alerts: 7,
                archive: 0,
                samples: 0
            }
        );
        assert_eq!(
            store.oldest(AlertTree::Active).unwrap(),
            Some(Timestamp::parse("2024-05-01T12:02:00Z").unwrap())
        );
        let late = alert("2024-05-01T13:00:00Z", AlertKind::PORT_SCAN, "198.51.100.9");
        store.insert(late).unwrap();
        assert_eq!(
            store
                .delete_older_than(AlertTree::Active, t("2030-01-01T00:00:00Z"))
                .unwrap(),
            8
        );
        assert_consistent(&store);
    }
}
