//! Continuous learning (safelink::learn) with real captures, a real sled store, real candle
//! training, real tract models and the real binary:
//! - learning curve: a base model that never saw SSH brute force (nor the benign rows) learns
//!   it from rule-labelled flows within three cycles (held-out capture alerting, held-out
//!   benign FPR ≤ 1 % after every cycle; `tests/learning_curves.rs` holds the shipped recipe
//!   to the figures);
//! - poisoning: flipped labels are rejected, the live model keeps its version and hash;
//! - non-blocking: detection over replayed records while a cycle trains and deploys;
//! - crash: `kill -9` of `safelink learn train` before training and mid-deploy;
//! - the seed's checks: initial status, readiness with too few samples, auto-label rules,
//!   backups, worker start/stop;
//! - the HTTP API: `/learning/*` and `/models` with status codes and bodies.
mod support;

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use safelink::alert::{AlertEvent, AlertKind, AlertSource, Timestamp};
use safelink::ann::eval::evaluate;
use safelink::ann::recipe::{RecipeArgs, train_base};
use safelink::ann::train::TrainConfig;
use safelink::ann::{AnnConfig, AnnDetector, ModelHandle};
use safelink::api::{self, ApiState, AuthPolicy};
use safelink::config::FlowTimeouts;
use safelink::detect::dfa::{DfaConfig, Engine};
use safelink::learn::ingest::ingest;
use safelink::learn::models::sha256_hex;
use safelink::learn::{
    Collector, Golden, LabelSource, Learner, LearningParams, Outcome, TrainNowError,
    TrainingSample, load_golden,
};
use safelink::record::Record;
use safelink::replay::replay_file;
use safelink::store::Store;
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn pcaps() -> PathBuf {
    root().join("tests/pcaps")
}

fn base_model() -> PathBuf {
    root().join("models/base.onnx")
}

fn golden() -> Golden {
    load_golden(&root().join("models/golden.jsonl")).unwrap()
}

fn captures(exclude: &[&str]) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(pcaps())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"))
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            !exclude.iter().any(|x| n.contains(x))
        })
        .collect();
    v.sort();
    v
}

fn open_learner(
    dir: &Path,
    params: LearningParams,
    golden: Option<Golden>,
    base: &Path,
) -> Learner {
    let store = Store::open(dir.join("store")).unwrap();
    Learner::open(store, dir, params, golden, Some(base), true).unwrap()
}

/// A learner on the shipped base model and its golden set.
fn learner_with(dir: &Path, params: LearningParams) -> Learner {
    open_learner(dir, params, Some(golden()), &base_model())
}

/// [`learner_with`] the default parameters.
fn default_learner(dir: &Path) -> Learner {
    learner_with(dir, LearningParams::default())
}

fn ingest_files(l: &Learner, files: &[PathBuf]) -> safelink::learn::ingest::IngestSummary {
    ingest_with(l, files, &safelink::privacy::Policy::default())
}

/// Runs captures through the automata and the ANN into `l`'s samples, written under `policy`.
fn ingest_with(
    l: &Learner,
    files: &[PathBuf],
    policy: &safelink::privacy::Policy,
) -> safelink::learn::ingest::IngestSummary {
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    ingest(
        &refs,
        &safelink::config::Config::default(),
        policy,
        &l.handle(),
        l.params(),
        l.store(),
    )
    .unwrap()
}

/// Held-out benign captures (never ingested in the learning-curve test).
const HELD_OUT_BENIGN: [&str; 5] = [
    "benign__quic-youtube",
    "benign__http-ipv6",
    "benign__netflix-streaming",
    "benign__telnet-session",
    "benign__dns-over-tls",
];
/// The held-out capture of the new class (another tool than the ingested ones).
const HELD_OUT_ATTACK: &str = "sshbrute__password-guessing-11conns";

/// (attack flows, alerting) of the held-out SSH capture and (benign flows, alerting) of the
/// held-out benign captures, ANN alone at the default alert threshold.
fn held_out_figures(h: &ModelHandle) -> ((u64, u64), (u64, u64)) {
    let e = evaluate(&pcaps(), h, &AnnConfig::default()).unwrap();
    let mut att = (0, 0);
    let mut ben = (0, 0);
    for c in &e.captures {
        if c.file.starts_with(HELD_OUT_ATTACK) {
            att = (att.0 + c.attack, att.1 + c.attack_alerting);
        }
        if HELD_OUT_BENIGN.iter().any(|b| c.file.starts_with(b)) {
            ben = (ben.0 + c.benign, ben.1 + c.benign_alerting);
        }
    }
    (att, ben)
}

#[test]
fn learning_curve_new_attack_class() {
    let tmp = tempfile::tempdir().unwrap();
    // A base model that never saw SSH brute force: the shared captures without sshbrute__*.
    let nossh = tmp.path().join("nossh");
    std::fs::create_dir_all(&nossh).unwrap();
    let manifest = std::fs::read_to_string(pcaps().join("MANIFEST.tsv")).unwrap();
    let kept: Vec<&str> = manifest
        .lines()
        .filter(|l| !l.starts_with("sshbrute__"))
        .collect();
    std::fs::write(nossh.join("MANIFEST.tsv"), kept.join("\n") + "\n").unwrap();
    for f in captures(&["sshbrute__"]) {
        std::os::unix::fs::symlink(&f, nossh.join(f.file_name().unwrap())).unwrap();
    }
    let base = tmp.path().join("model/base.onnx");
    train_base(&RecipeArgs {
        pcaps: vec![nossh],
        benign_rows: vec![],
        eval_pcaps: vec![],
        out: base.clone(),
        // The recipe's benign weight and members, without its benign rows.
        train: TrainConfig {
            benign_weight: safelink::ann::recipe::BASE_BENIGN_WEIGHT,
            members: safelink::ann::recipe::BASE_MEMBERS,
            ..TrainConfig::default()
        },
        benign_load_copies: safelink::ann::recipe::BASE_BENIGN_LOAD_COPIES,
        command: "test".into(),
    })
    .unwrap();
    let golden = load_golden(&tmp.path().join("model/golden.jsonl")).unwrap();

    // The learner, fed every other capture (the rules raise the SSH alerts), at the shipped
    // defaults; the attack rows rehearsed are this base's own (the shipped ones hold SSH
    // brute force).
    let params = LearningParams {
        rehearsal_attack_rows: Some(base.with_file_name("attack_rows.jsonl")),
        ..LearningParams::default()
    };
    let data = tmp.path().join("data");
    let l = open_learner(&data, params, Some(golden), &base);
    let (before_att, before_ben) = held_out_figures(&l.handle());
    let pct = |(n, k): (u64, u64)| 100.0 * k as f64 / n.max(1) as f64;
    eprintln!(
        "LEARNING CURVE held-out {HELD_OUT_ATTACK}: base {}/{} flagged ({:.1} %); held-out \
         benign: {}/{} ({:.1} %)",
        before_att.1,
        before_att.0,
        pct(before_att),
        before_ben.1,
        before_ben.0,
        pct(before_ben),
    );
    assert_eq!(
        before_att.1, 0,
        "the base model must not know the class already"
    );
    assert!(before_att.0 >= 10 && before_ben.0 >= 80);
    // Three cycles (the target), each fed a third of the other captures (round-robin
    // by name: the first two thirds hold one SSH brute-force tool each).
    let mut exclude = vec![HELD_OUT_ATTACK];
    exclude.extend(HELD_OUT_BENIGN);
    let files = captures(&exclude);
    let (mut rule_labelled, mut benign, mut best) = (0, 0, 0);
    for cycle in 1..=3u64 {
        let third: Vec<PathBuf> = files
            .iter()
            .skip(cycle as usize - 1)
            .step_by(3)
            .cloned()
            .collect();
        let sum = ingest_files(&l, &third);
        eprintln!(
            "cycle {cycle} ingest: {}",
            serde_json::to_string(&sum).unwrap()
        );
        rule_labelled += sum.collect.attack_dfa;
        benign += sum.collect.benign;
        let rep = l.run_cycle_here("manual").unwrap();
        eprintln!("cycle {cycle}: {}", serde_json::to_string(&rep).unwrap());
        assert_eq!(
            rep.record.outcome,
            Outcome::Deployed,
            "{:?}",
            rep.record.reason
        );
        assert_eq!(l.versions().unwrap().0, Some(cycle + 1));
        let (att, ben) = held_out_figures(&l.handle());
        eprintln!(
            "LEARNING CURVE cycle {cycle}: held-out {HELD_OUT_ATTACK} {}/{} flagged ({:.1} %); \
             held-out benign {}/{} ({:.1} %)",
            att.1,
            att.0,
            pct(att),
            ben.1,
            ben.0,
            pct(ben),
        );
        assert!(pct(ben) <= 1.0, "benign after cycle {cycle}: {ben:?}");
        best = best.max(att.1);
    }
    assert!(
        rule_labelled >= 200 && benign >= 50,
        "rule-labelled samples {rule_labelled}, benign {benign}"
    );
    // The family is learned: its held-out flows alert. How many within three cycles moves
    // with the training seed on this base (no benign rows): 11 of 11 by cycle 2 for seeds 0
    // to 6, 5 of 11 by cycle 3 for the default seed. The target (≥ 90 % within three
    // cycles, FPR ≤ 0.1 %) is asserted on the shipped recipe by `tests/learning_curves.rs`.
    assert!(best > 0, "SSH brute force not learned in 3 cycles");
}

/// Samples of a few real captures with their labels flipped.
fn flipped_samples() -> Vec<TrainingSample> {
    let tmp = tempfile::tempdir().unwrap();
    let scratch = open_learner(tmp.path(), LearningParams::default(), None, &base_model());
    ingest_files(
        &scratch,
        &captures(&[])
            .into_iter()
            .filter(|p| {
                let n = p.file_name().unwrap().to_string_lossy();
                n.starts_with("benign__") || n.starts_with("portscan__") || n.starts_with("sweep__")
            })
            .collect::<Vec<_>>(),
    );
    let mut v = scratch.store().samples_after(0).unwrap();
    scratch.shutdown();
    for s in &mut v {
        s.label = 1.0 - s.label;
        s.source = LabelSource::Manual;
    }
    v
}

#[test]
fn poisoned_labels_are_rejected_and_the_live_model_stays() {
    let tmp = tempfile::tempdir().unwrap();
    let l = default_learner(tmp.path());
    let bad = flipped_samples();
    assert!(bad.len() > 100, "{}", bad.len());
    l.store().insert_samples(&bad).unwrap();
    let file = tmp.path().join("models/model_v1.onnx");
    let hash_before = sha256_hex(&std::fs::read(&file).unwrap());
    let gen_before = l.handle().generation();
    let rep = l.run_cycle_here("manual").unwrap();
    eprintln!(
        "poisoned cycle: {:?} {:?}",
        rep.record.outcome, rep.record.reason
    );
    assert_eq!(rep.record.outcome, Outcome::Rejected);
    let reason = rep.record.reason.unwrap();
    assert!(reason.contains("accuracy"), "{reason}");
    let (current, versions) = l.versions().unwrap();
    assert_eq!(current, Some(1));
    assert_eq!(versions.len(), 1);
    assert_eq!(l.handle().generation(), gen_before);
    assert_eq!(sha256_hex(&std::fs::read(&file).unwrap()), hash_before);
    assert_eq!(versions[0].sha256, hash_before);
    assert!(!tmp.path().join("models/model_v2.onnx").exists());
    // The rejected samples are quarantined: never replayed as history.
    let st = l.store().learning_state().unwrap();
    assert_eq!(st.quarantine.len(), 1);
    assert_eq!(
        l.status().unwrap().last_outcome.as_deref(),
        Some("rejected")
    );
    l.shutdown();
}

#[test]
fn golden_guard_rejects_a_model_that_learned_flipped_labels() {
    // A trainer strong enough to fit the flipped labels (held-out accuracy passes): only the
    // golden-set guard stands between the poison and the live model.
    let tmp = tempfile::tempdir().unwrap();
    let params = LearningParams {
        learning_rate: 5e-3,
        epochs: 30,
        ..LearningParams::default()
    };
    let l = learner_with(tmp.path(), params);
    l.store().insert_samples(&flipped_samples()).unwrap();
    let gen_before = l.handle().generation();
    let rep = l.run_cycle_here("manual").unwrap();
    let m = rep.record.metrics.clone().unwrap();
    eprintln!(
        "flipped labels, strong trainer: {:?} {:?} held-out acc {:.3} golden {:?} -> {:?}",
        rep.record.outcome,
        rep.record.reason,
        m.accuracy,
        m.golden_accuracy_before,
        m.golden_accuracy
    );
    assert_eq!(rep.record.outcome, Outcome::Rejected);
    let reason = rep.record.reason.unwrap();
    assert!(reason.contains("golden-set accuracy fell"), "{reason}");
    assert!(m.golden_accuracy.unwrap() < m.golden_accuracy_before.unwrap() - 0.02);
    assert_eq!(l.versions().unwrap().0, Some(1));
    assert_eq!(l.handle().generation(), gen_before);
    l.shutdown();
}

fn records_of(files: &[PathBuf]) -> Vec<Record> {
    let mut v = Vec::new();
    for f in files {
        replay_file(f, &FlowTimeouts::default(), |_, _| {}, |r| v.push(r)).unwrap();
    }
    v
}

/// DFA alerts (kind, source address, count) and the ANN's scored-flow count of one pass.
fn detect_pass(records: &[Record], h: &ModelHandle) -> (Vec<(AlertKind, String, u64)>, u64, usize) {
    let mut engine = Engine::new(DfaConfig::default()).unwrap();
    let mut ann = AnnDetector::new(h.clone(), AnnConfig::default());
    let mut out = Vec::new();
    let mut seen = 0usize;
    for r in records {
        engine.observe_into(r, &mut out);
        ann.observe_into(r, &mut Vec::new());
        seen += 1;
    }
    out.extend(engine.finish());
    ann.finish();
    let mut alerts: Vec<(AlertKind, String, u64)> = out
        .into_iter()
        .filter_map(|e| match e {
            AlertEvent::New(a) => Some((a.kind, format!("{:?}", a.src_ip), a.count)),
            AlertEvent::Updated(_) => None,
        })
        .collect();
    alerts.sort();
    (alerts, ann.stats().flows_scored, seen)
}

#[test]
fn detection_never_waits_for_training() {
    let tmp = tempfile::tempdir().unwrap();
    // The shipped defaults with 60 epochs, so that the cycle lasts long enough for detection
    // passes to run while it trains. The same cycle without rehearsal forgets: the golden guard
    // refuses it (1.000 -> 0.977), which is the guard's job; this test is about detection
    // during a deploy.
    let params = LearningParams {
        epochs: 60,
        ..LearningParams::default()
    };
    let l = learner_with(tmp.path(), params);
    ingest_files(&l, &captures(&["synflood", "amplification__snmp"]));
    let records = records_of(&captures(&["synflood", "amplification__snmp"]));
    let flows = records
        .iter()
        .filter(|r| matches!(r, Record::Flow(_)))
        .count() as u64;
    let h = l.handle();
    let reference = detect_pass(&records, &h);
    assert_eq!(reference.1, flows);
    let gen0 = h.generation();

    l.train_now().unwrap();
    let t0 = Instant::now();
    let mut passes = 0;
    let mut during_training = 0;
    while l.is_training() || passes < 2 {
        let training = l.is_training();
        let (alerts, scored, seen) = detect_pass(&records, &h);
        passes += 1;
        if training {
            during_training += 1;
        }
        // Every record exactly once, every flow scored once, the same rule alerts.
        assert_eq!(seen, records.len());
        assert_eq!(scored, flows);
        assert_eq!(alerts, reference.0);
        assert!(t0.elapsed() < Duration::from_secs(120));
    }
    eprintln!("{passes} detection passes, {during_training} while the cycle ran");
    assert!(during_training >= 1, "the cycle ended before detection ran");
    let (total, cycles) = l.history(1).unwrap();
    assert_eq!(total, 1);
    assert_eq!(
        cycles[0].outcome,
        Outcome::Deployed,
        "{:?}",
        cycles[0].reason
    );
    assert!(
        h.generation() > gen0,
        "the detector's handle serves the new model"
    );
    l.shutdown();
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_safelink")
}

fn write_config(dir: &Path) -> PathBuf {
    let cfg = dir.join("safelink.toml");
    std::fs::write(
        &cfg,
        format!(
            "[store]\ndata_dir = \"{}\"\n[ann]\nmodel = \"{}\"\n[learning]\ngolden = \"{}\"\n",
            dir.join("data").display(),
            base_model().display(),
            root().join("models/golden.jsonl").display()
        ),
    )
    .unwrap();
    cfg
}

fn learn_cmd(cfg: &Path, args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .arg("learn")
        .arg("--config")
        .arg(cfg)
        .args(args)
        .output()
        .unwrap()
}

fn json_of(o: &std::process::Output) -> Value {
    assert!(
        o.status.success() || !o.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)))
}

/// Starts `safelink learn train` paused at `step`, waits for the pause, then kill -9.
fn kill_during(cfg: &Path, step: &str) {
    // Killed on drop too: a paused cycle never ends by itself.
    let mut child = support::Proc(
        Command::new(bin())
            .arg("learn")
            .arg("--config")
            .arg(cfg)
            .arg("train")
            .env("SAFELINK_FAULT_PAUSE", step)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = child.0.stderr.take().unwrap();
    let mut paused = false;
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        if line.contains(&format!("FAULT_PAUSE {step}")) {
            paused = true;
            break;
        }
    }
    assert!(paused, "the cycle never reached the {step} pause");
    // SIGKILL: no destructor, no flush.
    child.0.kill().unwrap();
    child.0.wait().unwrap();
}

#[test]
fn kill_9_mid_training_and_mid_deploy_leaves_the_last_model_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path());
    let dir = tmp.path().join("data");
    let files: Vec<String> = captures(&[])
        .into_iter()
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with("benign__") || n.starts_with("sshbrute__") || n.starts_with("portscan__")
        })
        .map(|p| p.display().to_string())
        .collect();
    let mut args = vec!["ingest"];
    args.extend(files.iter().map(String::as_str));
    let o = learn_cmd(&cfg, &args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stored = json_of(&o)["samples_stored"].as_u64().unwrap();
    assert!(stored > 100, "{stored}");
    let v1 = std::fs::read(dir.join("models/model_v1.onnx")).unwrap();

    for (round, step) in ["train", "deploy"].iter().enumerate() {
        kill_during(&cfg, step);
        if *step == "deploy" {
            // The new file was written before the kill, but never committed.
            assert!(dir.join("models/model_v2.onnx").exists());
        }
        // Restart: the store opens, the interrupted cycle is failed, v1 serves.
        let st = json_of(&learn_cmd(&cfg, &["status"]));
        assert_eq!(st["current_version"], 1, "{st}");
        assert_eq!(st["model_versions"], 1, "{st}");
        assert_eq!(st["total_training_cycles"], round as u64 + 1);
        assert_eq!(st["last_outcome"], "failed");
        let h = json_of(&learn_cmd(&cfg, &["history"]));
        assert_eq!(h["history"][0]["outcome"], "failed");
        assert!(
            h["history"][0]["reason"]
                .as_str()
                .unwrap()
                .contains("interrupted"),
            "{h}"
        );
        assert!(!dir.join("models/model_v2.onnx").exists(), "orphan removed");
        let tmp_files: Vec<String> = std::fs::read_dir(dir.join("models"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp"))
            .collect();
        assert!(tmp_files.is_empty(), "{tmp_files:?}");
        assert_eq!(std::fs::read(dir.join("models/model_v1.onnx")).unwrap(), v1);
    }
    // The samples survived; a clean cycle now deploys v2.
    let o = learn_cmd(&cfg, &["train"]);
    let r = json_of(&o);
    assert_eq!(r["record"]["outcome"], "deployed", "{r}");
    assert_eq!(r["record"]["version"], 2);
    let st = json_of(&learn_cmd(&cfg, &["status"]));
    assert_eq!(st["current_version"], 2);
    let v = json_of(&learn_cmd(&cfg, &["versions"]));
    let v2 = &v["versions"][1];
    assert_eq!(v2["parent"], 1);
    let bytes = std::fs::read(dir.join("models/model_v2.onnx")).unwrap();
    assert_eq!(v2["sha256"], sha256_hex(&bytes));
    // Manual rollback to the base model.
    let a = json_of(&learn_cmd(&cfg, &["activate", "1"]));
    assert_eq!(a["version"], 1);
    assert_eq!(json_of(&learn_cmd(&cfg, &["status"]))["current_version"], 1);
}

#[test]
fn seed_checks_status_readiness_labels_backup_worker() {
    let tmp = tempfile::tempdir().unwrap();
    // Interval cycles run once the ANN is live: no local baseline here.
    let params = LearningParams {
        interval_s: 1,
        baseline_s: 0,
        ..LearningParams::default()
    };
    let l = learner_with(tmp.path(), params.clone());
    // Initial stats.
    let s = l.status().unwrap();
    assert!(s.enabled);
    assert!(!s.is_training);
    assert_eq!(s.state, "inactive");
    assert_eq!(s.total_training_cycles, 0);
    assert_eq!(s.model_versions, 1);
    assert_eq!(s.current_version, Some(1));
    assert_eq!(s.new_samples, 0);
    assert_eq!(s.last_outcome, None);
    assert_eq!(
        l.train_now(),
        Err(TrainNowError::NothingToTrain(
            "need at least 5 new labelled samples, have 0".into()
        ))
    );

    // Auto-label rules through the collector, with real flows.
    let flows: Vec<_> = records_of(&[pcaps().join("benign__web-browsing-espn.pcapng")])
        .into_iter()
        .filter_map(|r| match r {
            Record::Flow(f) => Some(f),
            _ => None,
        })
        .collect();
    assert!(flows.len() >= 4);
    let mut c = Collector::new(&params);
    c.scored(&flows[0], 0.99);
    c.scored(&flows[1], 0.10);
    c.scored(&flows[2], 0.50);
    let mut alert_src = flows[3].clone();
    alert_src.src_ip = "192.0.2.66".parse().unwrap();
    c.scored(&alert_src, 0.01);
    let mut a = safelink::alert::Alert {
        id: 1,
        timestamp: Timestamp::parse("2024-01-01T00:00:00Z").unwrap(),
        source: AlertSource::Dfa,
        kind: AlertKind::PORT_SCAN,
        severity: safelink::alert::Severity::High,
        confidence: 1.0,
        src_ip: Some("192.0.2.66".parse().unwrap()),
        src_port: None,
        dest_ip: None,
        dest_port: None,
        proto: "tcp".into(),
        src_mac: None,
        first_seen: Timestamp::from_ns(alert_src.last_ns),
        last_seen: Timestamp::from_ns(alert_src.last_ns),
        count: 10,
        description: String::new(),
        community_id: None,
        tunnel: None,
        explanation: None,
        resembles: None,
        features: vec![],
    };
    assert!(c.alert(&a).is_some());
    a.source = AlertSource::Ann;
    assert!(c.alert(&a).is_none(), "ANN alerts label nothing");
    let got: Vec<(f32, LabelSource, Option<AlertKind>)> = c
        .ready(true)
        .into_iter()
        .map(|s| (s.label, s.source, s.kind))
        .collect();
    assert_eq!(
        got,
        vec![
            (1.0, LabelSource::AnnHigh, None),
            (0.0, LabelSource::AnnLow, None),
            (1.0, LabelSource::Dfa, Some(AlertKind::PORT_SCAN)),
        ]
    );
    assert_eq!(c.stats.skipped, 1);

    // Readiness with too few samples: the worker says why.
    let mut few = Vec::new();
    for f in flows.iter().take(45) {
        few.push(TrainingSample::of_flow(f, 0.1));
    }
    let few: Vec<TrainingSample> = (0..45).map(|i| few[i % few.len()].clone()).collect();
    l.store().insert_samples(&few).unwrap();
    assert!(l.start());
    assert!(!l.start(), "already active");
    assert_eq!(l.status().unwrap().state, "active");
    let t0 = Instant::now();
    loop {
        let s = l.status().unwrap();
        if s.reason.is_some() {
            assert_eq!(s.reason.as_deref(), Some("need 100 new samples, have 45"));
            assert_eq!(s.new_samples, 45);
            assert_eq!(s.total_training_cycles, 0);
            assert!(s.next_due.is_some());
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no due check: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Enough samples: the worker runs a cycle on its own, with a backup of v1.
    let more: Vec<TrainingSample> = (0..60)
        .map(|i| {
            let mut s = few[i % few.len()].clone();
            if i % 2 == 0 {
                s.label = 1.0;
                s.features[0] += 1000.0;
                s.source = LabelSource::Dfa;
            }
            s
        })
        .collect();
    l.store().insert_samples(&more).unwrap();
    let t0 = Instant::now();
    while l.status().unwrap().total_training_cycles == 0 {
        assert!(t0.elapsed() < Duration::from_secs(20), "no interval cycle");
        std::thread::sleep(Duration::from_millis(100));
    }
    while l.is_training() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, cycles) = l.history(1).unwrap();
    assert_eq!(cycles[0].trigger, "interval");
    assert_eq!(cycles[0].new_samples, 105);
    let backup = tmp
        .path()
        .join("models")
        .join(cycles[0].backup.as_ref().unwrap());
    assert!(
        backup
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("model_v1_")
    );
    assert_eq!(
        std::fs::read(&backup).unwrap(),
        std::fs::read(base_model()).unwrap()
    );
    // Stop.
    assert!(l.stop());
    assert!(!l.stop());
    let s = l.status().unwrap();
    assert_eq!(s.state, "inactive");
    assert_eq!(s.next_due, None);
    l.shutdown();
}

const TOKEN: &str = "learning-token-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learning_api() {
    let tmp = tempfile::tempdir().unwrap();
    // Slow cycles (many epochs) so a second train-now meets a running one.
    let params = LearningParams {
        epochs: 400,
        ..LearningParams::default()
    };
    let l = {
        let dir = tmp.path().to_path_buf();
        tokio::task::spawn_blocking(move || learner_with(&dir, params))
            .await
            .unwrap()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bound: SocketAddr = listener.local_addr().unwrap();
    let policy = AuthPolicy::new(bound, Some(TOKEN)).unwrap();
    let state = ApiState::new(l.store().clone(), Arc::new(support::IdleSensor), policy)
        .with_model(l.handle())
        .with_learner(l.clone());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(api::serve(listener, api::router(state), async move {
        let _ = rx.await;
    }));
    let base = format!("http://{bound}");
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let get = |p: &str| http.get(format!("{base}{p}")).send();
    let post = |p: &str| http.post(format!("{base}{p}")).bearer_auth(TOKEN).send();

    let r = get("/learning/status").await.unwrap();
    assert_eq!(r.status(), 200);
    let s: Value = r.json().await.unwrap();
    for k in [
        "enabled",
        "is_training",
        "state",
        "last_training_time",
        "total_training_cycles",
        "model_versions",
        "current_version",
        "new_samples",
        "next_due",
        "last_outcome",
    ] {
        assert!(s.get(k).is_some(), "missing {k}: {s}");
    }
    assert_eq!(s["state"], "inactive");
    assert_eq!(s["current_version"], 1);

    // Nothing to train on: 422 naming the reason. Without the token: 401.
    let r = post("/learning/train-now").await.unwrap();
    assert_eq!(r.status(), 422);
    let e: Value = r.json().await.unwrap();
    assert_eq!(
        e["error"],
        "nothing to train on: need at least 5 new labelled samples, have 0"
    );
    let r = http
        .post(format!("{base}/learning/train-now"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Samples, then 202 and a 409 while it runs.
    {
        let l = l.clone();
        tokio::task::spawn_blocking(move || {
            ingest_files(
                &l,
                &captures(&[])
                    .into_iter()
                    .filter(|p| {
                        let n = p.file_name().unwrap().to_string_lossy();
                        n.starts_with("benign__") || n.starts_with("portscan__")
                    })
                    .collect::<Vec<_>>(),
            )
        })
        .await
        .unwrap();
    }
    let r = post("/learning/train-now").await.unwrap();
    assert_eq!(r.status(), 202);
    let b: Value = r.json().await.unwrap();
    assert_eq!(
        b,
        serde_json::json!({"message": "Training cycle started", "status": "in_progress"})
    );
    let r = post("/learning/train-now").await.unwrap();
    assert_eq!(r.status(), 409);
    let s: Value = get("/learning/status").await.unwrap().json().await.unwrap();
    assert_eq!(s["state"], "training");
    assert_eq!(s["is_training"], true);
    let t0 = Instant::now();
    loop {
        let s: Value = get("/learning/status").await.unwrap().json().await.unwrap();
        if s["is_training"] == false {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(120));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // History and versions.
    let h: Value = get("/learning/history?limit=5")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["total_cycles"], 1);
    let c = &h["history"][0];
    for k in [
        "timestamp",
        "training_time",
        "num_samples",
        "metrics",
        "version",
        "outcome",
    ] {
        assert!(c.get(k).is_some(), "missing {k}: {c}");
    }
    assert!(c["metrics"]["accuracy"].as_f64().unwrap() > 0.7, "{c}");
    assert!(c["metrics"]["loss"].as_f64().unwrap() < 2.0, "{c}");
    let deployed = c["outcome"] == "deployed";
    let m: Value = get("/models").await.unwrap().json().await.unwrap();
    let expected_versions = if deployed { 2 } else { 1 };
    assert_eq!(
        m["versions"].as_array().unwrap().len(),
        expected_versions,
        "{m}"
    );
    assert_eq!(m["current_version"], expected_versions as u64);
    assert_eq!(m["versions"][0]["active"], true);
    let r = get("/learning/history?limit=0").await.unwrap();
    assert_eq!(r.status(), 400);

    // Manual rollback; unknown and malformed versions.
    let r = post("/models/1/activate").await.unwrap();
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["current_version"], 1);
    let r = post("/models/99/activate").await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "no model version 99"
    );
    let r = post("/models/latest/activate").await.unwrap();
    assert_eq!(r.status(), 400);
    // With a learner, model files are not loaded behind its back.
    let r = http
        .post(format!("{base}/model/load"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"path": base_model()}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert!(
        r.json::<Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("/models/{version}/activate")
    );
    let r = http
        .post(format!("{base}/models/1/activate"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Start / stop.
    let r = post("/learning/start").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        serde_json::json!({"state": "active", "changed": true})
    );
    let s: Value = get("/learning/status").await.unwrap().json().await.unwrap();
    assert_eq!(s["state"], "active");
    let r = post("/learning/stop").await.unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        serde_json::json!({"state": "inactive", "changed": true})
    );
    let _ = tx.send(());
    let l2 = l.clone();
    tokio::task::spawn_blocking(move || l2.shutdown())
        .await
        .unwrap();
}

fn keyed_policy() -> safelink::privacy::Policy {
    let cfg = safelink::config::PrivacyConfig {
        ip_mode: safelink::privacy::IpMode::KeyedHash,
        key: Some("learning-test-key-0123456789".into()),
        sample_retention_days: 30,
        ..Default::default()
    };
    safelink::privacy::Policy::new(&cfg, None).unwrap()
}

#[test]
fn samples_are_anonymised_forgotten_and_expire() {
    let tmp = tempfile::tempdir().unwrap();
    let l = default_learner(tmp.path());
    let policy = keyed_policy();
    let files: Vec<PathBuf> = [
        "sshbrute__hydra-1task.pcap",
        "benign__web-browsing-espn.pcapng",
    ]
    .iter()
    .map(|f| pcaps().join(f))
    .collect();
    ingest_with(&l, &files, &policy);
    let attacker: std::net::IpAddr = "240.0.1.2".parse().unwrap();
    let hashed = policy.ip(attacker);
    assert_ne!(hashed, attacker);
    let all = l.store().samples_after(0).unwrap();
    assert!(
        all.iter().all(|s| !s.involves(attacker)),
        "a raw address was stored"
    );
    let about = all.iter().filter(|s| s.involves(hashed)).count() as u64;
    assert_eq!(about, 61, "the 61 hydra connections, rule-labelled");
    assert!(
        all.iter()
            .filter(|s| s.involves(hashed))
            .all(|s| s.source == LabelSource::Dfa && s.label == 1.0)
    );

    // Deletion on request: counts per tree, and no sample about the subject is left.
    let deleted = safelink::privacy::forget(
        l.store(),
        &policy,
        safelink::privacy::Subject::parse_ip("240.0.1.2").unwrap(),
    )
    .unwrap();
    assert_eq!(deleted.samples, about);
    let left = l.store().samples_after(0).unwrap();
    assert_eq!(left.len() as u64, all.len() as u64 - about);
    assert!(left.iter().all(|s| !s.involves(hashed)));
    // ... so no cycle can train on it.
    let rep = l.run_cycle_here("manual").unwrap();
    assert_eq!(
        rep.record.label_sources.get("dfa"),
        None,
        "{:?}",
        rep.record.label_sources
    );

    // Retention with a chosen clock: samples whose flow ended more than 30 days before `now`.
    let newest = left.iter().map(|s| s.ts_ns).max().unwrap();
    let now = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(newest)).unwrap()
        + time::Duration::days(30);
    let cutoff = newest; // now − 30 days
    let expected = left.iter().filter(|s| s.ts_ns < cutoff).count() as u64;
    assert!(expected > 0 && expected < left.len() as u64);
    let swept = safelink::privacy::sweep(l.store(), policy.ages(), now).unwrap();
    assert_eq!(swept.samples, expected);
    assert_eq!(
        l.store().sample_counts(0).unwrap().0,
        left.len() as u64 - expected
    );
    l.shutdown();
}

#[test]
fn shutdown_stops_a_running_cycle_between_steps() {
    let tmp = tempfile::tempdir().unwrap();
    // Long enough to be caught mid-training (thousands of epochs).
    let params = LearningParams {
        epochs: 5000,
        ..LearningParams::default()
    };
    let l = learner_with(tmp.path(), params);
    ingest_files(
        &l,
        &[
            pcaps().join("benign__web-browsing-espn.pcapng"),
            pcaps().join("portscan__syn-scan-29ports.pcap"),
        ],
    );
    let gen_before = l.handle().generation();
    l.train_now().unwrap();
    let t0 = Instant::now();
    while l.status().unwrap().state != "training" {
        assert!(t0.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(10));
    }
    // Past the collect and backup steps (collect takes 0.2 s alone and more than a second
    // beside other tests): the serving model's backup is written just before training, whose
    // 5,000 epochs take about 25 s.
    let backups = tmp.path().join("models/backups");
    while std::fs::read_dir(&backups).map_or(0, |d| d.count()) == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no backup: never reached training"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    l.shutdown();
    let took = t.elapsed();
    eprintln!("shutdown during training took {took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    let (total, cycles) = l.history(1).unwrap();
    assert_eq!(total, 1);
    assert_eq!(cycles[0].outcome, Outcome::Failed);
    assert_eq!(
        cycles[0].reason.as_deref(),
        Some("stopped during the train step")
    );
    assert_eq!(l.handle().generation(), gen_before);
    assert_eq!(l.versions().unwrap().0, Some(1));
    assert!(!tmp.path().join("models/model_v2.onnx").exists());
}

#[test]
fn an_attack_only_training_set_is_never_trained_on() {
    let tmp = tempfile::tempdir().unwrap();
    let l = default_learner(tmp.path());
    let flows: Vec<_> = records_of(&[pcaps().join("portscan__syn-scan-29ports.pcap")])
        .into_iter()
        .filter_map(|r| match r {
            Record::Flow(f) => Some(f),
            _ => None,
        })
        .collect();
    let attacks: Vec<TrainingSample> = flows
        .iter()
        .map(|f| {
            let mut s = TrainingSample::of_flow(f, 0.99);
            s.label = 1.0;
            s.source = LabelSource::Dfa;
            s
        })
        .collect();
    assert_eq!(attacks.len(), 29);
    l.store().insert_samples(&attacks).unwrap();
    let rep = l.run_cycle_here("manual").unwrap();
    assert_eq!(rep.record.outcome, Outcome::Failed);
    assert!(
        rep.record
            .reason
            .as_deref()
            .unwrap()
            .contains("attack-only"),
        "{:?}",
        rep.record.reason
    );
    // The samples stay new: a later cycle with benign samples uses them.
    assert_eq!(l.status().unwrap().new_samples, 29);
    assert_eq!(l.versions().unwrap().0, Some(1));
    l.shutdown();
}
