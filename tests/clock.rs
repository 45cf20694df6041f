//! Blinding by time (issue 13, item 6), and the replay flow table's bound (item 9).
//!
//! A tick clock stepped an hour forward in the middle of a port scan (the daemon's detection
//! thread, `daemon::detect::spawn`, with an injected clock) and one frame stamped as far in
//! the future as the capture format allows (`safelink analyze`, pcap and pcapng) do not keep
//! the scan from alerting; a capture with a genuine gap of hours is followed. A small
//! `--max-flows` exports the longest-idle flows as `evicted` records without losing a packet.
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};
use std::time::Duration;

use pcap_file::{
    pcap::{PcapReader, PcapWriter},
    pcapng::{Block, PcapNgReader, PcapNgWriter},
};
use safelink::alert::Alert;
use safelink::config::{Config, FlowTimeouts};
use safelink::daemon::detect::{self, Clock, DriveOptions};
use safelink::pipeline::{Pipeline, Stages};
use safelink::record::Record;
use safelink::replay::replay_file;
use serde_json::Value;
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_safelink");
const HOUR_NS: u64 = 3600 * 1_000_000_000;
const SCAN: &str = "portscan__syn-scan-29ports.pcap";
const SCAN_NG: &str = "portscan__nmap-syn-scan-1000ports.pcapng";

fn pcap(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/pcaps")
        .join(name)
}

/// A tick clock the test sets.
#[derive(Clone)]
struct Manual(Arc<AtomicU64>);

impl Clock for Manual {
    fn now_ns(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

fn pipeline() -> Pipeline {
    Pipeline::new(
        &Config::default(),
        Stages {
            dfa: true,
            keep_alerts: true,
            ..Stages::default()
        },
    )
    .unwrap()
}

/// What an alert says about the attack (not when the engine noticed it).
fn gist(a: &Alert) -> String {
    format!(
        "{} {:?}>{:?} count {} {:?}..{:?}",
        a.kind.as_str(),
        a.src_ip,
        a.dest_ip,
        a.count,
        a.first_seen,
        a.last_seen
    )
}

fn record_ts(r: &Record) -> u64 {
    match r {
        Record::FlowStart(s) => s.ts_ns,
        Record::Flow(f) | Record::FlowUpdate(f) => f.last_ns,
        Record::Arp(a) => a.ts_ns,
        Record::OuterFlow(o) => o.last_ns,
    }
}

#[test]
fn a_tick_clock_stepped_an_hour_mid_scan_does_not_blind_the_daemon() {
    let mut recs = Vec::new();
    replay_file(
        &pcap(SCAN),
        &FlowTimeouts::default(),
        |_, _| {},
        |r| recs.push(r),
    )
    .unwrap();
    // The reference: every record through a pipeline, no ticks.
    let mut p = pipeline();
    recs.iter().for_each(|r| p.feed(r));
    let want: Vec<String> = p.finish().alerts.iter().map(gist).collect();
    assert_eq!(want.len(), 1, "{want:?}");
    assert!(
        want[0].starts_with("port_scan Some(10.100.25.14)"),
        "{want:?}"
    );
    // The first half (9 failed connections) does not alert on its own.
    let split = recs
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r, Record::Flow(_)))
        .nth(9)
        .unwrap()
        .0;
    let mut p = pipeline();
    recs[..split].iter().for_each(|r| p.feed(r));
    assert!(p.finish().alerts.is_empty());

    // The daemon's detection thread, ticking every 5 ms with a clock the test steps.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let now = Arc::new(AtomicU64::new(record_ts(&recs[0])));
    let (tx, rx) = tokio::sync::mpsc::channel::<Record>(1024);
    let thread = {
        let _in_rt = rt.enter();
        detect::spawn(
            pipeline(),
            rx,
            Manual(now.clone()),
            DriveOptions {
                print_records: None,
                batch_wait: Duration::from_millis(5),
                tick: Duration::from_millis(5),
            },
        )
    };
    let settle = || std::thread::sleep(Duration::from_millis(100));
    for r in &recs[..split] {
        tx.blocking_send(r.clone()).unwrap();
    }
    now.store(record_ts(&recs[split - 1]), Ordering::SeqCst);
    settle();
    // NTP at boot, a VM resumed: the tick clock is an hour ahead from now on.
    now.fetch_add(HOUR_NS, Ordering::SeqCst);
    settle();
    for r in &recs[split..] {
        tx.blocking_send(r.clone()).unwrap();
    }
    settle();
    drop(tx);
    let report = thread.join().unwrap();
    let got: Vec<String> = report.alerts.iter().map(gist).collect();
    assert_eq!(got, want);
    let dfa = report.dfa.unwrap();
    assert_eq!(dfa.tick_jumps, 1);
    assert_eq!((dfa.clock_outliers, dfa.clock_steps), (0, 0));
    assert_eq!(dfa.records, recs.len() as u64);
}

/// `safelink analyze ARGS FILE`: (alerts or flow records as JSON, the `--summary` line).
fn analyze(file: &Path, args: &[&str]) -> (Vec<Value>, Value) {
    let out = run(Command::new(BIN)
        .arg("analyze")
        .arg("--summary")
        .args(args)
        .arg(file));
    let lines = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary = String::from_utf8(out.stderr)
        .unwrap()
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .expect("a summary line");
    (lines, summary)
}

/// Copies a pcap file, setting the timestamp of frame `i` (0-based) with `f(i, ts)`.
fn rewrite_pcap(from: &Path, to: &Path, f: impl Fn(usize, Duration) -> Duration) {
    let mut r = PcapReader::new(std::fs::File::open(from).unwrap()).unwrap();
    let mut w = PcapWriter::with_header(std::fs::File::create(to).unwrap(), r.header()).unwrap();
    let mut i = 0;
    while let Some(p) = r.next_packet() {
        let mut p = p.unwrap();
        p.timestamp = f(i, p.timestamp);
        w.write_packet(&p).unwrap();
        i += 1;
    }
}

fn frames(file: &Path) -> usize {
    let mut r = PcapReader::new(std::fs::File::open(file).unwrap()).unwrap();
    let mut n = 0;
    while let Some(p) = r.next_packet() {
        p.unwrap();
        n += 1;
    }
    n
}

fn alert_gist(a: &Value) -> Value {
    let mut a = a.clone();
    a.as_object_mut().unwrap().remove("id");
    a
}

/// Flow records keyed by addresses and ports, without the one of `except` (the key of the
/// flow the rewritten frame belongs to) and without end reasons: sweeps run at frame times, and
/// the outlier's own time, which ran one in the original, is unknown in the copy (a flow may
/// end `unanswered` at a later sweep instead of `flush` at the end of the file).
fn flows_but(v: &[Value], except: &str) -> std::collections::BTreeMap<String, Value> {
    let text: String = v.iter().map(|r| format!("{r}\n")).collect();
    let mut m = flows_by_key(&text);
    assert!(m.remove(except).is_some(), "{except} not among the flows");
    for f in m.values_mut() {
        f.as_object_mut().unwrap().remove("end_reason");
    }
    m
}

#[test]
fn one_frame_at_the_end_of_pcap_time_does_not_blind_the_replay() {
    let tmp = tempfile::tempdir().unwrap();
    let orig = pcap(SCAN);
    let bad = tmp.path().join("outlier.pcap");
    let n = frames(&orig);
    assert_eq!(n, 29);
    // The latest time a pcap can hold, on the 22nd frame: a probe after the alert's 15th (the
    // alert describes its 15th failed flow; an outlier replayed at the time of the frame
    // before it may change places with that frame's flow).
    rewrite_pcap(&orig, &bad, |i, ts| {
        if i == 21 {
            Duration::new(u64::from(u32::MAX), 999_999_000)
        } else {
            ts
        }
    });
    let (want, s0) = analyze(&orig, &[]);
    let (got, s1) = analyze(&bad, &[]);
    assert_eq!(want.len(), 1, "{want:?}");
    assert_eq!(want[0]["kind"], "port_scan");
    assert_eq!(
        got.iter().map(alert_gist).collect::<Vec<_>>(),
        want.iter().map(alert_gist).collect::<Vec<_>>()
    );
    assert_eq!(
        (s0["clock_outliers"].as_u64(), s0["clock_steps"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(
        (s1["clock_outliers"].as_u64(), s1["clock_steps"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(s1["engine_clock_outliers"], 0, "the engine never saw it");
    assert_eq!(s1["packets"], 29);

    // Every other flow record has the same features and times, to the nanosecond.
    let (f0, _) = analyze(&orig, &["--flows"]);
    let (f1, _) = analyze(&bad, &["--flows"]);
    assert_eq!(f0.len(), 29);
    let probe = flows_by_key(&f0.iter().map(|r| format!("{r}\n")).collect::<String>())
        .into_iter()
        .find(|(_, v)| v["dst_port"] == f1_port(&orig, 21))
        .unwrap()
        .0;
    assert_eq!(flows_but(&f0, &probe), flows_but(&f1, &probe));
}

/// The destination port of frame `i` of a pcap of Ethernet/IPv4/TCP or UDP frames.
fn f1_port(file: &Path, i: usize) -> Value {
    let mut r = PcapReader::new(std::fs::File::open(file).unwrap()).unwrap();
    for _ in 0..i {
        r.next_packet().unwrap().unwrap();
    }
    let p = r.next_packet().unwrap().unwrap();
    let ihl = usize::from(p.data[14] & 0x0f) * 4;
    let o = 14 + ihl + 2;
    Value::from(u16::from_be_bytes([p.data[o], p.data[o + 1]]))
}

#[test]
fn one_frame_at_the_end_of_pcapng_time_does_not_blind_the_replay() {
    let tmp = tempfile::tempdir().unwrap();
    let orig = pcap(SCAN_NG);
    let bad = tmp.path().join("outlier.pcapng");
    let mut r = PcapNgReader::new(std::fs::File::open(&orig).unwrap()).unwrap();
    let mut w = PcapNgWriter::with_section_header(
        std::fs::File::create(&bad).unwrap(),
        r.section().clone(),
    )
    .unwrap();
    let (mut packets, mut set) = (0, false);
    while let Some(b) = r.next_block() {
        let mut b = b.unwrap();
        if let Block::EnhancedPacket(p) = &mut b {
            packets += 1;
            if packets == 1000 {
                // pcap-file keeps the raw 64-bit count: all ones, the largest pcapng time.
                p.timestamp = Duration::from_nanos(u64::MAX);
                set = true;
            }
        }
        w.write_block(&b).unwrap();
    }
    drop(w);
    assert!(set && packets == 2011, "{packets}");
    let (want, _) = analyze(&orig, &[]);
    let (got, s1) = analyze(&bad, &[]);
    assert!(want.iter().any(|a| a["kind"] == "port_scan"), "{want:?}");
    assert_eq!(
        got.iter().map(alert_gist).collect::<Vec<_>>(),
        want.iter().map(alert_gist).collect::<Vec<_>>()
    );
    assert_eq!(
        (s1["clock_outliers"].as_u64(), s1["clock_steps"].as_u64()),
        (Some(1), Some(0))
    );
}

#[test]
fn a_gap_of_hours_between_two_halves_of_a_scan_is_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let orig = pcap(SCAN);
    let gap = tmp.path().join("gap.pcap");
    // Probes 1-10, three hours of silence, probes 11-29.
    rewrite_pcap(&orig, &gap, |i, ts| {
        if i >= 10 {
            ts + Duration::from_secs(3 * 3600)
        } else {
            ts
        }
    });
    let (got, s) = analyze(&gap, &[]);
    assert_eq!(
        (s["clock_outliers"].as_u64(), s["clock_steps"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(s["engine_clock_steps"], 1);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["kind"], "port_scan");
    assert_eq!(got[0]["src_ip"], "10.100.25.14");
    // The second half on its own time: its 19 probes, from its first.
    assert_eq!(got[0]["count"], 19);
    let (orig_flows, _) = analyze(&orig, &["--flows"]);
    let mut firsts: Vec<u64> = orig_flows
        .iter()
        .map(|f| f["first_ns"].as_u64().unwrap())
        .collect();
    firsts.sort_unstable();
    let (gap_flows, _) = analyze(&gap, &["--flows"]);
    let mut gap_firsts: Vec<u64> = gap_flows
        .iter()
        .map(|f| f["first_ns"].as_u64().unwrap())
        .collect();
    gap_firsts.sort_unstable();
    let shifted: Vec<u64> = firsts
        .iter()
        .enumerate()
        .map(|(i, t)| if i >= 10 { t + 3 * HOUR_NS } else { *t })
        .collect();
    assert_eq!(gap_firsts, shifted, "every probe kept its own time");
}

#[test]
fn a_full_replay_flow_table_evicts_the_longest_idle_and_loses_no_packet() {
    let tmp = tempfile::tempdir().unwrap();
    // 1000 one-datagram UDP flows, 1 ms apart: none ends within the capture's second.
    let frames: Vec<Vec<u8>> = (0..1000u32)
        .map(|i| {
            let [_, _, a, b] = i.to_be_bytes();
            udp4(([10, 1, a, b], 5000), ([192, 0, 2, 1], 53), 20)
        })
        .collect();
    let file = tmp.path().join("many.pcap");
    write_pcap(&file, &frames, 1_700_000_000);
    let (flows, s) = analyze(&file, &["--flows", "--max-flows", "64"]);
    // Full at 64: the 4 longest idle go before each 4 new flows; the last 64 are flushed.
    assert_eq!(s["flows_evicted"], 936);
    assert_eq!(s["flow_records"], 1000);
    let evicted: Vec<&Value> = flows
        .iter()
        .filter(|f| f["end_reason"] == "evicted")
        .collect();
    assert_eq!(evicted.len(), 936);
    assert_eq!(
        flows.iter().filter(|f| f["end_reason"] == "flush").count(),
        64
    );
    // Longest idle first: the evicted are the first 936 flows, in order.
    let srcs: Vec<String> = evicted
        .iter()
        .map(|f| f["src_ip"].as_str().unwrap().to_owned())
        .collect();
    let want: Vec<String> = (0..936u32)
        .map(|i| format!("10.1.{}.{}", i >> 8, i & 0xff))
        .collect();
    assert_eq!(srcs, want);
    let packets: u64 = flows
        .iter()
        .map(|f| f["fwd"]["packets"].as_u64().unwrap() + f["rev"]["packets"].as_u64().unwrap())
        .sum();
    assert_eq!(packets, 1000);

    // A real capture with many flows (a SYN flood from ~9700 spoofed sources): the same
    // packets in flow records with a table of 256 as without a bound.
    let flood = pcap("synflood__spoofed-syn-ecn-cwr.pcapng");
    let (all, s_all) = analyze(&flood, &["--flows"]);
    let (capped, s_cap) = analyze(&flood, &["--flows", "--max-flows", "256"]);
    let total = |v: &[Value]| -> u64 {
        v.iter()
            .map(|f| f["fwd"]["packets"].as_u64().unwrap() + f["rev"]["packets"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(s_all["flows_evicted"], 0);
    let n_evicted = capped
        .iter()
        .filter(|f| f["end_reason"] == "evicted")
        .count() as u64;
    assert!(n_evicted > 1000, "{n_evicted}");
    assert_eq!(s_cap["flows_evicted"], n_evicted);
    assert_eq!(total(&capped), total(&all));
    assert_eq!(
        total(&all),
        s_all["ipv4"].as_u64().unwrap() + s_all["ipv6"].as_u64().unwrap(),
        "{s_all}"
    );
}
