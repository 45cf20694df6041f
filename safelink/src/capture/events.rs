//! Reader of the `EVENTS` ring buffer (tokio `AsyncFd`): ARP events become [`ArpRecord`]s and
//! flow starts [`FlowStartRecord`]s. It forwards in batches of at most [`BATCH`] events, so its
//! memory is bounded whatever the kernel produces; while the detection thread is behind, the
//! ring fills and the kernel counts what it could not add (`events_dropped`).
use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use aya::maps::{MapData, RingBuf};
use safelink_common::{EVENT_ARP, EVENT_FLOW_START, Event};
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::mpsc,
};

use super::to_epoch_ns;
use crate::record::{ArpRecord, FlowStartRecord, Record};

/// Events read from the ring buffer, by kind.
#[derive(Debug, Default)]
pub struct EventCounts {
    pub flow_start: AtomicU64,
    pub arp: AtomicU64,
    pub unknown: AtomicU64,
}

/// Most events read from the ring before they are forwarded.
pub const BATCH: usize = 1024;

/// Decodes one ring-buffer item; `None` for a short item.
pub fn decode(item: &[u8]) -> Option<Event> {
    if item.len() < size_of::<Event>() {
        return None;
    }
    // SAFETY: length checked; Event is plain old data.
    Some(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<Event>()) })
}

/// Reads events until the channel closes.
pub async fn run(
    ring: RingBuf<MapData>,
    epoch_offset_ns: i64,
    counts: Arc<EventCounts>,
    tx: mpsc::Sender<Record>,
) -> anyhow::Result<()> {
    // SAFETY: the AsyncFd owns the RingBuf, which owns the fd, so the fd outlives the
    // registration.
    let mut fd = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }?;
    loop {
        let mut guard = fd.readable_mut().await?;
        let rb = guard.get_inner_mut();
        let mut batch = Vec::with_capacity(BATCH);
        while batch.len() < BATCH
            && let Some(item) = rb.next()
        {
            let Some(ev) = decode(&item) else {
                counts.unknown.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            match ev.kind {
                EVENT_ARP => {
                    counts.arp.fetch_add(1, Ordering::Relaxed);
                    let ts = to_epoch_ns(ev.ts_ns, epoch_offset_ns);
                    batch.push(Record::Arp(ArpRecord::new(
                        ts,
                        ev.key.vlan,
                        &ev.src_mac,
                        &ev.arp,
                    )));
                }
                EVENT_FLOW_START => {
                    counts.flow_start.fetch_add(1, Ordering::Relaxed);
                    let ts = to_epoch_ns(ev.ts_ns, epoch_offset_ns);
                    batch.push(Record::FlowStart(FlowStartRecord::new(
                        ts,
                        &ev.key,
                        &ev.pkt,
                        &ev.src_mac,
                    )));
                }
                _ => {
                    counts.unknown.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        // A full batch leaves the rest in the ring: stay ready and come back for it.
        if batch.len() < BATCH {
            guard.clear_ready();
        }
        for r in batch {
            if tx.send(r).await.is_err() {
                return Ok(());
            }
        }
    }
}
