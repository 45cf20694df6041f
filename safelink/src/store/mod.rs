//! The alert store: durable alerts in sled 0.34 (the stable line; the 1.0 alphas change
//! their on-disk format).
//!
//! Owns the trees `alerts` (id → alert JSON), `archive` (id → alert JSON) and the indexes
//! `idx_time`, `idx_kind`, `idx_src` (over active alerts) and `archive_time` (over the
//! archive), plus `meta` (id counter, counts, layout version). Every write that touches
//! several trees is one sled transaction, and every write returns only after the database is
//! flushed (fsync), so a `kill -9` right after an acknowledged write loses nothing — except
//! the `_deferred` writes, which are durable after the next [`Store::commit`] (the alert
//! sink's group commit: one fsync for many alerts). Writes therefore block for an fsync:
//! call them from `tokio::task::spawn_blocking` in async code. No packet payload is ever
//! stored (an [`Alert`] carries none).
//!
//! Faults: sled 0.34 keeps the first I/O error of its log (a full disk) and fails every later
//! call with it; [`Store::reopen`] opens the database again under every clone, and
//! `health.rs` keeps the store's health (ok / degraded, last error, counters) for `/status`
//! and `/metrics`. `cap.rs` keeps the store under `[store] max_bytes`, oldest alerts first.
//!
//! The continuous learner adds `samples` (id → training sample JSON), `models` (version →
//! version record), `cycles` (id → cycle record) and `learning` (its state), see
//! `learning.rs`. `privacy.rs` deletes by subject and by age (the privacy lifecycle,
//! [`crate::privacy`]).
mod cap;
pub mod config;
mod error;
mod health;
mod keys;
mod learning;
mod privacy;
mod read;
mod write;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

pub use error::StoreError;
pub use health::{HealthState, StoreHealth};
pub use keys::{Cursor, format_rfc3339, parse_rfc3339};
pub use privacy::{AlertTree, TreeCounts, last_evidence};
pub use read::{AlertFilter, Counts, Page};

use crate::alert::Alert;

/// sled's page cache (its default is 1 GiB; alerts are few and small).
const CACHE_BYTES: u64 = 64 * 1024 * 1024;
/// Layout version of the trees below, kept in `meta`.
const LAYOUT_VERSION: u64 = 1;
const META_VERSION: &[u8] = b"layout_version";
const META_NEXT_ID: &[u8] = b"next_id";
const META_ACTIVE: &[u8] = b"active_count";
const META_ARCHIVED: &[u8] = b"archived_count";

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Handle to the alert store. Cheap to clone; all clones share one database and one
/// [`StoreHealth`], and see the database that [`Store::reopen`] puts in place.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

/// What every clone of a [`Store`] shares.
struct Shared {
    dir: PathBuf,
    /// The open database; `None` only while [`Store::reopen`] could not open it again.
    trees: RwLock<Option<Arc<Trees>>>,
    health: health::HealthCell,
}

/// One open sled database and its trees. Methods take a snapshot (`Arc`) for the duration of
/// a call, so a reopen waits for calls in flight.
pub(crate) struct Trees {
    db: sled::Db,
    alerts: sled::Tree,
    archive: sled::Tree,
    idx_time: sled::Tree,
    idx_kind: sled::Tree,
    idx_src: sled::Tree,
    archive_time: sled::Tree,
    meta: sled::Tree,
    samples: sled::Tree,
    models: sled::Tree,
    cycles: sled::Tree,
    learning: sled::Tree,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.shared.dir)
            .finish_non_exhaustive()
    }
}

impl Trees {
    /// Opens the database in `dir` and checks (or writes) its layout version.
    fn open(dir: &Path) -> Result<Trees> {
        let db = open_db(dir)?;
        let t = Trees {
            alerts: db.open_tree("alerts")?,
            archive: db.open_tree("archive")?,
            idx_time: db.open_tree("idx_time")?,
            idx_kind: db.open_tree("idx_kind")?,
            idx_src: db.open_tree("idx_src")?,
            archive_time: db.open_tree("archive_time")?,
            meta: db.open_tree("meta")?,
            samples: db.open_tree("samples")?,
            models: db.open_tree("models")?,
            cycles: db.open_tree("cycles")?,
            learning: db.open_tree("learning")?,
            db,
        };
        match read_u64(t.meta.get(META_VERSION)?.as_deref())? {
            None => {
                t.meta.insert(META_VERSION, &LAYOUT_VERSION.to_be_bytes())?;
                t.db.flush()?;
            }
            Some(v) if v > LAYOUT_VERSION => {
                return Err(StoreError::UnsupportedVersion {
                    found: v,
                    supported: LAYOUT_VERSION,
                });
            }
            Some(_) => {}
        }
        Ok(t)
    }
}

impl Store {
    /// Opens (creating if needed) the store in directory `dir`. Only one process can hold it.
    pub fn open(dir: impl AsRef<Path>) -> Result<Store> {
        let dir = dir.as_ref().to_path_buf();
        let trees = Trees::open(&dir)?;
        Ok(Store {
            shared: Arc::new(Shared {
                dir,
                trees: RwLock::new(Some(Arc::new(trees))),
                health: health::HealthCell::default(),
            }),
        })
    }

    /// The open database, for the duration of one call.
    fn trees(&self) -> Result<Arc<Trees>> {
        self.shared
            .trees
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| StoreError::Unavailable(self.shared.health.last_error_text()))
    }

    /// Makes every write so far durable (one fsync of sled's log); counted in
    /// [`StoreHealth::fsyncs`]. A failure marks the store degraded.
    fn sync(&self, t: &Trees) -> Result<()> {
        self.shared.health.fsync();
        t.db.flush().map(drop).map_err(|e| {
            let e = StoreError::from(e);
            self.note_error(&e);
            e
        })
    }

    /// Closes the database and opens it again from disk. sled 0.34 keeps the first I/O error
    /// of its log (`ENOSPC`, `EIO`) and fails every later read and write with it until the
    /// database is opened again; opening replays the log up to the last complete write, so
    /// everything flushed before the error is there. Waits up to [`LOCK_WAIT`] for calls in
    /// flight on other threads (then gives up, keeping the old database). When opening fails
    /// the store stays closed: every call fails with [`StoreError::Unavailable`] until a later
    /// reopen succeeds.
    pub fn reopen(&self) -> Result<()> {
        let mut slot = self
            .shared
            .trees
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(mut old) = slot.take() {
            let deadline = std::time::Instant::now() + LOCK_WAIT;
            loop {
                match Arc::try_unwrap(old) {
                    // Dropping the last handle closes the database and releases its lock.
                    Ok(trees) => break drop(trees),
                    Err(busy) if std::time::Instant::now() < deadline => {
                        old = busy;
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                    Err(busy) => {
                        *slot = Some(busy);
                        return Err(StoreError::Busy);
                    }
                }
            }
        }
        let trees = Trees::open(&self.shared.dir).inspect_err(|e| {
            self.note_error(e);
        })?;
        *slot = Some(Arc::new(trees));
        Ok(())
    }
}

/// How long [`Store::open`] waits for the database lock: a handle closed a moment ago (sled
/// releases its file lock when its background work ends) or a process that is exiting.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Opens the sled database, waiting up to [`LOCK_WAIT`] for its lock.
fn open_db(dir: &Path) -> Result<sled::Db> {
    let start = std::time::Instant::now();
    loop {
        match sled::Config::new()
            .path(dir)
            .cache_capacity(CACHE_BYTES)
            .open()
        {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && start.elapsed() < LOCK_WAIT =>
            {
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            r => return Ok(r?),
        }
    }
}

/// Decodes a big-endian u64 value (counters in `meta`).
fn read_u64(v: Option<&[u8]>) -> Result<Option<u64>> {
    v.map(|b| {
        <[u8; 8]>::try_from(b)
            .map(u64::from_be_bytes)
            .map_err(|_| StoreError::Corrupt(format!("counter of {} bytes", b.len())))
    })
    .transpose()
}

fn decode(raw: &[u8]) -> Result<Alert> {
    serde_json::from_slice(raw).map_err(|e| StoreError::Corrupt(format!("alert record: {e}")))
}

fn encode(alert: &Alert) -> Result<Vec<u8>> {
    serde_json::to_vec(alert).map_err(|e| StoreError::Corrupt(format!("alert encoding: {e}")))
}
