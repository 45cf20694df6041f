//! The sensor's per-packet work, shared by the production object (`main.rs`) and the benchmark
//! object (`bench.rs`): the maps, the per-CPU scratch slot, the packet view and [`observe`].
use core::ptr::{read_volatile, write_volatile};

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    btf_maps::{LruHashMap, LruPerCpuHashMap, PerCpuArray, RingBuf},
    helpers::{bpf_ktime_get_coarse_ns, bpf_ktime_get_ns},
    macros::btf_map,
};
use safelink_common::{
    ARP_EVENTS_PER_SEC, Counter, EVENT_ARP, EVENT_FLOW_START, EVENTS_BYTES, Event, FlowKey,
    FlowStats, FragHead, FragKey, MAX_EMBRYOS, MAX_FLOWS, MAX_FRAGS, MAX_OUTER_FLOWS, MapKey,
    OuterStats, Stats, TUNNEL_NONE, TunnelKey,
    flow::{
        canonical_key, established, late_tcp, outer_src_is_a, outer_update, tunnel_digest,
        tunnel_key, update,
    },
    layout::EventPacket,
    parse::{
        PacketBytes, ParseOut, Parsed, TunnelConfig, frame_counters, late_tcp_header,
        parse_frame_with, tunnel_counter,
    },
};

/// The tunnels the parser opens (`[tunnels]` in the configuration). A read-only global the
/// loader sets before the program is verified (`EbpfLoader::set_global`), so the verifier
/// sees the constants and prunes the kinds switched off.
#[unsafe(no_mangle)]
static TUNNELS: TunnelConfig = TunnelConfig::DEFAULT;

// BTF-defined maps (`.maps` section): `bpftool map dump` prints keys and values with field
// names.
#[btf_map]
static FLOWS: LruPerCpuHashMap<MapKey, FlowStats, { MAX_FLOWS as usize }> = LruPerCpuHashMap::new();

#[btf_map]
static EMBRYOS: LruHashMap<MapKey, FlowStats, { MAX_EMBRYOS as usize }> = LruHashMap::new();

#[btf_map]
static EVENTS: RingBuf<Event, { EVENTS_BYTES as usize }> = RingBuf::new();

#[btf_map]
static STATS: PerCpuArray<Stats, 1> = PerCpuArray::new();

#[btf_map]
static FRAGS: LruHashMap<FragKey, FragHead, { MAX_FRAGS as usize }> = LruHashMap::new();

/// The outer flows of tunnels: one per tunnel (kind, id, outer endpoints), every decapsulated
/// packet counted once. Touched only by tunnelled packets.
#[btf_map]
static OUTER_FLOWS: LruPerCpuHashMap<TunnelKey, OuterStats, { MAX_OUTER_FLOWS as usize }> =
    LruPerCpuHashMap::new();

/// Per-CPU working memory: parser output, flow key and a new flow's first value. All of it
/// together is too large for the 512-byte BPF stack.
#[repr(C)]
pub struct Scratch {
    out: ParseOut,
    key: FlowKey,
    /// `key` as the flow maps' key ([`set_map_key`]).
    mkey: MapKey,
    stats: FlowStats,
    frag_key: FragKey,
    frag_head: FragHead,
    /// A new outer flow's first value.
    outer: OuterStats,
    /// This CPU's ARP event budget: events left in the current second, and when it began.
    arp_left: u64,
    arp_second_ns: u64,
}

#[btf_map]
static SCRATCH: PerCpuArray<Scratch, 1> = PerCpuArray::new();

/// Upper bound of any header offset; lets the verifier bound packet pointer arithmetic.
const MAX_OFF: usize = 0x3fff;

/// A packet as [`PacketBytes`]: every read is bounds-checked against `end` (the end of the
/// linear part, where the headers are) in the `start + off + N > end` form the verifier
/// understands; `len` is the whole frame (XDP multi-buffer fragments, skb length).
struct Packet {
    start: usize,
    end: usize,
    len: usize,
}

impl PacketBytes for Packet {
    #[inline(always)]
    fn wire_len(&self) -> usize {
        self.len
    }
    #[inline(always)]
    fn read<const N: usize>(&self, off: usize) -> Option<&[u8; N]> {
        let start = self.start;
        let end = self.end;
        if off > MAX_OFF {
            return None;
        }
        if start + off + N > end {
            return None;
        }
        // SAFETY: bounds checked above; [u8; N] has alignment 1; the packet outlives `self`.
        Some(unsafe { &*((start + off) as *const [u8; N]) })
    }
}

/// Observes one frame: `start..end` is its linear part (the headers), `len` its whole length,
/// `vlan` the VLAN id of an outer tag the kernel holds outside the frame (TC), if any.
#[inline(always)]
pub fn observe_frame(start: usize, end: usize, len: usize, vlan: Option<u16>) {
    if let (Some(s), Some(st)) = (SCRATCH.get_ptr_mut(0), STATS.get_ptr_mut(0)) {
        let pkt = Packet { start, end, len };
        // SAFETY: this CPU's own slots; the programs do not nest on one CPU.
        observe(&pkt, vlan, unsafe { &mut *s }, unsafe { &mut *st });
    }
}

/// Copies a `T` as 64-bit words. Volatile accesses, so that the compiler neither merges them
/// into a `memcpy`/`memmove` call (a loop of byte stores on this target) nor reorders them.
///
/// # Safety
/// `dst` and `src` valid for a `T`, 8-aligned.
#[inline(always)]
unsafe fn copy_words<T>(dst: *mut T, src: *const T) {
    const { assert!(size_of::<T>() % 8 == 0 && align_of::<T>() >= 8) };
    let (d, s) = (dst.cast::<u64>(), src.cast::<u64>());
    let mut i = 0;
    while i < size_of::<T>() / 8 {
        // SAFETY: inside the two `T`s (caller).
        unsafe { write_volatile(d.add(i), read_volatile(s.add(i))) };
        i += 1;
    }
}

/// Zeroes a `T` as 64-bit words (no `memset` call; see [`copy_words`]).
///
/// # Safety
/// `dst` valid for a `T`, 8-aligned, and all-zero is a valid `T`.
#[inline(always)]
unsafe fn zero_words<T>(dst: *mut T) {
    const { assert!(size_of::<T>() % 8 == 0 && align_of::<T>() >= 8) };
    let d = dst.cast::<u64>();
    let mut i = 0;
    while i < size_of::<T>() / 8 {
        // SAFETY: inside the `T` (caller).
        unsafe { write_volatile(d.add(i), 0) };
        i += 1;
    }
}

/// Reserves, writes and submits one event: a flow start (with the packet that caused it) or
/// an ARP packet. Written word by word straight into the ring buffer.
#[inline(always)]
fn emit(kind: u8, from_a: bool, ts_ns: u64, s: &Scratch, st: &mut Stats) {
    match EVENTS.reserve(0) {
        Some(mut entry) => {
            let e: *mut Event = entry.as_mut_ptr();
            let m = &s.out.src_mac;
            // SAFETY: the reservation is an 8-aligned sizeof(Event); every byte is written.
            unsafe {
                // kind, reason (0), src_mac: the first word.
                write_volatile(
                    e.cast::<u64>(),
                    u64::from_le_bytes([kind, 0, m[0], m[1], m[2], m[3], m[4], m[5]]),
                );
                write_volatile(&raw mut (*e).ts_ns, ts_ns);
                copy_words(&raw mut (*e).key, &s.key);
                if kind == EVENT_ARP {
                    copy_words(&raw mut (*e).arp, &s.out.arp);
                    let pkt = (&raw mut (*e).pkt).cast::<u64>();
                    write_volatile(pkt, 0);
                    write_volatile(pkt.add(1), 0);
                } else {
                    zero_words(&raw mut (*e).arp);
                    (*e).pkt = EventPacket::from_meta(&s.out.meta, from_a);
                }
            }
            entry.submit(0);
            st.add(Counter::EventsSent, 1);
        }
        None => st.add(Counter::EventsDropped, 1),
    }
}

#[inline(always)]
fn observe(pkt: &Packet, vlan: Option<u16>, s: &mut Scratch, st: &mut Stats) {
    let len = pkt.len as u64;
    st.add(Counter::Packets, 1);
    st.add(Counter::Bytes, len);
    // SAFETY: a plain-data global; volatile so that the loader's value is read, not the
    // compiler's copy of the default.
    let tunnels = unsafe { read_volatile(&raw const TUNNELS) };
    let parsed = parse_frame_with(pkt, &tunnels, &mut s.out);
    if let Some(v) = vlan {
        // The tag taken off the frame was its outermost: it names the flow's VLAN, as the
        // parser's first tag does on the wire.
        s.out.vlan = v;
        s.out.meta.vlan = v;
        s.out.vlan_tagged = true;
    }
    if s.out.vlan_tagged {
        st.add(Counter::VlanTagged, 1);
    }
    if let Some(c) = tunnel_counter(&s.out) {
        st.add(c, 1);
    }
    let (l3, l4) = frame_counters(&parsed, &s.out);
    st.add(l3, 1);
    if let Some(c) = l4 {
        st.add(c, 1);
    }
    match parsed {
        Parsed::Ip => {
            let ts = unsafe { bpf_ktime_get_ns() };
            let from_a = canonical_key(&s.out.meta, &mut s.key);
            set_map_key(s);
            let len = len as u32;
            let mut created = false;
            if let Some(f) = FLOWS.get_ptr_mut(&s.mkey) {
                // SAFETY: this CPU's own slot of the per-CPU value.
                unsafe { update(&mut *f, &s.out.meta, from_a, len, ts) };
            } else if let Some(e) = EMBRYOS.get_ptr_mut(&s.mkey) {
                // SAFETY: a shared value: two CPUs updating one young flow at the same instant
                // may lose a count (the two directions mostly touch different fields).
                let e = unsafe { &mut *e };
                update(e, &s.out.meta, from_a, len, ts);
                if established(e) {
                    // Straight from the EMBRYOS value: no copy on this side.
                    if FLOWS.insert(&s.mkey, &*e, BPF_NOEXIST as u64).is_ok() {
                        st.add(Counter::FlowsPromoted, 1);
                    }
                    let _ = EMBRYOS.remove(&s.mkey);
                }
            } else {
                // SAFETY: this CPU's scratch slot; all-zero is the empty FlowStats.
                unsafe { zero_words(&raw mut s.stats) };
                update(&mut s.stats, &s.out.meta, from_a, len, ts);
                if EMBRYOS
                    .insert(&s.mkey, &s.stats, BPF_NOEXIST as u64)
                    .is_ok()
                {
                    created = true;
                    st.add(Counter::FlowsCreated, 1);
                    emit(EVENT_FLOW_START, from_a, ts, s, st);
                } else if let Some(e) = EMBRYOS.get_ptr_mut(&s.mkey) {
                    // Another CPU created it between lookup and insert.
                    unsafe { update(&mut *e, &s.out.meta, from_a, len, ts) };
                } else {
                    st.add(Counter::FlowInsertFailed, 1);
                }
            }
            if s.out.meta.l4_partial {
                frag_key(s);
                // SAFETY: this CPU's scratch slot, 8-aligned FlowKey/FragHead.
                unsafe {
                    copy_words(&raw mut s.frag_head.key, &s.key);
                    write_volatile((&raw mut s.frag_head.from_a).cast::<u64>(), from_a as u64);
                }
                let _ = FRAGS.insert(&s.frag_key, &s.frag_head, 0);
            }
            if s.out.meta.tunnel_kind != TUNNEL_NONE {
                // `s.key.tunnel` is this packet's tunnel (set by `canonical_key`).
                let from_a = outer_src_is_a(&s.out.meta);
                count_outer(s, from_a, len, ts, created);
            }
        }
        Parsed::Fragment(_) => {
            if s.out.meta.tunnel_kind != TUNNEL_NONE {
                let from_a = tunnel_key(&s.out.meta, &mut s.key.tunnel);
                let ts = unsafe { bpf_ktime_get_ns() };
                count_outer(s, from_a, len as u32, ts, false);
            }
            if let Some(late) = late_tcp_header(pkt, &s.out) {
                frag_key(s);
                if let Some(h) = FRAGS.get_ptr(&s.frag_key) {
                    // SAFETY: a map value pointer, read before the entry is deleted.
                    unsafe { copy_words(&raw mut s.frag_head, h) };
                    let _ = FRAGS.remove(&s.frag_key);
                    // SAFETY: this CPU's scratch slot.
                    unsafe { copy_words(&raw mut s.key, &s.frag_head.key) };
                    set_map_key(s);
                    let from_a = s.frag_head.from_a != 0;
                    // SAFETY: map value pointers (this CPU's slot of FLOWS).
                    if let Some(f) = FLOWS.get_ptr_mut(&s.mkey) {
                        unsafe { late_tcp(&mut *f, from_a, &late) };
                    } else if let Some(e) = EMBRYOS.get_ptr_mut(&s.mkey) {
                        unsafe { late_tcp(&mut *e, from_a, &late) };
                    }
                }
            }
        }
        Parsed::Arp => {
            // The budget's one-second windows need no more than the coarse clock (a tick, a
            // few ms); an event that is sent carries the exact time.
            let now = unsafe { bpf_ktime_get_coarse_ns() };
            if now.wrapping_sub(s.arp_second_ns) >= 1_000_000_000 {
                s.arp_second_ns = now;
                s.arp_left = ARP_EVENTS_PER_SEC;
            }
            if s.arp_left == 0 {
                st.add(Counter::ArpEventsThrottled, 1);
                return;
            }
            s.arp_left -= 1;
            let ts = unsafe { bpf_ktime_get_ns() };
            // SAFETY: this CPU's scratch slot; all-zero is a valid FlowKey.
            unsafe { zero_words(&raw mut s.key) };
            s.key.vlan = s.out.vlan;
            emit(EVENT_ARP, false, ts, s, st);
        }
        Parsed::OtherL3 | Parsed::Malformed(_) => {}
    }
}

/// Counts a decapsulated packet in the outer flow of its tunnel, `s.key.tunnel`: this CPU's
/// slot, or a new entry (`BPF_ANY`: when another CPU created it meanwhile, only this CPU's
/// slot, still empty, is written).
#[inline(always)]
fn count_outer(s: &mut Scratch, from_a: bool, len: u32, ts: u64, new_inner: bool) {
    if let Some(o) = OUTER_FLOWS.get_ptr_mut(&s.key.tunnel) {
        // SAFETY: this CPU's own slot of the per-CPU value.
        unsafe { outer_update(&mut *o, from_a, len, ts, new_inner) };
    } else {
        // SAFETY: this CPU's scratch slot; all-zero is the empty OuterStats.
        unsafe { zero_words(&raw mut s.outer) };
        outer_update(&mut s.outer, from_a, len, ts, new_inner);
        let _ = OUTER_FLOWS.insert(&s.key.tunnel, &s.outer, 0);
    }
}

/// Writes `s.key`'s map key into `s.mkey`: its first 40 bytes as they are (the two layouts
/// agree up to the tunnel part, checked below), then the tunnel's digest ([`tunnel_digest`]: 0
/// outside a tunnel, without hashing).
#[inline(always)]
fn set_map_key(s: &mut Scratch) {
    const {
        assert!(core::mem::offset_of!(FlowKey, tunnel) == 40);
        assert!(core::mem::offset_of!(MapKey, tunnel) == 40);
        assert!(core::mem::offset_of!(MapKey, family) == core::mem::offset_of!(FlowKey, family));
    };
    let (d, k) = (
        (&raw mut s.mkey).cast::<u64>(),
        (&raw const s.key).cast::<u64>(),
    );
    let mut i = 0;
    while i < 5 {
        // SAFETY: both 8-aligned, at least 40 bytes; plain integers.
        unsafe { write_volatile(d.add(i), read_volatile(k.add(i))) };
        i += 1;
    }
    s.mkey.tunnel = tunnel_digest(&s.key.tunnel);
}

/// The `FRAGS` key of the datagram just parsed.
#[inline(always)]
fn frag_key(s: &mut Scratch) {
    let m = &s.out.meta;
    s.frag_key = FragKey {
        src: m.src,
        dst: m.dst,
        id: s.out.frag.id,
        proto: m.proto,
        family: m.family,
        vlan: m.vlan,
    };
}
