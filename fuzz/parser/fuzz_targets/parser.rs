//! Fuzz target `parser`: bytes → `safelink-common`'s parser and feature code, called exactly as
//! the XDP program calls it per frame (`parse_frame`, `frame_counters`, `canonical_key`,
//! `flow::update`, and for a later fragment `late_tcp_header` + `flow::late_tcp`), then
//! `flow::merge` over two per-CPU copies. Nothing else is linked in, so it builds in a minute and
//! CI runs it on every `cargo xtask test`.
//!
//! The input is one Ethernet frame, or several joined by [`SEP`] (the separator of the `frame`
//! target, so both share seeds and `frame.dict`).
//!
//! Invariants checked besides "no panic":
//! - parsing is a function of the frame: a fresh `ParseOut` and one reused from the previous
//!   frame give the same result and fields;
//! - every frame is exactly one L3 class; it has an L4 class exactly when that class is IPv4 or
//!   IPv6; only an IP packet has a flow, only ARP has ARP fields;
//! - the same bytes with a wire length beyond the captured bytes (snaplen cut, jumbogram
//!   sizes) do not panic;
//! - `update` adds exactly one packet and the frame's bytes to the direction `canonical_key`
//!   says; every flow's packets are the IP frames of its key; `l3_min <= l3_max`,
//!   `iat_min <= iat_max`, each TCP flag count at most the packets of its direction,
//!   `first_ns <= last_ns`;
//! - the frames split over two per-CPU copies and merged give the one-copy figures exactly
//!   (flags too when no fragment is involved);
//! - tunnels (seeded from `tests/pcaps/tunnels`): a decapsulated packet is an IP packet or
//!   fragment with its tunnel's outer family set; a malformed tunnel leaves exactly the packet
//!   that decoding switched off gives (the outer flow is kept), no tunnel fields; with
//!   decoding off nothing is a tunnel; a key's outer pair is ordered.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use safelink_common::{
    Counter, FlowKey, FlowStats, FragKey,
    flow::{canonical_key, late_tcp, merge, update},
    TUNNEL_NONE,
    parse::{
        CapturedFrame, ParseOut, Parsed, TunnelConfig, frame_counters, late_tcp_header,
        parse_frame, parse_frame_with, tunnel_counter,
    },
};

/// Separates frames in one input.
const SEP: &[u8] = b"\xffSL-NEXT\xff";
/// At most this many frames per input (bounded work per input).
const MAX_FRAMES: usize = 64;

fn split(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while out.len() + 1 < MAX_FRAMES {
        match rest.windows(SEP.len()).position(|w| w == SEP) {
            Some(i) => {
                out.push(&rest[..i]);
                rest = &rest[i + SEP.len()..];
            }
            None => break,
        }
    }
    out.push(rest);
    out
}

fn check_flow(k: &FlowKey, s: &FlowStats) {
    for d in [&s.ab, &s.ba] {
        if d.packets == 0 {
            continue;
        }
        assert!(d.l3_min <= d.l3_max, "{k:?}: l3_min > l3_max");
        assert!(
            d.first_ns <= d.last_ns,
            "{k:?}: direction ends before it starts"
        );
        if d.packets >= 2 {
            assert!(d.iat_min_us <= d.iat_max_us, "{k:?}: iat_min > iat_max");
        }
        let f = &d.flags;
        for n in [
            f.syn, f.synack, f.fin, f.rst, f.psh, f.urg, f.ack, f.ece, f.cwr,
        ] {
            assert!(
                u64::from(n) <= d.packets,
                "{k:?}: flag counted more than packets"
            );
        }
    }
    assert!(s.ab.packets + s.ba.packets > 0, "{k:?}: empty flow");
    assert!(s.first_ns <= s.last_ns, "{k:?}: flow ends before it starts");
}

fn frag_key(o: &ParseOut) -> FragKey {
    FragKey {
        src: o.meta.src,
        dst: o.meta.dst,
        id: o.frag.id,
        proto: o.meta.proto,
        family: o.meta.family,
        vlan: o.meta.vlan,
    }
}

fuzz_target!(|data: &[u8]| {
    let frames = split(data);
    // One flow table, and the same frames split over two "CPUs" (frame i on CPU i % 2).
    let mut flows: HashMap<FlowKey, FlowStats> = HashMap::new();
    let mut cpus: [HashMap<FlowKey, FlowStats>; 2] = Default::default();
    // Expected packets per key and direction, and the harness's stand-in for `FRAGS`.
    let mut expect: HashMap<FlowKey, [u64; 2]> = HashMap::new();
    let mut frags: HashMap<FragKey, (FlowKey, bool)> = HashMap::new();
    let mut fragments = false;
    let mut reused = ParseOut::default();
    for (i, &frame) in frames.iter().enumerate() {
        let ts = 1_000_000_000 + i as u64 * 1_000_000;
        let mut fresh = ParseOut::default();
        let parsed = parse_frame(frame, &mut fresh);
        let again = parse_frame(frame, &mut reused);
        assert_eq!(parsed, again, "parse depends on the previous frame");

        let (l3, l4) = frame_counters(&parsed, &fresh);
        let ip = matches!(l3, Counter::Ipv4 | Counter::Ipv6);
        assert_eq!(l4.is_some(), ip, "L4 class {l4:?} for L3 class {l3:?}");
        match parsed {
            Parsed::Ip | Parsed::Fragment(_) => assert!(ip, "IP parse counted as {l3:?}"),
            Parsed::Arp => assert_eq!(l3, Counter::Arp),
            Parsed::OtherL3 => assert_eq!(l3, Counter::OtherL3),
            Parsed::Malformed(_) => assert_eq!(l3, Counter::Malformed),
        }

        // Tunnels: the decapsulated packet, or exactly the outer one when the tunnel is bad.
        let mut plain = ParseOut::default();
        let off = parse_frame_with(frame, &TunnelConfig::OFF, &mut plain);
        assert_eq!(tunnel_counter(&plain), None, "a tunnel with decoding off");
        if fresh.tunnel_malformed {
            assert_eq!((parsed, off), (Parsed::Ip, Parsed::Ip), "bad tunnel: outer kept");
            assert_eq!(fresh.meta, plain.meta, "bad tunnel: the outer packet exactly");
        } else if fresh.meta.tunnel_kind != TUNNEL_NONE {
            assert!(matches!(parsed, Parsed::Ip | Parsed::Fragment(_)));
            assert_eq!(off, Parsed::Ip, "a tunnel's outer packet is an IP packet");
            assert_ne!(fresh.meta.outer_family, 0);
            assert_eq!(fresh.meta.outer_src, plain.meta.src, "outer source");
            assert_eq!(fresh.meta.outer_dst, plain.meta.dst, "outer destination");
        } else {
            assert_eq!((parsed, fresh.meta), (off, plain.meta), "no tunnel: same parse");
        }

        // Snaplen-cut / jumbogram wire lengths: no panic.
        let cut = CapturedFrame {
            data: frame,
            wire_len: frame.len().saturating_mul(2) + 65_536,
        };
        let mut big = ParseOut::default();
        if let Parsed::Fragment(_) = parse_frame(&cut, &mut big) {
            let _ = late_tcp_header(&cut, &big);
        }

        match parsed {
            Parsed::Ip => {
                assert_eq!(fresh.meta, reused.meta);
                let mut k = FlowKey::default();
                let from_a = canonical_key(&fresh.meta, &mut k);
                assert!(k.tunnel.outer_a <= k.tunnel.outer_b, "{k:?}: outer pair not ordered");
                let len = frame.len() as u32;
                let s = flows.entry(k).or_default();
                let before = if from_a { s.ab } else { s.ba };
                update(s, &fresh.meta, from_a, len, ts);
                let after = if from_a { s.ab } else { s.ba };
                assert_eq!(
                    after.packets,
                    before.packets + 1,
                    "{k:?}: update adds one packet"
                );
                assert_eq!(after.bytes, before.bytes + u64::from(len), "{k:?}: bytes");
                check_flow(&k, s);
                update(
                    cpus[i % 2].entry(k).or_default(),
                    &fresh.meta,
                    from_a,
                    len,
                    ts,
                );
                expect.entry(k).or_default()[usize::from(!from_a)] += 1;
                if fresh.meta.l4_partial {
                    frags.insert(frag_key(&fresh), (k, from_a));
                }
            }
            Parsed::Fragment(_) => {
                fragments = true;
                assert_eq!(fresh.frag, reused.frag);
                let late = late_tcp_header(frame, &fresh);
                assert_eq!(late, late_tcp_header(frame, &reused));
                if let Some(late) = late
                    && let Some((k, from_a)) = frags.remove(&frag_key(&fresh))
                    && let Some(s) = flows.get_mut(&k)
                {
                    late_tcp(s, from_a, &late);
                    check_flow(&k, s);
                }
            }
            Parsed::Arp => assert_eq!(fresh.arp, reused.arp),
            Parsed::OtherL3 | Parsed::Malformed(_) => {}
        }
    }

    assert_eq!(flows.len(), expect.len());
    for (k, s) in &flows {
        check_flow(k, s);
        assert_eq!([s.ab.packets, s.ba.packets], expect[k], "{k:?}: packets");
        let mut m = FlowStats::default();
        for cpu in &cpus {
            if let Some(slot) = cpu.get(k) {
                merge(&mut m, slot);
            }
        }
        assert_eq!(
            (m.first_ns, m.last_ns),
            (s.first_ns, s.last_ns),
            "{k:?}: merged times"
        );
        assert_eq!(
            (m.initiator_is_a, m.outer_src_is_a),
            (s.initiator_is_a, s.outer_src_is_a),
            "{k:?}: merged initiator and outer side"
        );
        for (md, sd) in [(&m.ab, &s.ab), (&m.ba, &s.ba)] {
            assert_eq!(
                (md.packets, md.bytes, md.l3_sum, md.l3_sq_sum),
                (sd.packets, sd.bytes, sd.l3_sum, sd.l3_sq_sum),
                "{k:?}: merged counts"
            );
            if sd.packets > 0 {
                assert_eq!(
                    (md.l3_min, md.l3_max, md.first_ns, md.last_ns, md.init_ttl),
                    (sd.l3_min, sd.l3_max, sd.first_ns, sd.last_ns, sd.init_ttl),
                    "{k:?}: merged lengths and times"
                );
            }
            if !fragments {
                assert_eq!(md.flags, sd.flags, "{k:?}: merged flags");
            }
        }
        if !fragments {
            assert_eq!(m.end_flags, s.end_flags, "{k:?}: merged end flags");
        }
    }
});
