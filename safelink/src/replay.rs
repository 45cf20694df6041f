//! Offline replay: reads pcap and pcapng files (pcap-file crate) and runs every frame through
//! the same parser and feature code as the XDP program ([`crate::table::FlowTable`]), ending
//! flows with the same expiry policy as the live sweeper, on the capture's clock.
use std::{
    fs::File,
    io::{BufReader, Read},
    path::Path,
    time::Duration,
};

use pcap_file::{
    DataLink,
    pcap::PcapReader,
    pcapng::{Block, PcapNgReader, blocks::interface_description::InterfaceDescriptionOption},
};
use safelink_common::parse::CapturedFrame;
use thiserror::Error;

use crate::{
    config::FlowTimeouts,
    expiry::{EndReason, expired},
    record::{FlowRecord, Record},
    table::{Counters, FlowTable, Observed},
};

#[derive(Debug, Error)]
pub enum ReplayError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a pcap or pcapng file ({reason})")]
    Format { path: String, reason: String },
    #[error("{path}: unsupported link type {link:?} (only Ethernet captures are supported)")]
    LinkType { path: String, link: DataLink },
}

/// How often (capture time) the expiry policy is applied.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Summary of one replay.
#[derive(Clone, Debug, Default)]
pub struct ReplaySummary {
    pub frames: u64,
    pub flows: u64,
    pub arp: u64,
    pub counters: Counters,
    /// Set when the file ended in the middle of a record: frames before it were processed.
    pub truncated: Option<String>,
}

/// Replays one capture file and hands every record to `emit`. `progress` wraps the file reader
/// (for a progress bar); pass `|r| r` for none.
pub fn replay_file(
    path: &Path,
    timeouts: &FlowTimeouts,
    progress: impl FnOnce(Box<dyn Read>, u64) -> Box<dyn Read>,
    mut emit: impl FnMut(Record),
) -> Result<ReplaySummary, ReplayError> {
    let shown = path.display().to_string();
    let file = File::open(path).map_err(|source| ReplayError::Open {
        path: shown.clone(),
        source,
    })?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut reader = BufReader::with_capacity(1 << 20, progress(Box::new(file), size));
    let mut magic = [0u8; 4];
    reader
        .read_exact(&mut magic)
        .map_err(|e| ReplayError::Format {
            path: shown.clone(),
            reason: format!("cannot read the magic number: {e}"),
        })?;
    let reader = std::io::Cursor::new(magic).chain(reader);

    let mut r = Replayer::new(timeouts, &mut emit);
    let truncated = if magic == [0x0a, 0x0d, 0x0d, 0x0a] {
        r.pcapng(reader, &shown)?
    } else {
        r.pcap(reader, &shown)?
    };
    let mut summary = r.finish();
    summary.truncated = truncated;
    Ok(summary)
}

struct Replayer<'a, F: FnMut(Record)> {
    table: FlowTable,
    timeouts: &'a FlowTimeouts,
    emit: &'a mut F,
    next_sweep: u64,
    summary: ReplaySummary,
}

impl<'a, F: FnMut(Record)> Replayer<'a, F> {
    fn new(timeouts: &'a FlowTimeouts, emit: &'a mut F) -> Self {
        Self {
            table: FlowTable::default(),
            timeouts,
            emit,
            next_sweep: 0,
            summary: ReplaySummary::default(),
        }
    }

    fn frame(&mut self, data: &[u8], wire_len: u32, ts_ns: u64) {
        self.summary.frames += 1;
        if ts_ns >= self.next_sweep {
            self.sweep(ts_ns);
            self.next_sweep = ts_ns + SWEEP_EVERY.as_nanos() as u64;
        }
        let frame = CapturedFrame {
            data,
            wire_len: wire_len as usize,
        };
        match self.table.observe(frame, ts_ns) {
            Observed::Nothing => {}
            Observed::FlowStart(f) => (self.emit)(Record::FlowStart(f)),
            Observed::Arp(a) => {
                self.summary.arp += 1;
                (self.emit)(Record::Arp(a));
            }
        }
    }

    fn sweep(&mut self, now_ns: u64) {
        let mut done: Vec<_> = self
            .table
            .flows
            .iter()
            .filter_map(|(k, s)| expired(self.timeouts, s, now_ns).map(|r| (*k, r)))
            .collect();
        done.sort_by_key(|(k, _)| self.table.flows[k].first_ns);
        for (k, reason) in done {
            if let Some(s) = self.table.flows.remove(&k) {
                self.summary.flows += 1;
                (self.emit)(Record::Flow(FlowRecord::new(&k, &s, 0, reason)));
            }
        }
    }

    fn finish(mut self) -> ReplaySummary {
        let mut rest: Vec<_> = self.table.flows.drain().collect();
        rest.sort_by_key(|(k, s)| (s.first_ns, *k));
        for (k, s) in rest {
            self.summary.flows += 1;
            (self.emit)(Record::Flow(FlowRecord::new(&k, &s, 0, EndReason::Flush)));
        }
        self.summary.counters = self.table.counters.clone();
        self.summary
    }

    fn pcap(&mut self, reader: impl Read, path: &str) -> Result<Option<String>, ReplayError> {
        let mut pr = PcapReader::new(reader).map_err(|e| ReplayError::Format {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        let link = pr.header().datalink;
        if link != DataLink::ETHERNET {
            return Err(ReplayError::LinkType {
                path: path.to_owned(),
                link,
            });
        }
        while let Some(p) = pr.next_packet() {
            match p {
                Ok(p) => self.frame(&p.data, p.orig_len, p.timestamp.as_nanos() as u64),
                Err(e) => return Ok(Some(e.to_string())),
            }
        }
        Ok(None)
    }

    fn pcapng(&mut self, reader: impl Read, path: &str) -> Result<Option<String>, ReplayError> {
        let mut pr = PcapNgReader::new(reader).map_err(|e| ReplayError::Format {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        // Per interface: (is Ethernet, timestamp units per second).
        let mut ifaces: Vec<(bool, u64)> = Vec::new();
        while let Some(b) = pr.next_block() {
            let b = match b {
                Ok(b) => b,
                Err(e) => return Ok(Some(e.to_string())),
            };
            match b {
                Block::SectionHeader(_) => ifaces.clear(),
                Block::InterfaceDescription(idb) => {
                    let mut per_sec = 1_000_000u64;
                    for o in &idb.options {
                        if let InterfaceDescriptionOption::IfTsResol(r) = o {
                            per_sec = if r & 0x80 != 0 {
                                1u64.checked_shl(u32::from(r & 0x7f)).unwrap_or(u64::MAX)
                            } else {
                                10u64.checked_pow(u32::from(*r)).unwrap_or(u64::MAX)
                            };
                        }
                    }
                    let eth = idb.linktype == DataLink::ETHERNET;
                    if !eth && ifaces.iter().all(|(e, _)| !e) {
                        tracing::warn!(path, link = ?idb.linktype, "skipping non-Ethernet interface");
                    }
                    ifaces.push((eth, per_sec));
                }
                Block::EnhancedPacket(epb) => {
                    let Some(&(true, per_sec)) = ifaces.get(epb.interface_id as usize) else {
                        continue;
                    };
                    // pcap-file stores the raw 64-bit timestamp as if it were nanoseconds.
                    let raw = epb.timestamp.as_nanos();
                    let ts = (raw * 1_000_000_000 / u128::from(per_sec.max(1))) as u64;
                    self.frame(&epb.data, epb.original_len, ts);
                }
                Block::SimplePacket(spb) => {
                    if let Some(&(true, _)) = ifaces.first() {
                        self.frame(&spb.data, spb.original_len, 0);
                    }
                }
                _ => {}
            }
        }
        if ifaces.is_empty() || ifaces.iter().all(|(e, _)| !e) {
            return Err(ReplayError::LinkType {
                path: path.to_owned(),
                link: DataLink::Unknown(0),
            });
        }
        Ok(None)
    }
}
