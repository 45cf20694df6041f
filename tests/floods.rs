//! A flood in one long flow (`hping3 --icmp --faster`, `hping3 --udp -k`, `hping3 -S -k`:
//! fixed addresses and ports) alerts while it runs, through interim flow updates, and its
//! final flow record does not count its packets twice. Through `safelink analyze` on
//! generated captures: 12 s of one flow at 4000 packets/s, no replies (the UDP family calls a
//! single flow a flood from 10 000 packets at 1000/s on, or from 1000 when its datagrams are
//! small: a short `hping3 --udp -k -c 1500` with empty datagrams).
mod support;

use std::process::Command;

use serde_json::Value;
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_safelink");
const START_S: u64 = 1_700_000_000;
const RATE: u64 = 4000;
const PACKETS: u64 = 12 * RATE;

fn alerts(frames: &[Vec<u8>], extra: &[&str]) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("flood.pcap");
    let mut w = pcap_file::pcap::PcapWriter::new(std::fs::File::create(&pcap).unwrap()).unwrap();
    for (i, f) in frames.iter().enumerate() {
        let ts = std::time::Duration::from_secs(START_S)
            + std::time::Duration::from_nanos(i as u64 * 1_000_000_000 / RATE);
        w.write_packet(&pcap_file::pcap::PcapPacket::new(ts, f.len() as u32, f))
            .unwrap();
    }
    drop(w);
    let out = run(Command::new(BIN).arg("analyze").args(extra).arg(&pcap));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Seconds from the flood's first packet to the alert.
fn raised_after_s(a: &Value) -> f64 {
    let t = chrono_like(a["timestamp"].as_str().unwrap());
    t - START_S as f64
}

/// Unix seconds of an RFC 3339 UTC timestamp with microseconds ("2023-11-14T22:13:23.000000Z").
fn chrono_like(s: &str) -> f64 {
    let out = run(Command::new("date").args(["-u", "-d", s, "+%s.%N"]));
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn check(what: &str, kind: &str, frames: Vec<Vec<u8>>) {
    let got = alerts(&frames, &[]);
    assert_eq!(got.len(), 1, "{what}: {got:#?}");
    let a = &got[0];
    assert_eq!(a["kind"], kind, "{what}: {a}");
    assert_eq!(a["dest_ip"], "192.0.2.1", "{what}");
    let after = raised_after_s(a);
    assert!(
        after <= 5.0,
        "{what}: raised {after} s after the flood began, not within 5 s"
    );
    assert_eq!(
        a["count"], PACKETS,
        "{what}: every packet counted once: {a}"
    );
    // Without interim updates the same flood is only seen when its flow ends.
    let late = alerts(&frames, &["--interim-packets", "0"]);
    assert_eq!(late.len(), 1, "{what}: {late:#?}");
    assert!(
        raised_after_s(&late[0]) > 11.0,
        "{what}: without updates: {}",
        late[0]
    );
    // There, the flow-start evidence has left the 5 s window by the time the flow ends.
    assert_eq!(late[0]["count"], PACKETS - 1, "{what}");
}

#[test]
fn single_flow_floods_alert_while_they_run_and_count_once() {
    let n = PACKETS;
    check(
        "icmp",
        "icmp_flood",
        (0..n)
            .map(|i| icmp4_echo(IP_B, IP_A, false, i as u16))
            .collect(),
    );
    check(
        "udp -k, small datagrams",
        "udp_flood",
        (0..n)
            .map(|_| udp4((IP_B, 2000), (IP_A, 9999), 64))
            .collect(),
    );
    check(
        "udp -k, large datagrams",
        "udp_flood",
        (0..n)
            .map(|_| udp4((IP_B, 2000), (IP_A, 9999), 600))
            .collect(),
    );
    check(
        "syn -k",
        "syn_flood",
        (0..n)
            .map(|_| tcp4((IP_B, 2000), (IP_A, 80), "S", 0))
            .collect(),
    );
}

/// A burst of 1500 datagrams in 0.375 s: a flood when they are empty (`hping3 --udp -k -c 1500
/// --faster`), not when each carries 1200 bytes (a short bulk transfer, e.g. iperf3's first
/// second); the rule's size tier, through the real parser.
#[test]
fn a_short_single_flow_burst_is_a_flood_only_of_small_datagrams() {
    let burst = |payload| -> Vec<Vec<u8>> {
        (0..1500)
            .map(|_| udp4((IP_B, 5555), (IP_A, 9999), payload))
            .collect()
    };
    let got = alerts(&burst(0), &[]);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0]["kind"], "udp_flood");
    assert_eq!(got[0]["src_ip"], "192.0.2.2");
    assert_eq!(got[0]["count"], 1500);
    let got = alerts(&burst(1200), &[]);
    assert!(got.is_empty(), "{got:#?}");
}
