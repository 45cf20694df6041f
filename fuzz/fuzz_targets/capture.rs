//! Fuzz target `capture`: bytes → the pcap/pcapng reader and the whole replay
//! (`safelink::replay::replay_bytes`: reader, flow table, expiry sweeps, records), as
//! `safelink analyze` runs it on a file. Seeds: the shared capture files and truncated copies.
//!
//! Besides "no panic": an input is either replayed or refused with a typed error
//! ([`ReplayError::Format`] or [`ReplayError::LinkType`]; `Open` cannot happen in memory), and a
//! replay accounts for every frame: `packets` = frames read, each frame in exactly one L3
//! class, every flow created is emitted exactly once (flow start and final record), every ARP
//! frame is one ARP record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use safelink::{
    expiry::FlowTimeouts,
    record::Record,
    replay::{ReplayError, replay_bytes},
};
use safelink_common::Counter;

fuzz_target!(|data: &[u8]| {
    let (mut starts, mut flows, mut arps) = (0u64, 0u64, 0u64);
    let res = replay_bytes(
        data,
        "fuzz",
        &FlowTimeouts::default(),
        |_, _| {},
        |r| match r {
            Record::FlowStart(_) => starts += 1,
            Record::Flow(_) => flows += 1,
            Record::FlowUpdate(_) => {}
            Record::Arp(_) => arps += 1,
        },
    );
    match res {
        Ok(s) => {
            let c = &s.counters;
            assert_eq!(c.get(Counter::Packets), s.frames);
            let l3: u64 = [
                Counter::Ipv4,
                Counter::Ipv6,
                Counter::Arp,
                Counter::OtherL3,
                Counter::Malformed,
            ]
            .iter()
            .map(|&k| c.get(k))
            .sum();
            assert_eq!(l3, s.frames, "frames not counted in exactly one L3 class");
            let created = c.get(Counter::FlowsCreated);
            assert_eq!(starts, created, "flow starts != flows created");
            assert_eq!(flows, created, "final flow records != flows created");
            assert_eq!(s.flows, created);
            assert_eq!(arps, c.get(Counter::Arp));
            assert_eq!(s.arp, arps);
        }
        Err(ReplayError::Format { .. } | ReplayError::LinkType { .. }) => {
            assert_eq!((starts, flows, arps), (0, 0, 0), "records before an error");
        }
        Err(e @ ReplayError::Open { .. }) => panic!("in-memory replay cannot fail to open: {e}"),
    }
});
