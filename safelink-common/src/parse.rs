//! The packet parser: Ethernet, 802.1Q/802.1ad VLAN tags, ARP, IPv4 (options, fragments), IPv6
//! (hop-by-hop, routing, fragment, destination-options and AH extension headers), TCP, UDP,
//! ICMP and ICMPv6, and one level of tunnel: IPv4/IPv6 in IPv4/IPv6 (protocols 4 and 41), GRE
//! (RFC 2784/2890, optional checksum, key and sequence; IP or transparent Ethernet bridging
//! payload), VXLAN and Geneve (with options) on the UDP ports of a [`TunnelConfig`].
//!
//! A decapsulated packet is described by its inner headers, with the tunnel's identity in
//! [`PacketMeta::tunnel_kind`] and the fields after it. A tunnel that is truncated or
//! inconsistent (or whose inner packet is) sets [`ParseOut::tunnel_malformed`] and the outer
//! packet is described instead, so it still counts as a flow. VXLAN and Geneve are known by
//! their UDP port only, so there the port is a hint: a datagram on it that does not hold a
//! credible header (too short, flags, version or reserved bits wrong, options beyond the
//! datagram, a payload other than Ethernet or IP) is ordinary UDP, not a malformed tunnel;
//! only a credible header whose inner frame is broken counts as one. A fragmented outer packet is
//! never decapsulated (its inner headers may be cut).
//!
//! It is written once, generic over [`PacketBytes`], and runs both inside the XDP program
//! (bounded: a fixed number of VLAN tags and extension headers, no unbounded loops) and in the
//! userspace pcap replay path. Work per packet is bounded by [`MAX_VLAN_TAGS`] and
//! [`MAX_IPV6_EXT_HEADERS`].
//!
//! Hostile input it is built for:
//! - L4 headers are read only inside the IP datagram (IPv4 total length, IPv6 payload length),
//!   never from an Ethernet trailer or padding;
//! - a first fragment that cuts the TCP header (`nmap -f`) still yields the flow (ports from
//!   its first bytes, [`PacketMeta::l4_partial`] set); the TCP flags and window come later from
//!   the fragment that carries them ([`late_tcp_header`]), matched through [`FragInfo`];
//! - IPv6 chains longer than [`MAX_IPV6_EXT_HEADERS`] still yield an address-level flow
//!   (protocol = the next header not followed, no ports) instead of nothing;
//! - IPv6 jumbograms (payload length 0 with a hop-by-hop header) take their length from the
//!   frame, and lengths saturate instead of wrapping.

use crate::layout::{
    ArpInfo, Counter, FAMILY_IPV4, FAMILY_IPV6, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP,
    IPPROTO_UDP, TUNNEL_GENEVE, TUNNEL_GRE, TUNNEL_IP6, TUNNEL_IPIP, TUNNEL_NONE, TUNNEL_VXLAN,
};

/// Which tunnels the parser opens. `#[repr(C)]` plain data: the XDP program reads it from a
/// global the loader sets.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TunnelConfig {
    /// Bit `1 << TUNNEL_*` set for each kind decoded; 0 turns decapsulation off.
    pub kinds: u32,
    /// UDP destination port of VXLAN (IANA 4789) and of Geneve (IANA 6081).
    pub vxlan_port: u16,
    pub geneve_port: u16,
}

impl TunnelConfig {
    /// Every kind, on its IANA port.
    pub const DEFAULT: Self = Self {
        kinds: (1 << TUNNEL_IPIP)
            | (1 << TUNNEL_IP6)
            | (1 << TUNNEL_GRE)
            | (1 << TUNNEL_VXLAN)
            | (1 << TUNNEL_GENEVE),
        vxlan_port: 4789,
        geneve_port: 6081,
    };
    /// No decapsulation: tunnels are seen as their outer flows.
    pub const OFF: Self = Self {
        kinds: 0,
        vxlan_port: 0,
        geneve_port: 0,
    };
    #[inline(always)]
    pub fn decodes(&self, kind: u8) -> bool {
        self.kinds & (1u32 << (kind & 31)) != 0
    }
}

impl Default for TunnelConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Read access to one frame. The kernel implements it over the XDP context (with the bounds
/// checks the verifier needs), userspace over a captured frame.
pub trait PacketBytes {
    /// Length of the frame on the wire (may exceed the captured bytes in a snaplen-cut capture).
    fn wire_len(&self) -> usize;
    /// The `N` bytes starting at `off`, or `None` when they are not all present. Returns a
    /// reference into the frame so that no header is copied onto the (512-byte) BPF stack.
    fn read<const N: usize>(&self, off: usize) -> Option<&[u8; N]>;
}

impl PacketBytes for [u8] {
    #[inline(always)]
    fn wire_len(&self) -> usize {
        self.len()
    }
    #[inline(always)]
    fn read<const N: usize>(&self, off: usize) -> Option<&[u8; N]> {
        let end = off.checked_add(N)?;
        self.get(off..end)?.try_into().ok()
    }
}

/// A captured frame whose wire length may exceed the captured bytes (snaplen).
#[derive(Clone, Copy, Debug)]
pub struct CapturedFrame<'a> {
    pub data: &'a [u8],
    pub wire_len: usize,
}

impl PacketBytes for CapturedFrame<'_> {
    #[inline(always)]
    fn wire_len(&self) -> usize {
        self.wire_len.max(self.data.len())
    }
    #[inline(always)]
    fn read<const N: usize>(&self, off: usize) -> Option<&[u8; N]> {
        self.data.read(off)
    }
}

/// The `STATS` counters a parsed frame bumps besides `Packets`/`Bytes`/`VlanTagged`. One
/// definition for the kernel and the replay path.
#[inline(always)]
pub fn frame_counters(parsed: &Parsed, out: &ParseOut) -> (Counter, Option<Counter>) {
    let family = |f: u8| {
        if f == FAMILY_IPV4 {
            Counter::Ipv4
        } else {
            Counter::Ipv6
        }
    };
    match parsed {
        Parsed::Ip => (
            family(out.meta.family),
            Some(match out.meta.proto {
                IPPROTO_TCP => Counter::Tcp,
                IPPROTO_UDP => Counter::Udp,
                IPPROTO_ICMP => Counter::Icmp,
                IPPROTO_ICMPV6 => Counter::Icmpv6,
                _ => Counter::OtherL4,
            }),
        ),
        Parsed::Fragment(f) => (family(*f), Some(Counter::Fragments)),
        Parsed::Arp => (Counter::Arp, None),
        Parsed::OtherL3 => (Counter::OtherL3, None),
        Parsed::Malformed(_) => (Counter::Malformed, None),
    }
}

/// The tunnel counter a parsed frame bumps, if any ([`Counter::Tunneled`] or
/// [`Counter::TunnelMalformed`]).
#[inline(always)]
pub fn tunnel_counter(out: &ParseOut) -> Option<Counter> {
    if out.tunnel_malformed {
        Some(Counter::TunnelMalformed)
    } else if out.meta.tunnel_kind != TUNNEL_NONE {
        Some(Counter::Tunneled)
    } else {
        None
    }
}

pub const ETH_HLEN: usize = 14;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IPV6: u16 = 0x86DD;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88A8;
/// GRE protocol type of transparent Ethernet bridging (an Ethernet frame follows).
pub const ETH_P_TEB: u16 = 0x6558;
const IPPROTO_IPIP: u8 = 4;
const IPPROTO_IPV6: u8 = 41;
const IPPROTO_GRE: u8 = 47;
/// VLAN tags parsed (outer 802.1ad + inner 802.1Q covers QinQ).
pub const MAX_VLAN_TAGS: usize = 2;
/// IPv6 extension headers followed. A longer chain still makes an address-level flow (no
/// ports): see the module documentation.
pub const MAX_IPV6_EXT_HEADERS: usize = 12;
/// Offset of the flags byte in the TCP header.
const TCP_FLAGS_AT: u16 = 13;

/// Why a frame was counted as malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    TruncatedEthernet,
    TruncatedVlan,
    TruncatedArp,
    TruncatedIp,
    BadIpVersion,
    BadIhl,
    BadIpLength,
    Ipv6ExtChain,
    TruncatedL4,
    BadTcpOffset,
}

/// Header fields of one IP packet that the flow features need. Aligned to 8 with the
/// addresses first, so that the XDP program moves them as 64-bit words (a byte-wise copy or
/// fill becomes a `memcpy`/`memset` call on the BPF target: a loop of byte stores).
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketMeta {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// Tunnel endpoints (outer source and destination) of a decapsulated packet; zero
    /// otherwise. Beside the inner addresses, 8-aligned like them.
    pub outer_src: [u8; 16],
    pub outer_dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub family: u8,
    pub vlan: u16,
    /// IPv4 total length, or IPv6 payload length + 40.
    pub l3_len: u16,
    pub ttl: u8,
    pub tcp_flags: u8,
    pub window: u16,
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// The packet is a first fragment that cut the TCP header before its flags: `tcp_flags`
    /// and `window` are unknown here and arrive with a later fragment ([`late_tcp_header`]).
    pub l4_partial: bool,
    /// VNI or GRE key (0 when the tunnel carries none).
    pub tunnel_id: u32,
    /// `TUNNEL_*` kind; [`TUNNEL_NONE`] for a packet that was not in a tunnel.
    pub tunnel_kind: u8,
    /// Family of `outer_*` (0 outside a tunnel).
    pub outer_family: u8,
}

/// Fragmentation of an IP packet; all zero for an unfragmented packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragInfo {
    /// Part of a fragmented datagram (more fragments follow, or a non-zero offset).
    pub fragmented: bool,
    /// IPv4 identification or IPv6 fragment identification.
    pub id: u32,
    /// Byte offset of this fragment's data in the datagram's upper-layer payload.
    pub offset: u16,
    /// Frame offset of this fragment's upper-layer bytes, and how many it carries.
    pub data_off: u32,
    pub data_len: u32,
}

/// TCP header fields recovered from a non-first fragment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LateTcp {
    pub flags: u8,
    /// The window, when the fragment carries it as well.
    pub window: Option<u16>,
}

/// What a frame turned out to be. The header fields themselves land in [`ParseOut`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// An IP packet (first fragment or unfragmented): [`ParseOut::meta`] is filled.
    Ip,
    /// A non-first IP fragment of this family: counted, never parsed as L4 (addresses, protocol
    /// and [`ParseOut::frag`] are filled, for [`late_tcp_header`]).
    Fragment(u8),
    /// An Ethernet/IPv4 ARP packet: [`ParseOut::arp`] is filled.
    Arp,
    /// Neither IP nor ARP (LLDP, STP, ...).
    OtherL3,
    Malformed(Malformed),
}

/// Where the parser writes header fields. The kernel keeps it in a per-CPU map slot (too large
/// for the BPF stack); userspace on its stack.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParseOut {
    pub meta: PacketMeta,
    /// Fragmentation of the IP packet ([`Parsed::Ip`] and [`Parsed::Fragment`]).
    pub frag: FragInfo,
    pub arp: ArpInfo,
    pub src_mac: [u8; 6],
    /// Outermost VLAN id (0 when untagged).
    pub vlan: u16,
    pub vlan_tagged: bool,
    /// A tunnel was found but could not be opened (truncated or inconsistent): the outer
    /// packet is in `meta`.
    pub tunnel_malformed: bool,
}

#[inline(always)]
fn be16(a: u8, b: u8) -> u16 {
    u16::from_be_bytes([a, b])
}

/// Parses one Ethernet frame into `out` and says what it was, opening the tunnels of
/// [`TunnelConfig::DEFAULT`]. See [`parse_frame_with`].
#[inline(always)]
pub fn parse_frame<P: PacketBytes + ?Sized>(p: &P, out: &mut ParseOut) -> Parsed {
    parse_frame_with(p, &TunnelConfig::DEFAULT, out)
}

/// Parses one Ethernet frame into `out` and says what it was, opening the tunnels `tunnels`
/// names. Fields of `out` that the frame does not carry are left as they were (the tunnel
/// fields are always reset); callers reset `out` between frames when they care.
#[inline(always)]
pub fn parse_frame_with<P: PacketBytes + ?Sized>(
    p: &P,
    tunnels: &TunnelConfig,
    out: &mut ParseOut,
) -> Parsed {
    let Some(eth) = p.read::<ETH_HLEN>(0) else {
        return Parsed::Malformed(Malformed::TruncatedEthernet);
    };
    out.src_mac = [eth[6], eth[7], eth[8], eth[9], eth[10], eth[11]];
    let mut ethertype = be16(eth[12], eth[13]);
    let mut off = ETH_HLEN;
    out.vlan = 0;
    out.vlan_tagged = false;
    for _ in 0..MAX_VLAN_TAGS {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        let Some(tag) = p.read::<4>(off) else {
            out.vlan_tagged = true;
            return Parsed::Malformed(Malformed::TruncatedVlan);
        };
        if !out.vlan_tagged {
            out.vlan = be16(tag[0], tag[1]) & 0x0fff;
        }
        out.vlan_tagged = true;
        ethertype = be16(tag[2], tag[3]);
        off += 4;
    }
    put(&mut out.tunnel_malformed, false);
    let m = &mut out.meta;
    put(&mut m.tunnel_kind, TUNNEL_NONE);
    put(&mut m.outer_family, 0);
    put(&mut m.tunnel_id, 0);
    zero16(&mut m.outer_src);
    zero16(&mut m.outer_dst);
    match ethertype {
        ETH_P_ARP => parse_arp(p, off, &mut out.arp),
        ETH_P_IP | ETH_P_IPV6 => parse_ip(p, ethertype, off, tunnels, out),
        _ => Parsed::OtherL3,
    }
}

/// What follows an outer IP packet's header.
enum Decap {
    /// Not a tunnel (or one not decoded): the outer packet is the flow.
    None,
    /// A tunnel header that is truncated or inconsistent.
    Bad,
    /// An inner IP packet of `ethertype` at `off`.
    Inner {
        kind: u8,
        id: u32,
        ethertype: u16,
        off: usize,
    },
}

/// The IP packet at `off`, and the one inside it when it is a tunnel `tunnels` opens.
#[inline(always)]
fn parse_ip<P: PacketBytes + ?Sized>(
    p: &P,
    ethertype: u16,
    off: usize,
    tunnels: &TunnelConfig,
    out: &mut ParseOut,
) -> Parsed {
    let outer = parse_l3(p, ethertype, off, p.wire_len(), out);
    if outer != Parsed::Ip || tunnels.kinds == 0 {
        return outer;
    }
    // Everything the tunnel code needs from the outer parse is read back from `out` with
    // volatile loads: in the XDP program `out` lives in a map value, whose contents the
    // verifier does not track, so the many paths through the outer headers (IPv6 extension
    // chains, ...) join here into one state instead of each being explored again through the
    // inner headers (which exceeded the verifier's million-instruction budget).
    let f = &out.frag;
    // SAFETY: valid, aligned references into `out`.
    let (fragmented, l4, len, proto, dport) = unsafe {
        (
            core::ptr::read_volatile(&f.fragmented),
            core::ptr::read_volatile(&f.data_off) as usize,
            core::ptr::read_volatile(&f.data_len) as usize,
            core::ptr::read_volatile(&out.meta.proto),
            core::ptr::read_volatile(&out.meta.dport),
        )
    };
    if fragmented {
        return outer;
    }
    let end = l4 + len;
    let (kind, id, inner_type, inner_off) = match decap(p, tunnels, proto, dport, l4, end) {
        Decap::None => return outer,
        Decap::Bad => {
            out.tunnel_malformed = true;
            return outer;
        }
        Decap::Inner {
            kind,
            id,
            ethertype,
            off,
        } => (kind, id, ethertype, off),
    };
    let saved_meta = out.meta;
    let saved_frag = out.frag;
    let m = &mut out.meta;
    m.outer_src = m.src;
    m.outer_dst = m.dst;
    m.outer_family = m.family;
    m.tunnel_id = id;
    m.tunnel_kind = kind;
    let inner = parse_l3(p, inner_type, inner_off, end, out);
    if let Parsed::Malformed(_) = inner {
        out.meta = saved_meta;
        out.frag = saved_frag;
        out.tunnel_malformed = true;
        return outer;
    }
    inner
}

#[inline(always)]
fn parse_l3<P: PacketBytes + ?Sized>(
    p: &P,
    ethertype: u16,
    off: usize,
    limit: usize,
    out: &mut ParseOut,
) -> Parsed {
    if ethertype == ETH_P_IP {
        parse_ipv4(p, off, limit, out)
    } else {
        parse_ipv6(p, off, limit, out)
    }
}

/// The tunnel (if any) whose header starts at `l4`, the outer payload ending at `end`.
#[inline(always)]
fn decap<P: PacketBytes + ?Sized>(
    p: &P,
    t: &TunnelConfig,
    proto: u8,
    dport: u16,
    l4: usize,
    end: usize,
) -> Decap {
    let ip = |kind: u8, ethertype: u16| Decap::Inner {
        kind,
        id: 0,
        ethertype,
        off: l4,
    };
    match proto {
        IPPROTO_IPIP if t.decodes(TUNNEL_IPIP) => ip(TUNNEL_IPIP, ETH_P_IP),
        IPPROTO_IPV6 if t.decodes(TUNNEL_IP6) => ip(TUNNEL_IP6, ETH_P_IPV6),
        IPPROTO_GRE if t.decodes(TUNNEL_GRE) => gre(p, l4, end),
        // The UDP port is only a hint: a datagram on it whose payload is no credible VXLAN
        // or Geneve header ([`udp_tunnel_header`]) is ordinary UDP, kept as its plain flow and
        // never counted as a malformed tunnel.
        IPPROTO_UDP if dport == t.vxlan_port && t.decodes(TUNNEL_VXLAN) => {
            let Some(h) = udp_tunnel_header(p, l4, end) else {
                return Decap::None;
            };
            // The I flag says the VNI is valid (RFC 7348); the last byte is reserved (zero).
            // The other reserved bits are not checked: VXLAN-GBP uses them.
            if h[0] & 0x08 == 0 || h[7] != 0 {
                return Decap::None;
            }
            let vni = u32::from_be_bytes([0, h[4], h[5], h[6]]);
            inner_ethernet(p, TUNNEL_VXLAN, vni, l4 + 16, end)
        }
        IPPROTO_UDP if dport == t.geneve_port && t.decodes(TUNNEL_GENEVE) => {
            let Some(h) = udp_tunnel_header(p, l4, end) else {
                return Decap::None;
            };
            // Version 0, the six reserved flag bits and the last byte zero (RFC 8926).
            if h[0] >> 6 != 0 || h[1] & 0x3f != 0 || h[7] != 0 {
                return Decap::None;
            }
            let vni = u32::from_be_bytes([0, h[4], h[5], h[6]]);
            let at = l4 + 16 + (h[0] & 0x3f) as usize * 4;
            match be16(h[2], h[3]) {
                ETH_P_TEB if at + ETH_HLEN <= end => inner_ethernet(p, TUNNEL_GENEVE, vni, at, end),
                e @ (ETH_P_IP | ETH_P_IPV6) if at < end => Decap::Inner {
                    kind: TUNNEL_GENEVE,
                    id: vni,
                    ethertype: e,
                    off: at,
                },
                // Options beyond the datagram, nothing after them, or another payload.
                _ => Decap::None,
            }
        }
        _ => Decap::None,
    }
}

/// The 8-byte VXLAN/Geneve header after the UDP header at `l4`, when the datagram is long
/// enough to hold it and an Ethernet header after it (the shortest tunnelled frame);
/// otherwise the datagram is not a tunnel, whatever its port.
#[inline(always)]
fn udp_tunnel_header<P: PacketBytes + ?Sized>(p: &P, l4: usize, end: usize) -> Option<&[u8; 8]> {
    if l4 + 16 + ETH_HLEN > end {
        return None;
    }
    read_in::<P, 8>(p, l4 + 8, end)
}

/// GRE flag bits (RFC 2784/2890): checksum, routing (RFC 1701, not decoded), key, sequence.
const GRE_C: u16 = 0x8000;
const GRE_R: u16 = 0x4000;
const GRE_K: u16 = 0x2000;
const GRE_S: u16 = 0x1000;

#[inline(always)]
fn gre<P: PacketBytes + ?Sized>(p: &P, l4: usize, end: usize) -> Decap {
    let Some(h) = read_in::<P, 4>(p, l4, end) else {
        return Decap::Bad;
    };
    let flags = be16(h[0], h[1]);
    // Version 1 is PPTP's enhanced GRE, and source routing is long deprecated: not tunnels
    // this parser opens.
    if flags & 0x0007 != 0 || flags & GRE_R != 0 {
        return Decap::None;
    }
    let mut at = l4 + 4;
    if flags & GRE_C != 0 {
        at += 4;
    }
    let mut id = 0;
    if flags & GRE_K != 0 {
        let Some(k) = read_in::<P, 4>(p, at, end) else {
            return Decap::Bad;
        };
        id = u32::from_be_bytes(*k);
        at += 4;
    }
    if flags & GRE_S != 0 {
        at += 4;
    }
    match be16(h[2], h[3]) {
        ETH_P_TEB => inner_ethernet(p, TUNNEL_GRE, id, at, end),
        e @ (ETH_P_IP | ETH_P_IPV6) => Decap::Inner {
            kind: TUNNEL_GRE,
            id,
            ethertype: e,
            off: at,
        },
        _ => Decap::None,
    }
}

/// An Ethernet frame (optionally one 802.1Q tag) carried at `at`: its IP packet.
#[inline(always)]
fn inner_ethernet<P: PacketBytes + ?Sized>(
    p: &P,
    kind: u8,
    id: u32,
    at: usize,
    end: usize,
) -> Decap {
    let Some(e) = read_in::<P, ETH_HLEN>(p, at, end) else {
        return Decap::Bad;
    };
    let mut ethertype = be16(e[12], e[13]);
    let mut off = at + ETH_HLEN;
    if ethertype == ETH_P_8021Q {
        let Some(tag) = read_in::<P, 4>(p, off, end) else {
            return Decap::Bad;
        };
        ethertype = be16(tag[2], tag[3]);
        off += 4;
    }
    match ethertype {
        ETH_P_IP | ETH_P_IPV6 => Decap::Inner {
            kind,
            id,
            ethertype,
            off,
        },
        // ARP and the rest inside an overlay: the outer flow carries them.
        _ => Decap::None,
    }
}

#[inline(always)]
fn parse_arp<P: PacketBytes + ?Sized>(p: &P, off: usize, arp: &mut ArpInfo) -> Parsed {
    let Some(a) = p.read::<28>(off) else {
        return Parsed::Malformed(Malformed::TruncatedArp);
    };
    // Ethernet (1) / IPv4 (0x0800), hlen 6, plen 4: anything else is not ARP we understand.
    if be16(a[0], a[1]) != 1 || be16(a[2], a[3]) != ETH_P_IP || a[4] != 6 || a[5] != 4 {
        return Parsed::Malformed(Malformed::TruncatedArp);
    }
    arp.op = be16(a[6], a[7]);
    arp.sender_mac = [a[8], a[9], a[10], a[11], a[12], a[13]];
    arp.sender_ip = [a[14], a[15], a[16], a[17]];
    arp.target_mac = [a[18], a[19], a[20], a[21], a[22], a[23]];
    arp.target_ip = [a[24], a[25], a[26], a[27]];
    Parsed::Arp
}

#[inline(always)]
fn parse_ipv4<P: PacketBytes + ?Sized>(
    p: &P,
    off: usize,
    limit: usize,
    out: &mut ParseOut,
) -> Parsed {
    let Some(h) = p.read::<20>(off) else {
        return Parsed::Malformed(Malformed::TruncatedIp);
    };
    if h[0] >> 4 != 4 {
        return Parsed::Malformed(Malformed::BadIpVersion);
    }
    let ihl = ((h[0] & 0x0f) as usize) * 4;
    if ihl < 20 {
        return Parsed::Malformed(Malformed::BadIhl);
    }
    let total = be16(h[2], h[3]);
    if (total as usize) < ihl || off + total as usize > limit {
        return Parsed::Malformed(Malformed::BadIpLength);
    }
    let frag_field = be16(h[6], h[7]);
    let end = off + total as usize;
    out.frag = FragInfo {
        fragmented: frag_field & 0x3fff != 0,
        id: be16(h[4], h[5]) as u32,
        offset: (frag_field & 0x1fff) << 3,
        data_off: (off + ihl) as u32,
        data_len: (total as usize - ihl) as u32,
    };
    let m = &mut out.meta;
    m.proto = h[9];
    m.family = FAMILY_IPV4;
    m.vlan = out.vlan;
    m.l3_len = total;
    m.ttl = h[8];
    m.src = v4_addr([h[12], h[13], h[14], h[15]]);
    m.dst = v4_addr([h[16], h[17], h[18], h[19]]);
    if out.frag.offset != 0 {
        return Parsed::Fragment(FAMILY_IPV4);
    }
    parse_l4(p, off + ihl, end, out.frag.fragmented, m)
}

#[inline(always)]
fn parse_ipv6<P: PacketBytes + ?Sized>(
    p: &P,
    off: usize,
    limit: usize,
    out: &mut ParseOut,
) -> Parsed {
    let Some(h) = p.read::<40>(off) else {
        return Parsed::Malformed(Malformed::TruncatedIp);
    };
    if h[0] >> 4 != 6 {
        return Parsed::Malformed(Malformed::BadIpVersion);
    }
    let payload = be16(h[4], h[5]) as usize;
    // A jumbogram (RFC 2675) says 0 here and carries its length in a hop-by-hop option: the
    // frame is the datagram.
    let end = if payload == 0 && h[6] == 0 {
        limit
    } else {
        off + 40 + payload
    };
    if end > limit {
        return Parsed::Malformed(Malformed::BadIpLength);
    }
    let f = &mut out.frag;
    put(&mut f.fragmented, false);
    put(&mut f.id, 0);
    put(&mut f.offset, 0);
    put(&mut f.data_off, 0);
    put(&mut f.data_len, 0);
    let m = &mut out.meta;
    m.family = FAMILY_IPV6;
    m.vlan = out.vlan;
    m.l3_len = sat16(end - off);
    m.ttl = h[7];
    m.src.copy_from_slice(&h[8..24]);
    m.dst.copy_from_slice(&h[24..40]);
    let mut next = h[6];
    let mut l4 = off + 40;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        let step = match next {
            // Hop-by-hop, routing, destination options: (len + 1) * 8 bytes.
            0 | 43 | 60 => match p.read::<2>(l4) {
                Some(x) => {
                    next = x[0];
                    (x[1] as usize + 1) * 8
                }
                None => return Parsed::Malformed(Malformed::Ipv6ExtChain),
            },
            // Fragment header: 8 bytes.
            44 => match p.read::<8>(l4) {
                Some(x) => {
                    let field = be16(x[2], x[3]);
                    out.frag.fragmented = true;
                    out.frag.id = u32::from_be_bytes([x[4], x[5], x[6], x[7]]);
                    out.frag.offset = field & 0xfff8;
                    if out.frag.offset != 0 {
                        // A non-first fragment: what follows is data, not headers.
                        m.proto = x[0];
                        out.frag.data_off = (l4 + 8) as u32;
                        out.frag.data_len = end.saturating_sub(l4 + 8) as u32;
                        return Parsed::Fragment(FAMILY_IPV6);
                    }
                    next = x[0];
                    8
                }
                None => return Parsed::Malformed(Malformed::Ipv6ExtChain),
            },
            // Authentication header: (len + 2) * 4 bytes.
            51 => match p.read::<2>(l4) {
                Some(x) => {
                    next = x[0];
                    (x[1] as usize + 2) * 4
                }
                None => return Parsed::Malformed(Malformed::Ipv6ExtChain),
            },
            _ => 0,
        };
        if step == 0 {
            break;
        }
        l4 += step;
        if l4 > end {
            return Parsed::Malformed(Malformed::Ipv6ExtChain);
        }
    }
    m.proto = next;
    out.frag.data_off = l4 as u32;
    out.frag.data_len = (end - l4) as u32;
    if matches!(next, 0 | 43 | 44 | 51 | 60) {
        // Still inside the extension chain after MAX_IPV6_EXT_HEADERS headers: the flow is
        // kept at the address level (protocol = this header, no ports) rather than lost.
        clear_l4(m);
        return Parsed::Ip;
    }
    parse_l4(p, l4, end, out.frag.fragmented, m)
}

/// An IPv4 address in the 16-byte form of [`PacketMeta::src`]: its 4 bytes, then zeros. Built
/// as one 128-bit value (two 64-bit stores in the XDP program, no `memset`).
#[inline(always)]
fn v4_addr(a: [u8; 4]) -> [u8; 16] {
    (u32::from_le_bytes(a) as u128).to_le_bytes()
}

#[inline(always)]
fn sat16(n: usize) -> u16 {
    if n > u16::MAX as usize {
        u16::MAX
    } else {
        n as u16
    }
}

/// Writes one field with a volatile store. Only where adjacent zero stores would otherwise
/// be merged into a `memset` call, which the BPF target compiles to a loop of byte stores.
#[inline(always)]
fn put<T: Copy>(field: &mut T, v: T) {
    // SAFETY: a valid, aligned, exclusive reference.
    unsafe { core::ptr::write_volatile(field, v) }
}

/// Zeroes a 16-byte address of [`PacketMeta`] with two 64-bit volatile stores (a 16-byte
/// array store becomes a `memset` call, a loop of byte stores, on the BPF target).
#[inline(always)]
fn zero16(a: &mut [u8; 16]) {
    let w = (a as *mut [u8; 16]).cast::<u64>();
    // SAFETY: the outer addresses sit at 8-aligned offsets of the 8-aligned PacketMeta
    // (asserted below); 16 bytes are two u64.
    unsafe {
        core::ptr::write_volatile(w, 0);
        core::ptr::write_volatile(w.add(1), 0);
    }
}
const _: () = assert!(core::mem::offset_of!(PacketMeta, outer_src) % 8 == 0);
const _: () = assert!(core::mem::offset_of!(PacketMeta, outer_dst) % 8 == 0);

#[inline(always)]
fn clear_l4(m: &mut PacketMeta) {
    put(&mut m.sport, 0);
    put(&mut m.dport, 0);
    put(&mut m.tcp_flags, 0);
    put(&mut m.window, 0);
    put(&mut m.icmp_type, 0);
    put(&mut m.icmp_code, 0);
    put(&mut m.l4_partial, false);
}

/// `N` bytes at `off`, only when they lie inside the datagram (`off + N <= end`).
#[inline(always)]
fn read_in<P: PacketBytes + ?Sized, const N: usize>(
    p: &P,
    off: usize,
    end: usize,
) -> Option<&[u8; N]> {
    if off + N > end {
        return None;
    }
    p.read::<N>(off)
}

/// Parses the upper-layer header at `off`, inside the datagram ending at `end`. In a first
/// fragment (`fragmented`) a header cut short still gives what it carries.
#[inline(always)]
fn parse_l4<P: PacketBytes + ?Sized>(
    p: &P,
    off: usize,
    end: usize,
    fragmented: bool,
    m: &mut PacketMeta,
) -> Parsed {
    clear_l4(m);
    match m.proto {
        IPPROTO_TCP => {
            if let Some(t) = read_in::<P, 20>(p, off, end) {
                if t[12] >> 4 < 5 {
                    return Parsed::Malformed(Malformed::BadTcpOffset);
                }
                m.sport = be16(t[0], t[1]);
                m.dport = be16(t[2], t[3]);
                m.tcp_flags = t[13];
                m.window = be16(t[14], t[15]);
                return Parsed::Ip;
            }
            if !fragmented {
                return Parsed::Malformed(Malformed::TruncatedL4);
            }
            let Some(t) = read_in::<P, 4>(p, off, end) else {
                return Parsed::Malformed(Malformed::TruncatedL4);
            };
            m.sport = be16(t[0], t[1]);
            m.dport = be16(t[2], t[3]);
            match read_in::<P, 16>(p, off, end) {
                Some(t) => {
                    m.tcp_flags = t[13];
                    m.window = be16(t[14], t[15]);
                }
                None => match read_in::<P, 14>(p, off, end) {
                    Some(t) => m.tcp_flags = t[13],
                    None => m.l4_partial = true,
                },
            }
        }
        IPPROTO_UDP => {
            // The 8-byte header always fits a first fragment; the ports are what counts.
            let Some(u) = read_in::<P, 4>(p, off, end) else {
                return Parsed::Malformed(Malformed::TruncatedL4);
            };
            if !fragmented && off + 8 > end {
                return Parsed::Malformed(Malformed::TruncatedL4);
            }
            m.sport = be16(u[0], u[1]);
            m.dport = be16(u[2], u[3]);
        }
        IPPROTO_ICMP | IPPROTO_ICMPV6 => {
            let Some(i) = read_in::<P, 2>(p, off, end) else {
                return Parsed::Malformed(Malformed::TruncatedL4);
            };
            m.icmp_type = i[0];
            m.icmp_code = i[1];
        }
        _ => {}
    }
    Parsed::Ip
}

/// The TCP flags (and window) that a non-first fragment carries when an earlier fragment cut
/// the TCP header before them (`nmap -f`). `out` is what [`parse_frame`] wrote for a
/// [`Parsed::Fragment`].
#[inline(always)]
pub fn late_tcp_header<P: PacketBytes + ?Sized>(p: &P, out: &ParseOut) -> Option<LateTcp> {
    let f = &out.frag;
    if out.meta.proto != IPPROTO_TCP || f.offset > TCP_FLAGS_AT {
        return None;
    }
    let at = (TCP_FLAGS_AT - f.offset) as usize;
    if at >= f.data_len as usize {
        return None;
    }
    let base = f.data_off as usize + at;
    // No 1-byte reads: the verifier does not follow the `ptr >= end` test LLVM makes of them.
    let (flags, window) = if at + 3 <= f.data_len as usize {
        let b = p.read::<3>(base)?;
        (b[0], Some(be16(b[1], b[2])))
    } else if let Some(b) = p.read::<2>(base) {
        (b[0], None)
    } else {
        // The flags byte ends the frame: read it with the byte before.
        (p.read::<2>(base.checked_sub(1)?)?[1], None)
    };
    Some(LateTcp { flags, window })
}
