//! The learner's trees: `samples` (id → [`TrainingSample`] JSON, ids monotonic from 1),
//! `models` (version → [`VersionRecord`]), `cycles` (id → [`CycleRecord`]) and `learning`
//! (the [`LearningState`] and the id counters). Like the alert writes, every write is a
//! transaction followed by a flush; [`Store::finish_cycle`] commits a cycle's outcome, its
//! model version and the new learner state together.
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, ConflictableTransactionResult};

use super::keys::id_key;
use super::{Result, Store, StoreError, read_u64};
use crate::learn::history::{CycleRecord, LearningState, VersionRecord};
use crate::learn::sample::{LabelSource, TrainingSample};

const NEXT_SAMPLE: &[u8] = b"next_sample_id";
const NEXT_CYCLE: &[u8] = b"next_cycle_id";
const STATE: &[u8] = b"state";

type TxResult<T> = ConflictableTransactionResult<T, StoreError>;

fn abort<T>(e: StoreError) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(e))
}

fn to_json<T: serde::Serialize>(v: &T, what: &str) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| StoreError::Corrupt(format!("{what} encoding: {e}")))
}

fn from_json<T: serde::de::DeserializeOwned>(raw: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(raw).map_err(|e| StoreError::Corrupt(format!("{what} record: {e}")))
}

fn key_u64(k: &[u8]) -> Result<u64> {
    <[u8; 8]>::try_from(k)
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt(format!("key of {} bytes", k.len())))
}

impl Store {
    /// Appends samples (their `id` is assigned here) and returns the ids given. Durable on
    /// return.
    pub fn insert_samples(&self, samples: &[TrainingSample]) -> Result<Vec<u64>> {
        let t = self.trees()?;
        if samples.is_empty() {
            return Ok(Vec::new());
        }
        let encoded = samples
            .iter()
            .map(|s| to_json(s, "sample"))
            .collect::<Result<Vec<_>>>()?;
        let ids = (&t.samples, &t.learning).transaction(|(tree, learning)| {
            let first = read_u64(learning.get(NEXT_SAMPLE)?.as_deref())
                .or_else(abort)?
                .unwrap_or(1);
            let mut ids = Vec::with_capacity(encoded.len());
            for (i, raw) in encoded.iter().enumerate() {
                let id = first + i as u64;
                // The id is not inside the stored JSON; it is the key.
                tree.insert(&id_key(id), raw.as_slice())?;
                ids.push(id);
            }
            learning.insert(NEXT_SAMPLE, &(first + encoded.len() as u64).to_be_bytes())?;
            Ok(ids)
        })?;
        self.sync(&t)?;
        Ok(ids)
    }

    /// Number of stored samples, and of those with an id above `watermark`.
    pub fn sample_counts(&self, watermark: u64) -> Result<(u64, u64)> {
        let t = self.trees()?;
        let total = t.samples.len() as u64;
        let new = t
            .samples
            .range(id_key(watermark.saturating_add(1))..)
            .count() as u64;
        Ok((total, new))
    }

    fn decode_sample(k: &[u8], v: &[u8]) -> Result<TrainingSample> {
        let mut s: TrainingSample = from_json(v, "sample")?;
        s.id = key_u64(k)?;
        Ok(s)
    }

    /// Decodes a sample row; a row that does not decode (damaged, or written by a newer
    /// version) is skipped with a warning rather than stopping every scan.
    fn sample_or_skip(k: &[u8], v: &[u8]) -> Option<TrainingSample> {
        match Self::decode_sample(k, v) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "skipping an undecodable training sample");
                None
            }
        }
    }

    /// Samples with an id above `watermark`, oldest first.
    pub fn samples_after(&self, watermark: u64) -> Result<Vec<TrainingSample>> {
        let t = self.trees()?;
        let mut out = Vec::new();
        for kv in t.samples.range(id_key(watermark.saturating_add(1))..) {
            let (k, v) = kv?;
            out.extend(Self::sample_or_skip(&k, &v));
        }
        Ok(out)
    }

    /// Up to `limit` samples with an id at most `upto` for which `keep` holds, newest first.
    pub fn samples_upto(
        &self,
        upto: u64,
        limit: usize,
        keep: impl Fn(u64) -> bool,
    ) -> Result<Vec<TrainingSample>> {
        let t = self.trees()?;
        let mut out = Vec::new();
        for kv in t.samples.range(..=id_key(upto)).rev() {
            if out.len() >= limit {
                break;
            }
            let (k, v) = kv?;
            if key_u64(&k).is_ok_and(&keep) {
                out.extend(Self::sample_or_skip(&k, &v));
            }
        }
        Ok(out)
    }

    /// Rewrites the samples with an id above `watermark` for which `pick` returns true (it
    /// changes them in place); used when a rule alert arrives after its flows were labelled by
    /// the ANN. Returns how many changed.
    pub fn relabel_samples<F>(&self, watermark: u64, pick: F) -> Result<u64>
    where
        F: Fn(&mut TrainingSample) -> bool,
    {
        let t = self.trees()?;
        let mut changed = 0;
        for kv in t.samples.range(id_key(watermark.saturating_add(1))..) {
            let (k, v) = kv?;
            let Some(mut s) = Self::sample_or_skip(&k, &v) else {
                continue;
            };
            if pick(&mut s) {
                // Only if the row is unchanged since it was read: a sample deleted meanwhile
                // (forget, retention, pruning) stays deleted.
                if t.samples
                    .compare_and_swap(&k, Some(&v), Some(to_json(&s, "sample")?))?
                    .is_ok()
                {
                    changed += 1;
                }
            }
        }
        if changed > 0 {
            self.sync(&t)?;
        }
        Ok(changed)
    }

    /// Deletes every sample for which `pred` holds (privacy: a subject's samples); returns how
    /// many went, after the deletion is durable.
    pub fn delete_samples_matching<F: Fn(&TrainingSample) -> bool>(&self, pred: F) -> Result<u64> {
        let t = self.trees()?;
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for kv in t.samples.iter() {
            let (k, v) = kv?;
            if Self::sample_or_skip(&k, &v).is_some_and(|s| pred(&s)) {
                batch.remove(k);
                n += 1;
            }
        }
        if n > 0 {
            t.samples.apply_batch(batch)?;
            self.sync(&t)?;
        }
        Ok(n)
    }

    /// Deletes the samples whose flow ended before `cutoff_ns` (Unix ns; retention).
    pub fn delete_samples_older_than(&self, cutoff_ns: u64) -> Result<u64> {
        self.delete_samples_matching(|s| s.ts_ns < cutoff_ns)
    }

    /// Time of the oldest sample's flow (RFC 3339), if any.
    pub fn oldest_sample(&self) -> Result<Option<String>> {
        let t = self.trees()?;
        let mut oldest: Option<u64> = None;
        for kv in t.samples.iter() {
            let (k, v) = kv?;
            if let Some(t) = Self::sample_or_skip(&k, &v).map(|s| s.ts_ns) {
                oldest = Some(oldest.map_or(t, |o| o.min(t)));
            }
        }
        Ok(oldest.and_then(|ns| {
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns))
                .ok()
                .map(super::format_rfc3339)
        }))
    }

    /// Number of stored samples (0 while the store is unavailable).
    pub fn sample_total(&self) -> u64 {
        self.trees().map_or(0, |t| t.samples.len() as u64)
    }

    /// Deletes the oldest automatic samples beyond `keep`; returns how many went. Operator
    /// verdicts are never pruned (only privacy deletion and retention remove them), and count
    /// towards `keep`.
    pub fn prune_samples(&self, keep: usize) -> Result<u64> {
        let t = self.trees()?;
        let mut excess = t.samples.len().saturating_sub(keep);
        if excess == 0 {
            return Ok(0);
        }
        let mut batch = sled::Batch::default();
        let mut n = 0u64;
        for kv in t.samples.iter() {
            if excess == 0 {
                break;
            }
            let (k, v) = kv?;
            if Self::sample_or_skip(&k, &v).is_some_and(|s| !s.source.is_automatic()) {
                continue;
            }
            batch.remove(k);
            excess -= 1;
            n += 1;
        }
        if n > 0 {
            t.samples.apply_batch(batch)?;
            self.sync(&t)?;
        }
        Ok(n)
    }

    /// Every stored sample whose label source is one of `sources`, oldest first.
    pub fn samples_from(&self, sources: &[LabelSource]) -> Result<Vec<TrainingSample>> {
        let t = self.trees()?;
        let mut out = Vec::new();
        for kv in t.samples.iter() {
            let (k, v) = kv?;
            if let Some(s) = Self::sample_or_skip(&k, &v).filter(|s| sources.contains(&s.source)) {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// The learner's state (default when never written).
    pub fn learning_state(&self) -> Result<LearningState> {
        let t = self.trees()?;
        match t.learning.get(STATE)? {
            Some(raw) => from_json(&raw, "learning state"),
            None => Ok(LearningState::default()),
        }
    }

    pub fn put_learning_state(&self, st: &LearningState) -> Result<()> {
        let t = self.trees()?;
        t.learning.insert(STATE, to_json(st, "learning state")?)?;
        self.sync(&t)
    }

    /// Records a new cycle (its `id` is assigned here) and returns the id.
    pub fn begin_cycle(&self, rec: &CycleRecord) -> Result<u64> {
        let t = self.trees()?;
        let id = (&t.cycles, &t.learning).transaction(|(cycles, learning)| {
            let id = read_u64(learning.get(NEXT_CYCLE)?.as_deref())
                .or_else(abort)?
                .unwrap_or(1);
            learning.insert(NEXT_CYCLE, &(id + 1).to_be_bytes())?;
            let mut r = rec.clone();
            r.id = id;
            cycles.insert(&id_key(id), to_json(&r, "cycle").or_else(abort)?)?;
            Ok(id)
        })?;
        self.sync(&t)?;
        Ok(id)
    }

    /// Commits a cycle's end: its record, the version it produced (if any) and the new
    /// learner state, in one transaction.
    pub fn finish_cycle(
        &self,
        rec: &CycleRecord,
        version: Option<&VersionRecord>,
        state: &LearningState,
    ) -> Result<()> {
        let t = self.trees()?;
        let c = to_json(rec, "cycle")?;
        let v = version
            .map(|v| to_json(v, "version").map(|raw| (v.version, raw)))
            .transpose()?;
        let s = to_json(state, "learning state")?;
        (&t.cycles, &t.models, &t.learning).transaction(|(cycles, models, learning)| {
            cycles.insert(&id_key(rec.id), c.as_slice())?;
            if let Some((ver, raw)) = &v {
                models.insert(&id_key(*ver), raw.as_slice())?;
            }
            learning.insert(STATE, s.as_slice())?;
            Ok(())
        })?;
        self.sync(&t)
    }

    /// Writes a version record and the learner state together (base registration, manual
    /// activation).
    pub fn put_version(&self, v: &VersionRecord, state: &LearningState) -> Result<()> {
        let t = self.trees()?;
        let raw = to_json(v, "version")?;
        let s = to_json(state, "learning state")?;
        (&t.models, &t.learning).transaction(|(models, learning)| {
            models.insert(&id_key(v.version), raw.as_slice())?;
            learning.insert(STATE, s.as_slice())?;
            Ok(())
        })?;
        self.sync(&t)
    }

    /// Every version, oldest first.
    pub fn versions(&self) -> Result<Vec<VersionRecord>> {
        let t = self.trees()?;
        t.models
            .iter()
            .map(|kv| from_json(&kv?.1, "version"))
            .collect()
    }

    pub fn version(&self, v: u64) -> Result<Option<VersionRecord>> {
        let t = self.trees()?;
        t.models
            .get(id_key(v))?
            .map(|raw| from_json(&raw, "version"))
            .transpose()
    }

    /// Removes version records (their files are gone).
    pub fn remove_versions(&self, versions: &[u64]) -> Result<()> {
        let t = self.trees()?;
        for v in versions {
            t.models.remove(id_key(*v))?;
        }
        self.sync(&t)
    }

    /// The total number of cycles and the newest `limit`, newest first.
    pub fn cycles(&self, limit: usize) -> Result<(u64, Vec<CycleRecord>)> {
        let t = self.trees()?;
        let total = t.cycles.len() as u64;
        let list = t
            .cycles
            .iter()
            .rev()
            .take(limit)
            .map(|kv| from_json(&kv?.1, "cycle"))
            .collect::<Result<Vec<_>>>()?;
        Ok((total, list))
    }

    /// Cycles still marked running (interrupted by a crash when seen at start-up).
    pub fn running_cycles(&self) -> Result<Vec<CycleRecord>> {
        let t = self.trees()?;
        t.cycles
            .iter()
            .map(|kv| from_json::<CycleRecord>(&kv?.1, "cycle"))
            .filter(|r| {
                r.as_ref().map_or(true, |c| {
                    c.outcome == crate::learn::history::Outcome::Running
                })
            })
            .collect()
    }

    /// Overwrites one cycle record.
    pub fn put_cycle(&self, rec: &CycleRecord) -> Result<()> {
        let t = self.trees()?;
        t.cycles.insert(id_key(rec.id), to_json(rec, "cycle")?)?;
        self.sync(&t)
    }
}
