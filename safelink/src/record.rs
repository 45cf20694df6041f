//! Records handed to the detectors: finished flows ([`FlowRecord`]) and ARP packets
//! ([`ArpRecord`]), serialisable as the JSON lines that `safelink analyze --flows` prints; and
//! beside them, never given to a detector, the outer flows of tunnels ([`OuterFlowRecord`]).
//!
//! A flow record is oriented by its initiator: `src` sent the flow's first packet, `fwd` holds
//! src → dst features and `rev` dst → src. The feature layout itself lives in
//! `safelink_common::layout`; this module only renders it.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use safelink_common::{
    ArpInfo, DirStats, EventPacket, FAMILY_IPV4, FlowKey, FlowStats, OuterStats, TcpFlagCounts,
    TunnelKey,
};
use serde::Serialize;

use crate::{context::FlowContext, expiry::EndReason, tunnel::Tunnel};

/// One item of the sensor's output stream.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    /// A flow's first packet (live: ring-buffer event; replay: table insert). Lets detectors
    /// count probes without waiting for the flow to end.
    FlowStart(FlowStartRecord),
    /// A finished flow with all its features.
    Flow(FlowRecord),
    /// A running heavy flow's features so far (`end_reason` [`EndReason::Open`]): sent while
    /// the flow lasts, every `[flows] interim_packets` packets at most once per sweep, so long
    /// floods reach the detectors before they end. The flow's final [`Record::Flow`] still
    /// comes, with the complete counters; detectors count only what earlier updates did not.
    FlowUpdate(FlowRecord),
    Arp(ArpRecord),
    /// The outer flow of a tunnel: the outer packets between two tunnel endpoints, counted
    /// once per tunnel beside the inner flows they carried. Not detector input (the pipeline
    /// and the automata skip it): its packets are the inner flows' packets, already counted.
    OuterFlow(OuterFlowRecord),
}

/// Packets and bytes of one direction of an outer flow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OuterDirection {
    pub packets: u64,
    /// Whole outer frames.
    pub bytes: u64,
}

/// The outer flow of one tunnel ([`Tunnel`]: kind, VNI or GRE key, the endpoint pair): every
/// decapsulated packet between the two endpoints, whichever inner flow it carried. Oriented
/// by its first packet: `tunnel.outer_src` sent it, `fwd` is outer_src → outer_dst. Ended by
/// the idle and active timeouts of flows (`end_reason` `idle`, `active`; `flush` at the end of
/// a capture, `evicted` from a full replay table, `open` for a snapshot).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OuterFlowRecord {
    pub tunnel: Tunnel,
    /// Unix time of the first / last packet, nanoseconds.
    pub first_ns: u64,
    pub last_ns: u64,
    pub end_reason: EndReason,
    pub fwd: OuterDirection,
    pub rev: OuterDirection,
    /// Inner flows a packet of this tunnel started.
    pub inner_flows: u64,
}

impl OuterFlowRecord {
    /// Renders a merged outer flow (`epoch_offset_ns` as in [`FlowRecord::new`]). `None` for a
    /// key outside a tunnel (none is ever stored).
    pub fn new(
        k: &TunnelKey,
        s: &OuterStats,
        epoch_offset_ns: i64,
        end_reason: EndReason,
    ) -> Option<Self> {
        let from_a = s.first_from_a != 0;
        let ab = OuterDirection {
            packets: s.ab_packets,
            bytes: s.ab_bytes,
        };
        let ba = OuterDirection {
            packets: s.ba_packets,
            bytes: s.ba_bytes,
        };
        let (fwd, rev) = if from_a { (ab, ba) } else { (ba, ab) };
        let to_epoch = |ns: u64| crate::capture::to_epoch_ns(ns, epoch_offset_ns);
        Some(Self {
            tunnel: Tunnel::of_key(k, from_a)?,
            first_ns: to_epoch(s.first_ns),
            last_ns: to_epoch(s.last_ns),
            end_reason,
            fwd,
            rev,
            inner_flows: s.inner_flows,
        })
    }
}

/// The first packet of a new flow, oriented by its sender (the initiator).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FlowStartRecord {
    /// Unix time, nanoseconds.
    pub ts_ns: u64,
    pub src_ip: IpAddr,
    pub src_port: u16,
    pub dst_ip: IpAddr,
    pub dst_port: u16,
    pub proto: u8,
    pub vlan: u16,
    /// Ethernet source of the first frame.
    pub src_mac: String,
    pub tcp_flags: u8,
    /// The first packet was a first fragment that cut the TCP header: `tcp_flags` is unknown
    /// (0 here), not a NULL probe.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tcp_flags_unknown: bool,
    pub icmp_type: u8,
    pub icmp_code: u8,
    pub l3_len: u16,
    pub ttl: u8,
    /// The tunnel the flow was found in (absent for a plain flow).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<Tunnel>,
    /// What the flow's addresses did up to this start (the window before it, the start
    /// included; a start has no after yet), set by the pipeline's
    /// [`crate::context::ContextTracker`] (all 0 until then). A rule alert raised by a flow
    /// start carries it in its feature row.
    pub ctx: FlowContext,
}

impl FlowStartRecord {
    pub fn new(ts_ns: u64, k: &FlowKey, p: &EventPacket, src_mac: &[u8; 6]) -> Self {
        let a = (key_addr(k.family, &k.addr_a), k.port_a);
        let b = (key_addr(k.family, &k.addr_b), k.port_b);
        let (src, dst) = if p.from_a != 0 { (a, b) } else { (b, a) };
        Self {
            ts_ns,
            src_ip: src.0,
            src_port: src.1,
            dst_ip: dst.0,
            dst_port: dst.1,
            proto: k.proto,
            vlan: k.vlan,
            src_mac: mac(src_mac),
            tcp_flags: p.tcp_flags,
            tcp_flags_unknown: p.l4_partial != 0,
            icmp_type: p.icmp_type,
            icmp_code: p.icmp_code,
            l3_len: p.l3_len,
            ttl: p.ttl,
            tunnel: Tunnel::of_key(&k.tunnel, p.outer_src_is_a != 0),
            ctx: FlowContext::default(),
        }
    }
}

/// TCP flag counts of one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Flags {
    pub syn: u32,
    pub synack: u32,
    pub fin: u32,
    pub rst: u32,
    pub psh: u32,
    pub urg: u32,
    pub ack: u32,
    pub ece: u32,
    pub cwr: u32,
}

impl From<&TcpFlagCounts> for Flags {
    fn from(f: &TcpFlagCounts) -> Self {
        Self {
            syn: f.syn,
            synack: f.synack,
            fin: f.fin,
            rst: f.rst,
            psh: f.psh,
            urg: f.urg,
            ack: f.ack,
            ece: f.ece,
            cwr: f.cwr,
        }
    }
}

/// Features of one direction (see `safelink_common::layout::DirStats` for units).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Direction {
    pub packets: u64,
    pub bytes: u64,
    pub l3_min: u16,
    pub l3_max: u16,
    pub l3_sum: u64,
    pub l3_sq_sum: u64,
    pub iat_min_us: u32,
    pub iat_max_us: u32,
    pub iat_sum_us: u64,
    pub iat_sq_sum_us: u64,
    pub init_ttl: u8,
    pub init_win: u16,
    pub flags: Flags,
}

impl From<&DirStats> for Direction {
    fn from(d: &DirStats) -> Self {
        Self {
            packets: d.packets,
            bytes: d.bytes,
            l3_min: d.l3_min,
            l3_max: d.l3_max,
            l3_sum: d.l3_sum,
            l3_sq_sum: d.l3_sq_sum,
            iat_min_us: d.iat_min_us,
            iat_max_us: d.iat_max_us,
            iat_sum_us: d.iat_sum_us,
            iat_sq_sum_us: d.iat_sq_sum_us,
            init_ttl: d.init_ttl,
            init_win: d.init_win,
            flags: Flags::from(&d.flags),
        }
    }
}

/// A finished (or flushed) bidirectional flow.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FlowRecord {
    pub src_ip: IpAddr,
    pub src_port: u16,
    pub dst_ip: IpAddr,
    pub dst_port: u16,
    /// IP protocol number.
    pub proto: u8,
    pub vlan: u16,
    /// Unix time of the first / last packet, nanoseconds.
    pub first_ns: u64,
    pub last_ns: u64,
    pub icmp_type: u8,
    pub icmp_code: u8,
    pub end_reason: EndReason,
    pub fwd: Direction,
    pub rev: Direction,
    /// The tunnel the flow was found in (absent for a plain flow): inner flows are keyed by
    /// their tunnel too, so two tenants' identical addresses are two flows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<Tunnel>,
    /// What the flow's addresses did around it, set by the pipeline's
    /// [`crate::context::ContextTracker`] (all 0 until then).
    pub ctx: FlowContext,
}

/// A unicast host address: not multicast, broadcast, unspecified or loopback. The rules count
/// scans, sweeps and floods only towards such addresses, and the host context counts only them
/// as peers (mDNS, SSDP, DHCP and NetBIOS traffic to group addresses is how LANs work, not
/// probing).
pub fn is_unicast(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            !(a.is_multicast() || a.is_broadcast() || a.is_unspecified() || a.is_loopback())
        }
        IpAddr::V6(a) => !(a.is_multicast() || a.is_unspecified() || a.is_loopback()),
    }
}

pub fn key_addr(family: u8, a: &[u8; 16]) -> IpAddr {
    if family == FAMILY_IPV4 {
        IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(*a))
    }
}

impl FlowRecord {
    /// The flow a flow start is so far: one packet from the initiator, still open.
    pub fn one_packet(s: &FlowStartRecord) -> Self {
        use safelink_common::{
            IPPROTO_TCP, TCP_ACK, TCP_CWR, TCP_ECE, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, TCP_URG,
        };
        let tcp = s.proto == IPPROTO_TCP;
        let t = s.tcp_flags;
        let bit = |m: u8| u32::from(tcp && t & m != 0);
        let len = u64::from(s.l3_len);
        let fwd = Direction {
            packets: 1,
            bytes: len,
            l3_min: s.l3_len,
            l3_max: s.l3_len,
            l3_sum: len,
            l3_sq_sum: len * len,
            init_ttl: s.ttl,
            flags: Flags {
                syn: u32::from(tcp && t & TCP_SYN != 0 && t & TCP_ACK == 0),
                synack: u32::from(tcp && t & TCP_SYN != 0 && t & TCP_ACK != 0),
                fin: bit(TCP_FIN),
                rst: bit(TCP_RST),
                psh: bit(TCP_PSH),
                urg: bit(TCP_URG),
                ack: bit(TCP_ACK),
                ece: bit(TCP_ECE),
                cwr: bit(TCP_CWR),
            },
            ..Direction::default()
        };
        Self {
            src_ip: s.src_ip,
            src_port: s.src_port,
            dst_ip: s.dst_ip,
            dst_port: s.dst_port,
            proto: s.proto,
            vlan: s.vlan,
            first_ns: s.ts_ns,
            last_ns: s.ts_ns,
            icmp_type: s.icmp_type,
            icmp_code: s.icmp_code,
            end_reason: EndReason::Open,
            fwd,
            rev: Direction::default(),
            tunnel: s.tunnel.clone(),
            ctx: s.ctx,
        }
    }

    /// Renders a merged flow. `epoch_offset_ns` converts the stats' clock to Unix time (0 for
    /// replay, whose clock already is Unix time; realtime − monotonic for the kernel).
    pub fn new(k: &FlowKey, s: &FlowStats, epoch_offset_ns: i64, end_reason: EndReason) -> Self {
        let a = (
            key_addr(k.family, &k.addr_a),
            k.port_a,
            Direction::from(&s.ab),
        );
        let b = (
            key_addr(k.family, &k.addr_b),
            k.port_b,
            Direction::from(&s.ba),
        );
        let (src, dst) = if s.initiator_is_a != 0 {
            (a, b)
        } else {
            (b, a)
        };
        let to_epoch = |ns: u64| crate::capture::to_epoch_ns(ns, epoch_offset_ns);
        Self {
            src_ip: src.0,
            src_port: src.1,
            dst_ip: dst.0,
            dst_port: dst.1,
            proto: k.proto,
            vlan: k.vlan,
            first_ns: to_epoch(s.first_ns),
            last_ns: to_epoch(s.last_ns),
            icmp_type: s.icmp_type,
            icmp_code: s.icmp_code,
            end_reason,
            fwd: src.2,
            rev: dst.2,
            tunnel: Tunnel::of_key(&k.tunnel, s.outer_src_is_a != 0),
            ctx: FlowContext::default(),
        }
    }
}

pub fn mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// One ARP packet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ArpRecord {
    /// Unix time, nanoseconds.
    pub ts_ns: u64,
    pub vlan: u16,
    /// 1 = request, 2 = reply.
    pub op: u16,
    /// Ethernet source of the frame.
    pub eth_src: String,
    pub sender_mac: String,
    pub sender_ip: Ipv4Addr,
    pub target_mac: String,
    pub target_ip: Ipv4Addr,
}

impl ArpRecord {
    pub fn new(ts_ns: u64, vlan: u16, eth_src: &[u8; 6], a: &ArpInfo) -> Self {
        Self {
            ts_ns,
            vlan,
            op: a.op,
            eth_src: mac(eth_src),
            sender_mac: mac(&a.sender_mac),
            sender_ip: Ipv4Addr::from(a.sender_ip),
            target_mac: mac(&a.target_mac),
            target_ip: Ipv4Addr::from(a.target_ip),
        }
    }
}
