//! Unit tests of the parser and the feature maths with exact values.
extern crate std;
use std::vec::Vec;

use crate::{
    END_FIN, END_RST, FAMILY_IPV4, FAMILY_IPV6, FlowKey, FlowStats,
    flow::{canonical_key, late_tcp, merge, update},
    parse::{
        LateTcp, MAX_IPV6_EXT_HEADERS, Malformed, ParseOut, Parsed, late_tcp_header, parse_frame,
    },
};

fn eth(ethertype: u16) -> Vec<u8> {
    let mut v = std::vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    v.extend_from_slice(&ethertype.to_be_bytes());
    v
}

fn ipv4_tcp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, flags: u8, opts: usize) -> Vec<u8> {
    let mut v = eth(0x0800);
    let ihl = 20 + opts;
    let total = (ihl + 20) as u16;
    v.push(0x40 | (ihl / 4) as u8);
    v.push(0);
    v.extend_from_slice(&total.to_be_bytes());
    v.extend_from_slice(&[0, 0, 0x40, 0, 57, 6, 0, 0]);
    v.extend_from_slice(&src);
    v.extend_from_slice(&dst);
    v.extend(core::iter::repeat_n(1u8, opts)); // NOP options
    v.extend_from_slice(&sport.to_be_bytes());
    v.extend_from_slice(&dport.to_be_bytes());
    v.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0x72, 0x10, 0, 0, 0, 0]);
    v
}

fn parse(f: &[u8]) -> (Parsed, ParseOut) {
    let mut out = ParseOut::default();
    let p = parse_frame(f, &mut out);
    (p, out)
}

#[test]
fn ipv4_tcp_with_options() {
    let f = ipv4_tcp([10, 0, 0, 2], [10, 0, 0, 1], 4242, 22, 0x12, 8);
    let (p, out) = parse(&f);
    assert_eq!(p, Parsed::Ip);
    let m = out.meta;
    assert_eq!(
        (m.sport, m.dport, m.proto, m.family),
        (4242, 22, 6, FAMILY_IPV4)
    );
    assert_eq!(
        (m.l3_len, m.ttl, m.tcp_flags, m.window),
        (48, 57, 0x12, 0x7210)
    );
    assert_eq!(&m.src[..4], &[10, 0, 0, 2]);
}

#[test]
fn qinq_vlan_keeps_outer_id() {
    let inner = ipv4_tcp([10, 0, 0, 2], [10, 0, 0, 1], 1, 2, 0x02, 0);
    let mut f = std::vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    f.extend_from_slice(&[0x88, 0xa8, 0x00, 0x0a, 0x81, 0x00, 0x00, 0x14]);
    f.extend_from_slice(&inner[12..]);
    let (p, out) = parse(&f);
    assert_eq!(p, Parsed::Ip);
    assert!(out.vlan_tagged);
    assert_eq!((out.vlan, out.meta.vlan), (10, 10));
    assert_eq!(out.meta.dport, 2);
}

#[test]
fn fragments_and_bad_headers() {
    let mut frag = ipv4_tcp([10, 0, 0, 2], [10, 0, 0, 1], 1, 2, 0x02, 0);
    frag[20] = 0x20; // MF set, offset 0: first fragment, parsed
    assert_eq!(parse(&frag).0, Parsed::Ip);
    frag[21] = 0x10; // offset 16: non-first
    assert_eq!(parse(&frag).0, Parsed::Fragment(FAMILY_IPV4));
    let mut ihl = ipv4_tcp([1, 1, 1, 1], [2, 2, 2, 2], 1, 2, 0, 0);
    ihl[14] = 0x44;
    assert_eq!(parse(&ihl).0, Parsed::Malformed(Malformed::BadIhl));
    let short = ipv4_tcp([1, 1, 1, 1], [2, 2, 2, 2], 1, 2, 0, 0);
    assert_eq!(
        parse(&short[..30]).0,
        Parsed::Malformed(Malformed::TruncatedIp)
    );
    assert_eq!(
        parse(&short[..5]).0,
        Parsed::Malformed(Malformed::TruncatedEthernet)
    );
    assert_eq!(parse(&eth(0x88cc)).0, Parsed::OtherL3);
}

#[test]
fn ipv6_extension_chain_and_fragment() {
    let mut f = eth(0x86dd);
    f.extend_from_slice(&[0x60, 0, 0, 0, 0, 24, 0, 64]);
    f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    f.extend_from_slice(&[44, 0, 1, 4, 0, 0, 0, 0]); // hop-by-hop -> fragment
    f.extend_from_slice(&[58, 0, 0, 0, 0, 0, 0, 1]); // fragment offset 0 -> ICMPv6
    f.extend_from_slice(&[128, 0, 0, 0, 0, 1, 0, 1]); // echo request
    let (p, out) = parse(&f);
    assert_eq!(p, Parsed::Ip);
    assert_eq!((out.meta.proto, out.meta.family), (58, FAMILY_IPV6));
    assert_eq!((out.meta.icmp_type, out.meta.l3_len), (128, 64));
    f[14 + 40 + 8 + 3] = 0x08; // fragment offset 1: non-first
    assert_eq!(parse(&f).0, Parsed::Fragment(FAMILY_IPV6));
}

#[test]
fn arp_fields() {
    let mut f = std::vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 2, 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 2]);
    f.extend_from_slice(&[
        0x02, 0, 0, 0, 0, 2, 192, 0, 2, 2, 0x02, 0, 0, 0, 0, 1, 192, 0, 2, 1,
    ]);
    let (p, out) = parse(&f);
    assert_eq!(p, Parsed::Arp);
    assert_eq!(out.arp.op, 2);
    assert_eq!(out.arp.sender_ip, [192, 0, 2, 2]);
    assert_eq!(out.arp.target_mac, [0x02, 0, 0, 0, 0, 1]);
}

fn meta_of(f: &[u8]) -> crate::parse::PacketMeta {
    let (p, out) = parse(f);
    assert_eq!(p, Parsed::Ip);
    out.meta
}

#[test]
fn canonical_key_is_direction_independent() {
    let c2s = meta_of(&ipv4_tcp([10, 0, 0, 9], [10, 0, 0, 1], 5000, 80, 0x02, 0));
    let s2c = meta_of(&ipv4_tcp([10, 0, 0, 1], [10, 0, 0, 9], 80, 5000, 0x12, 0));
    let (mut k1, mut k2) = (FlowKey::default(), FlowKey::default());
    let a1 = canonical_key(&c2s, &mut k1);
    let a2 = canonical_key(&s2c, &mut k2);
    assert_eq!(k1, k2);
    assert!(!a1 && a2, "10.0.0.1 is endpoint a");
    assert_eq!((k1.port_a, k1.port_b), (80, 5000));
}

#[test]
fn update_exact_features_and_end_flags() {
    let syn = meta_of(&ipv4_tcp([10, 0, 0, 9], [10, 0, 0, 1], 5000, 80, 0x02, 0));
    let synack = meta_of(&ipv4_tcp([10, 0, 0, 1], [10, 0, 0, 9], 80, 5000, 0x12, 0));
    let fin = meta_of(&ipv4_tcp([10, 0, 0, 9], [10, 0, 0, 1], 5000, 80, 0x11, 4));
    let rst = meta_of(&ipv4_tcp([10, 0, 0, 1], [10, 0, 0, 9], 80, 5000, 0x04, 0));
    let mut s = FlowStats::default();
    assert_eq!(update(&mut s, &syn, false, 54, 1_000_000), 0);
    assert_eq!(update(&mut s, &synack, true, 54, 1_500_000), 0);
    assert_eq!(update(&mut s, &fin, false, 58, 3_000_000), END_FIN);
    assert_eq!(
        update(&mut s, &fin, false, 58, 7_000_000),
        0,
        "FIN only reported once"
    );
    assert_eq!(update(&mut s, &rst, true, 54, 7_000_500), END_RST);
    assert_eq!(s.initiator_is_a, 0);
    assert_eq!(
        (s.first_ns, s.last_ns, s.end_flags),
        (1_000_000, 7_000_500, END_FIN | END_RST)
    );
    let b = s.ba; // initiator 10.0.0.9 is endpoint b
    assert_eq!((b.packets, b.bytes, b.l3_min, b.l3_max), (3, 170, 40, 44));
    assert_eq!((b.l3_sum, b.l3_sq_sum), (128, 1600 + 2 * 1936));
    // IATs 2000 us and 4000 us.
    assert_eq!(
        (b.iat_min_us, b.iat_max_us, b.iat_sum_us),
        (2000, 4000, 6000)
    );
    assert_eq!(b.iat_sq_sum_us, 4_000_000 + 16_000_000);
    assert_eq!(
        (
            b.flags.syn,
            b.flags.fin,
            b.flags.ack,
            b.init_ttl,
            b.init_win
        ),
        (1, 2, 2, 57, 0x7210)
    );
    let a = s.ab;
    assert_eq!(
        (a.packets, a.flags.synack, a.flags.rst, a.flags.ack),
        (2, 1, 1, 1)
    );
    assert_eq!((a.iat_min_us, a.iat_max_us), (5500, 5500));
}

#[test]
fn merge_of_per_cpu_slots_is_exact() {
    let syn = meta_of(&ipv4_tcp([10, 0, 0, 9], [10, 0, 0, 1], 5000, 80, 0x02, 0));
    let ack = meta_of(&ipv4_tcp([10, 0, 0, 9], [10, 0, 0, 1], 5000, 80, 0x10, 0));
    let synack = meta_of(&ipv4_tcp([10, 0, 0, 1], [10, 0, 0, 9], 80, 5000, 0x12, 0));
    let (mut cpu0, mut cpu1, mut single) = (
        FlowStats::default(),
        FlowStats::default(),
        FlowStats::default(),
    );
    // CPU 1 sees the SYN-ACK first in its slot, but CPU 0's SYN is earlier: initiator is b.
    update(&mut cpu1, &synack, true, 54, 2_000);
    update(&mut cpu0, &syn, false, 54, 1_000);
    update(&mut cpu0, &ack, false, 54, 3_000);
    update(&mut cpu1, &ack, false, 54, 4_000);
    for (m, from_a, ts) in [
        (&syn, false, 1_000),
        (&synack, true, 2_000),
        (&ack, false, 3_000),
        (&ack, false, 4_000),
    ] {
        update(&mut single, m, from_a, 54, ts);
    }
    let mut merged = FlowStats::default();
    merge(&mut merged, &cpu1);
    merge(&mut merged, &cpu0);
    assert_eq!(merged.initiator_is_a, 0);
    assert_eq!(merged.first_ns, 1_000);
    assert_eq!(merged.ba.packets, single.ba.packets);
    assert_eq!(merged.ba.bytes, single.ba.bytes);
    assert_eq!(merged.ba.flags, single.ba.flags);
    assert_eq!(merged.ab, single.ab);
    assert_eq!(merged.ba.first_ns, 1_000);
}

/// `ipv4_tcp` cut into IPv4 fragments of `chunk` bytes of TCP header each (`nmap -f` sends
/// 8-byte fragments): one frame per fragment.
fn ipv4_fragments(full: &[u8], chunk: usize) -> Vec<Vec<u8>> {
    let tcp = &full[34..];
    let mut out = Vec::new();
    for (i, part) in tcp.chunks(chunk).enumerate() {
        let mut f = full[..34].to_vec();
        let total = (20 + part.len()) as u16;
        f[16..18].copy_from_slice(&total.to_be_bytes());
        f[18..20].copy_from_slice(&0x1234u16.to_be_bytes());
        let last = (i + 1) * chunk >= tcp.len();
        let field = ((i * chunk / 8) as u16) | if last { 0 } else { 0x2000 };
        f[20..22].copy_from_slice(&field.to_be_bytes());
        f.extend_from_slice(part);
        out.push(f);
    }
    out
}

#[test]
fn l4_is_never_read_from_an_ethernet_trailer() {
    // IPv4 says 20 + 8 bytes; the 12 bytes after it are trailer, not the rest of the TCP header.
    let mut f = ipv4_tcp([10, 0, 0, 2], [10, 0, 0, 1], 1, 2, 0x02, 0);
    f[16..18].copy_from_slice(&28u16.to_be_bytes());
    assert_eq!(parse(&f).0, Parsed::Malformed(Malformed::TruncatedL4));
    // A UDP datagram padded to the Ethernet minimum parses with its own length.
    let mut u = ipv4_tcp([10, 0, 0, 2], [10, 0, 0, 1], 53, 53, 0, 0);
    u[23] = 17;
    u[16..18].copy_from_slice(&28u16.to_be_bytes());
    let (p, out) = parse(&u);
    assert_eq!(p, Parsed::Ip);
    assert_eq!(
        (out.meta.l3_len, out.meta.sport, out.meta.dport),
        (28, 53, 53)
    );
}

#[test]
fn tiny_fragments_that_split_the_tcp_header_still_make_the_flow() {
    let full = ipv4_tcp([10, 0, 0, 2], [10, 0, 0, 1], 40000, 22, 0x02, 0);
    let frags = ipv4_fragments(&full, 8);
    assert_eq!(frags.len(), 3);
    let (p, first) = parse(&frags[0]);
    assert_eq!(p, Parsed::Ip);
    let m = first.meta;
    assert_eq!(
        (m.sport, m.dport, m.tcp_flags, m.l4_partial),
        (40000, 22, 0, true)
    );
    assert_eq!(
        (first.frag.fragmented, first.frag.id, first.frag.offset),
        (true, 0x1234, 0)
    );
    let mut s = FlowStats::default();
    let mut key = FlowKey::default();
    let from_a = canonical_key(&m, &mut key);
    update(&mut s, &m, from_a, frags[0].len() as u32, 1_000);
    let (p, second) = parse(&frags[1]);
    assert_eq!(p, Parsed::Fragment(FAMILY_IPV4));
    assert_eq!(
        (second.frag.id, second.frag.offset, second.frag.data_len),
        (0x1234, 8, 8)
    );
    let late = late_tcp_header(frags[1].as_slice(), &second).expect("flags in fragment 2");
    assert_eq!(
        late,
        LateTcp {
            flags: 0x02,
            window: Some(0x7210)
        }
    );
    assert_eq!(late_tcp(&mut s, from_a, &late), 0);
    let d = if from_a { s.ab } else { s.ba };
    assert_eq!((d.packets, d.flags.syn, d.init_win), (1, 1, 0x7210));
    // The third fragment carries no flags; an unfragmented packet none either.
    let (p, third) = parse(&frags[2]);
    assert_eq!(p, Parsed::Fragment(FAMILY_IPV4));
    assert_eq!(late_tcp_header(frags[2].as_slice(), &third), None);
    // 16-byte fragments keep the flags in the first one.
    let (p, out) = parse(&ipv4_fragments(&full, 16)[0]);
    assert_eq!(p, Parsed::Ip);
    assert_eq!((out.meta.tcp_flags, out.meta.l4_partial), (0x02, false));
    // A late RST ends the flow exactly once.
    let rst = LateTcp {
        flags: 0x04,
        window: None,
    };
    assert_eq!(late_tcp(&mut s, from_a, &rst), END_RST);
    assert_eq!(late_tcp(&mut s, from_a, &rst), 0);
}

fn ipv6_with_dest_opts(n: usize, payload: &[u8], next: u8) -> Vec<u8> {
    let mut f = eth(0x86dd);
    let len = (n * 8 + payload.len()) as u16;
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&len.to_be_bytes());
    f.extend_from_slice(&[if n == 0 { next } else { 60 }, 64]);
    f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    for i in 0..n {
        let nh = if i + 1 == n { next } else { 60 };
        f.extend_from_slice(&[nh, 0, 1, 4, 0, 0, 0, 0]);
    }
    f.extend_from_slice(payload);
    f
}

#[test]
fn long_ipv6_extension_chains_still_make_a_flow() {
    let tcp = &ipv4_tcp([0; 4], [0; 4], 40000, 443, 0x02, 0)[34..];
    // Past the old limit of 6 and within MAX_IPV6_EXT_HEADERS: the full flow.
    let (p, out) = parse(&ipv6_with_dest_opts(8, tcp, 6));
    assert_eq!(p, Parsed::Ip);
    assert_eq!(
        (out.meta.proto, out.meta.dport, out.meta.tcp_flags),
        (6, 443, 0x02)
    );
    // Beyond it: an address-level flow (protocol = the header not followed), never nothing.
    let (p, out) = parse(&ipv6_with_dest_opts(MAX_IPV6_EXT_HEADERS + 4, tcp, 6));
    assert_eq!(p, Parsed::Ip);
    assert_eq!((out.meta.proto, out.meta.sport, out.meta.dport), (60, 0, 0));
    assert_eq!(out.meta.dst[15], 1);
    // A chain that claims more bytes than the datagram has is malformed.
    let mut bad = ipv6_with_dest_opts(2, tcp, 6);
    bad[14 + 40 + 1] = 200;
    assert_eq!(parse(&bad).0, Parsed::Malformed(Malformed::Ipv6ExtChain));
}

#[test]
fn ipv6_jumbogram_length_comes_from_the_frame() {
    let mut f = eth(0x86dd);
    f.extend_from_slice(&[0x60, 0, 0, 0, 0, 0, 0, 64]); // payload length 0, next: hop-by-hop
    f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    f.extend_from_slice(&[17, 0, 0xc2, 4, 0, 1, 0x11, 0x78]); // jumbo payload option: 70008
    f.extend_from_slice(&[0x13, 0x88, 0x13, 0x89, 0, 0, 0, 0]);
    f.resize(14 + 40 + 70_008, 0);
    let (p, out) = parse(&f);
    assert_eq!(p, Parsed::Ip);
    assert_eq!(
        (out.meta.proto, out.meta.sport, out.meta.dport),
        (17, 5000, 5001)
    );
    assert_eq!(out.meta.l3_len, u16::MAX, "saturates, never wraps");
    // The largest regular IPv6 packet saturates too (65535 + 40 does not fit a u16).
    let mut big = ipv6_with_dest_opts(0, &[0x13, 0x88, 0x13, 0x89, 0, 0, 0, 0], 17);
    big[18..20].copy_from_slice(&u16::MAX.to_be_bytes());
    big.resize(14 + 40 + 65_535, 0);
    assert_eq!(parse(&big).1.meta.l3_len, u16::MAX);
}

#[test]
fn flows_capacity_scales_with_cpus() {
    use crate::layout::{FLOWS_PERCPU_BUDGET, MAX_FLOWS, MIN_FLOWS, flows_capacity};
    assert_eq!(flows_capacity(1), MAX_FLOWS);
    assert_eq!(flows_capacity(2), MAX_FLOWS);
    assert_eq!(flows_capacity(9), MAX_FLOWS);
    assert_eq!(flows_capacity(10), 63_466);
    assert_eq!(flows_capacity(64), 9_916);
    assert_eq!(flows_capacity(4096), MIN_FLOWS);
    // The most that fits the budget: 9 916 × 304 × 64 bytes do, one more entry does not.
    let per_entry = 304 * 64;
    let n = u64::from(flows_capacity(64));
    assert!(n * per_entry <= FLOWS_PERCPU_BUDGET && (n + 1) * per_entry > FLOWS_PERCPU_BUDGET);
}
