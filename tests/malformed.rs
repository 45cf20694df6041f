//! Malformed input never crashes and is counted: truncated Ethernet/VLAN/IP/TCP headers, a bad
//! IHL, bogus IPv6 extension chains, zero-length and jumbo frames. Through the real XDP program
//! (`BPF_PROG_TEST_RUN`, root) and through `safelink analyze` (no root); a valid frame after
//! them is still processed normally.
mod support;

use std::process::Command;

use aya::programs::{TestRun as _, TestRunOptions};
use safelink::capture::{loader, maps::SensorMaps};
use safelink_common::Counter;
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_safelink");

/// (name, frame) pairs that must each count as exactly one malformed packet.
fn malformed_frames() -> Vec<(&'static str, Vec<u8>)> {
    let tcp = tcp4((IP_B, 1234), (IP_A, 80), "S", 0);
    let mut v = Vec::new();
    v.push(("truncated ethernet", tcp[..10].to_vec()));
    let mut vlan = udp4_vlan(7, (VLAN_B, 1), (VLAN_A, 2), 0);
    vlan.truncate(16);
    v.push(("truncated vlan tag", vlan));
    v.push(("truncated ipv4 header", tcp[..14 + 12].to_vec()));
    let mut bad_ihl = tcp.clone();
    bad_ihl[14] = 0x43;
    v.push(("ihl 3", bad_ihl));
    let mut bad_len = tcp.clone();
    bad_len[16..18].copy_from_slice(&2000u16.to_be_bytes());
    v.push(("ipv4 total length beyond frame", bad_len));
    let mut bad_ver = tcp.clone();
    bad_ver[14] = 0x55;
    v.push(("ip version 5", bad_ver));
    v.push(("truncated tcp header", tcp[..14 + 20 + 10].to_vec()));
    let mut bad_off = tcp.clone();
    bad_off[14 + 20 + 12] = 0x20;
    v.push(("tcp data offset 2", bad_off));
    // IPv6: an extension header that claims to run past the packet.
    let mut past = udp6_ext(IP6_B, IP6_A, 1, 2);
    past[14 + 40 + 1] = 200;
    v.push(("ipv6 extension header past the end", past));
    let mut arp_bad = arp(1, MAC_B, IP_B, [0; 6], IP_A);
    arp_bad.truncate(14 + 20);
    v.push(("truncated arp", arp_bad));
    v
}

#[test]
fn xdp_counts_malformed_frames_and_keeps_working() {
    if !kernel_test_can_run("malformed/xdp", &[]) {
        return;
    }
    let mut ebpf = loader::load(None).expect("load XDP object");
    let mut out = vec![0u8; 16 * 1024];
    let frames = malformed_frames();
    let mut ran = 0u64;
    for (name, f) in &frames {
        let prog = loader::program(&mut ebpf).unwrap();
        let r = prog.test_run(TestRunOptions {
            data_in: Some(f),
            data_out: Some(&mut out),
            ..Default::default()
        });
        if f.len() < 14 {
            // The kernel refuses XDP input shorter than an Ethernet header (so does a NIC).
            assert!(r.is_err(), "{name}: a {}-byte frame was accepted", f.len());
            continue;
        }
        let r = r.unwrap_or_else(|e| panic!("{name}: test_run: {e}"));
        assert_eq!(r.return_value, 2, "{name}: XDP_PASS");
        ran += 1;
    }
    assert_eq!(
        ran,
        frames.len() as u64 - 1,
        "only the 10-byte frame is refused"
    );
    // Zero-length: the kernel refuses it before the program runs (nothing to count).
    let prog = loader::program(&mut ebpf).unwrap();
    let zero = prog.test_run(TestRunOptions {
        data_in: Some(&[]),
        data_out: Some(&mut out),
        ..Default::default()
    });
    assert!(
        zero.is_err(),
        "zero-length frame accepted by BPF_PROG_TEST_RUN"
    );
    // Jumbo: a 9000-byte UDP frame is a valid packet when the kernel accepts it (test_run caps
    // XDP input at one page without frags support): then it must count as UDP, not malformed.
    let jumbo = udp4((IP_B, 9), (IP_A, 9), 9000 - 42);
    let jumbo_ran = prog
        .test_run(TestRunOptions {
            data_in: Some(&jumbo),
            data_out: Some(&mut out),
            ..Default::default()
        })
        .is_ok();
    // A valid frame afterwards is processed normally.
    let good = tcp4((IP_B, 5555), (IP_A, 80), "S", 0);
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(&good),
            data_out: Some(&mut out),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(r.return_value, 2);

    let mut maps = SensorMaps::from_ebpf(&mut ebpf).unwrap();
    let c = maps.counters().unwrap();
    assert_eq!(c.get(Counter::Malformed), ran, "malformed counter");
    assert_eq!(
        c.get(Counter::Tcp),
        1,
        "the valid SYN after the malformed frames"
    );
    assert_eq!(
        c.get(Counter::Udp),
        u64::from(jumbo_ran),
        "jumbo frame is valid UDP"
    );
    assert_eq!(c.get(Counter::FlowsCreated), 1 + u64::from(jumbo_ran));
    let flows = maps.flows().unwrap();
    assert!(
        flows
            .iter()
            .any(|(k, s)| k.proto == 6 && s.ab.packets + s.ba.packets == 1),
        "flow of the valid SYN"
    );
}

#[test]
fn analyze_counts_malformed_frames_and_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("malformed.pcap");
    let mut frames: Vec<Vec<u8>> = malformed_frames().into_iter().map(|(_, f)| f).collect();
    let n_bad = frames.len() as u64;
    frames.push(Vec::new()); // zero-length record
    frames.push(udp4((IP_B, 9), (IP_A, 9), 9000 - 42)); // jumbo
    frames.push(tcp4((IP_B, 5555), (IP_A, 80), "S", 0));
    write_pcap(&pcap, &frames, 1_700_000_000);
    let out = run(Command::new(BIN)
        .args(["analyze", "--flows", "--summary"])
        .arg(&pcap));
    let summary: serde_json::Value = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .next()
        .expect("summary line");
    // The zero-length frame is a truncated Ethernet header too.
    assert_eq!(summary["malformed"], n_bad + 1);
    assert_eq!(summary["packets"], frames.len() as u64);
    assert_eq!(summary["udp"], 1);
    assert_eq!(summary["tcp"], 1);
    let flows = flows_by_key(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(flows.len(), 2, "{flows:?}");
    assert_eq!(
        flows["17 192.0.2.2:9>192.0.2.1:9 vlan0"]["fwd"]["bytes"],
        9000
    );
    assert_eq!(
        flows["6 192.0.2.2:5555>192.0.2.1:80 vlan0"]["fwd"]["flags"]["syn"],
        1
    );
}

#[test]
fn analyze_rejects_unreadable_and_truncated_files_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.pcap");
    let out = Command::new(BIN)
        .arg("analyze")
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot open") && err.contains("nope.pcap"),
        "{err}"
    );

    let junk = dir.path().join("junk.pcap");
    std::fs::write(&junk, b"this is not a capture file at all").unwrap();
    let out = Command::new(BIN)
        .arg("analyze")
        .arg(&junk)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a pcap or pcapng file"));

    // A capture cut in the middle of a record: frames before the cut are analysed.
    let pcap = dir.path().join("cut.pcap");
    write_pcap(&pcap, &lab_frames(), 1_700_000_000);
    let bytes = std::fs::read(&pcap).unwrap();
    std::fs::write(&pcap, &bytes[..bytes.len() - 30]).unwrap();
    let out = run(Command::new(BIN).args(["analyze", "--summary"]).arg(&pcap));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\"packets\":26"), "{err}");
}
