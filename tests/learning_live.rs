//! The continuous learner inside the live daemon (root): the real XDP sensor in a namespace
//! the test creates, captures replayed into it with tcpreplay, the learner started with the
//! sniffer, samples collected from live flows and rule alerts, a cycle run through
//! `POST /learning/train-now`, and the sniffer restart starting the learner again.
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{ATTACH_WITHIN, Lab, kernel_test_can_run, run, spawn_attached};

const BIN: &str = env!("CARGO_BIN_EXE_safelink");
const API: &str = "127.0.0.1:18181";
const TOKEN: &str = "learning-live-token-0123456789";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn curl(lab: &Lab, method: &str, path: &str) -> (u16, Value) {
    let out = run(lab.cmd_in_a("curl").args([
        "-sS",
        "--max-time",
        "10",
        "-X",
        method,
        "-H",
        &format!("Authorization: Bearer {TOKEN}"),
        "-w",
        "\n%{http_code}",
        &format!("http://{API}{path}"),
    ]));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    let v = serde_json::from_str(body).unwrap_or(Value::Null);
    (code.trim().parse().unwrap(), v)
}

fn poll(lab: &Lab, what: &str, secs: u64, ok: impl Fn(&Value) -> bool) -> Value {
    let t0 = Instant::now();
    loop {
        let (code, v) = curl(lab, "GET", "/learning/status");
        assert_eq!(code, 200, "{v}");
        if ok(&v) {
            return v;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "{what}: not within {secs} s; last status {v}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn learner_runs_with_the_live_sniffer() {
    if !kernel_test_can_run("learning_live", &["tcpreplay", "nsenter", "ip", "curl"]) {
        return;
    }
    let lab = Lab::new("learn");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("safelink.toml");
    std::fs::write(
        &cfg,
        format!(
            "[ann]\nmodel = \"{}\"\n[learning]\nenabled = true\ngolden = \"{}\"\nsettle_s = 1\nbaseline_s = 0\n",
            root().join("models/base.onnx").display(),
            root().join("models/golden.jsonl").display()
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let mut cmd = lab.sensor_cmd(BIN, &data);
    cmd.arg("--config")
        .arg(&cfg)
        .args([
            "--listen",
            API,
            "--status-interval",
            "0",
            "--idle-timeout",
            "2",
        ])
        .env("SAFELINK_API_TOKEN", TOKEN);
    let daemon = Daemon(spawn_attached(cmd, ATTACH_WITHIN, None));

    // The sniffer is running, so the learner is active, serving the base model as version 1.
    let s = poll(&lab, "learner active", 10, |v| v["state"] == "active");
    assert_eq!(s["enabled"], true);
    assert_eq!(s["current_version"], 1);
    assert_eq!(s["model_versions"], 1);
    assert_eq!(s["total_training_cycles"], 0);
    let (code, e) = curl(&lab, "POST", "/learning/train-now");
    assert_eq!(code, 422, "{e}");

    // Live traffic: a port scan (rule alert → attack samples) and benign DNS lookups.
    for f in [
        "portscan__syn-scan-29ports.pcap",
        "benign__dns-lookups.pcapng",
        "benign__web-browsing-espn.pcapng",
    ] {
        lab.replay_into_a(&root().join("tests/pcaps").join(f));
    }
    let s = poll(&lab, "samples collected", 30, |v| {
        v["new_samples"].as_u64().unwrap_or(0) >= 29
    });
    eprintln!("status after replay: {s}");

    let (code, b) = curl(&lab, "POST", "/learning/train-now");
    assert_eq!(code, 202, "{b}");
    assert_eq!(b["status"], "in_progress");
    poll(&lab, "cycle done", 60, |v| {
        v["is_training"] == false && v["total_training_cycles"] == 1
    });
    let (code, h) = curl(&lab, "GET", "/learning/history?limit=5");
    assert_eq!(code, 200);
    eprintln!("history: {h}");
    assert_eq!(h["total_cycles"], 1);
    let c = &h["history"][0];
    assert_eq!(c["trigger"], "manual");
    assert!(c["label_sources"]["dfa"].as_u64().unwrap_or(0) >= 20, "{c}");
    assert!(
        c["label_sources"]["ann_low"].as_u64().unwrap_or(0) >= 1,
        "{c}"
    );
    let outcome = c["outcome"].as_str().unwrap().to_string();
    assert!(outcome == "deployed" || outcome == "rejected", "{c}");
    let (_, m) = curl(&lab, "GET", "/models");
    let n = if outcome == "deployed" { 2 } else { 1 };
    assert_eq!(m["versions"].as_array().unwrap().len(), n, "{m}");
    assert_eq!(m["current_version"], n as u64);
    // Prometheus: the cycle by outcome and the serving version.
    let out = run(lab.cmd_in_a("curl").args([
        "-sS",
        "--max-time",
        "10",
        &format!("http://{API}/metrics"),
    ]));
    let metrics = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in /metrics:\n{metrics}"))
            .to_string()
    };
    assert_eq!(
        line(&format!(
            "safelink_learning_cycles_total{{outcome=\"{outcome}\"}}"
        )),
        format!("safelink_learning_cycles_total{{outcome=\"{outcome}\"}} 1")
    );
    assert_eq!(
        line("safelink_model_version "),
        format!("safelink_model_version {n}")
    );
    // The Grafana dashboard (deploy/grafana/safelink.json) queries only metrics this live
    // daemon exports.
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("deploy/grafana/safelink.json")).unwrap(),
    )
    .unwrap();
    let mut queried = std::collections::BTreeSet::new();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            let mut rest = expr;
            while let Some(i) = rest.find("safelink_") {
                let name: String = rest[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[i + name.len()..];
                queried.insert(name);
            }
        }
    }
    assert!(queried.len() >= 12, "{queried:?}");
    for name in &queried {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{"))),
            "the Grafana dashboard queries {name}, which /metrics does not export:\n{metrics}"
        );
    }
    if outcome == "deployed" {
        // The detector's model is the new one.
        let (_, model) = curl(&lab, "GET", "/model");
        assert_eq!(model["model"]["model_version"], "v2", "{model}");
    }

    // Stopping the sniffer and the learner, then starting the sniffer, starts the learner.
    assert_eq!(curl(&lab, "POST", "/sniffer/stop").0, 200);
    let (code, v) = curl(&lab, "POST", "/learning/stop");
    assert_eq!((code, v["state"].as_str()), (200, Some("inactive")));
    assert_eq!(curl(&lab, "GET", "/learning/status").1["state"], "inactive");
    assert_eq!(curl(&lab, "POST", "/sniffer/start").0, 200);
    poll(&lab, "learner restarted with the sniffer", 5, |v| {
        v["state"] == "active"
    });

    // Graceful stop; the store and the model registry are consistent afterwards.
    let mut daemon = daemon;
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(daemon.0.id() as i32, libc::SIGINT) };
    let st = daemon.0.wait().unwrap();
    assert!(st.success(), "{st}");
    let out = run(Command::new(BIN)
        .args(["learn", "--config"])
        .arg(&cfg)
        .arg("--data-dir")
        .arg(&data)
        .arg("status"));
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["total_training_cycles"], 1);
    assert_eq!(s["current_version"], n as u64);
}
