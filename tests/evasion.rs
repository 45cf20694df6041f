//! Evasion (issue: hostile traffic): frames crafted to slip past the parser must still make
//! the right flows, identically through the real XDP program (`BPF_PROG_TEST_RUN`, root) and
//! through `safelink analyze`:
//! - `nmap -f`: a SYN cut into 8-byte fragments (the first one ends before the TCP flags),
//!   answered with an unfragmented RST;
//! - IPv6 with 8 destination-options headers (more than the old limit of 6) before TCP, and
//!   with more than the parser follows (an address-level flow, never nothing);
//! - an IPv4 datagram shorter than its TCP header followed by an Ethernet trailer: the trailer
//!   is never read as TCP flags (malformed).
mod support;

use std::process::Command;

use aya::programs::{TestRun as _, TestRunOptions};
use safelink::{
    capture::{loader, maps::SensorMaps},
    expiry::EndReason,
    record::FlowRecord,
};
use safelink_common::{Counter, parse::MAX_IPV6_EXT_HEADERS};
use serde_json::Value;
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_safelink");

/// A frame's TCP header cut into IPv4 fragments carrying `chunk` bytes each.
fn fragments(full: &[u8], chunk: usize) -> Vec<Vec<u8>> {
    let l4 = &full[34..];
    l4.chunks(chunk)
        .enumerate()
        .map(|(i, part)| {
            let mut f = full[..34].to_vec();
            f[16..18].copy_from_slice(&((20 + part.len()) as u16).to_be_bytes());
            f[18..20].copy_from_slice(&0x4242u16.to_be_bytes());
            let more = (i + 1) * chunk < l4.len();
            let field = (i * chunk / 8) as u16 | if more { 0x2000 } else { 0 };
            f[20..22].copy_from_slice(&field.to_be_bytes());
            f.extend_from_slice(part);
            f
        })
        .collect()
}

/// IPv6 TCP SYN (port 41000 → 443) behind `n` destination-options headers.
fn ipv6_chain(n: usize) -> Vec<u8> {
    let plain = tcp6((IP6_B, 41000), (IP6_A, 443), "S");
    let tcp = &plain[54..];
    let mut v = plain[..54].to_vec();
    v[18..20].copy_from_slice(&((n * 8 + tcp.len()) as u16).to_be_bytes());
    v[20] = 60;
    for i in 0..n {
        v.extend_from_slice(&[if i + 1 == n { 6 } else { 60 }, 0, 1, 4, 0, 0, 0, 0]);
    }
    v.extend_from_slice(tcp);
    v
}

fn frames() -> (Vec<Vec<u8>>, u64) {
    let syn = tcp4((IP_B, 40000), (IP_A, 22), "S", 0);
    let mut v = fragments(&syn, 8);
    assert_eq!(v.len(), 3);
    v.push(tcp4((IP_A, 22), (IP_B, 40000), "RA", 0));
    v.push(ipv6_chain(8));
    v.push(ipv6_chain(MAX_IPV6_EXT_HEADERS + 3));
    let mut trailer = tcp4((IP_B, 40001), (IP_A, 80), "S", 0);
    trailer[16..18].copy_from_slice(&28u16.to_be_bytes());
    v.push(trailer);
    (v, 1)
}

/// The flows both paths must produce, keyed as [`flows_by_key`] keys them.
fn check(what: &str, flows: &std::collections::BTreeMap<String, Value>) {
    assert_eq!(flows.len(), 3, "{what}: {flows:#?}");
    let f = &flows["6 192.0.2.2:40000>192.0.2.1:22 vlan0"];
    assert_eq!(
        f["fwd"]["packets"], 1,
        "{what}: fragments count as one packet"
    );
    assert_eq!(
        f["fwd"]["flags"]["syn"], 1,
        "{what}: the SYN flag from fragment 2"
    );
    assert_eq!(
        f["fwd"]["init_win"], 64240,
        "{what}: the window from fragment 2"
    );
    assert_eq!(f["rev"]["flags"]["rst"], 1, "{what}");
    let chain = &flows["6 2001:db8::2:41000>2001:db8::1:443 vlan0"];
    assert_eq!(chain["fwd"]["flags"]["syn"], 1, "{what}");
    let deep = &flows["60 2001:db8::2:0>2001:db8::1:0 vlan0"];
    assert_eq!(deep["fwd"]["packets"], 1, "{what}");
}

#[test]
fn evasive_frames_make_the_same_flows_in_xdp_and_analyze() {
    let (frames, malformed) = frames();
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("evasion.pcap");
    write_pcap(&pcap, &frames, 1_700_000_000);
    let out = run(Command::new(BIN)
        .args(["analyze", "--flows", "--summary"])
        .arg(&pcap));
    check(
        "analyze",
        &flows_by_key(&String::from_utf8(out.stdout).unwrap()),
    );
    let summary: Value = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .next()
        .expect("summary line");
    assert_eq!(summary["malformed"], malformed, "{summary}");
    assert_eq!(summary["fragments"], 2, "{summary}");

    if !kernel_test_can_run("evasion/xdp", &[]) {
        return;
    }
    let mut ebpf = loader::load(None).expect("load XDP object");
    let mut buf = vec![0u8; 4096];
    for f in &frames {
        let prog = loader::program(&mut ebpf).unwrap();
        let r = prog
            .test_run(TestRunOptions {
                data_in: Some(f),
                data_out: Some(&mut buf),
                ..Default::default()
            })
            .expect("test_run");
        assert_eq!(r.return_value, 2, "XDP_PASS");
    }
    let mut maps = SensorMaps::from_ebpf(&mut ebpf).unwrap();
    assert_eq!(maps.counters().unwrap().get(Counter::Malformed), malformed);
    let lines: Vec<String> = maps
        .flows()
        .unwrap()
        .iter()
        .map(|(k, s)| serde_json::to_string(&FlowRecord::new(k, s, 0, EndReason::Open)).unwrap())
        .collect();
    check("xdp", &flows_by_key(&lines.join("\n")));
}
