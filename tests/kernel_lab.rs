//! Kernel path end to end (root): the real XDP program on a veth pair inside namespaces the
//! test creates, fed with scripted frames by tcpreplay. Asserts exact per-flow counts and flags
//! from the pinned flow map, exact counters through `bpftool` (BTF field names), exact ARP
//! events from the ring buffer, equivalence with `safelink analyze --flows` on the same pcap,
//! map reuse across a restart, and flow export by the idle sweeper.
mod support;

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use serde_json::Value;
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_safelink");

struct Daemon {
    child: Child,
    lines: mpsc::Receiver<String>,
    attached: String,
}

impl Daemon {
    fn start(lab: &Lab, data_dir: &std::path::Path, extra: &[&str]) -> Daemon {
        let mut child = lab
            .sensor_cmd(BIN, data_dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(["--print-records", "--status-interval", "0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn safelink run");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let attached = lines
            .recv_timeout(Duration::from_secs(20))
            .expect("daemon did not print ATTACHED within 20 s");
        assert!(
            attached.starts_with("ATTACHED "),
            "unexpected first line: {attached}"
        );
        Daemon {
            child,
            lines,
            attached,
        }
    }

    /// SIGINT, wait, and return the remaining stdout lines.
    fn stop(mut self) -> Vec<String> {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                assert!(st.success(), "daemon exited with {st}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not stop within 10 s of SIGINT"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.lines.try_iter().collect()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn safelink(lab: &Lab, cmd: &str) -> String {
    let out = run(Command::new(BIN).args([cmd, "--pin-dir"]).arg(&lab.pin_dir));
    String::from_utf8(out.stdout).unwrap()
}

/// Sums a per-CPU `STATS` dump from `bpftool -j map dump pinned` (BTF-formatted).
fn bpftool_stats(lab: &Lab) -> serde_json::Map<String, Value> {
    let out = run(Command::new("bpftool")
        .args(["-j", "map", "dump", "pinned"])
        .arg(lab.pin_dir.join("STATS")));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut sum = serde_json::Map::new();
    for cpu in v[0]["formatted"]["values"]
        .as_array()
        .expect("BTF-formatted per-CPU values")
    {
        for (k, n) in cpu["value"].as_object().unwrap() {
            let cur = sum.get(k).and_then(Value::as_u64).unwrap_or(0);
            sum.insert(k.clone(), (cur + n.as_u64().unwrap()).into());
        }
    }
    sum
}

fn expected_flows() -> Vec<(&'static str, Value)> {
    use serde_json::json;
    let z = json!({"syn":0,"synack":0,"fin":0,"rst":0,"psh":0,"urg":0,"ack":0,"ece":0,"cwr":0});
    let flags = |over: Value| {
        let mut f = z.clone();
        for (k, v) in over.as_object().unwrap() {
            f[k] = v.clone();
        }
        f
    };
    let dir = |packets: u64, bytes: u64, l3: (u64, u64, u64, u64), ttl: u64, win: u64, f: Value| {
        json!({"packets": packets, "bytes": bytes, "l3_min": l3.0, "l3_max": l3.1,
               "l3_sum": l3.2, "l3_sq_sum": l3.3, "init_ttl": ttl, "init_win": win, "flags": f})
    };
    let none = dir(0, 0, (0, 0, 0, 0), 0, 0, z.clone());
    vec![
        (
            "6 192.0.2.2:40000>192.0.2.1:80 vlan0",
            json!({
            "fwd": dir(5, 4 * 54 + 154, (40, 140, 4 * 40 + 140, 4 * 1600 + 19600), 64, 64240,
                       flags(json!({"syn":1,"fin":1,"psh":1,"ack":4}))),
            "rev": dir(3, 3 * 54, (40, 40, 120, 4800), 64, 64240,
                       flags(json!({"synack":1,"fin":1,"ack":3}))),
            "icmp_type": 0, "icmp_code": 0}),
        ),
        (
            "17 192.0.2.2:5353>192.0.2.1:53 vlan0",
            json!({
            "fwd": dir(2, 72 + 82, (58, 68, 126, 58 * 58 + 68 * 68), 64, 0, z.clone()),
            "rev": dir(1, 162, (148, 148, 148, 148 * 148), 64, 0, z.clone()),
            "icmp_type": 0, "icmp_code": 0}),
        ),
        (
            "1 192.0.2.2:0>192.0.2.1:0 vlan0",
            json!({
            "fwd": dir(3, 3 * 98, (84, 84, 252, 3 * 84 * 84), 64, 0, z.clone()),
            "rev": dir(3, 3 * 98, (84, 84, 252, 3 * 84 * 84), 64, 0, z.clone()),
            "icmp_type": 8, "icmp_code": 0}),
        ),
        (
            "6 2001:db8::2:41000>2001:db8::1:443 vlan0",
            json!({
            "fwd": dir(2, 2 * 74, (60, 60, 120, 7200), 64, 65535, flags(json!({"syn":1,"rst":1}))),
            "rev": dir(1, 74, (60, 60, 60, 3600), 64, 65535, flags(json!({"synack":1,"ack":1}))),
            "icmp_type": 0, "icmp_code": 0}),
        ),
        (
            "17 198.51.100.2:1000>198.51.100.1:2000 vlan100",
            json!({
            "fwd": dir(2, 2 * 56, (38, 38, 76, 2 * 38 * 38), 64, 0, z.clone()),
            "rev": none.clone(),
            "icmp_type": 0, "icmp_code": 0}),
        ),
        (
            "17 2001:db8::2:7000>2001:db8::1:7001 vlan0",
            json!({
            "fwd": dir(1, 82, (68, 68, 68, 68 * 68), 64, 0, z.clone()),
            "rev": none,
            "icmp_type": 0, "icmp_code": 0}),
        ),
    ]
}

fn assert_flows(what: &str, got: &std::collections::BTreeMap<String, Value>) {
    let want = expected_flows();
    assert_eq!(
        got.keys().cloned().collect::<Vec<_>>(),
        {
            let mut k: Vec<String> = want.iter().map(|(k, _)| k.to_string()).collect();
            k.sort();
            k
        },
        "{what}: flow keys"
    );
    for (k, w) in want {
        assert_eq!(comparable(&got[k]), w, "{what}: flow {k}");
    }
}

/// The kernel counters after the lab frames went in once, through bpftool (BTF field names)
/// and through `safelink stats`.
fn assert_lab_counters(lab: &Lab, total_bytes: u64) {
    let bt = bpftool_stats(lab);
    let st: Value = serde_json::from_str(safelink(lab, "stats").trim()).unwrap();
    let want = [
        ("packets", 27),
        ("bytes", total_bytes),
        ("ipv4", 20),
        ("ipv6", 4),
        ("arp", 3),
        ("tcp", 11),
        ("udp", 6),
        ("icmp", 6),
        ("icmpv6", 0),
        ("other_l4", 0),
        ("other_l3", 0),
        ("vlan_tagged", 2),
        ("fragments", 1),
        ("malformed", 0),
        ("flows_created", 6),
        ("flow_insert_failed", 0),
        ("events_dropped", 0),
        // Every flow starts in EMBRYOS; the completed TCP handshake and the ping exchange
        // (two packets each way) prove two-way and move to FLOWS.
        ("flows_promoted", 2),
        ("arp_events_throttled", 0),
        // 6 flow starts + 3 ARP packets (no flow-end events any more).
        ("events_sent", 9),
    ];
    for (k, v) in want {
        assert_eq!(bt[k].as_u64(), Some(v), "bpftool STATS.{k}");
        assert_eq!(st[k].as_u64(), Some(v), "safelink stats {k}");
    }
}

/// The lab frames written as `lab.pcap` in `dir`, and their bytes in all.
fn lab_capture(dir: &std::path::Path) -> (std::path::PathBuf, u64) {
    let pcap = dir.join("lab.pcap");
    let frames = lab_frames();
    write_pcap(&pcap, &frames, 1_700_000_000);
    (pcap, frames.iter().map(|f| f.len() as u64).sum())
}

#[test]
fn xdp_on_veth_exact_features_events_and_replay_equivalence() {
    if !kernel_test_can_run("kernel_lab", &["tcpreplay", "bpftool", "nsenter", "ip"]) {
        return;
    }
    let lab = Lab::new("kslab");
    let dir = tempfile::tempdir().unwrap();
    let (pcap, total_bytes) = lab_capture(dir.path());

    // Long timeouts: nothing is swept while we look at the map.
    let d = Daemon::start(
        &lab,
        dir.path(),
        &[
            "--xdp-mode",
            "skb",
            "--idle-timeout",
            "600",
            "--closed-linger",
            "600",
        ],
    );
    assert!(d.attached.contains("mode=skb"), "{}", d.attached);
    let link = sh(&format!("ip -n {} link show {}", lab.ns_a, lab.if_a));
    assert!(
        String::from_utf8_lossy(&link.stdout).contains("xdpgeneric"),
        "XDP not attached"
    );
    lab.replay_into_a(&pcap);
    std::thread::sleep(Duration::from_millis(500));

    // Flow map, per-CPU slots merged by `safelink flows`.
    let kernel_flows = flows_by_key(&safelink(&lab, "flows"));
    assert_flows("kernel", &kernel_flows);

    assert_lab_counters(&lab, total_bytes);

    // ARP events from the ring buffer, in order.
    let lines = d.stop();
    let arps: Vec<Value> = lines
        .iter()
        .filter(|l| l.contains("\"type\":\"arp\""))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let arp_view: Vec<_> = arps
        .iter()
        .map(|a| {
            (
                a["op"].as_u64().unwrap(),
                a["sender_mac"].as_str().unwrap().to_owned(),
                a["sender_ip"].as_str().unwrap().to_owned(),
                a["target_ip"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        arp_view,
        vec![
            (
                1,
                "02:00:00:00:00:02".into(),
                "192.0.2.2".into(),
                "192.0.2.1".into()
            ),
            (
                1,
                "02:00:00:00:00:02".into(),
                "192.0.2.2".into(),
                "192.0.2.1".into()
            ),
            (
                2,
                "02:00:00:00:00:01".into(),
                "192.0.2.1".into(),
                "192.0.2.2".into()
            ),
        ]
    );
    let link = sh(&format!("ip -n {} link show {}", lab.ns_a, lab.if_a));
    assert!(
        !String::from_utf8_lossy(&link.stdout).contains("xdp"),
        "XDP still attached after SIGINT"
    );

    // Replay path on the same pcap: identical per-flow counts and flags.
    let out = run(Command::new(BIN).args(["analyze", "--flows"]).arg(&pcap));
    let replay_flows = flows_by_key(&String::from_utf8(out.stdout).unwrap());
    assert_flows("replay", &replay_flows);

    // Restart in native mode: native XDP on veth, and the pinned maps (flows, counters) reused.
    let d = Daemon::start(
        &lab,
        dir.path(),
        &[
            "--xdp-mode",
            "native",
            // Long timeouts of every kind: the first sweep must not end a flow before `flows`
            // reads it (the one-datagram flows are embryonic, 2 s by default, and the first
            // run may have ended more than 2 s ago on a loaded machine).
            "--idle-timeout",
            "600",
            "--closed-linger",
            "600",
            "--embryonic-timeout",
            "600",
        ],
    );
    assert!(d.attached.contains("mode=native"), "{}", d.attached);
    assert_flows("after restart", &flows_by_key(&safelink(&lab, "flows")));
    assert_eq!(
        bpftool_stats(&lab)["packets"].as_u64(),
        Some(27),
        "counters after restart"
    );
    d.stop();

    // Restart in auto mode, which picks the TC classifier on a veth (a virtual interface), with a 1 s
    // idle timeout and no linger: the sweeper exports every flow as a record (closed,
    // unanswered or idle) and empties the map.
    let d = Daemon::start(
        &lab,
        dir.path(),
        &[
            "--xdp-mode",
            "auto",
            "--idle-timeout",
            "1",
            "--closed-linger",
            "0",
            "--embryonic-timeout",
            "0",
        ],
    );
    assert!(d.attached.contains("mode=tc"), "{}", d.attached);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut exported = Vec::new();
    while exported.len() < 6 && Instant::now() < deadline {
        if let Ok(l) = d.lines.recv_timeout(Duration::from_millis(200))
            && l.contains("\"type\":\"flow\"")
        {
            exported.push(l);
        }
    }
    let swept = flows_by_key(&exported.join("\n"));
    assert_flows("swept records", &swept);
    let reasons: Vec<(&str, &str)> = swept
        .iter()
        .map(|(k, v)| (k.as_str(), v["end_reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            ("1 192.0.2.2:0>192.0.2.1:0 vlan0", "idle"),
            ("17 192.0.2.2:5353>192.0.2.1:53 vlan0", "idle"),
            ("17 198.51.100.2:1000>198.51.100.1:2000 vlan100", "idle"),
            ("17 2001:db8::2:7000>2001:db8::1:7001 vlan0", "unanswered"),
            ("6 192.0.2.2:40000>192.0.2.1:80 vlan0", "closed"),
            ("6 2001:db8::2:41000>2001:db8::1:443 vlan0", "closed"),
        ]
    );
    for v in swept.values() {
        assert!(
            v["first_ns"].as_u64().unwrap() > 1_600_000_000_000_000_000,
            "Unix-time ns"
        );
    }
    assert_eq!(
        safelink(&lab, "flows").trim(),
        "",
        "flow map not emptied by the sweeper"
    );
    d.stop();
}

/// `--xdp-mode tc`: the TC classifier on ingress instead of XDP sees the same frames with the
/// same features and counters, VLAN frames included (the kernel takes the tag off the frame
/// before TC runs; the classifier reads it from the skb and counts its 4 bytes).
#[test]
fn tc_ingress_exact_features_and_counters() {
    if !kernel_test_can_run("kernel_lab/tc", &["tcpreplay", "bpftool", "nsenter", "ip"]) {
        return;
    }
    let lab = Lab::new("kstc");
    let dir = tempfile::tempdir().unwrap();
    let (pcap, total_bytes) = lab_capture(dir.path());
    let d = Daemon::start(
        &lab,
        dir.path(),
        &[
            "--xdp-mode",
            "tc",
            "--idle-timeout",
            "600",
            "--closed-linger",
            "600",
            "--embryonic-timeout",
            "600",
        ],
    );
    assert!(d.attached.contains("mode=tc"), "{}", d.attached);
    let link = sh(&format!("ip -n {} link show {}", lab.ns_a, lab.if_a));
    assert!(
        !String::from_utf8_lossy(&link.stdout).contains("xdp"),
        "an XDP program is attached in tc mode"
    );
    lab.replay_into_a(&pcap);
    std::thread::sleep(Duration::from_millis(500));
    assert_flows("tc ingress", &flows_by_key(&safelink(&lab, "flows")));
    assert_lab_counters(&lab, total_bytes);
    d.stop();
}

#[test]
fn tc_egress_hook_sees_the_hosts_own_answers() {
    if !kernel_test_can_run("kernel_lab/egress", &["tcpreplay", "nsenter", "ip"]) {
        return;
    }
    let lab = Lab::new("ksegr");
    lab.become_host();
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("echo.pcap");
    let frames: Vec<Vec<u8>> = (1..=3)
        .map(|seq| icmp4_echo(IP_B, IP_A, false, seq))
        .collect();
    write_pcap(&pcap, &frames, 1_700_000_000);
    let d = Daemon::start(
        &lab,
        dir.path(),
        &["--xdp-mode", "skb", "--idle-timeout", "600"],
    );
    lab.replay_into_a(&pcap);
    std::thread::sleep(Duration::from_millis(500));
    let flows = flows_by_key(&safelink(&lab, "flows"));
    let f = &flows["1 192.0.2.2:0>192.0.2.1:0 vlan0"];
    // Three requests received (XDP), three replies sent by a's kernel (TC egress).
    assert_eq!(f["fwd"]["packets"], 3, "{f}");
    assert_eq!(f["rev"]["packets"], 3, "{f}");
    assert_eq!(f["rev"]["bytes"], 3 * 98, "{f}");
    d.stop();

    // --no-egress: only the requests.
    let d = Daemon::start(
        &lab,
        dir.path(),
        &["--xdp-mode", "skb", "--idle-timeout", "1", "--no-egress"],
    );
    std::thread::sleep(Duration::from_millis(1500)); // the old flow is swept first
    lab.replay_into_a(&pcap);
    std::thread::sleep(Duration::from_millis(500));
    let flows = flows_by_key(&safelink(&lab, "flows"));
    let f = &flows["1 192.0.2.2:0>192.0.2.1:0 vlan0"];
    assert_eq!(
        (f["fwd"]["packets"].as_u64(), f["rev"]["packets"].as_u64()),
        (Some(3), Some(0)),
        "{f}"
    );
    d.stop();
}
