//! Fleet mode end to end (root): real `safelink run --fleet` sensors, each attached with XDP
//! in a network namespace of its own (a [`Lab`]) and replaying different real captures with
//! tcpreplay; a real `nats-server -js` and the real `safelink learner` in a hub namespace that
//! each sensor namespace reaches over a veth (TEST-NET-2 /30s). The learner trains on all
//! sensors' samples and publishes; every sensor ends on the same model (same SHA-256) within
//! 2 s of publication, shown by `GET /fleet/status`; the ARP alerts of the port-scan sensor
//! reach the fleet's alert stream; the published model (the file a sensor serves) flags
//! held-out captures of each flow-based family that no sensor saw ([`HeldOut`]), with the
//! figures of the shipped base model beside it.
mod support;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::heldout::{FAMILIES, HeldOut, REPLAYED};
use support::hub::{FleetSensor, Hub, keygen};
use support::{Lab, Proc, kernel_test_can_run};

const BIN: &str = env!("CARGO_BIN_EXE_safelink");
const NATS_PORT: u16 = 4222;
const API: &str = "127.0.0.1:18250";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn curl(lab: &Lab, path: &str) -> (u16, Value) {
    support::hub::curl(lab, API, path)
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
    let hub = Hub::new("fl", &labs);
    let dir = tempfile::tempdir().unwrap();
    let _nats = hub.nats(NATS_PORT, &dir.path().join("nats"));
    // The signing key and its public half.
    let (key, pk) = keygen(BIN, dir.path());
    let model = root().join("models/base.onnx");

    // The sensors (each creates the streams and buckets it needs if they are missing).
    let sensors = FleetSensor {
        bin: BIN,
        dir: dir.path(),
        model: &model,
        trusted_key: &pk,
        fleet_extra: "channel = \"canary\"\n",
        api: API,
        nats_port: NATS_PORT,
    }
    .spawn_all(&labs);
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
    for f in plan.iter().flat_map(|p| p.iter()) {
        assert!(REPLAYED.contains(f), "{f} must not be held out");
    }
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
    // Every sensor's samples are on the server (the flows ended: idle timeout 2 s; the
    // buffer is empty and the published count has not moved for 5 s).
    let mut per_sensor = vec![0u64; labs.len()];
    for (i, lab) in labs.iter().enumerate() {
        let t0 = Instant::now();
        let (mut last, mut since) = (u64::MAX, Instant::now());
        loop {
            let (_, s) = curl(lab, "/fleet/status");
            let n = s["published_samples"].as_u64().unwrap_or(0);
            if n != last || s["buffered"] != 0 {
                (last, since) = (n, Instant::now());
            } else if since.elapsed() >= Duration::from_secs(5) {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "s{i} never settled: {s}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        assert!(last > 0, "s{i} published no sample");
        per_sensor[i] = last;
    }
    let total: u64 = per_sensor.iter().sum();
    eprintln!("samples published per sensor: {per_sensor:?} (total {total})");

    // The learner: its first cycle waits for every sample sent.
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
        .args(["--learner-id", "hub", "--cycle-interval", "2"])
        .args(["--min-samples", &total.to_string()])
        .args(["--max-publications", "1"])
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // Its lines through a channel: every wait below is bounded (a learner that never cycles
    // fails the test instead of hanging it).
    let out = learner.stdout.take().unwrap();
    let learner = Proc(learner);
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            let v: Value = serde_json::from_str(&l).unwrap_or(Value::Null);
            eprintln!("learner: {v}");
            if tx.send(v).is_err() {
                return;
            }
        }
    });
    let next = |secs: u64| {
        rx.recv_timeout(Duration::from_secs(secs))
            .unwrap_or_else(|e| panic!("no learner event within {secs} s ({e})"))
    };
    let first = next(20);
    assert_eq!(first["event"], "lease", "{first}");

    // The learner's first cycle trains on all three sensors, and it publishes on canary.
    let cycle = next(120);
    assert_eq!(cycle["event"], "cycle", "{cycle}");
    assert_eq!(cycle["outcome"], "deployed", "{cycle}");
    assert_eq!(cycle["pending"], total, "{cycle}");
    assert_eq!(
        cycle["sensors"],
        serde_json::json!(["s0", "s1", "s2"]),
        "{cycle}"
    );
    let published = next(30);
    assert_eq!(published["event"], "published", "{published}");
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
    let mut served = Vec::new();
    for (i, lab) in labs.iter().enumerate() {
        let (_, s) = curl(lab, "/fleet/status");
        assert_eq!(s["published_samples"], per_sensor[i], "{s}");
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
        served.push(PathBuf::from(src));
    }
    drop(learner);
    drop(sensors);

    // Held-out recall: the file sensor 0 served is the published model.
    let model = dir.path().join("published.onnx");
    std::fs::copy(&served[0], &model).unwrap();
    assert_eq!(
        safelink::learn::models::sha256_hex(&std::fs::read(&model).unwrap()),
        sha
    );
    let held = HeldOut::build(REPLAYED);
    let base = held.eval(&root().join("models/base.onnx"));
    let fleet = held.eval(&model);
    for (class, r) in &fleet {
        eprintln!("held out, base model:  {}", base[class].describe(class));
        eprintln!("held out, fleet v{version}: {}", r.describe(class));
    }
    for f in FAMILIES {
        let r = &fleet[f];
        assert!(
            r.detected() >= 1 && r.attack_flagged >= 1,
            "the fleet model flags no held-out {f} capture:\n{}",
            r.describe(f)
        );
    }
}
