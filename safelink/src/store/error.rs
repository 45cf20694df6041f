//! Typed errors of the alert store.
use sled::transaction::TransactionError;

/// Everything that can go wrong in [`super::Store`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The underlying sled database failed (I/O, corruption detected by sled, lock held by
    /// another process...).
    #[error("alert store (sled): {0}")]
    Sled(#[from] sled::Error),
    /// No alert with this id (neither active nor archived).
    #[error("alert {0} not found")]
    NotFound(u64),
    /// A cursor string that this store did not hand out.
    #[error("bad cursor {0:?}: expected the next_cursor value of a previous page")]
    BadCursor(String),
    /// A record or index entry that does not decode (written by a newer version or damaged).
    #[error("alert store holds a corrupt record: {0}")]
    Corrupt(String),
    /// The database was written by a newer, incompatible store layout.
    #[error(
        "alert store layout version {found} is newer than this build understands ({supported})"
    )]
    UnsupportedVersion { found: u64, supported: u64 },
    /// The database is closed: reopening it after a storage failure did not succeed yet
    /// (the last failure follows).
    #[error("alert store unavailable (reopening after: {0})")]
    Unavailable(String),
    /// A reopen gave up waiting for calls in flight on other threads.
    #[error("alert store busy: calls in flight did not finish, not reopened")]
    Busy,
}

impl From<TransactionError<StoreError>> for StoreError {
    fn from(e: TransactionError<StoreError>) -> Self {
        match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => StoreError::Sled(e),
        }
    }
}
