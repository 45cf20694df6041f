//! One pipeline, three drivers. For the same capture and the same configuration file — one
//! whose `[dfa]`, `[ann]`, `[learning]` and `[privacy]` sections all differ from the defaults —
//! the stored alerts of `safelink analyze --store` (the binary) equal those of the daemon's
//! detection thread (`daemon::detect`, fed the replayed records through its channel as the
//! capture feeds it, with the daemon's own `build_pipeline`), and the training samples of the
//! daemon equal those of `learn ingest`. Real sled stores, the real shipped model in tract.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use safelink::alert::{Alert, AlertSource};
use safelink::ann::ModelHandle;
use safelink::config::Config;
use safelink::daemon::{
    self,
    detect::{Clock, DriveOptions},
};
use safelink::learn::{Learner, TrainingSample, ingest::ingest};
use safelink::privacy::Policy;
use safelink::record::Record;
use safelink::replay::replay_file;
use safelink::store::{AlertFilter, Store};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Record time only: the replayed records carry their own clock (the live daemon ticks with
/// the wall clock, which would close a 2015 capture's incidents at once).
struct RecordTime;

impl Clock for RecordTime {
    fn now_ns(&self) -> u64 {
        0
    }
}

fn config_text(model: &Path) -> String {
    format!(
        r#"
[flows]
idle_timeout_s = 30

[dfa]
cooldown_secs = 120

[dfa.port_scan]
ports = 12

[ann]
enabled = true
model = "{}"
threshold = 0.8
group_by = "flow"
batch_size = 32

[learning]
settle_s = 5
baseline_s = 0
attack_group_cap = 50

[privacy]
ip_mode = "keyed-hash"
hash_macs = true
key = "pipeline-equivalence-test-key"
"#,
        model.display()
    )
}

fn stored_alerts(store: &Store) -> Vec<Alert> {
    let mut v = store
        .query(&AlertFilter::default(), 10_000, None)
        .unwrap()
        .alerts;
    for a in &mut v {
        a.id = 0;
    }
    v.sort_by(|a, b| {
        (
            a.source,
            a.kind,
            a.first_seen,
            a.src_ip,
            a.dest_ip,
            a.dest_port,
        )
            .cmp(&(
                b.source,
                b.kind,
                b.first_seen,
                b.src_ip,
                b.dest_ip,
                b.dest_port,
            ))
    });
    v
}

fn stored_samples(store: &Store) -> Vec<TrainingSample> {
    let mut v = store.samples_upto(u64::MAX, 1_000_000, |_| true).unwrap();
    for s in &mut v {
        s.id = 0;
    }
    v.sort_by(|a, b| {
        (a.ts_ns, a.src_ip, a.src_port, a.dst_ip, a.dst_port, a.proto)
            .cmp(&(b.ts_ns, b.src_ip, b.src_port, b.dst_ip, b.dst_port, b.proto))
    });
    v
}

/// `safelink analyze --config FILE --store DIR PCAP`: the stored alerts.
fn by_analyze(cfg_file: &Path, pcap: &Path, dir: &Path) -> Vec<Alert> {
    let out = Command::new(env!("CARGO_BIN_EXE_safelink"))
        .args(["analyze", "--ann"])
        .arg("--config")
        .arg(cfg_file)
        .arg("--store")
        .arg(dir)
        .arg(pcap)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stored_alerts(&Store::open(dir.join("store")).unwrap())
}

/// The daemon's pipeline (`daemon::build_pipeline`, with a learner) driven by its detection
/// thread: the stored alerts and samples, and how many samples the collector's queue dropped.
fn by_daemon(cfg: &Config, pcap: &Path, dir: &Path) -> (Vec<Alert>, Vec<TrainingSample>, u64) {
    let store = Store::open(dir.join("store")).unwrap();
    let learner = Learner::open(
        store.clone(),
        dir,
        cfg.learning.params().unwrap(),
        None,
        cfg.ann.model.as_deref(),
        false,
    )
    .unwrap();
    let policy = Policy::from_env(&cfg.privacy).unwrap();
    let pipeline = daemon::build_pipeline(
        cfg,
        &store,
        &policy,
        Some(&learner),
        Some(learner.handle()),
        None,
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel::<Record>(8192);
    let thread = {
        let _in_rt = rt.enter();
        daemon::detect::spawn(
            pipeline,
            rx,
            RecordTime,
            DriveOptions {
                print_records: None,
                batch_wait: Duration::from_millis(cfg.ann.detector.batch_wait_ms),
                tick: Duration::from_secs(1),
            },
        )
    };
    replay_file(
        pcap,
        &cfg.flows.timeouts(),
        |_, _| {},
        |r| tx.blocking_send(r).unwrap(),
    )
    .unwrap();
    drop(tx);
    let report = thread.join().unwrap();
    learner.shutdown();
    let dropped = report.samples.as_ref().unwrap().queue_full;
    (stored_alerts(&store), stored_samples(&store), dropped)
}

/// `learn ingest`: the stored samples and the number of rule alerts it saw.
fn by_ingest(cfg: &Config, pcap: &Path, dir: &Path) -> (Vec<TrainingSample>, u64) {
    let store = Store::open(dir.join("store")).unwrap();
    let policy = Policy::from_env(&cfg.privacy).unwrap();
    let handle = ModelHandle::open(cfg.ann.model.as_ref().unwrap()).unwrap();
    let sum = ingest(
        &[pcap],
        cfg,
        &policy,
        &handle,
        &cfg.learning.params().unwrap(),
        &store,
    )
    .unwrap();
    (stored_samples(&store), sum.rule_alerts)
}

#[test]
fn three_drivers_give_the_same_alerts_and_samples() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg_file = tmp.path().join("safelink.toml");
    std::fs::write(&cfg_file, config_text(&root().join("models/base.onnx"))).unwrap();
    let (cfg, _) = Config::load(Some(&cfg_file)).unwrap();
    assert_ne!(cfg.ann, Config::default().ann);
    assert_ne!(cfg.privacy, Config::default().privacy);
    let (mut dfa_alerts, mut ann_alerts, mut samples) = (0, 0, 0);
    for (i, name) in [
        "sshbrute__password-guessing-11conns.pcap",
        "portscan__syn-scan-29ports.pcap",
        "arpspoof__arpspoof-bidirectional-mitm.pcap",
        "benign__ssh-session.pcap",
    ]
    .iter()
    .enumerate()
    {
        let pcap = root().join("tests/pcaps").join(name);
        let dir = |d: &str| {
            let p = tmp.path().join(format!("{i}-{d}"));
            std::fs::create_dir_all(&p).unwrap();
            p
        };
        let analyzed = by_analyze(&cfg_file, &pcap, &dir("analyze"));
        let (live, live_samples, dropped) = by_daemon(&cfg, &pcap, &dir("daemon"));
        let (ingested, rule_alerts) = by_ingest(&cfg, &pcap, &dir("ingest"));
        assert_eq!(dropped, 0, "{name}: the collector queue never filled");
        assert_eq!(analyzed, live, "{name}: analyze and daemon alerts differ");
        assert_eq!(
            ingested, live_samples,
            "{name}: ingest and daemon samples differ"
        );
        let dfa = analyzed
            .iter()
            .filter(|a| a.source == AlertSource::Dfa)
            .count();
        assert_eq!(
            rule_alerts, dfa as u64,
            "{name}: rule alerts seen by ingest"
        );
        dfa_alerts += dfa;
        ann_alerts += analyzed.len() - dfa;
        samples += ingested.len();
        // The [privacy] section applies: no stored address is one of the capture's own.
        let raw = Command::new(env!("CARGO_BIN_EXE_safelink"))
            .arg("analyze")
            .arg("--flows")
            .arg(&pcap)
            .output()
            .unwrap();
        let raw = String::from_utf8_lossy(&raw.stdout);
        for a in &analyzed {
            if let Some(ip) = a.src_ip {
                assert!(
                    !raw.contains(&format!("\"{ip}\"")),
                    "{name}: {ip} stored as seen"
                );
            }
        }
    }
    // The comparison is not empty: rule and ANN alerts, and samples, were produced.
    assert!(dfa_alerts >= 3, "{dfa_alerts} rule alerts");
    assert!(ann_alerts >= 1, "{ann_alerts} ANN alerts");
    assert!(samples >= 20, "{samples} samples");
}
