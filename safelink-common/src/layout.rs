//! Wire layout of the maps and ring-buffer records shared by the kernel and userspace.
//!
//! Every type is `#[repr(C)]`, made of integers and byte arrays only, with explicit padding,
//! so the XDP program, `bpftool` (through BTF) and userspace agree byte for byte. A change to any
//! of these types must bump [`FEATURE_LAYOUT_VERSION`]; models carry the version they were
//! trained on and are refused when it differs.

/// Version of the flow feature layout ([`FlowStats`] / [`DirStats`]). Only a change to the
/// features bumps it (the model's input): the flow key gaining the tunnel identity did not
/// (pinned maps of another key size are dropped by the loader instead).
pub const FEATURE_LAYOUT_VERSION: u32 = 1;

/// Names of the pinned maps (pinned under `/sys/fs/bpf/safelink/<NAME>`).
pub const MAP_FLOWS: &str = "FLOWS";
pub const MAP_EMBRYOS: &str = "EMBRYOS";
pub const MAP_EVENTS: &str = "EVENTS";
pub const MAP_STATS: &str = "STATS";
pub const MAP_FRAGS: &str = "FRAGS";
pub const MAP_OUTER_FLOWS: &str = "OUTER_FLOWS";

/// Capacity of the `FLOWS` LRU map: flows that proved two-way ([`crate::flow::established`]).
/// The least recently used flow is evicted when it is full. This is the most: the loader sizes
/// the map with [`flows_capacity`] for the host's CPU count.
pub const MAX_FLOWS: u32 = 65_536;
/// Bytes the per-CPU values of `FLOWS` may take in all (entries × value size × possible CPUs,
/// the value rounded up to 8 bytes as the kernel stores it). 184 MiB: 65 536 flows up to 9
/// CPUs, as with the 264-byte value and 160 MiB before the value carried the tunnel.
pub const FLOWS_PERCPU_BUDGET: u64 = 184 << 20;
/// The fewest `FLOWS` entries, whatever the CPU count.
pub const MIN_FLOWS: u32 = 4096;

/// `FLOWS` capacity on a host with `possible_cpus` possible CPUs: [`MAX_FLOWS`] while its
/// per-CPU values fit [`FLOWS_PERCPU_BUDGET`], fewer on larger hosts (65 536 up to 9 CPUs,
/// 9 916 on 64), never below [`MIN_FLOWS`].
pub const fn flows_capacity(possible_cpus: u32) -> u32 {
    let cpus = if possible_cpus == 0 { 1 } else { possible_cpus } as u64;
    let per_entry = (core::mem::size_of::<FlowStats>() as u64).next_multiple_of(8) * cpus;
    let n = FLOWS_PERCPU_BUDGET / per_entry;
    if n > MAX_FLOWS as u64 {
        MAX_FLOWS
    } else if n < MIN_FLOWS as u64 {
        MIN_FLOWS
    } else {
        n as u32
    }
}
/// Capacity of the `EMBRYOS` LRU map, where every flow starts until it proves two-way. A flood
/// of spoofed new flows (random-source SYN, UDP or ICMP floods) churns this map only, never
/// the established flows in `FLOWS`.
pub const MAX_EMBRYOS: u32 = 65_536;
/// Capacity of the `OUTER_FLOWS` LRU per-CPU map: tunnels (kind, VNI or GRE key, outer
/// endpoint pair) counted at once. A node of an overlay has one per peer node and VNI.
pub const MAX_OUTER_FLOWS: u32 = 4096;
/// ARP events one CPU may put on the ring buffer per second; more are counted
/// (`arp_events_throttled`), so an ARP flood cannot crowd flow starts out of the ring.
pub const ARP_EVENTS_PER_SEC: u64 = 10_000;
/// Size of the `EVENTS` ring buffer in bytes (power of two, multiple of the page size).
pub const EVENTS_BYTES: u32 = 1 << 20;

/// Address family values used in [`FlowKey::family`].
pub const FAMILY_IPV4: u8 = 4;
pub const FAMILY_IPV6: u8 = 6;

/// IP protocol numbers the parser understands.
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;

/// [`TunnelKey::kind`] values: the encapsulation a flow was found in (0: none).
pub const TUNNEL_NONE: u8 = 0;
/// IPv4 in IPv4 or IPv6 (IP protocol 4).
pub const TUNNEL_IPIP: u8 = 1;
/// IPv6 in IPv4 (6in4) or IPv6 (IP protocol 41).
pub const TUNNEL_IP6: u8 = 2;
/// GRE (RFC 2784/2890), IP or transparent Ethernet bridging payload; id = the GRE key.
pub const TUNNEL_GRE: u8 = 3;
/// VXLAN (RFC 7348); id = the VNI.
pub const TUNNEL_VXLAN: u8 = 4;
/// Geneve (RFC 8926); id = the VNI.
pub const TUNNEL_GENEVE: u8 = 5;
/// Names of the tunnel kinds, indexed by kind (`tunnel.type` in records and alerts; the
/// `[tunnels] kinds` configuration). Kind 2 is named by its outer family where shown.
pub const TUNNEL_NAMES: [&str; 6] = ["none", "ipip", "ip6", "gre", "vxlan", "geneve"];

/// TCP flag bits as they appear in the TCP header's flags byte.
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;
pub const TCP_URG: u8 = 0x20;
pub const TCP_ECE: u8 = 0x40;
pub const TCP_CWR: u8 = 0x80;

/// Canonical, direction-independent flow key: the endpoint with the smaller `(addr, port)` is
/// always `a`. The key of a flow everywhere in userspace and in events; the kernel's flow maps
/// are keyed by its shorter form, [`MapKey`]. IPv4 addresses occupy the first 4 bytes of `addr_*`
/// (rest zero). Ports are host byte order; 0 for protocols without ports (ICMP, ...). Aligned
/// to 8 (no padding: 80 bytes either way) so the XDP program copies it as 64-bit words.
///
/// A flow found inside a tunnel also carries the tunnel's identity ([`TunnelKey`]), so two
/// tenants' identical inner addresses never share a flow. All zero outside a tunnel.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub addr_a: [u8; 16],
    pub addr_b: [u8; 16],
    pub port_a: u16,
    pub port_b: u16,
    /// Outermost 802.1Q/802.1ad VLAN id, 0 when untagged.
    pub vlan: u16,
    /// IP protocol number (TCP 6, UDP 17, ICMP 1, ICMPv6 58, ...).
    pub proto: u8,
    /// [`FAMILY_IPV4`] or [`FAMILY_IPV6`].
    pub family: u8,
    /// The tunnel the flow was found in (all zero for a plain flow); also, on its own, the key
    /// of the tunnel's outer flow in `OUTER_FLOWS`.
    pub tunnel: TunnelKey,
}

/// Key of the kernel's `FLOWS` and `EMBRYOS` maps: a [`FlowKey`] with its 40-byte tunnel part
/// replaced by a 64-bit digest ([`crate::flow::tunnel_digest`], 0 outside a tunnel); the
/// tunnel itself is in the value ([`FlowStats::tunnel`]). 48 bytes instead of 80: the kernel
/// hashes and compares the key on every lookup, and an 80-byte key cost some 25 ns more per
/// lookup than a 40-byte one on the benchmark VM (`cargo xtask bench xdp`, the counter program
/// with either key). Two flows of different tunnels share a key only when their inner 5-tuple,
/// VLAN and the digests of their tunnels are all equal.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MapKey {
    pub addr_a: [u8; 16],
    pub addr_b: [u8; 16],
    pub port_a: u16,
    pub port_b: u16,
    pub vlan: u16,
    pub proto: u8,
    pub family: u8,
    /// [`crate::flow::tunnel_digest`] of [`FlowKey::tunnel`]: 0 for a plain flow.
    pub tunnel: u64,
}

impl MapKey {
    /// The map key of a flow.
    #[inline(always)]
    pub fn of(k: &FlowKey) -> Self {
        Self {
            addr_a: k.addr_a,
            addr_b: k.addr_b,
            port_a: k.port_a,
            port_b: k.port_b,
            vlan: k.vlan,
            proto: k.proto,
            family: k.family,
            tunnel: crate::flow::tunnel_digest(&k.tunnel),
        }
    }

    /// The flow key again, with the tunnel the map value holds.
    #[inline(always)]
    pub fn flow_key(&self, tunnel: &TunnelKey) -> FlowKey {
        FlowKey {
            addr_a: self.addr_a,
            addr_b: self.addr_b,
            port_a: self.port_a,
            port_b: self.port_b,
            vlan: self.vlan,
            proto: self.proto,
            family: self.family,
            tunnel: *tunnel,
        }
    }
}

/// The identity of a tunnel: kind, VNI or GRE key, and the outer endpoints. Part of every
/// [`FlowKey`] (the last 40 bytes) and the key of the `OUTER_FLOWS` map, where the outer
/// packets between two tunnel endpoints are counted once per tunnel (one outer flow however
/// many inner flows it carries).
///
/// The outer pair is canonical on its own (`outer_a` is the smaller address), not oriented by
/// the inner endpoints: a mirroring tunnel (AWS traffic mirroring, ERSPAN-like VXLAN) carries
/// both directions of a flow from one tunnel endpoint to the other, and they stay one flow.
/// [`FlowStats::outer_src_is_a`] and [`OuterStats::first_from_a`] say which side the first
/// packet came from.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TunnelKey {
    /// Outer (tunnel endpoint) addresses, same 16-byte form as [`FlowKey::addr_a`].
    pub outer_a: [u8; 16],
    pub outer_b: [u8; 16],
    /// VXLAN/Geneve VNI or GRE key (0 when the tunnel has none).
    pub id: u32,
    /// `TUNNEL_*` kind, [`TUNNEL_NONE`] for a plain flow.
    pub kind: u8,
    /// Family of the outer addresses (0 outside a tunnel).
    pub family: u8,
    pub _pad: u16,
}

/// Value of the `OUTER_FLOWS` map: the outer packets of one tunnel ([`TunnelKey`]), the
/// packets every inner flow of that tunnel was decapsulated from. Per direction by outer
/// endpoint (`ab`: from `outer_a` to `outer_b`), so per-CPU copies merge by adding. Bytes are
/// whole outer frames, as [`DirStats::bytes`]; times as [`FlowStats::first_ns`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OuterStats {
    pub ab_packets: u64,
    pub ab_bytes: u64,
    pub ba_packets: u64,
    pub ba_bytes: u64,
    /// Inner flows started by a packet of this tunnel (new in the sensor's flow table).
    pub inner_flows: u64,
    pub first_ns: u64,
    pub last_ns: u64,
    /// 1 when the first packet came from `outer_a`.
    pub first_from_a: u8,
    pub _pad: [u8; 7],
}

/// TCP flag counters, one per flag. A packet with SYN+ACK counts in `synack` (not in `syn`)
/// and also in `ack`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpFlagCounts {
    pub syn: u32,
    pub synack: u32,
    pub fin: u32,
    pub rst: u32,
    pub psh: u32,
    pub urg: u32,
    pub ack: u32,
    pub ece: u32,
    pub cwr: u32,
    pub _pad: u32,
}

/// Features of one direction of a flow (endpoint `a` → `b`, or `b` → `a`).
///
/// Units: bytes are whole-frame bytes as seen by XDP (no FCS); `l3_*` are IP lengths (IPv4 total
/// length, IPv6 payload length + 40); inter-arrival times (`iat_*`) are microseconds between
/// consecutive packets of this direction; timestamps are nanoseconds of `CLOCK_MONOTONIC`
/// (kernel) or of the capture clock (replay).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirStats {
    pub packets: u64,
    pub bytes: u64,
    pub l3_sum: u64,
    pub l3_sq_sum: u64,
    pub iat_sum_us: u64,
    pub iat_sq_sum_us: u64,
    pub first_ns: u64,
    pub last_ns: u64,
    pub iat_min_us: u32,
    pub iat_max_us: u32,
    pub l3_min: u16,
    pub l3_max: u16,
    /// TCP window of the first packet of this direction (unscaled).
    pub init_win: u16,
    /// IP TTL / hop limit of the first packet of this direction.
    pub init_ttl: u8,
    pub _pad: u8,
    pub flags: TcpFlagCounts,
}

/// Value of the `FLOWS` map: both directions of one flow, stored by endpoint (`ab` is a → b)
/// so per-CPU copies merge without knowing who initiated. Exactly one slot per CPU in the
/// kernel (`LRU_PERCPU_HASH`); userspace merges them with [`crate::flow::merge`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    pub ab: DirStats,
    pub ba: DirStats,
    /// First / last packet of the flow in either direction (ns).
    pub first_ns: u64,
    pub last_ns: u64,
    /// 1 when endpoint `a` sent the first packet (the initiator), else 0.
    pub initiator_is_a: u8,
    /// ICMP/ICMPv6 type and code of the first ICMP packet (0 otherwise).
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// Bit set of `END_*`: which closing flags were seen.
    pub end_flags: u8,
    /// 1 when the first packet's outer (tunnel) source is `outer_a` of the key's tunnel; 1
    /// outside a tunnel. Not a feature: the ANN never reads it.
    pub outer_src_is_a: u8,
    pub _pad: [u8; 3],
    /// The tunnel the flow was found in (all zero for a plain flow): the part of its
    /// [`FlowKey`] that the kernel's [`MapKey`] holds only as a digest. Set by the flow's first
    /// packet. Not a feature.
    pub tunnel: TunnelKey,
}

/// Key of the `FRAGS` map: one fragmented datagram whose first fragment cut the TCP header.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FragKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// IPv4 identification or IPv6 fragment identification.
    pub id: u32,
    pub proto: u8,
    pub family: u8,
    pub vlan: u16,
}

/// Value of the `FRAGS` map: the flow the datagram's first fragment was counted in.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragHead {
    pub key: FlowKey,
    /// 1 when the datagram travels from endpoint `a` of `key`.
    pub from_a: u8,
    pub _pad: [u8; 7],
}

/// Capacity of the `FRAGS` LRU map (datagrams waiting for the fragment with their TCP flags).
pub const MAX_FRAGS: u32 = 4096;

/// [`FlowStats::end_flags`] bits.
pub const END_FIN: u8 = 1;
pub const END_RST: u8 = 2;

/// ARP fields of an ARP packet (Ethernet/IPv4 ARP only). Aligned to 8 (24 bytes either way)
/// so the XDP program copies it as three 64-bit words.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArpInfo {
    /// 1 = request, 2 = reply.
    pub op: u16,
    pub sender_mac: [u8; 6],
    pub sender_ip: [u8; 4],
    pub target_mac: [u8; 6],
    pub target_ip: [u8; 4],
    pub _pad: [u8; 2],
}

/// [`Event::kind`] values (2, a TCP flow end, is no longer sent: the flow record says it).
pub const EVENT_FLOW_START: u8 = 1;
pub const EVENT_ARP: u8 = 3;

/// The packet that triggered a flow event.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventPacket {
    /// 1 when the packet travelled from endpoint `a` of the key.
    pub from_a: u8,
    pub tcp_flags: u8,
    pub icmp_type: u8,
    pub icmp_code: u8,
    pub l3_len: u16,
    pub ttl: u8,
    /// 1 when the packet was a first fragment that cut the TCP header before its flags
    /// (`tcp_flags` is then unknown, not NULL).
    pub l4_partial: u8,
    /// 1 when the packet's outer (tunnel) source is `outer_a` of the key (1 outside a tunnel).
    pub outer_src_is_a: u8,
    /// Padding as integers, not a byte array: a zeroed array is a `memset` call (a loop of byte
    /// stores) on the BPF target.
    pub _pad0: u8,
    pub _pad1: u16,
    pub _pad2: u32,
}

impl EventPacket {
    #[inline(always)]
    pub fn from_meta(m: &crate::parse::PacketMeta, from_a: bool) -> Self {
        let outer_src_is_a = crate::flow::outer_src_is_a(m);
        Self {
            from_a: from_a as u8,
            tcp_flags: m.tcp_flags,
            icmp_type: m.icmp_type,
            icmp_code: m.icmp_code,
            l3_len: m.l3_len,
            ttl: m.ttl,
            l4_partial: m.l4_partial as u8,
            outer_src_is_a: outer_src_is_a as u8,
            _pad0: 0,
            _pad1: 0,
            _pad2: 0,
        }
    }
}

/// One record of the `EVENTS` ring buffer: a flow started, or an ARP packet was seen (`arp`,
/// and `key.vlan`). For flow events `pkt` describes the packet that caused it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    pub kind: u8,
    pub reason: u8,
    /// Source MAC of the frame.
    pub src_mac: [u8; 6],
    pub ts_ns: u64,
    pub key: FlowKey,
    pub arp: ArpInfo,
    pub pkt: EventPacket,
}

/// Index of each counter inside [`Stats`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    Packets = 0,
    Bytes,
    Ipv4,
    Ipv6,
    Arp,
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
    OtherL4,
    /// Ethernet frames that are neither IP nor ARP (LLDP, ...).
    OtherL3,
    VlanTagged,
    /// Non-first IP fragments: counted, never parsed as L4.
    Fragments,
    /// Frames whose headers are truncated or inconsistent.
    Malformed,
    FlowsCreated,
    /// Inserts into `FLOWS` that failed (should stay 0: LRU evicts instead).
    FlowInsertFailed,
    EventsSent,
    /// Ring-buffer reservations that failed (buffer full).
    EventsDropped,
    /// Flows moved from `EMBRYOS` to `FLOWS` once they proved two-way.
    FlowsPromoted,
    /// ARP packets over the per-CPU ARP event budget ([`ARP_EVENTS_PER_SEC`]): no event.
    ArpEventsThrottled,
    /// Frames whose inner packet was decapsulated from a tunnel (counted by its inner family
    /// and protocol).
    Tunneled,
    /// Tunnel headers that were truncated or inconsistent, or whose inner packet was: the
    /// outer packet is kept as a flow of its own.
    TunnelMalformed,
}

pub const NUM_COUNTERS: u32 = Counter::TunnelMalformed as u32 + 1;

/// The single value of the `STATS` per-CPU array (one copy per CPU, summed by userspace).
/// Field order is [`Counter`] order; `bpftool map dump pinned .../STATS` shows the names.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub packets: u64,
    pub bytes: u64,
    pub ipv4: u64,
    pub ipv6: u64,
    pub arp: u64,
    pub tcp: u64,
    pub udp: u64,
    pub icmp: u64,
    pub icmpv6: u64,
    pub other_l4: u64,
    pub other_l3: u64,
    pub vlan_tagged: u64,
    pub fragments: u64,
    pub malformed: u64,
    pub flows_created: u64,
    pub flow_insert_failed: u64,
    pub events_sent: u64,
    pub events_dropped: u64,
    pub flows_promoted: u64,
    pub arp_events_throttled: u64,
    pub tunneled: u64,
    pub tunnel_malformed: u64,
}

const _: () = assert!(core::mem::size_of::<Stats>() == NUM_COUNTERS as usize * 8);

impl Stats {
    /// The counters as an array indexed by [`Counter`].
    #[inline(always)]
    pub fn as_array(&self) -> &[u64; NUM_COUNTERS as usize] {
        // SAFETY: #[repr(C)], NUM_COUNTERS u64 fields, no padding (asserted above).
        unsafe { &*(self as *const Self).cast() }
    }
    #[inline(always)]
    pub fn as_array_mut(&mut self) -> &mut [u64; NUM_COUNTERS as usize] {
        // SAFETY: as above.
        unsafe { &mut *(self as *mut Self).cast() }
    }
    #[inline(always)]
    pub fn add(&mut self, c: Counter, n: u64) {
        // `get_mut`, not indexing: no panic path in the BPF program.
        if let Some(v) = self.as_array_mut().get_mut(c as usize) {
            *v += n;
        }
    }
    #[inline(always)]
    pub fn get(&self, c: Counter) -> u64 {
        self.as_array().get(c as usize).copied().unwrap_or(0)
    }
}

/// Counter names, indexed by [`Counter`] (used by the CLI, the API and `/metrics`).
pub const COUNTER_NAMES: [&str; NUM_COUNTERS as usize] = [
    "packets",
    "bytes",
    "ipv4",
    "ipv6",
    "arp",
    "tcp",
    "udp",
    "icmp",
    "icmpv6",
    "other_l4",
    "other_l3",
    "vlan_tagged",
    "fragments",
    "malformed",
    "flows_created",
    "flow_insert_failed",
    "events_sent",
    "events_dropped",
    "flows_promoted",
    "arp_events_throttled",
    "tunneled",
    "tunnel_malformed",
];

// Layout guards: no implicit padding anywhere (Pod safety, BTF readability).
const _: () = assert!(core::mem::size_of::<FlowKey>() == 80);
const _: () = assert!(core::mem::size_of::<TunnelKey>() == 40);
const _: () = assert!(core::mem::offset_of!(FlowKey, tunnel) == 40);
const _: () = assert!(core::mem::size_of::<OuterStats>() == 64);
const _: () = assert!(core::mem::size_of::<TcpFlagCounts>() == 40);
const _: () = assert!(core::mem::size_of::<DirStats>() == 64 + 16 + 40);
const _: () = assert!(core::mem::size_of::<FlowStats>() == 2 * 120 + 24 + 40);
const _: () = assert!(core::mem::size_of::<MapKey>() == 48);
const _: () = assert!(core::mem::size_of::<ArpInfo>() == 24);
const _: () = assert!(core::mem::size_of::<FragKey>() == 40);
const _: () = assert!(core::mem::size_of::<FragHead>() == 88);
const _: () = assert!(core::mem::size_of::<Event>() == 16 + 80 + 24 + 16);
