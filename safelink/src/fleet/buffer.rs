//! The sensor's outbox: a bounded queue on disk (sled, its own database under
//! `<data_dir>/fleet/buffer`) between the store tailer and the JetStream publisher.
//!
//! Everything that must survive a restart moves together in one atomic sled batch: queued
//! messages, the tail cursors (last sample and alert id taken from the store), and the
//! counters (dropped, published). So a restart neither loses nor re-queues a message, and the
//! drop counters are exact: a message is either queued (and later published) or counted as
//! dropped, never both, never neither. When the queue holds `max` messages, new ones are
//! dropped (the oldest stay: they are what the server is missing first).
use std::path::Path;

use serde::Serialize;

/// What a queued message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Samples,
    Alerts,
}

impl Kind {
    fn tag(self) -> u8 {
        match self {
            Kind::Samples => b's',
            Kind::Alerts => b'a',
        }
    }
    fn from_tag(t: u8) -> Option<Kind> {
        match t {
            b's' => Some(Kind::Samples),
            b'a' => Some(Kind::Alerts),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Samples => "samples",
            Kind::Alerts => "alerts",
        }
    }
}

/// One queued message; `seq` is unique per sensor for ever (its `Nats-Msg-Id`).
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    pub seq: u64,
    pub kind: Kind,
    pub payload: Vec<u8>,
}

/// Persistent counters of the buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub queued: u64,
    pub dropped_samples: u64,
    pub dropped_alerts: u64,
    pub published_samples: u64,
    pub published_alerts: u64,
    pub sample_cursor: u64,
    pub alert_cursor: u64,
}

const NEXT_SEQ: &[u8] = b"m/next_seq";
const DROPPED_S: &[u8] = b"m/dropped_samples";
const DROPPED_A: &[u8] = b"m/dropped_alerts";
const PUB_S: &[u8] = b"m/published_samples";
const PUB_A: &[u8] = b"m/published_alerts";
const CUR_S: &[u8] = b"m/cursor_samples";
const CUR_A: &[u8] = b"m/cursor_alerts";

fn qkey(seq: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = b'q';
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// The outbox.
pub struct Buffer {
    tree: sled::Db,
    max: u64,
    c: Counters,
    next_seq: u64,
}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buffer").field("counters", &self.c).finish()
    }
}

impl Buffer {
    /// Opens (or creates) the buffer in `dir`, holding at most `max` messages.
    pub fn open(dir: &Path, max: u64) -> Result<Buffer, sled::Error> {
        let tree = sled::Config::new().path(dir).open()?;
        let get = |k: &[u8]| -> Result<u64, sled::Error> {
            Ok(tree
                .get(k)?
                .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
                .map_or(0, u64::from_be_bytes))
        };
        let queued = tree.scan_prefix(b"q").count() as u64;
        let c = Counters {
            queued,
            dropped_samples: get(DROPPED_S)?,
            dropped_alerts: get(DROPPED_A)?,
            published_samples: get(PUB_S)?,
            published_alerts: get(PUB_A)?,
            sample_cursor: get(CUR_S)?,
            alert_cursor: get(CUR_A)?,
        };
        let next_seq = get(NEXT_SEQ)?.max(1);
        Ok(Buffer {
            tree,
            max: max.max(1),
            c,
            next_seq,
        })
    }

    pub fn counters(&self) -> Counters {
        self.c
    }

    /// Queues `payloads` of `kind` and moves that kind's tail cursor to `cursor`, atomically.
    /// Returns how many were dropped because the buffer was full.
    pub fn push(
        &mut self,
        kind: Kind,
        payloads: Vec<Vec<u8>>,
        cursor: u64,
    ) -> Result<u64, sled::Error> {
        let mut batch = sled::Batch::default();
        let room = self.max.saturating_sub(self.c.queued);
        let n = payloads.len() as u64;
        let take = n.min(room);
        let dropped = n - take;
        let mut seq = self.next_seq;
        for p in payloads.into_iter().take(take as usize) {
            let mut v = Vec::with_capacity(p.len() + 1);
            v.push(kind.tag());
            v.extend_from_slice(&p);
            batch.insert(&qkey(seq), v);
            seq += 1;
        }
        let mut c = self.c;
        c.queued += take;
        match kind {
            Kind::Samples => {
                c.dropped_samples += dropped;
                c.sample_cursor = cursor;
            }
            Kind::Alerts => {
                c.dropped_alerts += dropped;
                c.alert_cursor = cursor;
            }
        }
        batch.insert(NEXT_SEQ, &seq.to_be_bytes());
        batch.insert(DROPPED_S, &c.dropped_samples.to_be_bytes());
        batch.insert(DROPPED_A, &c.dropped_alerts.to_be_bytes());
        batch.insert(CUR_S, &c.sample_cursor.to_be_bytes());
        batch.insert(CUR_A, &c.alert_cursor.to_be_bytes());
        self.tree.apply_batch(batch)?;
        self.tree.flush()?;
        self.c = c;
        self.next_seq = seq;
        Ok(dropped)
    }

    /// The oldest `n` queued messages.
    pub fn head(&self, n: usize) -> Result<Vec<Item>, sled::Error> {
        let mut out = Vec::new();
        for r in self.tree.scan_prefix(b"q").take(n) {
            let (k, v) = r?;
            let seq = u64::from_be_bytes(k[1..9].try_into().expect("9-byte key"));
            let Some((&t, payload)) = v.split_first() else {
                continue;
            };
            let Some(kind) = Kind::from_tag(t) else {
                continue;
            };
            out.push(Item {
                seq,
                kind,
                payload: payload.to_vec(),
            });
        }
        Ok(out)
    }

    /// Removes `items` (the server acknowledged them) and counts them as published.
    pub fn ack(&mut self, items: &[Item]) -> Result<(), sled::Error> {
        if items.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        let mut c = self.c;
        for it in items {
            batch.remove(&qkey(it.seq));
            match it.kind {
                Kind::Samples => c.published_samples += 1,
                Kind::Alerts => c.published_alerts += 1,
            }
        }
        c.queued -= items.len() as u64;
        batch.insert(PUB_S, &c.published_samples.to_be_bytes());
        batch.insert(PUB_A, &c.published_alerts.to_be_bytes());
        self.tree.apply_batch(batch)?;
        self.c = c;
        Ok(())
    }

    pub fn flush(&self) -> Result<(), sled::Error> {
        self.tree.flush().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_exact_and_durable() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut b = Buffer::open(dir.path(), 5).unwrap();
            let d = b
                .push(Kind::Samples, (0..4).map(|i| vec![i]).collect(), 40)
                .unwrap();
            assert_eq!(d, 0);
            let d = b
                .push(Kind::Alerts, (0..3).map(|i| vec![10 + i]).collect(), 7)
                .unwrap();
            assert_eq!(d, 2, "room for one alert");
            let head = b.head(2).unwrap();
            assert_eq!(head.iter().map(|i| i.seq).collect::<Vec<_>>(), [1, 2]);
            b.ack(&head).unwrap();
        }
        let b = Buffer::open(dir.path(), 5).unwrap();
        let c = b.counters();
        assert_eq!(
            c,
            Counters {
                queued: 3,
                dropped_samples: 0,
                dropped_alerts: 2,
                published_samples: 2,
                published_alerts: 0,
                sample_cursor: 40,
                alert_cursor: 7,
            }
        );
        let head = b.head(10).unwrap();
        assert_eq!(head.iter().map(|i| i.seq).collect::<Vec<_>>(), [3, 4, 5]);
        assert_eq!(head[2].kind, Kind::Alerts);
        assert_eq!(head[2].payload, vec![10]);
    }
}
