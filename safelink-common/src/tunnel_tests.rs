//! Unit tests of tunnel decapsulation with hand-built frames: exact inner 5-tuple, tunnel
//! kind, id and outer endpoints for each encapsulation; malformed tunnels counted with the
//! outer packet kept; ordinary UDP on the VXLAN/Geneve ports kept as a plain flow; tenants
//! never merged.
extern crate std;
use std::vec::Vec;

use crate::{
    Counter, FAMILY_IPV4, FAMILY_IPV6, FlowKey, IPPROTO_TCP, IPPROTO_UDP, TUNNEL_GENEVE,
    TUNNEL_GRE, TUNNEL_IP6, TUNNEL_IPIP, TUNNEL_NONE, TUNNEL_VXLAN, TunnelKey,
    flow::canonical_key,
    parse::{ParseOut, Parsed, TunnelConfig, parse_frame, parse_frame_with, tunnel_counter},
};

const O1: [u8; 4] = [198, 51, 100, 1];
const O2: [u8; 4] = [198, 51, 100, 2];
const I1: [u8; 4] = [10, 0, 0, 1];
const I2: [u8; 4] = [10, 0, 0, 2];
const V6A: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xa];
const V6B: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xb];
const V6O1: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
];
const V6O2: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2,
];

fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = std::vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    v.extend_from_slice(&ethertype.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

fn ipv4(proto: u8, src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let mut v = std::vec![0x45, 0];
    v.extend_from_slice(&total.to_be_bytes());
    v.extend_from_slice(&[0, 7, 0x40, 0, 64, proto, 0, 0]);
    v.extend_from_slice(&src);
    v.extend_from_slice(&dst);
    v.extend_from_slice(payload);
    v
}

fn ipv6(next: u8, src: [u8; 16], dst: [u8; 16], payload: &[u8]) -> Vec<u8> {
    let mut v = std::vec![0x60, 0, 0, 0];
    v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    v.extend_from_slice(&[next, 64]);
    v.extend_from_slice(&src);
    v.extend_from_slice(&dst);
    v.extend_from_slice(payload);
    v
}

fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&sport.to_be_bytes());
    v.extend_from_slice(&dport.to_be_bytes());
    v.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0x20, 0, 0, 0, 0, 0]);
    v
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&sport.to_be_bytes());
    v.extend_from_slice(&dport.to_be_bytes());
    v.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    v.extend_from_slice(&[0, 0]);
    v.extend_from_slice(payload);
    v
}

fn vxlan(vni: u32, inner_frame: &[u8]) -> Vec<u8> {
    let b = vni.to_be_bytes();
    let mut v = std::vec![0x08, 0, 0, 0, b[1], b[2], b[3], 0];
    v.extend_from_slice(inner_frame);
    v
}

fn geneve(vni: u32, ptype: u16, options: &[u8], inner: &[u8]) -> Vec<u8> {
    let b = vni.to_be_bytes();
    let mut v = std::vec![(options.len() / 4) as u8, 0];
    v.extend_from_slice(&ptype.to_be_bytes());
    v.extend_from_slice(&[b[1], b[2], b[3], 0]);
    v.extend_from_slice(options);
    v.extend_from_slice(inner);
    v
}

fn gre(flags: u16, ptype: u16, key: Option<u32>, inner: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&flags.to_be_bytes());
    v.extend_from_slice(&ptype.to_be_bytes());
    if flags & 0x8000 != 0 {
        v.extend_from_slice(&[0xde, 0xad, 0, 0]); // checksum + reserved
    }
    if let Some(k) = key {
        v.extend_from_slice(&k.to_be_bytes());
    }
    if flags & 0x1000 != 0 {
        v.extend_from_slice(&[0, 0, 0, 9]); // sequence number
    }
    v.extend_from_slice(inner);
    v
}

fn v4(a: [u8; 4]) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..4].copy_from_slice(&a);
    v
}

fn parse_with(f: &[u8], cfg: &TunnelConfig) -> (Parsed, ParseOut) {
    let mut out = ParseOut::default();
    let p = parse_frame_with(f, cfg, &mut out);
    (p, out)
}

fn parse(f: &[u8]) -> (Parsed, ParseOut) {
    let mut out = ParseOut::default();
    let p = parse_frame(f, &mut out);
    (p, out)
}

/// Asserts a decapsulated packet: inner (src, sport, dst, dport, proto, family) and tunnel
/// (kind, id, outer src, outer dst, outer family).
#[allow(clippy::too_many_arguments)]
fn assert_inner(
    f: &[u8],
    src: [u8; 16],
    sport: u16,
    dst: [u8; 16],
    dport: u16,
    proto: u8,
    family: u8,
    tunnel: (u8, u32, [u8; 16], [u8; 16], u8),
) -> ParseOut {
    let (p, out) = parse(f);
    assert_eq!(p, Parsed::Ip);
    let m = out.meta;
    assert_eq!(
        (m.src, m.sport, m.dst, m.dport, m.proto, m.family),
        (src, sport, dst, dport, proto, family)
    );
    assert_eq!(
        (
            m.tunnel_kind,
            m.tunnel_id,
            m.outer_src,
            m.outer_dst,
            m.outer_family
        ),
        tunnel
    );
    assert!(!out.tunnel_malformed);
    assert_eq!(tunnel_counter(&out), Some(Counter::Tunneled));
    out
}

fn inner_v4_tcp() -> Vec<u8> {
    ipv4(IPPROTO_TCP, I1, I2, &tcp(40000, 22, 0x02))
}

#[test]
fn ipv4_in_ipv4() {
    let f = eth(0x0800, &ipv4(4, O1, O2, &inner_v4_tcp()));
    let out = assert_inner(
        &f,
        v4(I1),
        40000,
        v4(I2),
        22,
        IPPROTO_TCP,
        FAMILY_IPV4,
        (TUNNEL_IPIP, 0, v4(O1), v4(O2), FAMILY_IPV4),
    );
    // The inner packet's own length and flags.
    assert_eq!((out.meta.l3_len, out.meta.tcp_flags), (40, 0x02));
}

#[test]
fn ipv6_in_ipv4_and_in_ipv6() {
    let inner = ipv6(IPPROTO_UDP, V6A, V6B, &udp(5353, 53, b"q"));
    let f = eth(0x0800, &ipv4(41, O1, O2, &inner));
    assert_inner(
        &f,
        V6A,
        5353,
        V6B,
        53,
        IPPROTO_UDP,
        FAMILY_IPV6,
        (TUNNEL_IP6, 0, v4(O1), v4(O2), FAMILY_IPV4),
    );
    let f = eth(0x86dd, &ipv6(41, V6O1, V6O2, &inner));
    assert_inner(
        &f,
        V6A,
        5353,
        V6B,
        53,
        IPPROTO_UDP,
        FAMILY_IPV6,
        (TUNNEL_IP6, 0, V6O1, V6O2, FAMILY_IPV6),
    );
    // IPv4 in IPv6 (protocol 4 over an IPv6 underlay).
    let f = eth(0x86dd, &ipv6(4, V6O1, V6O2, &inner_v4_tcp()));
    assert_inner(
        &f,
        v4(I1),
        40000,
        v4(I2),
        22,
        IPPROTO_TCP,
        FAMILY_IPV4,
        (TUNNEL_IPIP, 0, V6O1, V6O2, FAMILY_IPV6),
    );
}

#[test]
fn gre_plain_keyed_and_bridged() {
    let tun = |key| (TUNNEL_GRE, key, v4(O1), v4(O2), FAMILY_IPV4);
    let plain = eth(
        0x0800,
        &ipv4(47, O1, O2, &gre(0, 0x0800, None, &inner_v4_tcp())),
    );
    assert_inner(&plain, v4(I1), 40000, v4(I2), 22, 6, FAMILY_IPV4, tun(0));
    // Checksum, key and sequence all present (RFC 2890).
    let g = gre(0xb000, 0x0800, Some(0x0102_0304), &inner_v4_tcp());
    let keyed = eth(0x0800, &ipv4(47, O1, O2, &g));
    assert_inner(
        &keyed,
        v4(I1),
        40000,
        v4(I2),
        22,
        6,
        FAMILY_IPV4,
        tun(0x0102_0304),
    );
    // Key only, IPv6 payload.
    let inner6 = ipv6(IPPROTO_TCP, V6A, V6B, &tcp(1234, 443, 0x12));
    let g = gre(0x2000, 0x86dd, Some(77), &inner6);
    let f = eth(0x0800, &ipv4(47, O1, O2, &g));
    assert_inner(&f, V6A, 1234, V6B, 443, 6, FAMILY_IPV6, tun(77));
    // Transparent Ethernet bridging (gretap), keyed.
    let g = gre(0x2000, 0x6558, Some(5), &eth(0x0800, &inner_v4_tcp()));
    let f = eth(0x0800, &ipv4(47, O1, O2, &g));
    assert_inner(&f, v4(I1), 40000, v4(I2), 22, 6, FAMILY_IPV4, tun(5));
    // PPTP's enhanced GRE (version 1) is not a tunnel we open: the outer packet, no counter.
    let g = gre(0x3001, 0x880b, Some(5), &[0; 16]);
    let (p, out) = parse(&eth(0x0800, &ipv4(47, O1, O2, &g)));
    assert_eq!(
        (p, out.meta.proto, out.meta.tunnel_kind),
        (Parsed::Ip, 47, 0)
    );
    assert_eq!(tunnel_counter(&out), None);
}

#[test]
fn vxlan_with_vlan_tagged_inner_frame() {
    let inner = eth(0x0800, &inner_v4_tcp());
    let f = eth(
        0x0800,
        &ipv4(17, O1, O2, &udp(51000, 4789, &vxlan(42, &inner))),
    );
    let tun = (TUNNEL_VXLAN, 42, v4(O1), v4(O2), FAMILY_IPV4);
    assert_inner(&f, v4(I1), 40000, v4(I2), 22, 6, FAMILY_IPV4, tun);
    // One 802.1Q tag inside the overlay.
    let mut tagged = std::vec![
        0x02, 0, 0, 0, 0, 3, 0x02, 0, 0, 0, 0, 4, 0x81, 0, 0, 9, 0x08, 0
    ];
    tagged.extend_from_slice(&inner_v4_tcp());
    let f = eth(
        0x0800,
        &ipv4(17, O1, O2, &udp(51000, 4789, &vxlan(42, &tagged))),
    );
    assert_inner(&f, v4(I1), 40000, v4(I2), 22, 6, FAMILY_IPV4, tun);
    // Over an IPv6 underlay, inner IPv6.
    let inner6 = eth(0x86dd, &ipv6(IPPROTO_UDP, V6A, V6B, &udp(9, 10, b"x")));
    let f = eth(
        0x86dd,
        &ipv6(17, V6O1, V6O2, &udp(1, 4789, &vxlan(0xff_ffff, &inner6))),
    );
    let tun6 = (TUNNEL_VXLAN, 0xff_ffff, V6O1, V6O2, FAMILY_IPV6);
    assert_inner(&f, V6A, 9, V6B, 10, IPPROTO_UDP, FAMILY_IPV6, tun6);
}

#[test]
fn geneve_with_options() {
    // One 8-byte option (class 0x0102, type 0x80, length 1 word).
    let opts = [0x01, 0x02, 0x80, 0x01, 0xaa, 0xbb, 0xcc, 0xdd];
    let inner = eth(0x0800, &inner_v4_tcp());
    let g = geneve(7, 0x6558, &opts, &inner);
    let f = eth(0x0800, &ipv4(17, O1, O2, &udp(40001, 6081, &g)));
    let tun = (TUNNEL_GENEVE, 7, v4(O1), v4(O2), FAMILY_IPV4);
    assert_inner(&f, v4(I1), 40000, v4(I2), 22, 6, FAMILY_IPV4, tun);
    // An IPv6 packet carried directly (protocol type 0x86DD), no options.
    let inner6 = ipv6(IPPROTO_TCP, V6A, V6B, &tcp(5, 6, 0x10));
    let g = geneve(8, 0x86dd, &[], &inner6);
    let f = eth(0x0800, &ipv4(17, O1, O2, &udp(40001, 6081, &g)));
    let tun = (TUNNEL_GENEVE, 8, v4(O1), v4(O2), FAMILY_IPV4);
    assert_inner(&f, V6A, 5, V6B, 6, IPPROTO_TCP, FAMILY_IPV6, tun);
}

#[test]
fn two_tenants_never_share_a_flow_and_replies_join_theirs() {
    let frame = |vni: u32, osrc, odst, isrc, idst, sport, dport| {
        let inner = eth(0x0800, &ipv4(6, isrc, idst, &tcp(sport, dport, 0x10)));
        eth(
            0x0800,
            &ipv4(17, osrc, odst, &udp(50000, 4789, &vxlan(vni, &inner))),
        )
    };
    let key = |f: &[u8]| {
        let (p, out) = parse(f);
        assert_eq!(p, Parsed::Ip);
        let mut k = FlowKey::default();
        let from_a = canonical_key(&out.meta, &mut k);
        (k, from_a)
    };
    let (t1, a1) = key(&frame(1, O1, O2, I1, I2, 40000, 80));
    let (t2, _) = key(&frame(2, O1, O2, I1, I2, 40000, 80));
    assert_ne!(t1, t2, "same inner 5-tuple, different VNI");
    assert_eq!((t1.tunnel.id, t2.tunnel.id), (1, 2));
    // The reply travels the other way through the same tunnel: the same flow, other side.
    let (r1, ra) = key(&frame(1, O2, O1, I2, I1, 80, 40000));
    assert_eq!(r1, t1);
    assert_ne!(a1, ra);
    // The outer pair is ordered on its own: the smaller address first.
    assert_eq!(
        (r1.addr_a, r1.tunnel.outer_a, r1.tunnel.outer_b),
        (v4(I1), v4(O1), v4(O2))
    );
    let (r2, _) = key(&frame(1, O2, O1, I1, I2, 40000, 80));
    assert_eq!(
        (r2.addr_a, r2.tunnel.outer_a, r2.tunnel.outer_b),
        (v4(I1), v4(O1), v4(O2))
    );
    // A mirroring tunnel carries both directions from one endpoint to the other (AWS
    // traffic mirroring): still one flow.
    let (m1, _) = key(&frame(1, O2, O1, I2, I1, 80, 40000));
    let (m2, _) = key(&frame(1, O1, O2, I2, I1, 80, 40000));
    assert_eq!((m1, m2), (t1, t1));
    // Same VNI, another pair of tunnel endpoints: another flow.
    let (t3, _) = key(&frame(1, O1, [198, 51, 100, 3], I1, I2, 40000, 80));
    assert_ne!(t3, t1);
    // A plain flow keeps an all-zero tunnel part.
    let (p, _) = key(&eth(0x0800, &inner_v4_tcp()));
    assert_eq!(p.tunnel, TunnelKey::default());
    assert_eq!(p.tunnel.kind, TUNNEL_NONE);
}

/// The outer flow of a tunnel: one key for both outer directions (and the same as the inner
/// flow key's tunnel part), per-direction packets and bytes, and per-CPU slots merged
/// exactly, the first packet's side taken from the slot that saw it.
#[test]
fn outer_flow_counts_each_direction_and_merges_per_cpu_slots_exactly() {
    use crate::{
        OuterStats,
        flow::{outer_merge, outer_update, tunnel_key},
    };
    let frame = |osrc, odst, isrc, idst, sport, dport| {
        let inner = eth(0x0800, &ipv4(6, isrc, idst, &tcp(sport, dport, 0x10)));
        eth(
            0x0800,
            &ipv4(17, osrc, odst, &udp(50000, 4789, &vxlan(7, &inner))),
        )
    };
    let there = frame(O2, O1, I1, I2, 40000, 80);
    let back = frame(O1, O2, I2, I1, 80, 40000);
    let key = |f: &[u8]| {
        let (p, out) = parse(f);
        assert_eq!(p, Parsed::Ip);
        let mut k = TunnelKey::default();
        let from_a = tunnel_key(&out.meta, &mut k);
        let mut fk = FlowKey::default();
        canonical_key(&out.meta, &mut fk);
        assert_eq!(
            fk.tunnel, k,
            "the flow key's tunnel part is the outer flow's key"
        );
        (k, from_a)
    };
    let (k1, from_a1) = key(&there);
    let (k2, from_a2) = key(&back);
    assert_eq!(k1, k2, "one outer flow for both directions");
    assert_eq!((k1.kind, k1.id, k1.family), (TUNNEL_VXLAN, 7, FAMILY_IPV4));
    assert_eq!((k1.outer_a, k1.outer_b), (v4(O1), v4(O2)));
    assert_eq!((from_a1, from_a2), (false, true));
    let (n1, n2) = (there.len() as u32, back.len() as u32);
    // CPU 0 sees the first packet (O2 -> O1, which starts the inner flow) at 10 and another
    // at 30; CPU 1 sees the reply at 20.
    let mut cpu0 = OuterStats::default();
    outer_update(&mut cpu0, from_a1, n1, 10, true);
    outer_update(&mut cpu0, from_a1, n1, 30, false);
    let mut cpu1 = OuterStats::default();
    outer_update(&mut cpu1, from_a2, n2, 20, false);
    for (first, second) in [(&cpu0, &cpu1), (&cpu1, &cpu0)] {
        let mut m = OuterStats::default();
        outer_merge(&mut m, first);
        outer_merge(&mut m, &OuterStats::default());
        outer_merge(&mut m, second);
        assert_eq!(
            m,
            OuterStats {
                ab_packets: 1,
                ab_bytes: n2 as u64,
                ba_packets: 2,
                ba_bytes: 2 * n1 as u64,
                inner_flows: 1,
                first_ns: 10,
                last_ns: 30,
                first_from_a: 0,
                _pad: [0; 7],
            }
        );
    }
}

/// Asserts that `f` is kept as its outer UDP/GRE/IP packet and counted as a malformed tunnel.
fn assert_outer_kept(f: &[u8], proto: u8, dport: u16) {
    let (p, out) = parse(f);
    assert_eq!(p, Parsed::Ip, "the outer packet still makes a flow");
    let m = out.meta;
    assert_eq!(
        (m.src, m.dst, m.proto, m.dport, m.family),
        (v4(O1), v4(O2), proto, dport, FAMILY_IPV4)
    );
    assert_eq!(
        (m.tunnel_kind, m.tunnel_id, m.outer_family),
        (TUNNEL_NONE, 0, 0)
    );
    assert!(out.tunnel_malformed);
    assert_eq!(tunnel_counter(&out), Some(Counter::TunnelMalformed));
}

#[test]
fn truncated_and_bad_tunnels_are_counted_and_the_outer_flow_kept() {
    // VXLAN whose inner IPv4 header claims more than the datagram carries.
    let mut inner = inner_v4_tcp();
    inner[3] = 200;
    let f = eth(
        0x0800,
        &ipv4(17, O1, O2, &udp(1, 4789, &vxlan(3, &eth(0x0800, &inner)))),
    );
    assert_outer_kept(&f, 17, 4789);
    // VXLAN whose inner Ethernet frame carries a truncated IPv4 header.
    let f = eth(
        0x0800,
        &ipv4(
            17,
            O1,
            O2,
            &udp(1, 4789, &vxlan(3, &eth(0x0800, &inner_v4_tcp()[..12]))),
        ),
    );
    assert_outer_kept(&f, 17, 4789);
    // Geneve (IPv4 payload) whose inner header is not IPv4.
    let mut g = geneve(7, 0x0800, &[], &inner_v4_tcp());
    g[8] = 0x65;
    assert_outer_kept(&eth(0x0800, &ipv4(17, O1, O2, &udp(1, 6081, &g))), 17, 6081);
    // GRE that announces a key but ends before it.
    let f = eth(0x0800, &ipv4(47, O1, O2, &[0x20, 0, 0x08, 0, 0, 0]));
    assert_outer_kept(&f, 47, 0);
    // IP-in-IP whose inner header is truncated.
    let f = eth(0x0800, &ipv4(4, O1, O2, &inner_v4_tcp()[..12]));
    assert_outer_kept(&f, 4, 0);
    // An inner TCP header cut short by the outer datagram's end (the frame has more bytes:
    // an Ethernet trailer must not be read as the inner TCP header).
    let mut inner = inner_v4_tcp();
    inner.truncate(30);
    inner[2..4].copy_from_slice(&30u16.to_be_bytes());
    let mut f = eth(0x0800, &ipv4(4, O1, O2, &inner));
    f.extend_from_slice(&[0; 20]);
    assert_outer_kept(&f, 4, 0);
}

/// Asserts that `f`, a UDP datagram to `dport`, is the plain flow it would be with decoding
/// off: no tunnel, not counted as a malformed one.
fn assert_plain_udp(f: &[u8], dport: u16, what: &str) {
    let (p, out) = parse(f);
    let (off_p, off) = parse_with(f, &TunnelConfig::OFF);
    assert_eq!(
        (p, out.meta),
        (off_p, off.meta),
        "{what}: same as decoding off"
    );
    assert_eq!(p, Parsed::Ip, "{what}");
    assert_eq!(
        (out.meta.proto, out.meta.dport, out.meta.tunnel_kind),
        (IPPROTO_UDP, dport, TUNNEL_NONE),
        "{what}"
    );
    assert!(
        !out.tunnel_malformed,
        "{what}: counted as a malformed tunnel"
    );
    assert_eq!(tunnel_counter(&out), None, "{what}");
}

#[test]
fn ordinary_udp_on_the_tunnel_ports_is_a_plain_flow() {
    let on =
        |dport: u16, payload: &[u8]| eth(0x0800, &ipv4(17, O1, O2, &udp(50000, dport, payload)));
    for port in [4789, 6081] {
        // Empty, short (no room for a header and an Ethernet frame), zeros, text.
        assert_plain_udp(&on(port, &[]), port, "empty");
        assert_plain_udp(&on(port, &[0x08, 0, 0, 0]), port, "4 bytes");
        assert_plain_udp(
            &on(port, &[0x08, 0, 0, 0, 0, 0, 42, 0]),
            port,
            "header only",
        );
        assert_plain_udp(&on(port, &[0; 64]), port, "zeros");
        assert_plain_udp(&on(port, &[b'X'; 120]), port, "hping3-style filler");
        assert_plain_udp(
            &on(port, b"GET / HTTP/1.1\r\nHost: lab.test\r\n\r\n"),
            port,
            "text",
        );
    }
    let inner = eth(0x0800, &inner_v4_tcp());
    // VXLAN-like payloads that are not VXLAN: no I flag; the reserved last byte set.
    let mut v = vxlan(42, &inner);
    v[0] = 0;
    assert_plain_udp(&on(4789, &v), 4789, "VXLAN without the I flag");
    let mut v = vxlan(42, &inner);
    v[7] = 1;
    assert_plain_udp(&on(4789, &v), 4789, "VXLAN reserved byte");
    // Geneve-like ones: version 1, reserved flags, options beyond the datagram, a payload
    // type that is neither Ethernet nor IP.
    for (at, byte, what) in [
        (0, 0x40, "Geneve version 1"),
        (1, 0x01, "Geneve reserved flags"),
        (0, 0x3f, "Geneve options beyond the datagram"),
        (2, 0x12, "Geneve unknown payload type"),
    ] {
        let mut g = geneve(7, 0x6558, &[], &inner);
        g[at] = byte;
        assert_plain_udp(&on(6081, &g), 6081, what);
    }
    // Pseudo-random payloads (a fixed xorshift sequence): never a malformed tunnel.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..4096usize {
        let payload: Vec<u8> = (0..(i % 200))
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let port = if i % 2 == 0 { 4789 } else { 6081 };
        let (p, out) = parse(&on(port, &payload));
        assert_eq!(p, Parsed::Ip, "payload {i}");
        assert!(!out.tunnel_malformed, "payload {i}: {payload:02x?}");
    }
    // A real VXLAN frame still opens.
    let (_, out) = parse(&on(4789, &vxlan(42, &inner)));
    assert_eq!(
        (out.meta.tunnel_kind, out.meta.tunnel_id),
        (TUNNEL_VXLAN, 42)
    );
}

#[test]
fn configuration_switches_kinds_and_ports() {
    let inner = eth(0x0800, &inner_v4_tcp());
    let on_4789 = eth(0x0800, &ipv4(17, O1, O2, &udp(1, 4789, &vxlan(42, &inner))));
    let on_8472 = eth(0x0800, &ipv4(17, O1, O2, &udp(1, 8472, &vxlan(42, &inner))));
    // Off: the outer UDP flow, no tunnel counter at all.
    let (p, out) = parse_with(&on_4789, &TunnelConfig::OFF);
    assert_eq!((p, out.meta.proto, out.meta.dport), (Parsed::Ip, 17, 4789));
    assert_eq!(tunnel_counter(&out), None);
    // Linux's historical VXLAN port, when configured.
    let linux = TunnelConfig {
        vxlan_port: 8472,
        ..TunnelConfig::DEFAULT
    };
    let (_, out) = parse_with(&on_8472, &linux);
    assert_eq!((out.meta.tunnel_kind, out.meta.dport), (TUNNEL_VXLAN, 22));
    let (_, out) = parse_with(&on_4789, &linux);
    assert_eq!((out.meta.tunnel_kind, out.meta.dport), (TUNNEL_NONE, 4789));
    // Only GRE: VXLAN stays outer, GRE opens.
    let gre_only = TunnelConfig {
        kinds: 1 << TUNNEL_GRE,
        ..TunnelConfig::DEFAULT
    };
    let (_, out) = parse_with(&on_4789, &gre_only);
    assert_eq!(out.meta.tunnel_kind, TUNNEL_NONE);
    let g = eth(
        0x0800,
        &ipv4(47, O1, O2, &gre(0, 0x0800, None, &inner_v4_tcp())),
    );
    let (_, out) = parse_with(&g, &gre_only);
    assert_eq!((out.meta.tunnel_kind, out.meta.dport), (TUNNEL_GRE, 22));
}

#[test]
fn fragmented_outer_packets_are_not_opened_and_state_resets_between_frames() {
    let mut f = eth(0x0800, &ipv4(4, O1, O2, &inner_v4_tcp()));
    f[20] = 0x20; // MF: a first fragment
    let (p, out) = parse(&f);
    assert_eq!(
        (p, out.meta.proto, out.meta.tunnel_kind),
        (Parsed::Ip, 4, 0)
    );
    assert_eq!(tunnel_counter(&out), None);
    // A tunnelled frame, then a plain one into the same ParseOut: no tunnel left over.
    let mut out = ParseOut::default();
    parse_frame(
        eth(0x0800, &ipv4(4, O1, O2, &inner_v4_tcp())).as_slice(),
        &mut out,
    );
    assert_eq!(out.meta.tunnel_kind, TUNNEL_IPIP);
    parse_frame(eth(0x0800, &inner_v4_tcp()).as_slice(), &mut out);
    assert_eq!(
        (out.meta.tunnel_kind, out.meta.outer_src, out.meta.tunnel_id),
        (TUNNEL_NONE, [0; 16], 0)
    );
    // A malformed tunnel, then a plain frame: the flag is reset too.
    parse_frame(
        eth(0x0800, &ipv4(4, O1, O2, &[0x45; 8])).as_slice(),
        &mut out,
    );
    assert!(out.tunnel_malformed);
    parse_frame(eth(0x0800, &inner_v4_tcp()).as_slice(), &mut out);
    assert!(!out.tunnel_malformed);
}
