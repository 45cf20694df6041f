//! Flow feature maths: canonical keys, the per-packet update and the merge of per-CPU copies.
//!
//! [`update`] runs in the XDP program for every packet and in the replay path for every captured
//! frame, so both compute identical features. [`merge`] folds the per-CPU slots of one flow
//! (kernel `LRU_PERCPU_HASH`) into one value: counts, byte sums, length statistics and flag
//! counts are exact; inter-arrival statistics are computed per CPU slot and summed, so they are
//! approximate when one flow's packets are spread over several CPUs.
//!
//! A decapsulated packet also counts in its tunnel's outer flow ([`tunnel_key`],
//! [`outer_update`], [`outer_merge`]): packets and bytes per outer direction, kept apart from
//! the inner flows' features so that no detector counts a packet twice.

use crate::layout::{
    DirStats, END_FIN, END_RST, FlowKey, FlowStats, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP,
    OuterStats, TCP_ACK, TCP_CWR, TCP_ECE, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, TCP_URG,
    TUNNEL_NONE, TcpFlagCounts, TunnelKey,
};
use crate::parse::PacketMeta;

#[inline(always)]
fn addr_cmp(a: &[u8; 16], b: &[u8; 16]) -> core::cmp::Ordering {
    // Two u64 compares instead of a byte loop (no memcmp on the BPF target).
    let a_hi = u64::from_be_bytes([a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]]);
    let b_hi = u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
    let a_lo = u64::from_be_bytes([a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15]]);
    let b_lo = u64::from_be_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]);
    (a_hi, a_lo).cmp(&(b_hi, b_lo))
}

/// Whether a packet's outer (tunnel) source is `outer_a` of its flow key: the smaller of the
/// two outer addresses (true outside a tunnel, where both are zero).
#[inline(always)]
pub fn outer_src_is_a(m: &PacketMeta) -> bool {
    addr_cmp(&m.outer_src, &m.outer_dst) != core::cmp::Ordering::Greater
}

/// Writes the canonical key of a packet's flow into `key`; returns whether the packet travels
/// from endpoint `a`. The tunnel endpoints are ordered on their own ([`tunnel_key`]).
#[inline(always)]
pub fn canonical_key(m: &PacketMeta, key: &mut FlowKey) -> bool {
    let src_is_a = match addr_cmp(&m.src, &m.dst) {
        core::cmp::Ordering::Less => true,
        core::cmp::Ordering::Greater => false,
        core::cmp::Ordering::Equal => m.sport <= m.dport,
    };
    if src_is_a {
        key.addr_a = m.src;
        key.port_a = m.sport;
        key.addr_b = m.dst;
        key.port_b = m.dport;
    } else {
        key.addr_a = m.dst;
        key.port_a = m.dport;
        key.addr_b = m.src;
        key.port_b = m.sport;
    }
    key.vlan = m.vlan;
    key.proto = m.proto;
    key.family = m.family;
    tunnel_key(m, &mut key.tunnel);
    src_is_a
}

/// Writes the key of a packet's tunnel (all zero outside a tunnel) into `key`, the outer pair
/// canonical ([`outer_src_is_a`]); returns whether the packet's outer source is `outer_a`.
#[inline(always)]
pub fn tunnel_key(m: &PacketMeta, key: &mut TunnelKey) -> bool {
    let from_a = outer_src_is_a(m);
    if from_a {
        key.outer_a = m.outer_src;
        key.outer_b = m.outer_dst;
    } else {
        key.outer_a = m.outer_dst;
        key.outer_b = m.outer_src;
    }
    key.id = m.tunnel_id;
    key.kind = m.tunnel_kind;
    key.family = m.outer_family;
    key._pad = 0;
    from_a
}

/// The 64-bit digest of a tunnel's key that stands for it in [`crate::MapKey`]: 0 for no
/// tunnel ([`TUNNEL_NONE`]), never 0 for a tunnel. Its five words mixed by multiply and
/// xor-shift (a fixed function: userspace computes the same digest to find a flow's entry).
#[inline(always)]
pub fn tunnel_digest(t: &TunnelKey) -> u64 {
    if t.kind == TUNNEL_NONE {
        return 0;
    }
    const M: u64 = 0x9e37_79b9_7f4a_7c15;
    let w = |b: &[u8; 16], i: usize| {
        u64::from_le_bytes([
            b[i],
            b[i + 1],
            b[i + 2],
            b[i + 3],
            b[i + 4],
            b[i + 5],
            b[i + 6],
            b[i + 7],
        ])
    };
    let tail = (t.id as u64) | (t.kind as u64) << 32 | (t.family as u64) << 40;
    let mut h = 0u64;
    for v in [
        w(&t.outer_a, 0),
        w(&t.outer_a, 8),
        w(&t.outer_b, 0),
        w(&t.outer_b, 8),
        tail,
    ] {
        h = (h ^ v).wrapping_mul(M);
        h ^= h >> 29;
    }
    h | 1
}

/// Adds one decapsulated packet to its tunnel's outer flow: `from_a` from [`tunnel_key`],
/// `frame_len` the outer frame's wire length, `new_inner` when the packet started an inner
/// flow.
#[inline(always)]
pub fn outer_update(s: &mut OuterStats, from_a: bool, frame_len: u32, ts_ns: u64, new_inner: bool) {
    if s.ab_packets == 0 && s.ba_packets == 0 {
        s.first_ns = ts_ns;
        s.first_from_a = from_a as u8;
    }
    if ts_ns > s.last_ns {
        s.last_ns = ts_ns;
    }
    if from_a {
        s.ab_packets += 1;
        s.ab_bytes += frame_len as u64;
    } else {
        s.ba_packets += 1;
        s.ba_bytes += frame_len as u64;
    }
    s.inner_flows += new_inner as u64;
}

/// Folds another per-CPU slot of the same outer flow into `into` (exact: counts add; the first
/// packet's side comes from the slot that saw it).
pub fn outer_merge(into: &mut OuterStats, o: &OuterStats) {
    if o.ab_packets == 0 && o.ba_packets == 0 {
        return;
    }
    if into.ab_packets == 0 && into.ba_packets == 0 {
        *into = *o;
        return;
    }
    if o.first_ns < into.first_ns {
        into.first_ns = o.first_ns;
        into.first_from_a = o.first_from_a;
    }
    into.last_ns = into.last_ns.max(o.last_ns);
    into.ab_packets += o.ab_packets;
    into.ab_bytes += o.ab_bytes;
    into.ba_packets += o.ba_packets;
    into.ba_bytes += o.ba_bytes;
    into.inner_flows += o.inner_flows;
}

#[inline(always)]
fn dir_update(d: &mut DirStats, m: &PacketMeta, frame_len: u32, ts_ns: u64) {
    let l3 = m.l3_len;
    if d.packets == 0 {
        d.first_ns = ts_ns;
        d.init_ttl = m.ttl;
        d.init_win = m.window;
        d.l3_min = l3;
        d.l3_max = l3;
    } else {
        let iat = ts_ns.saturating_sub(d.last_ns) / 1000;
        let iat = if iat > u32::MAX as u64 {
            u32::MAX
        } else {
            iat as u32
        };
        if d.packets == 1 || iat < d.iat_min_us {
            d.iat_min_us = iat;
        }
        if iat > d.iat_max_us {
            d.iat_max_us = iat;
        }
        d.iat_sum_us = d.iat_sum_us.saturating_add(iat as u64);
        d.iat_sq_sum_us = d.iat_sq_sum_us.saturating_add((iat as u64) * (iat as u64));
        if l3 < d.l3_min {
            d.l3_min = l3;
        }
        if l3 > d.l3_max {
            d.l3_max = l3;
        }
    }
    d.packets += 1;
    d.bytes += frame_len as u64;
    d.l3_sum += l3 as u64;
    d.l3_sq_sum += (l3 as u64) * (l3 as u64);
    if ts_ns > d.last_ns {
        d.last_ns = ts_ns;
    }
    if m.proto == IPPROTO_TCP {
        count_flags(&mut d.flags, m.tcp_flags);
    }
}

#[inline(always)]
fn count_flags(c: &mut TcpFlagCounts, f: u8) {
    if f & TCP_SYN != 0 {
        if f & TCP_ACK != 0 {
            c.synack += 1;
        } else {
            c.syn += 1;
        }
    }
    if f & TCP_FIN != 0 {
        c.fin += 1;
    }
    if f & TCP_RST != 0 {
        c.rst += 1;
    }
    if f & TCP_PSH != 0 {
        c.psh += 1;
    }
    if f & TCP_URG != 0 {
        c.urg += 1;
    }
    if f & TCP_ACK != 0 {
        c.ack += 1;
    }
    if f & TCP_ECE != 0 {
        c.ece += 1;
    }
    if f & TCP_CWR != 0 {
        c.cwr += 1;
    }
}

/// Whether a flow has proved two-way and moves from `EMBRYOS` to `FLOWS`: a TCP handshake the
/// initiator completed (the responder's SYN-ACK, then the initiator's ACK), or at least two
/// packets in each direction (any protocol; also a TCP connection picked up mid-stream). A
/// spoofed source never gets there: it cannot ACK what it never received, and sends one packet.
#[inline(always)]
pub fn established(s: &FlowStats) -> bool {
    let (init, resp) = if s.initiator_is_a != 0 {
        (&s.ab, &s.ba)
    } else {
        (&s.ba, &s.ab)
    };
    (resp.flags.synack > 0 && init.flags.ack > 0) || (init.packets >= 2 && resp.packets >= 2)
}

/// Whether a slot has seen no packet yet (fresh insert, or another CPU's zeroed slot).
#[inline(always)]
pub fn is_empty(s: &FlowStats) -> bool {
    s.ab.packets == 0 && s.ba.packets == 0
}

/// Adds one packet to a flow. `from_a` comes from [`canonical_key`]; `frame_len` is the frame's
/// wire length. Returns the `END_*` bits this packet set for the first time (non-zero: emit a
/// flow-end event).
#[inline(always)]
pub fn update(s: &mut FlowStats, m: &PacketMeta, from_a: bool, frame_len: u32, ts_ns: u64) -> u8 {
    if is_empty(s) {
        if m.tunnel_kind != TUNNEL_NONE {
            tunnel_key(m, &mut s.tunnel);
        }
        s.first_ns = ts_ns;
        s.initiator_is_a = from_a as u8;
        s.outer_src_is_a = outer_src_is_a(m) as u8;
        if m.proto == IPPROTO_ICMP || m.proto == IPPROTO_ICMPV6 {
            s.icmp_type = m.icmp_type;
            s.icmp_code = m.icmp_code;
        }
    }
    if ts_ns > s.last_ns {
        s.last_ns = ts_ns;
    }
    if from_a {
        dir_update(&mut s.ab, m, frame_len, ts_ns);
    } else {
        dir_update(&mut s.ba, m, frame_len, ts_ns);
    }
    if m.proto != IPPROTO_TCP {
        return 0;
    }
    end_bits(s, m.tcp_flags)
}

#[inline(always)]
fn end_bits(s: &mut FlowStats, flags: u8) -> u8 {
    let mut seen = 0u8;
    if flags & TCP_FIN != 0 {
        seen |= END_FIN;
    }
    if flags & TCP_RST != 0 {
        seen |= END_RST;
    }
    let newly = seen & !s.end_flags;
    s.end_flags |= seen;
    newly
}

/// Adds the TCP flags (and window) of a packet whose first fragment was already counted with
/// its flags unknown ([`crate::parse::late_tcp_header`]). Counts no packet. Returns the `END_*`
/// bits set for the first time, as [`update`] does. A slot that has not seen the first
/// fragment (another CPU counted it) is left alone.
#[inline(always)]
pub fn late_tcp(s: &mut FlowStats, from_a: bool, late: &crate::parse::LateTcp) -> u8 {
    let d = if from_a { &mut s.ab } else { &mut s.ba };
    if d.packets == 0 {
        return 0;
    }
    count_flags(&mut d.flags, late.flags);
    if let Some(w) = late.window
        && d.packets == 1
    {
        d.init_win = w;
    }
    end_bits(s, late.flags)
}

fn dir_merge(into: &mut DirStats, o: &DirStats) {
    if o.packets == 0 {
        return;
    }
    if into.packets == 0 {
        *into = *o;
        return;
    }
    if o.first_ns < into.first_ns {
        into.first_ns = o.first_ns;
        into.init_ttl = o.init_ttl;
        into.init_win = o.init_win;
    }
    into.last_ns = into.last_ns.max(o.last_ns);
    // iat_min/max are only meaningful for slots with at least two packets.
    match (into.packets >= 2, o.packets >= 2) {
        (false, true) => {
            into.iat_min_us = o.iat_min_us;
            into.iat_max_us = o.iat_max_us;
        }
        (true, true) => {
            into.iat_min_us = into.iat_min_us.min(o.iat_min_us);
            into.iat_max_us = into.iat_max_us.max(o.iat_max_us);
        }
        _ => {}
    }
    into.packets += o.packets;
    into.bytes += o.bytes;
    into.l3_sum += o.l3_sum;
    into.l3_sq_sum += o.l3_sq_sum;
    into.iat_sum_us = into.iat_sum_us.saturating_add(o.iat_sum_us);
    into.iat_sq_sum_us = into.iat_sq_sum_us.saturating_add(o.iat_sq_sum_us);
    into.l3_min = into.l3_min.min(o.l3_min);
    into.l3_max = into.l3_max.max(o.l3_max);
    let (a, b) = (&mut into.flags, &o.flags);
    a.syn += b.syn;
    a.synack += b.synack;
    a.fin += b.fin;
    a.rst += b.rst;
    a.psh += b.psh;
    a.urg += b.urg;
    a.ack += b.ack;
    a.ece += b.ece;
    a.cwr += b.cwr;
}

/// Folds another per-CPU slot of the same flow into `into`. The initiator and the ICMP
/// type/code come from whichever slot saw the flow's first packet.
pub fn merge(into: &mut FlowStats, o: &FlowStats) {
    if is_empty(o) {
        return;
    }
    if is_empty(into) {
        *into = *o;
        return;
    }
    if into.tunnel.kind == TUNNEL_NONE {
        into.tunnel = o.tunnel;
    }
    if o.first_ns < into.first_ns {
        into.first_ns = o.first_ns;
        into.initiator_is_a = o.initiator_is_a;
        into.outer_src_is_a = o.outer_src_is_a;
        into.icmp_type = o.icmp_type;
        into.icmp_code = o.icmp_code;
    }
    into.last_ns = into.last_ns.max(o.last_ns);
    into.end_flags |= o.end_flags;
    dir_merge(&mut into.ab, &o.ab);
    dir_merge(&mut into.ba, &o.ba);
}
