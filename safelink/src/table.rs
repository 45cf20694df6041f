//! Userspace flow table for the replay path: the same parser, counters and per-packet feature
//! update as the XDP program, over a `HashMap` instead of the kernel's per-CPU LRU map, and the
//! same handling of first fragments that cut the TCP header (a bounded map stands in for the
//! kernel's `FRAGS`), and the same outer flows of tunnels (a map stands in for the kernel's
//! `OUTER_FLOWS`).

use std::collections::VecDeque;

use rustc_hash::FxHashMap;
use safelink_common::{
    COUNTER_NAMES, Counter, EventPacket, FlowKey, FlowStats, FragHead, FragKey, MAX_FRAGS,
    NUM_COUNTERS, OuterStats, TUNNEL_NONE, TunnelKey,
    flow::{canonical_key, late_tcp, outer_update, tunnel_key, update},
    parse::{
        CapturedFrame, ParseOut, Parsed, TunnelConfig, frame_counters, late_tcp_header,
        parse_frame_with, tunnel_counter,
    },
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

/// Flows in a slab indexed through a compact key → slot map: the map stays small enough for
/// the CPU caches (44-byte entries instead of 304) and consecutive packets of one flow skip the
/// lookup entirely.
#[derive(Default)]
pub struct FlowTable {
    /// FxHash: fast for fixed-size keys (offline replay; adversarial keys only slow it down).
    index: FxHashMap<FlowKey, u32>,
    slots: Vec<(FlowKey, FlowStats)>,
    free: Vec<u32>,
    /// The last flow touched (key, slot).
    last: Option<(FlowKey, u32)>,
    pub counters: Counters,
    out: ParseOut,
    key: FlowKey,
    /// Datagrams whose TCP flags are still to come, oldest first when it is full.
    frags: FxHashMap<FragKey, FragHead>,
    frag_order: VecDeque<FragKey>,
    /// The tunnels the parser opens (`[flows] tunnels`).
    tunnels: TunnelConfig,
    /// Outer flows of tunnels, by tunnel.
    outer: FxHashMap<TunnelKey, OuterStats>,
}

impl FlowTable {
    /// An empty table whose parser opens `tunnels` (the default opens every kind).
    pub fn with_tunnels(tunnels: TunnelConfig) -> Self {
        Self {
            tunnels,
            ..Self::default()
        }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn get(&self, k: &FlowKey) -> Option<&FlowStats> {
        self.index.get(k).map(|&i| &self.slots[i as usize].1)
    }

    /// Every live flow.
    pub fn iter(&self) -> impl Iterator<Item = (&FlowKey, &FlowStats)> {
        self.index
            .values()
            .map(|&i| (&self.slots[i as usize].0, &self.slots[i as usize].1))
    }

    pub fn remove(&mut self, k: &FlowKey) -> Option<FlowStats> {
        let i = self.index.remove(k)?;
        if self.last.is_some_and(|(_, l)| l == i) {
            self.last = None;
        }
        self.free.push(i);
        Some(self.slots[i as usize].1)
    }

    /// Removes and returns every flow.
    pub fn drain(&mut self) -> Vec<(FlowKey, FlowStats)> {
        let out = self
            .index
            .drain()
            .map(|(_, i)| self.slots[i as usize])
            .collect();
        self.slots.clear();
        self.free.clear();
        self.last = None;
        out
    }

    /// Outer flows of tunnels held.
    pub fn outer_len(&self) -> usize {
        self.outer.len()
    }

    /// Every live outer flow.
    pub fn outer_iter(&self) -> impl Iterator<Item = (&TunnelKey, &OuterStats)> {
        self.outer.iter()
    }

    pub fn outer_remove(&mut self, k: &TunnelKey) -> Option<OuterStats> {
        self.outer.remove(k)
    }

    /// Removes and returns every outer flow.
    pub fn outer_drain(&mut self) -> Vec<(TunnelKey, OuterStats)> {
        self.outer.drain().collect()
    }

    /// Counts a decapsulated packet in its tunnel's outer flow (the kernel's `OUTER_FLOWS`).
    fn count_outer(&mut self, len: u64, ts_ns: u64, new_inner: bool) {
        let mut k = TunnelKey::default();
        let from_a = tunnel_key(&self.out.meta, &mut k);
        let s = self.outer.entry(k).or_default();
        outer_update(s, from_a, len as u32, ts_ns, new_inner);
    }

    /// The slot of `self.key`, creating it when new (then returns true).
    fn slot(&mut self) -> (u32, bool) {
        if let Some((k, i)) = self.last
            && k == self.key
        {
            return (i, false);
        }
        let (i, created) = match self.index.get(&self.key) {
            Some(&i) => (i, false),
            None => {
                let entry = (self.key, FlowStats::default());
                let i = match self.free.pop() {
                    Some(i) => {
                        self.slots[i as usize] = entry;
                        i
                    }
                    None => {
                        self.slots.push(entry);
                        (self.slots.len() - 1) as u32
                    }
                };
                self.index.insert(self.key, i);
                (i, true)
            }
        };
        self.last = Some((self.key, i));
        (i, created)
    }

    /// Feeds one frame seen at `ts_ns` (Unix time, ns); mirrors the XDP program's `observe`.
    pub fn observe(&mut self, frame: CapturedFrame<'_>, ts_ns: u64) -> Observed {
        let len = frame.wire_len.max(frame.data.len()) as u64;
        self.counters.bump(Counter::Packets, 1);
        self.counters.bump(Counter::Bytes, len);
        let parsed = parse_frame_with(&frame, &self.tunnels, &mut self.out);
        if self.out.vlan_tagged {
            self.counters.bump(Counter::VlanTagged, 1);
        }
        if let Some(c) = tunnel_counter(&self.out) {
            self.counters.bump(c, 1);
        }
        let (l3, l4) = frame_counters(&parsed, &self.out);
        self.counters.bump(l3, 1);
        if let Some(c) = l4 {
            self.counters.bump(c, 1);
        }
        match parsed {
            Parsed::Ip => {
                let from_a = canonical_key(&self.out.meta, &mut self.key);
                let (i, created) = self.slot();
                let stats = &mut self.slots[i as usize].1;
                update(stats, &self.out.meta, from_a, len as u32, ts_ns);
                if self.out.meta.l4_partial {
                    self.remember_fragment(from_a);
                }
                if self.out.meta.tunnel_kind != TUNNEL_NONE {
                    self.count_outer(len, ts_ns, created);
                }
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
            Parsed::Fragment(_) => {
                if self.out.meta.tunnel_kind != TUNNEL_NONE {
                    self.count_outer(len, ts_ns, false);
                }
                if let Some(late) = late_tcp_header(&frame, &self.out)
                    && let Some(head) = self.frags.remove(&self.frag_key())
                    && let Some(&i) = self.index.get(&head.key)
                {
                    late_tcp(&mut self.slots[i as usize].1, head.from_a != 0, &late);
                }
                Observed::Nothing
            }
            Parsed::OtherL3 | Parsed::Malformed(_) => Observed::Nothing,
        }
    }

    fn frag_key(&self) -> FragKey {
        let m = &self.out.meta;
        FragKey {
            src: m.src,
            dst: m.dst,
            id: self.out.frag.id,
            proto: m.proto,
            family: m.family,
            vlan: m.vlan,
        }
    }

    fn remember_fragment(&mut self, from_a: bool) {
        let k = self.frag_key();
        while self.frags.len() >= MAX_FRAGS as usize {
            match self.frag_order.pop_front() {
                Some(old) => {
                    self.frags.remove(&old);
                }
                None => break,
            }
        }
        let head = FragHead {
            key: self.key,
            from_a: from_a as u8,
            _pad: [0; 7],
        };
        if self.frags.insert(k, head).is_none() {
            self.frag_order.push_back(k);
        }
        // Keys already resolved stay in the queue until they reach its front.
        if self.frag_order.len() > 2 * MAX_FRAGS as usize {
            let frags = &self.frags;
            self.frag_order.retain(|k| frags.contains_key(k));
        }
    }
}
