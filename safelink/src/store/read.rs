//! Reads: one alert by id, filtered newest-first pages over the active alerts (through the
//! most selective index) and over the archive, and the counts shown by `/status`.
use std::net::IpAddr;
use std::ops::Bound;

use time::OffsetDateTime;

use super::keys::{Cursor, SUFFIX_LEN, id_key, ip_prefix, kind_prefix, split_suffix, ts_key};
use super::{META_ACTIVE, META_ARCHIVED, Result, Store, decode, read_u64};
use crate::alert::{Alert, AlertKind, AlertSource};

/// Which alerts a listing returns. Empty filter = all. Time bounds apply to `timestamp`:
/// `since <= timestamp < until`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AlertFilter {
    pub kind: Option<AlertKind>,
    pub source: Option<AlertSource>,
    pub src_ip: Option<IpAddr>,
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
}

impl AlertFilter {
    /// The non-time conditions (time is checked on the index key).
    fn matches(&self, a: &Alert) -> bool {
        self.kind.is_none_or(|k| a.kind == k)
            && self.source.is_none_or(|s| a.source == s)
            && self
                .src_ip
                .is_none_or(|ip| a.src_ip.map(|x| x.to_canonical()) == Some(ip.to_canonical()))
    }
}

/// One page of a newest-first listing. `next_cursor` is `None` on the last page.
#[derive(Clone, Debug, PartialEq)]
pub struct Page {
    pub alerts: Vec<Alert>,
    pub next_cursor: Option<Cursor>,
}

/// Store-wide figures for `/status`.
#[derive(Clone, Debug, PartialEq)]
pub struct Counts {
    /// Alerts not archived.
    pub active: u64,
    pub archived: u64,
    /// `timestamp` of the most recently raised alert, active or archived.
    pub latest_alert: Option<crate::alert::Timestamp>,
}

impl Store {
    /// The active alert `id`, if any.
    pub fn get(&self, id: u64) -> Result<Option<Alert>> {
        let t = self.trees()?;
        t.alerts
            .get(id_key(id))?
            .map(|raw| decode(&raw))
            .transpose()
    }

    /// Active alerts with an id above `after`, lowest id first, at most `limit` (the fleet
    /// publisher tails the store with it).
    pub fn alerts_after(&self, after: u64, limit: usize) -> Result<Vec<Alert>> {
        let t = self.trees()?;
        let Some(start) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        t.alerts
            .range(id_key(start)..)
            .take(limit)
            .map(|r| decode(&r?.1))
            .collect()
    }

    /// The archived alert `id`, if any.
    pub fn get_archived(&self, id: u64) -> Result<Option<Alert>> {
        let t = self.trees()?;
        t.archive
            .get(id_key(id))?
            .map(|raw| decode(&raw))
            .transpose()
    }

    /// Active alerts matching `filter`, newest `timestamp` first (ties: highest id first), at
    /// most `limit`, starting after `cursor`. Scans the source-IP index when the filter names
    /// a source IP, else the kind index when it names a kind, else the time index.
    pub fn query(
        &self,
        filter: &AlertFilter,
        limit: usize,
        cursor: Option<Cursor>,
    ) -> Result<Page> {
        let t = self.trees()?;
        let (index, prefix) = match (filter.src_ip, filter.kind) {
            (Some(ip), _) => (&t.idx_src, ip_prefix(ip)),
            (None, Some(kind)) => (&t.idx_kind, kind_prefix(kind)),
            (None, None) => (&t.idx_time, Vec::new()),
        };
        scan(index, &prefix, &t.alerts, filter, limit, cursor)
    }

    /// Archived alerts, same order, filters and paging as [`Store::query`] (through the
    /// archive's time index).
    pub fn list_archive(
        &self,
        filter: &AlertFilter,
        limit: usize,
        cursor: Option<Cursor>,
    ) -> Result<Page> {
        let t = self.trees()?;
        scan(&t.archive_time, &[], &t.archive, filter, limit, cursor)
    }

    /// Bytes the database takes on disk (sled's own estimate; `/metrics` reports it).
    pub fn size_on_disk(&self) -> Result<u64> {
        let t = self.trees()?;
        Ok(t.db.size_on_disk()?)
    }

    /// [`Store::counts`], or while the store cannot be read because it failed (degraded) the
    /// counts it read last, so that `/status` still answers (and shows the store degraded).
    pub fn counts_or_last(&self) -> Result<Counts> {
        match self.counts() {
            Err(e) if self.note_error(&e) => self
                .shared
                .health
                .last_counts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
                .ok_or(e),
            r => r,
        }
    }

    /// Counts and the latest alert time, without scanning.
    pub fn counts(&self) -> Result<Counts> {
        let counts = self.read_counts()?;
        *self
            .shared
            .health
            .last_counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(counts.clone());
        Ok(counts)
    }

    fn read_counts(&self) -> Result<Counts> {
        let t = self.trees()?;
        let active = read_u64(t.meta.get(META_ACTIVE)?.as_deref())?.unwrap_or(0);
        let archived = read_u64(t.meta.get(META_ARCHIVED)?.as_deref())?.unwrap_or(0);
        let newest = |index: &sled::Tree| -> Result<Option<(u64, u64)>> {
            index.last()?.map(|(k, _)| split_suffix(&k)).transpose()
        };
        let candidates = [
            newest(&t.idx_time)?.map(|k| (k, &t.alerts)),
            newest(&t.archive_time)?.map(|k| (k, &t.archive)),
        ];
        let latest = candidates.into_iter().flatten().max_by_key(|(k, _)| *k);
        let latest_alert = match latest {
            Some(((_, id), tree)) => tree.get(id_key(id))?.map(|raw| decode(&raw)).transpose()?,
            None => None,
        }
        .map(|a| a.timestamp);
        Ok(Counts {
            active,
            archived,
            latest_alert,
        })
    }
}

/// Newest-first walk of `index` entries under `prefix` within the filter's time bounds and
/// before `cursor`, resolving each entry in `data` and keeping those that match. Reads one
/// match past `limit` to know whether there is a next page.
fn scan(
    index: &sled::Tree,
    prefix: &[u8],
    data: &sled::Tree,
    filter: &AlertFilter,
    limit: usize,
    cursor: Option<Cursor>,
) -> Result<Page> {
    let key = |ts: u64, id: u64| -> Vec<u8> {
        let mut k = prefix.to_vec();
        k.extend_from_slice(&ts.to_be_bytes());
        k.extend_from_slice(&id.to_be_bytes());
        k
    };
    // Ids start at 1, so (ts, 0) sorts before every entry at ts.
    let lower = filter
        .since
        .map_or_else(|| prefix.to_vec(), |t| key(ts_key(t), 0));
    let upper = [
        filter.until.map(|t| key(ts_key(t), 0)),
        cursor.map(|c| key(c.ts, c.id)),
    ]
    .into_iter()
    .flatten()
    .min();
    if limit == 0 || upper.as_ref().is_some_and(|u| *u <= lower) {
        return Ok(Page {
            alerts: Vec::new(),
            next_cursor: None,
        });
    }
    let upper = match upper {
        Some(u) => Bound::Excluded(u),
        None => Bound::Included([prefix, &[0xff; SUFFIX_LEN]].concat()),
    };
    let mut alerts = Vec::new();
    let mut last = None;
    for item in index.range((Bound::Included(lower), upper)).rev() {
        let (k, _) = item?;
        if k.len() != prefix.len() + SUFFIX_LEN {
            continue; // a longer prefix sharing ours (cannot happen with the layouts in keys.rs)
        }
        let (ts, id) = split_suffix(&k)?;
        // An entry whose alert moved away between the index read and this get is skipped.
        let Some(raw) = data.get(id_key(id))? else {
            continue;
        };
        let alert = decode(&raw)?;
        if !filter.matches(&alert) {
            continue;
        }
        if alerts.len() == limit {
            let (ts, id) = last.expect("limit > 0");
            return Ok(Page {
                alerts,
                next_cursor: Some(Cursor { ts, id }),
            });
        }
        alerts.push(alert);
        last = Some((ts, id));
    }
    Ok(Page {
        alerts,
        next_cursor: None,
    })
}
