//! SafeLink's XDP program: parses every frame with the shared parser and keeps bidirectional
//! flow features in two pinned maps: every flow starts in `EMBRYOS` (`LRU_HASH`) and moves to
//! `FLOWS` (`LRU_PERCPU_HASH`, one exact slot per CPU) once it proves two-way
//! ([`established`]), so a flood of spoofed new flows only churns `EMBRYOS` and never evicts an
//! established connection. It emits flow-start and ARP events (ARP within a per-CPU budget)
//! into the `EVENTS` ring buffer and counts into the per-CPU `STATS` array. A first fragment that cuts the TCP header leaves its flow in the
//! `FRAGS` LRU map until the fragment carrying the flags arrives. Bounded work per packet; it
//! always returns `XDP_PASS`.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{BPF_NOEXIST, TC_ACT_OK, xdp_action},
    btf_maps::{LruHashMap, LruPerCpuHashMap, PerCpuArray, RingBuf},
    helpers::{bpf_ktime_get_ns, bpf_xdp_get_buff_len},
    macros::{btf_map, classifier, xdp},
    programs::{TcContext, XdpContext},
};
use safelink_common::{
    ARP_EVENTS_PER_SEC, Counter, EVENT_ARP, EVENT_FLOW_START, EVENTS_BYTES, Event, FlowKey,
    FlowStats, FragHead, FragKey, MAX_EMBRYOS, MAX_FLOWS, MAX_FRAGS, Stats,
    flow::{canonical_key, established, late_tcp, update},
    layout::{ArpInfo, EventPacket},
    parse::{PacketBytes, ParseOut, Parsed, frame_counters, late_tcp_header, parse_frame},
};

// BTF-defined maps (`.maps` section): `bpftool map dump` prints keys and values with field
// names.
#[btf_map]
static FLOWS: LruPerCpuHashMap<FlowKey, FlowStats, { MAX_FLOWS as usize }> =
    LruPerCpuHashMap::new();

#[btf_map]
static EMBRYOS: LruHashMap<FlowKey, FlowStats, { MAX_EMBRYOS as usize }> = LruHashMap::new();

#[btf_map]
static EVENTS: RingBuf<Event, { EVENTS_BYTES as usize }> = RingBuf::new();

#[btf_map]
static STATS: PerCpuArray<Stats, 1> = PerCpuArray::new();

#[btf_map]
static FRAGS: LruHashMap<FragKey, FragHead, { MAX_FRAGS as usize }> = LruHashMap::new();

/// Per-CPU working memory: parser output, flow key and a new flow's first value. All of it
/// together is too large for the 512-byte BPF stack.
#[repr(C)]
pub struct Scratch {
    out: ParseOut,
    key: FlowKey,
    stats: FlowStats,
    frag_key: FragKey,
    frag_head: FragHead,
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

#[xdp(frags)]
pub fn safelink(ctx: XdpContext) -> u32 {
    if let (Some(s), Some(st)) = (SCRATCH.get_ptr_mut(0), STATS.get_ptr_mut(0)) {
        // SAFETY: ctx.ctx is the program's xdp_md.
        let len = unsafe { bpf_xdp_get_buff_len(ctx.ctx) } as usize;
        let pkt = Packet {
            start: ctx.data(),
            end: ctx.data_end(),
            len,
        };
        // SAFETY: this CPU's own slots; the programs do not nest on one CPU.
        observe(&pkt, unsafe { &mut *s }, unsafe { &mut *st });
    }
    xdp_action::XDP_PASS
}

/// Egress: the host's own frames on the interface (its answers, its connections).
#[classifier]
pub fn safelink_egress(ctx: TcContext) -> i32 {
    if let (Some(s), Some(st)) = (SCRATCH.get_ptr_mut(0), STATS.get_ptr_mut(0)) {
        let pkt = Packet {
            start: ctx.data(),
            end: ctx.data_end(),
            len: ctx.len() as usize,
        };
        // SAFETY: as above. An XDP program cannot interrupt a TC program on the same CPU
        // while it uses the scratch slot: both run with bottom halves disabled.
        observe(&pkt, unsafe { &mut *s }, unsafe { &mut *st });
    }
    TC_ACT_OK
}

#[inline(always)]
fn emit(kind: u8, reason: u8, from_a: bool, ts_ns: u64, s: &Scratch, st: &mut Stats) {
    match EVENTS.reserve(0) {
        Some(mut entry) => {
            let e = entry.as_mut_ptr();
            // SAFETY: the reservation is sizeof(Event) bytes; every field is written.
            unsafe {
                (*e).kind = kind;
                (*e).reason = reason;
                (*e).src_mac = s.out.src_mac;
                (*e).ts_ns = ts_ns;
                (*e).key = s.key;
                if kind == EVENT_ARP {
                    (*e).arp = s.out.arp;
                    (*e).pkt = EventPacket::default();
                } else {
                    (*e).arp = ArpInfo::default();
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
fn observe(pkt: &Packet, s: &mut Scratch, st: &mut Stats) {
    let len = pkt.len as u64;
    st.add(Counter::Packets, 1);
    st.add(Counter::Bytes, len);
    let parsed = parse_frame(pkt, &mut s.out);
    if s.out.vlan_tagged {
        st.add(Counter::VlanTagged, 1);
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
            let len = len as u32;
            if let Some(f) = FLOWS.get_ptr_mut(&s.key) {
                // SAFETY: this CPU's own slot of the per-CPU value.
                unsafe { update(&mut *f, &s.out.meta, from_a, len, ts) };
            } else if let Some(e) = EMBRYOS.get_ptr_mut(&s.key) {
                // SAFETY: a shared value: two CPUs updating one young flow at the same instant
                // may lose a count (the two directions mostly touch different fields).
                let e = unsafe { &mut *e };
                update(e, &s.out.meta, from_a, len, ts);
                if established(e) {
                    s.stats = *e;
                    if FLOWS.insert(&s.key, &s.stats, BPF_NOEXIST as u64).is_ok() {
                        st.add(Counter::FlowsPromoted, 1);
                    }
                    let _ = EMBRYOS.remove(&s.key);
                }
            } else {
                s.stats = FlowStats::default();
                update(&mut s.stats, &s.out.meta, from_a, len, ts);
                if EMBRYOS.insert(&s.key, &s.stats, BPF_NOEXIST as u64).is_ok() {
                    st.add(Counter::FlowsCreated, 1);
                    emit(EVENT_FLOW_START, 0, from_a, ts, s, st);
                } else if let Some(e) = EMBRYOS.get_ptr_mut(&s.key) {
                    // Another CPU created it between lookup and insert.
                    unsafe { update(&mut *e, &s.out.meta, from_a, len, ts) };
                } else {
                    st.add(Counter::FlowInsertFailed, 1);
                }
            }
            if s.out.meta.l4_partial {
                frag_key(s);
                s.frag_head = FragHead {
                    key: s.key,
                    from_a: from_a as u8,
                    _pad: [0; 7],
                };
                let _ = FRAGS.insert(&s.frag_key, &s.frag_head, 0);
            }
        }
        Parsed::Fragment(_) => {
            if let Some(late) = late_tcp_header(pkt, &s.out) {
                frag_key(s);
                if let Some(h) = FRAGS.get_ptr(&s.frag_key) {
                    // SAFETY: a map value pointer, read before the entry is deleted.
                    s.frag_head = unsafe { *h };
                    let _ = FRAGS.remove(&s.frag_key);
                    s.key = s.frag_head.key;
                    let from_a = s.frag_head.from_a != 0;
                    // SAFETY: map value pointers (this CPU's slot of FLOWS).
                    if let Some(f) = FLOWS.get_ptr_mut(&s.key) {
                        unsafe { late_tcp(&mut *f, from_a, &late) };
                    } else if let Some(e) = EMBRYOS.get_ptr_mut(&s.key) {
                        unsafe { late_tcp(&mut *e, from_a, &late) };
                    }
                }
            }
        }
        Parsed::Arp => {
            let ts = unsafe { bpf_ktime_get_ns() };
            if ts.wrapping_sub(s.arp_second_ns) >= 1_000_000_000 {
                s.arp_second_ns = ts;
                s.arp_left = ARP_EVENTS_PER_SEC;
            }
            if s.arp_left == 0 {
                st.add(Counter::ArpEventsThrottled, 1);
                return;
            }
            s.arp_left -= 1;
            s.key = FlowKey {
                vlan: s.out.vlan,
                ..FlowKey::default()
            };
            emit(EVENT_ARP, 0, false, ts, s, st);
        }
        Parsed::OtherL3 | Parsed::Malformed(_) => {}
    }
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

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
