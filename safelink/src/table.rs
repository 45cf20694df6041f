//! Userspace flow table for the replay path: the same parser, counters and per-packet feature
//! update as the XDP program, over a `HashMap` instead of the kernel's per-CPU LRU map.
use std::collections::HashMap;

use safelink_common::{
    COUNTER_NAMES, Counter, EventPacket, FlowKey, FlowStats, NUM_COUNTERS,
    flow::{canonical_key, update},
    parse::{CapturedFrame, ParseOut, Parsed, frame_counters, parse_frame},
};

use crate::record::{ArpRecord, FlowStartRecord};

/// Counter values indexed by [`Counter`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters(pub [u64; NUM_COUNTERS as usize]);

impl Counters {
    pub fn get(&self, c: Counter) -> u64 {
        self.0[c as usize]
    }
    fn bump(&mut self, c: Counter, n: u64) {
        self.0[c as usize] += n;
    }
    /// `(name, value)` pairs in index order.
    pub fn named(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        COUNTER_NAMES.iter().copied().zip(self.0.iter().copied())
    }
}

/// What one frame produced besides flow-state updates.
#[derive(Debug, PartialEq)]
pub enum Observed {
    Nothing,
    FlowStart(FlowStartRecord),
    Arp(ArpRecord),
}

#[derive(Default)]
pub struct FlowTable {
    pub flows: HashMap<FlowKey, FlowStats>,
    pub counters: Counters,
    out: ParseOut,
    key: FlowKey,
}

impl FlowTable {
    /// Feeds one frame seen at `ts_ns` (Unix time, ns); mirrors the XDP program's `observe`.
    pub fn observe(&mut self, frame: CapturedFrame<'_>, ts_ns: u64) -> Observed {
        let len = frame.wire_len.max(frame.data.len()) as u64;
        self.counters.bump(Counter::Packets, 1);
        self.counters.bump(Counter::Bytes, len);
        let parsed = parse_frame(&frame, &mut self.out);
        if self.out.vlan_tagged {
            self.counters.bump(Counter::VlanTagged, 1);
        }
        let (l3, l4) = frame_counters(&parsed, &self.out);
        self.counters.bump(l3, 1);
        if let Some(c) = l4 {
            self.counters.bump(c, 1);
        }
        match parsed {
            Parsed::Ip => {
                let from_a = canonical_key(&self.out.meta, &mut self.key);
                let mut created = false;
                let stats = self.flows.entry(self.key).or_insert_with(|| {
                    created = true;
                    FlowStats::default()
                });
                update(stats, &self.out.meta, from_a, len as u32, ts_ns);
                if !created {
                    return Observed::Nothing;
                }
                self.counters.bump(Counter::FlowsCreated, 1);
                Observed::FlowStart(FlowStartRecord::new(
                    ts_ns,
                    &self.key,
                    &EventPacket::from_meta(&self.out.meta, from_a),
                    &self.out.src_mac,
                ))
            }
            Parsed::Arp => Observed::Arp(ArpRecord::new(
                ts_ns,
                self.out.vlan,
                &self.out.src_mac,
                &self.out.arp,
            )),
            Parsed::Fragment(_) | Parsed::OtherL3 | Parsed::Malformed(_) => Observed::Nothing,
        }
    }
}
