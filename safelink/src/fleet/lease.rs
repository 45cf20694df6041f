//! One learner at a time: a lease in the lease bucket.
//!
//! [`Lease::acquire`] creates the key only if it is absent (`create`); if another holder's
//! lease has expired, or the key is this holder's own (a restart), it takes it over with a
//! compare-and-swap on the revision it read. [`Lease::renew`] is a compare-and-swap on the
//! revision it holds: if anyone else wrote the key meanwhile, the renewal fails and the lease
//! is lost. The learner renews right before it publishes and stamps the new revision into the
//! manifest, so a learner that lost its lease cannot publish.
use std::time::Duration;

use async_nats::jetstream::kv::{CreateErrorKind, Store};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::names;

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("the lease is held by {holder} until {expires}")]
    Held { holder: String, expires: String },
    #[error("the lease was lost (taken over at revision {0})")]
    Lost(u64),
    #[error("lease bucket: {0}")]
    Nats(String),
}

/// The key's value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeaseValue {
    pub holder: String,
    /// Unix milliseconds.
    pub expires_ms: u64,
}

fn now_ms() -> u64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as u64
}

impl LeaseValue {
    fn new(holder: &str, ttl: Duration) -> Self {
        LeaseValue {
            holder: holder.into(),
            expires_ms: now_ms() + ttl.as_millis() as u64,
        }
    }
    fn expires(&self) -> String {
        OffsetDateTime::from_unix_timestamp_nanos(self.expires_ms as i128 * 1_000_000)
            .map(crate::store::format_rfc3339)
            .unwrap_or_default()
    }
    fn bytes(&self) -> bytes::Bytes {
        serde_json::to_vec(self).expect("lease serialises").into()
    }
}

/// A held lease.
pub struct Lease {
    kv: Store,
    holder: String,
    ttl: Duration,
    revision: u64,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("holder", &self.holder)
            .field("revision", &self.revision)
            .finish()
    }
}

impl Lease {
    /// Takes the lease for `ttl` (module doc), or says who holds it.
    pub async fn acquire(kv: Store, holder: &str, ttl: Duration) -> Result<Lease, LeaseError> {
        let v = LeaseValue::new(holder, ttl);
        let revision = match kv.create(names::LEASE_KEY, v.bytes()).await {
            Ok(r) => r,
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {
                let entry = kv
                    .entry(names::LEASE_KEY)
                    .await
                    .map_err(|e| LeaseError::Nats(e.to_string()))?
                    .ok_or_else(|| LeaseError::Nats("lease key vanished".into()))?;
                let cur: Option<LeaseValue> = serde_json::from_slice(&entry.value).ok();
                let free = match &cur {
                    Some(c) => c.holder == holder || c.expires_ms <= now_ms(),
                    None => true,
                };
                if !free {
                    let c = cur.expect("held lease parsed");
                    return Err(LeaseError::Held {
                        expires: c.expires(),
                        holder: c.holder,
                    });
                }
                kv.update(names::LEASE_KEY, v.bytes(), entry.revision)
                    .await
                    .map_err(|_| LeaseError::Held {
                        holder: "another learner (taken over concurrently)".into(),
                        expires: String::new(),
                    })?
            }
            Err(e) => return Err(LeaseError::Nats(e.to_string())),
        };
        Ok(Lease {
            kv,
            holder: holder.into(),
            ttl,
            revision,
        })
    }

    /// Extends the lease by its ttl; fails if anyone else wrote the key since.
    pub async fn renew(&mut self) -> Result<u64, LeaseError> {
        let v = LeaseValue::new(&self.holder, self.ttl);
        match self
            .kv
            .update(names::LEASE_KEY, v.bytes(), self.revision)
            .await
        {
            Ok(r) => {
                self.revision = r;
                Ok(r)
            }
            Err(e) => {
                let now = self
                    .kv
                    .entry(names::LEASE_KEY)
                    .await
                    .ok()
                    .flatten()
                    .map_or(0, |e| e.revision);
                tracing::warn!(error = %e, "learner lease renewal failed");
                Err(LeaseError::Lost(now))
            }
        }
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }
}
