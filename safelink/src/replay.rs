//! Offline replay: reads pcap and pcapng files (pcap-file crate) and runs every frame through
//! the same parser and feature code as the XDP program ([`crate::table::FlowTable`]), ending
//! flows with the same expiry policy as the live sweeper, on the capture's clock.
//!
//! The capture's clock is a [`RecordClock`] over frame timestamps: a frame stamped far from
//! the frames around it (ahead or behind by more than [`crate::clock::PLAUSIBLE_STEP_NS`]) is
//! held back until the next frame decides it; a lone outlier is replayed at the current time
//! (so one `u32::MAX`-second frame cannot end every flow and empty every window), a jump the
//! next frame confirms (a capture gap, a clock step) is followed. The flow table is bounded by
//! [`FlowTimeouts::max_flows`]: when full, the longest-idle sixteenth of the flows is exported
//! as [`EndReason::Evicted`] records, so no packet goes uncounted. The outer flows of tunnels
//! are swept, bounded and flushed the same way, as [`Record::OuterFlow`] records after the
//! flows of each sweep.
use std::{fs::File, path::Path, time::Duration};

use memmap2::Mmap;
use pcap_file::{
    DataLink, Endianness, TsResolution,
    pcap::PcapParser,
    pcapng::{PcapNgParser, blocks::interface_description::InterfaceDescriptionOption},
};

/// pcapng block types (pcapng spec, section 11.1).
const SECTION_HEADER: u32 = 0x0A0D_0D0A;
const INTERFACE_DESCRIPTION: u32 = 1;
const SIMPLE_PACKET: u32 = 3;
const ENHANCED_PACKET: u32 = 6;
use safelink_common::parse::CapturedFrame;
use thiserror::Error;

use crate::{
    clock::{ClockStats, Follow, RecordClock},
    config::FlowTimeouts,
    expiry::{EndReason, Interim, expired, outer_expired},
    record::{FlowRecord, OuterFlowRecord, Record},
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
    /// Outer-flow records of tunnels.
    pub outer_flows: u64,
    pub arp: u64,
    pub counters: Counters,
    /// Flow records ended because the table was full ([`EndReason::Evicted`]).
    pub evicted: u64,
    /// Frame timestamps that were lone outliers, and confirmed far jumps.
    pub clock: ClockStats,
    /// Set when the file ended in the middle of a record: frames before it were processed.
    pub truncated: Option<String>,
}

/// Replays one capture file and hands every record to `emit`. The file is memory-mapped and
/// parsed in place (no copies). `progress(done, total)` is called with byte offsets every few
/// thousand frames (for a progress bar); pass `|_, _| {}` for none.
pub fn replay_file(
    path: &Path,
    timeouts: &FlowTimeouts,
    progress: impl FnMut(u64, u64),
    emit: impl FnMut(Record),
) -> Result<ReplaySummary, ReplayError> {
    let shown = path.display().to_string();
    let file = File::open(path).map_err(|source| ReplayError::Open {
        path: shown.clone(),
        source,
    })?;
    // SAFETY: mapped read-only; SafeLink never writes capture files. A capture truncated by
    // another process while we read it can still fault, as with any mmap reader.
    let map = unsafe { Mmap::map(&file) }.map_err(|source| ReplayError::Open {
        path: shown.clone(),
        source,
    })?;
    replay_bytes(&map, &shown, timeouts, progress, emit)
}

/// Replays a capture held in memory (pcap or pcapng, told apart by its first bytes); `name`
/// names it in errors. [`replay_file`] maps the file and calls this; the fuzzer calls it
/// directly.
pub fn replay_bytes(
    data: &[u8],
    name: &str,
    timeouts: &FlowTimeouts,
    progress: impl FnMut(u64, u64),
    mut emit: impl FnMut(Record),
) -> Result<ReplaySummary, ReplayError> {
    if data.len() < 4 {
        return Err(ReplayError::Format {
            path: name.to_owned(),
            reason: format!("only {} bytes", data.len()),
        });
    }
    let mut r = Replayer::new(timeouts, &mut emit, progress, data.len() as u64);
    let truncated = if data[..4] == [0x0a, 0x0d, 0x0d, 0x0a] {
        r.pcapng(data, name)?
    } else {
        r.pcap(data, name)?
    };
    let mut summary = r.finish();
    summary.truncated = truncated;
    Ok(summary)
}

/// Frames between two progress callbacks.
const PROGRESS_EVERY: u64 = 8192;

struct Replayer<'a, F: FnMut(Record), P: FnMut(u64, u64)> {
    table: FlowTable,
    timeouts: &'a FlowTimeouts,
    emit: &'a mut F,
    progress: P,
    total: u64,
    next_sweep: u64,
    interim: Interim,
    summary: ReplaySummary,
    clock: RecordClock,
    /// A frame whose far timestamp waits for the next frame's (its bytes and wire length).
    held: Option<(Vec<u8>, u32)>,
}

impl<'a, F: FnMut(Record), P: FnMut(u64, u64)> Replayer<'a, F, P> {
    fn new(timeouts: &'a FlowTimeouts, emit: &'a mut F, progress: P, total: u64) -> Self {
        Self {
            table: FlowTable::with_tunnels(timeouts.tunnels),
            timeouts,
            emit,
            progress,
            total,
            next_sweep: 0,
            interim: Interim::default(),
            summary: ReplaySummary::default(),
            clock: RecordClock::new(Follow::Both),
            held: None,
        }
    }

    fn tick(&mut self, remaining: usize) {
        if self.summary.frames.is_multiple_of(PROGRESS_EVERY) {
            (self.progress)(self.total - remaining as u64, self.total);
        }
    }

    /// One frame as read: through the clock, then replayed (or held; see the module doc).
    fn frame(&mut self, data: &[u8], wire_len: u32, ts_ns: u64) {
        self.summary.frames += 1;
        let steps = self.clock.stats().steps;
        let seen = self.clock.observe(ts_ns);
        if self.clock.stats().steps != steps {
            // Time jumped (possibly backward): sweep at the next frame.
            self.next_sweep = 0;
        }
        if let Some(t) = seen.released {
            self.release(t);
        }
        match seen.ts {
            Some(t) => self.replay(data, wire_len, t),
            None => self.held = Some((data.to_vec(), wire_len)),
        }
    }

    /// Replays the held frame at `ts_ns` (its own time, or the clock's for an outlier).
    fn release(&mut self, ts_ns: u64) {
        if let Some((data, wire_len)) = self.held.take() {
            self.replay(&data, wire_len, ts_ns);
        }
    }

    fn replay(&mut self, data: &[u8], wire_len: u32, ts_ns: u64) {
        if ts_ns >= self.next_sweep {
            self.sweep(ts_ns);
            // Saturating: a timestamp near u64::MAX ns (a pcapng EPB says what it likes) must not
            // wrap to a sweep on every later frame (found by the `capture` fuzz target).
            self.next_sweep = ts_ns.saturating_add(SWEEP_EVERY.as_nanos() as u64);
        }
        if self.table.len() >= self.timeouts.max_flows {
            self.evict();
        }
        if self.table.outer_len() >= self.timeouts.max_flows {
            self.evict_outer();
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
        let mut done = Vec::new();
        let mut running = Vec::new();
        self.interim.begin_sweep();
        for (k, s) in self.table.iter() {
            match expired(self.timeouts, k, s, now_ns) {
                Some(r) => done.push((*k, s.first_ns, r)),
                None if self.interim.due(self.timeouts, k, s) => {
                    running.push((*k, s.first_ns));
                }
                None => {}
            }
        }
        self.interim.end_sweep();
        done.sort_by_key(|(k, first, _)| (*first, *k));
        running.sort_by_key(|(k, first)| (*first, *k));
        for (k, _, reason) in done {
            if let Some(s) = self.table.remove(&k) {
                self.summary.flows += 1;
                (self.emit)(Record::Flow(FlowRecord::new(&k, &s, 0, reason)));
            }
        }
        for (k, _) in running {
            if let Some(s) = self.table.get(&k) {
                let update = FlowRecord::new(&k, s, 0, EndReason::Open);
                (self.emit)(Record::FlowUpdate(update));
            }
        }
        let mut outer: Vec<_> = self
            .table
            .outer_iter()
            .filter_map(|(k, s)| outer_expired(self.timeouts, s, now_ns).map(|r| (*k, r)))
            .collect();
        outer.sort_by_key(|(k, _)| *k);
        for (k, reason) in outer {
            if let Some(s) = self.table.outer_remove(&k) {
                self.emit_outer(&k, &s, reason);
            }
        }
    }

    fn emit_outer(
        &mut self,
        k: &safelink_common::TunnelKey,
        s: &safelink_common::OuterStats,
        reason: EndReason,
    ) {
        if let Some(r) = OuterFlowRecord::new(k, s, 0, reason) {
            self.summary.outer_flows += 1;
            (self.emit)(Record::OuterFlow(r));
        }
    }

    /// The outer-flow table is full (`max_flows` tunnels, a capture of forged outer
    /// addresses): exports its longest-idle sixteenth as [`EndReason::Evicted`], as
    /// [`Self::evict`] does for flows.
    fn evict_outer(&mut self) {
        let n = (self.timeouts.max_flows / 16)
            .max(1)
            .min(self.table.outer_len());
        let mut by_idle: Vec<_> = self
            .table
            .outer_iter()
            .map(|(k, s)| (s.last_ns, *k))
            .collect();
        if n < by_idle.len() {
            by_idle.select_nth_unstable(n - 1);
            by_idle.truncate(n);
        }
        by_idle.sort();
        for (_, k) in by_idle {
            if let Some(s) = self.table.outer_remove(&k) {
                self.emit_outer(&k, &s, EndReason::Evicted);
            }
        }
    }

    /// The table is full: exports the longest-idle sixteenth of its flows (at least one; by
    /// last packet time, then key), oldest first. O(flows) once per `max_flows / 16` new
    /// flows: amortised O(1) per flow.
    fn evict(&mut self) {
        let n = (self.timeouts.max_flows / 16).max(1).min(self.table.len());
        let mut by_idle: Vec<(u64, safelink_common::FlowKey)> =
            self.table.iter().map(|(k, s)| (s.last_ns, *k)).collect();
        if n < by_idle.len() {
            by_idle.select_nth_unstable(n - 1);
            by_idle.truncate(n);
        }
        let mut out: Vec<_> = by_idle
            .into_iter()
            .filter_map(|(_, k)| self.table.remove(&k).map(|s| (k, s)))
            .collect();
        out.sort_by_key(|(k, s)| (s.first_ns, *k));
        tracing::debug!(
            flows = out.len(),
            max = self.timeouts.max_flows,
            "flow table full"
        );
        for (k, s) in out {
            self.summary.flows += 1;
            self.summary.evicted += 1;
            (self.emit)(Record::Flow(FlowRecord::new(&k, &s, 0, EndReason::Evicted)));
        }
    }

    fn finish(mut self) -> ReplaySummary {
        if let Some(t) = self.clock.finish() {
            self.release(t);
        }
        self.summary.clock = self.clock.stats();
        let mut rest = self.table.drain();
        rest.sort_by_key(|(k, s)| (s.first_ns, *k));
        for (k, s) in rest {
            self.summary.flows += 1;
            (self.emit)(Record::Flow(FlowRecord::new(&k, &s, 0, EndReason::Flush)));
        }
        let mut outer = self.table.outer_drain();
        outer.sort_by_key(|(k, s)| (s.first_ns, *k));
        for (k, s) in outer {
            self.emit_outer(&k, &s, EndReason::Flush);
        }
        self.summary.counters = self.table.counters.clone();
        self.summary
    }

    fn pcap(&mut self, data: &[u8], path: &str) -> Result<Option<String>, ReplayError> {
        let (mut rest, parser) = PcapParser::new(data).map_err(|e| ReplayError::Format {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        let link = parser.header().datalink;
        if link != DataLink::ETHERNET {
            return Err(ReplayError::LinkType {
                path: path.to_owned(),
                link,
            });
        }
        let nanos = parser.header().ts_resolution == TsResolution::NanoSecond;
        // Raw records: pcap-file's checked form refuses `orig_len > snaplen`, which is every
        // frame of a capture cut short on purpose (`tcpdump -s 96`); the wire length is what
        // the feature code counts, the captured bytes are what it parses.
        while !rest.is_empty() {
            match parser.next_raw_packet(rest) {
                Ok((r, p)) => {
                    rest = r;
                    let frac = u64::from(p.ts_frac);
                    let ts = u64::from(p.ts_sec)
                        .saturating_mul(1_000_000_000)
                        .saturating_add(if nanos { frac } else { frac * 1_000 });
                    let wire = p.orig_len.max(p.incl_len);
                    self.frame(&p.data, wire, ts);
                    self.tick(rest.len());
                }
                Err(e) => return Ok(Some(e.to_string())),
            }
        }
        Ok(None)
    }

    fn pcapng(&mut self, data: &[u8], path: &str) -> Result<Option<String>, ReplayError> {
        let (mut rest, mut parser) = PcapNgParser::new(data).map_err(|e| ReplayError::Format {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        // Per interface of the current section: (is Ethernet, timestamp units per second).
        // Enhanced packet blocks are decoded from the raw block body (20-byte fixed header):
        // pcap-file's full block decoding allocates option vectors for every packet.
        let mut ifaces: Vec<(bool, u64)> = Vec::new();
        let mut any_ethernet = false;
        let mut truncated = None;
        while !rest.is_empty() {
            let raw = match parser.next_raw_block(rest) {
                Ok((r, b)) => {
                    rest = r;
                    b
                }
                Err(e) => {
                    truncated = Some(e.to_string());
                    break;
                }
            };
            match raw.type_ {
                SECTION_HEADER => ifaces.clear(),
                INTERFACE_DESCRIPTION => {
                    let Some(idb) = parser.interfaces().last() else {
                        continue;
                    };
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
                    if !eth {
                        tracing::warn!(path, link = ?idb.linktype, "skipping a non-Ethernet interface");
                    }
                    any_ethernet |= eth;
                    ifaces.push((eth, per_sec.max(1)));
                }
                ENHANCED_PACKET => {
                    let big = parser.section().endianness == Endianness::Big;
                    let body: &[u8] = &raw.body;
                    let u32_at = |o: usize| -> Option<u32> {
                        let b: [u8; 4] = body.get(o..o + 4)?.try_into().ok()?;
                        Some(if big {
                            u32::from_be_bytes(b)
                        } else {
                            u32::from_le_bytes(b)
                        })
                    };
                    let (Some(ifid), Some(hi), Some(lo), Some(cap), Some(orig)) =
                        (u32_at(0), u32_at(4), u32_at(8), u32_at(12), u32_at(16))
                    else {
                        truncated = Some("enhanced packet block shorter than its header".into());
                        break;
                    };
                    let Some(frame) = body.get(20..20 + cap as usize) else {
                        truncated = Some("enhanced packet block shorter than its packet".into());
                        break;
                    };
                    let Some(&(true, per_sec)) = ifaces.get(ifid as usize) else {
                        continue;
                    };
                    let raw_ts = (u64::from(hi) << 32) | u64::from(lo);
                    let ts = match per_sec {
                        1_000_000 => raw_ts.saturating_mul(1_000),
                        1_000_000_000 => raw_ts,
                        _ => {
                            u64::try_from(u128::from(raw_ts) * 1_000_000_000 / u128::from(per_sec))
                                .unwrap_or(u64::MAX)
                        }
                    };
                    self.frame(frame, orig, ts);
                    self.tick(rest.len());
                }
                SIMPLE_PACKET => {
                    // Body: original length, then the packet (no timestamp).
                    let body: &[u8] = &raw.body;
                    if let (Some(&(true, _)), Some(len)) = (ifaces.first(), body.get(..4)) {
                        let len: [u8; 4] = len.try_into().expect("4 bytes");
                        let orig = if parser.section().endianness == Endianness::Big {
                            u32::from_be_bytes(len)
                        } else {
                            u32::from_le_bytes(len)
                        };
                        let data = &body[4..];
                        let cap = data.len().min(orig as usize);
                        self.frame(&data[..cap], orig, 0);
                        self.tick(rest.len());
                    }
                }
                _ => {}
            }
        }
        if !any_ethernet && self.summary.frames == 0 && truncated.is_none() {
            return Err(ReplayError::LinkType {
                path: path.to_owned(),
                link: DataLink::Unknown(0),
            });
        }
        Ok(truncated)
    }
}
