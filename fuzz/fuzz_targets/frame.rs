//! Fuzz target `frame`: bytes → the shared parser and feature code, exactly as the XDP program
//! runs it per frame (`FlowTable::observe`: `parse_frame`, `frame_counters`, `flow::update`,
//! `late_tcp_header` + `flow::late_tcp`), then `flow::merge`.
//!
//! The input is one Ethernet frame, or several joined by [`SEP`] (so fragments and flows of
//! more than one packet are reached; `frame.dict` holds the separator). The corpus seeds are the
//! frames of the shared captures, one file per unique frame.
//!
//! Invariants checked besides "no panic":
//! - every frame bumps `packets` by one, `bytes` by its length, and exactly one L3 class
//!   (IPv4, IPv6, ARP, other L3, malformed); an L4 class (TCP, UDP, ICMP, ICMPv6, other L4,
//!   fragments) exactly when the class is IPv4/IPv6; nothing is counted twice, no frame lost;
//! - the class is what `parse_frame` says of the frame on a fresh `ParseOut`, and parsing into
//!   the table's reused `ParseOut` (left over from the previous frame) gives the same fields;
//! - a parsed IP frame adds one packet to its flow, in the direction `canonical_key` says;
//!   a flow is created (and a `FlowStart` returned) exactly when its key was new;
//! - every flow: packets of both directions add up to the IP frames of its key, bytes and L3
//!   sums too, `l3_min <= l3_max`, `iat_min <= iat_max`, each TCP flag count at most the
//!   packets of its direction, `first_ns <= last_ns`;
//! - the same frames split over two tables (two CPUs) and merged give the exact packet, byte,
//!   length and time figures of one table (flags too when no fragment is involved).
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use safelink::table::{FlowTable, Observed};
use safelink_common::{
    Counter, FlowKey, FlowStats,
    flow::{canonical_key, merge},
    parse::{CapturedFrame, ParseOut, Parsed, frame_counters, late_tcp_header, parse_frame},
};

/// Separates frames in one input.
const SEP: &[u8] = b"\xffSL-NEXT\xff";
/// At most this many frames per input (bounded work per input).
const MAX_FRAMES: usize = 64;

const L3: [Counter; 5] = [
    Counter::Ipv4,
    Counter::Ipv6,
    Counter::Arp,
    Counter::OtherL3,
    Counter::Malformed,
];
const L4: [Counter; 6] = [
    Counter::Tcp,
    Counter::Udp,
    Counter::Icmp,
    Counter::Icmpv6,
    Counter::OtherL4,
    Counter::Fragments,
];

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

/// Per-key totals that one table must show after the frames.
#[derive(Default)]
struct Expect {
    packets: [u64; 2],
    bytes: u64,
    l3_sum: u64,
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
    assert!(
        s.ab.packets + s.ba.packets > 0,
        "{k:?}: empty flow in the table"
    );
    assert!(s.first_ns <= s.last_ns, "{k:?}: flow ends before it starts");
}

fuzz_target!(|data: &[u8]| {
    let frames = split(data);
    let mut table = FlowTable::default();
    // Two "CPUs": frame i goes to cpus[i % 2], as the kernel's per-CPU slots would split it.
    let mut cpus = [FlowTable::default(), FlowTable::default()];
    let mut expect: HashMap<FlowKey, Expect> = HashMap::new();
    let mut ip_frames = 0u64;
    let mut fragments = false;
    let mut reused = ParseOut::default();
    for (i, &frame) in frames.iter().enumerate() {
        let ts = 1_000_000_000 + i as u64 * 1_000_000;
        let before = table.counters.clone();

        // What the frame is, on a fresh ParseOut; and the same on the reused one.
        let mut fresh = ParseOut::default();
        let parsed = parse_frame(frame, &mut fresh);
        let again = parse_frame(frame, &mut reused);
        assert_eq!(parsed, again, "parse depends on the previous frame");
        match parsed {
            Parsed::Ip => assert_eq!(fresh.meta, reused.meta),
            Parsed::Fragment(_) => {
                assert_eq!(fresh.frag, reused.frag);
                assert_eq!(
                    (
                        fresh.meta.src,
                        fresh.meta.dst,
                        fresh.meta.proto,
                        fresh.meta.vlan
                    ),
                    (
                        reused.meta.src,
                        reused.meta.dst,
                        reused.meta.proto,
                        reused.meta.vlan
                    )
                );
                assert_eq!(
                    late_tcp_header(frame, &fresh),
                    late_tcp_header(frame, &reused)
                );
            }
            Parsed::Arp => assert_eq!(fresh.arp, reused.arp),
            _ => {}
        }
        // The same bytes as a snaplen-cut capture (wire length beyond the captured bytes,
        // jumbogram sizes): no panic.
        let cut = CapturedFrame {
            data: frame,
            wire_len: frame.len().saturating_mul(2) + 65_536,
        };
        let mut big = ParseOut::default();
        let _ = parse_frame(&cut, &mut big);
        if let Parsed::Fragment(_) = parse_frame(&cut, &mut big) {
            let _ = late_tcp_header(&cut, &big);
        }

        let key_before = if parsed == Parsed::Ip {
            let mut k = FlowKey::default();
            let from_a = canonical_key(&fresh.meta, &mut k);
            Some((k, from_a, table.get(&k).copied()))
        } else {
            None
        };

        let frame_ref = CapturedFrame {
            data: frame,
            wire_len: frame.len(),
        };
        let observed = table.observe(frame_ref, ts);
        let _ = cpus[i % 2].observe(frame_ref, ts);

        // Counters: one packet, its bytes, exactly one L3 class, an L4 class iff IP.
        let delta = |c: Counter| table.counters.get(c) - before.get(c);
        assert_eq!(delta(Counter::Packets), 1);
        assert_eq!(delta(Counter::Bytes), frame.len() as u64);
        let l3: Vec<Counter> = L3.into_iter().filter(|&c| delta(c) != 0).collect();
        let l4: Vec<Counter> = L4.into_iter().filter(|&c| delta(c) != 0).collect();
        assert_eq!(l3.len(), 1, "frame counted in L3 classes {l3:?}");
        assert!(L3.iter().all(|&c| delta(c) <= 1));
        assert!(L4.iter().all(|&c| delta(c) <= 1));
        let (want_l3, want_l4) = frame_counters(&parsed, &fresh);
        assert_eq!(l3[0], want_l3);
        assert_eq!(l4.first().copied(), want_l4);
        assert_eq!(l4.len(), want_l4.is_some() as usize);
        if matches!(l3[0], Counter::Ipv4 | Counter::Ipv6) {
            assert_eq!(l4.len(), 1, "IP frame without an L4 class");
        } else {
            assert!(l4.is_empty(), "non-IP frame with an L4 class {l4:?}");
        }
        assert!(delta(Counter::VlanTagged) <= 1);

        match parsed {
            Parsed::Ip => {
                let (k, from_a, old) = key_before.expect("IP frame has a key");
                let now = table
                    .get(&k)
                    .expect("an IP frame leaves its flow in the table");
                let created = delta(Counter::FlowsCreated);
                match old {
                    None => {
                        assert_eq!(created, 1);
                        assert!(matches!(observed, Observed::FlowStart(_)));
                        assert_eq!(now.initiator_is_a, from_a as u8);
                    }
                    Some(old) => {
                        assert_eq!(created, 0);
                        assert_eq!(observed, Observed::Nothing);
                        let (d_old, d_new) = if from_a {
                            (&old.ab, &now.ab)
                        } else {
                            (&old.ba, &now.ba)
                        };
                        assert_eq!(d_new.packets, d_old.packets + 1);
                    }
                }
                check_flow(&k, now);
                let e = expect.entry(k).or_default();
                e.packets[usize::from(!from_a)] += 1;
                e.bytes += frame.len() as u64;
                e.l3_sum += u64::from(fresh.meta.l3_len);
                ip_frames += 1;
            }
            Parsed::Arp => {
                assert_eq!(delta(Counter::FlowsCreated), 0);
                assert!(matches!(observed, Observed::Arp(_)));
            }
            Parsed::Fragment(_) => {
                fragments = true;
                assert_eq!(delta(Counter::FlowsCreated), 0);
                assert_eq!(observed, Observed::Nothing);
            }
            Parsed::OtherL3 | Parsed::Malformed(_) => {
                assert_eq!(delta(Counter::FlowsCreated), 0);
                assert_eq!(observed, Observed::Nothing);
            }
        }
    }

    // Every flow: its packets are exactly the IP frames of its key.
    assert_eq!(table.len(), expect.len());
    assert_eq!(
        table.counters.get(Counter::FlowsCreated),
        expect.len() as u64
    );
    let mut total = 0;
    for (k, s) in table.iter() {
        check_flow(k, s);
        let e = &expect[k];
        assert_eq!([s.ab.packets, s.ba.packets], e.packets, "{k:?}: packets");
        assert_eq!(s.ab.bytes + s.ba.bytes, e.bytes, "{k:?}: bytes");
        assert_eq!(s.ab.l3_sum + s.ba.l3_sum, e.l3_sum, "{k:?}: l3_sum");
        total += s.ab.packets + s.ba.packets;

        // Two per-CPU slots merged = one table (counts, sums, lengths, times exact).
        let mut m = FlowStats::default();
        for cpu in &cpus {
            if let Some(slot) = cpu.get(k) {
                merge(&mut m, slot);
            }
        }
        assert_eq!(m.first_ns, s.first_ns, "{k:?}: merged first_ns");
        assert_eq!(m.last_ns, s.last_ns, "{k:?}: merged last_ns");
        assert_eq!(
            m.initiator_is_a, s.initiator_is_a,
            "{k:?}: merged initiator"
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
    assert_eq!(total, ip_frames);
    let counted: u64 = L3.iter().map(|&c| table.counters.get(c)).sum();
    assert_eq!(counted, frames.len() as u64, "frames counted != frames fed");
});
