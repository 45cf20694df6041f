//! Fleet mode end to end (root): real `safelink run --fleet` sensors, each attached with XDP
//! in a network namespace of its own (a [`Lab`]) and replaying different real captures with
//! tcpreplay; a real `nats-server -js` and the real `safelink learner` in a hub namespace that
//! each sensor namespace reaches over a veth (TEST-NET-2 /30s). The learner trains on all
//! sensors' samples and publishes; every sensor ends on the same model (same SHA-256) within
//! 2 s of publication, shown by `GET /fleet/status`; the ARP alerts of the port-scan sensor
//! reach the fleet's alert stream.
mod support;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Lab, kernel_test_can_run, run, sh};

const BIN: &str = env!("CARGO_BIN_EXE_safelink");
const NATS_PORT: u16 = 4222;
const API: &str = "127.0.0.1:18250";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The hub namespace (server, learner) and one veth per sensor namespace into it.
struct Hub {
    ns: String,
}

impl Hub {
    fn new(labs: &[Lab]) -> Hub {
        let id = std::process::id() % 100_000;
        let hub = Hub {
            ns: format!("slf-hub-{id}"),
        };
        let _ = Command::new("ip").args(["netns", "del", &hub.ns]).output();
        sh(&format!(
            "ip netns add {0}; ip -n {0} link set lo up",
            hub.ns
        ));
        for (i, lab) in labs.iter().enumerate() {
            let (h, s) = (format!("slh{i}{id}"), format!("sls{i}{id}"));
            let base = 4 * i as u8;
            sh(&format!(
                "ip link add {s} netns {a} type veth peer name {h} netns {hub}
                 ip -n {hub} addr add 198.51.100.{}/30 dev {h}
                 ip -n {a} addr add 198.51.100.{}/30 dev {s}
                 ip -n {hub} link set {h} up; ip -n {a} link set {s} up",
                base + 1,
                base + 2,
                a = lab.ns_a,
                hub = hub.ns
            ));
        }
        hub
    }

    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.ns)).arg(program);
        c
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

fn curl(lab: &Lab, path: &str) -> (u16, Value) {
    let out = run(lab.cmd_in_a("curl").args([
        "-sS",
        "--max-time",
        "5",
        "-w",
        "\n%{http_code}",
        &format!("http://{API}{path}"),
    ]));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn three_sensors_one_learner_one_model() {
    if !kernel_test_can_run(
        "fleet_lab",
        &["tcpreplay", "nsenter", "ip", "curl", "nats-server"],
    ) {
        return;
    }
    let labs: Vec<Lab> = (1..=3).map(|i| Lab::new(&format!("fl{i}"))).collect();
    let hub = Hub::new(&labs);
    let dir = tempfile::tempdir().unwrap();
    let _nats = Proc(
        hub.cmd("nats-server")
            .args(["-js", "-a", "0.0.0.0", "-p", &NATS_PORT.to_string(), "-sd"])
            .arg(dir.path().join("nats"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The signing key and its public half.
    let key = dir.path().join("signing.key");
    let out = run(Command::new(BIN)
        .args(["fleet", "keygen", "--out"])
        .arg(&key));
    let pk: Value = serde_json::from_slice(&out.stdout).unwrap();
    let pk = pk["public_key"].as_str().unwrap().to_string();

    // The learner first: it creates the streams and buckets.
    let mut learner = hub
        .cmd(BIN)
        .args([
            "learner",
            "--fleet",
            &format!("nats://127.0.0.1:{NATS_PORT}"),
        ])
        .arg("--signing-key")
        .arg(&key)
        .arg("--data-dir")
        .arg(dir.path().join("learner"))
        .args([
            "--learner-id",
            "hub",
            "--cycle-interval",
            "2",
            "--min-samples",
            "60",
        ])
        .args(["--max-publications", "1"])
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(learner.stdout.take().unwrap()).lines();
    let learner = Proc(learner);
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["event"], "lease", "{first}");

    let mut sensors = Vec::new();
    for (i, lab) in labs.iter().enumerate() {
        let cfg = dir.path().join(format!("s{i}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "[ann]\nmodel = \"{}\"\n[learning]\nsettle_s = 1\n[fleet]\nsensor_id = \"s{i}\"\n\
                 trusted_keys = [\"{pk}\"]\nchannel = \"canary\"\nheartbeat_s = 1\n",
                root().join("models/base.onnx").display()
            ),
        )
        .unwrap();
        let mut c = lab
            .cmd_in_a(BIN)
            .arg("run")
            .arg("--config")
            .arg(&cfg)
            .args(["--iface", &lab.if_a, "--pin-dir"])
            .arg(&lab.pin_dir)
            .arg("--data-dir")
            .arg(dir.path().join(format!("s{i}")))
            .args([
                "--listen",
                API,
                "--status-interval",
                "0",
                "--idle-timeout",
                "2",
            ])
            .args([
                "--fleet",
                &format!("nats://198.51.100.{}:{NATS_PORT}", 4 * i + 1),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let l = BufReader::new(c.stdout.take().unwrap())
            .lines()
            .next()
            .unwrap()
            .unwrap();
        assert!(l.starts_with("ATTACHED "), "{l}");
        sensors.push(Proc(c));
    }
    for lab in &labs {
        let t0 = Instant::now();
        loop {
            let (code, s) = curl(lab, "/fleet/status");
            if code == 200 && s["connected"] == true {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "not connected: {code} {s}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    // Different captures per sensor (benign traffic too: no cycle trains on attacks alone).
    let pcaps = root().join("tests/pcaps");
    let plan: [&[&str]; 3] = [
        &[
            "sshbrute__hydra-1task.pcap",
            "benign__dns-lookups.pcapng",
            "benign__ssh-session.pcap",
        ],
        &[
            "portscan__nmap-syn-scan-1000ports.pcapng",
            "arpspoof__arpspoof-bidirectional-mitm.pcap",
            "benign__telnet-session.pcap",
        ],
        &[
            "synflood__spoofed-syn-ecn-cwr.pcapng",
            "benign__web-browsing-espn.pcapng",
        ],
    ];
    std::thread::scope(|s| {
        for (lab, files) in labs.iter().zip(plan) {
            let pcaps = &pcaps;
            s.spawn(move || {
                for f in files {
                    lab.replay_into_a(&pcaps.join(f));
                }
            });
        }
    });

    // The learner trains and publishes on canary.
    let mut published = Value::Null;
    for l in lines.by_ref() {
        let v: Value = serde_json::from_str(&l.unwrap()).unwrap();
        eprintln!("learner: {v}");
        if v["event"] == "published" {
            published = v;
            break;
        }
    }
    let at = published["at_unix_ms"]
        .as_u64()
        .expect("the learner published a model");
    let sha = published["sha256"].as_str().unwrap().to_string();
    let version = published["version"].as_u64().unwrap();
    // Every sensor serves it within 2 s of publication.
    let mut pending: Vec<usize> = (0..labs.len()).collect();
    let mut took = vec![0u64; labs.len()];
    while !pending.is_empty() {
        pending.retain(|&i| {
            let (_, s) = curl(&labs[i], "/fleet/status");
            if s["model"]["sha256"] == sha.as_str() {
                took[i] = now_ms().saturating_sub(at);
                assert_eq!(s["model"]["version"], version);
                assert_eq!(s["model"]["origin"], "fleet:canary");
                false
            } else {
                true
            }
        });
        assert!(
            now_ms() - at < 5_000,
            "sensors {pending:?} not on v{version} after 5 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("propagation per sensor (ms, curl polling included): {took:?}");
    for (i, t) in took.iter().enumerate() {
        assert!(*t <= 2_000, "sensor {i} took {t} ms");
    }
    // Each sensor published its samples and its alerts (the server acknowledged them on
    // safelink.alerts.<id>: the port-scan sensor's ARP spoofing alert too, though ARP is no
    // flow and makes no training sample).
    for (i, lab) in labs.iter().enumerate() {
        let (_, s) = curl(lab, "/fleet/status");
        assert!(s["published_samples"].as_u64().unwrap() > 0, "{s}");
        let want_alerts = if i == 1 { 2 } else { 1 };
        assert!(
            s["published_alerts"].as_u64().unwrap() >= want_alerts,
            "{s}"
        );
        assert_eq!(s["dropped"], 0, "{s}");
        let (code, m) = curl(lab, "/model");
        assert_eq!(code, 200);
        // The detector scores with the file the watcher wrote (the local deploy path).
        let src = m["model"]["source"].as_str().unwrap();
        assert!(src.ends_with(&format!("fleet-v{version}.onnx")), "{m}");
    }
    drop(learner);
    drop(sensors);
}
