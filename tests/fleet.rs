//! Fleet mode (safelink::fleet) against a real `nats-server -js` (its own port and store per
//! test), real sled stores, real tract models and the real binary:
//! - a sensor verifies and hot-swaps a signed model, and refuses a tampered model, a wrong
//!   key, another feature layout, an expired manifest and a replayed older version, each with
//!   its reason while the accepted model keeps serving — also after a restart;
//! - the server stopped while a sensor publishes: the on-disk buffer fills to its bound, the
//!   drops are exact, a sensor restart keeps the buffer, and afterwards the stream holds
//!   sent − dropped messages;
//! - the learner process: a second learner never publishes while the lease is held; `kill
//!   -9` and restart resumes the durable consumer (unique samples = samples sent, duplicates
//!   ≤ the redeliveries it reports); the published model reaches a canary sensor; promote,
//!   rollback, sensors and models; a bad canary is refused and never promoted to stable.
mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use safelink::ann::ModelHandle;
use safelink::fleet::connect::{Layout, connect_now, ensure_layout};
use safelink::fleet::manifest::{Bundle, Manifest};
use safelink::fleet::sensor::FleetSensor;
use safelink::fleet::{Channel, FleetHandle, FleetSection, FleetStatus};
use safelink::learn::models::sha256_hex;
use safelink::learn::{LabelSource, TrainingSample};
use safelink::store::Store;
use serde_json::Value;
use support::{NatsServer, Proc};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn base_bytes() -> Vec<u8> {
    std::fs::read(root().join("models/base.onnx")).unwrap()
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn section(url: &str, id: &str, keys: &[&SigningKey]) -> FleetSection {
    FleetSection {
        url: Some(url.into()),
        sensor_id: Some(id.into()),
        trusted_keys: keys
            .iter()
            .map(|k| hex::encode(k.verifying_key().as_bytes()))
            .collect(),
        channel: Channel::Canary,
        heartbeat_s: 1,
        ..FleetSection::default()
    }
}

async fn layout(url: &str) -> Layout {
    let c = connect_now(url, &FleetSection::default(), "test")
        .await
        .unwrap();
    ensure_layout(&c).await.unwrap()
}

/// Polls `f`'s status until `ok` holds (panics with the last status after `secs`).
async fn wait_for(
    f: &FleetHandle,
    what: &str,
    secs: u64,
    ok: impl Fn(&FleetStatus) -> bool,
) -> FleetStatus {
    let t0 = Instant::now();
    loop {
        let s = f.snapshot();
        if ok(&s) {
            return s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "{what}: last status {s:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn signed(k: &SigningKey, version: u64, model: &[u8], f: impl FnOnce(&mut Manifest)) -> Vec<u8> {
    let mut m = Manifest::for_model(
        "safelink",
        version,
        model,
        &k.verifying_key(),
        time::Duration::hours(1),
    );
    f(&mut m);
    Bundle::sign(m, model, k).to_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sensor_swaps_verified_models_and_refuses_bad_ones_with_reasons() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let handle = ModelHandle::open(&root().join("models/base.onnx")).unwrap();
    let (good, wrong) = (key(7), key(9));
    let f = section(&nats.url(), "s1", &[&good]);
    let models_dir = dir.path().join("models");
    let start = |h: ModelHandle| {
        FleetSensor::start(&f, store.clone(), h, dir.path(), &models_dir, 64 << 20)
    };
    let s = start(handle.clone()).await.unwrap();
    let l = layout(&nats.url()).await;
    let base = base_bytes();
    let put = |b: Vec<u8>| {
        let m = l.models.clone();
        async move { m.put("canary", b.into()).await.unwrap() }
    };

    put(signed(&good, 1, &base, |_| {})).await;
    let st = wait_for(&s.handle, "v1 accepted", 10, |s| s.model.is_some()).await;
    let m = st.model.clone().unwrap();
    assert_eq!(
        (m.version, m.sha256.as_str(), m.origin.as_str()),
        (1, sha256_hex(&base).as_str(), "fleet:canary")
    );
    assert_eq!(handle.generation(), 2, "swapped once");
    assert_eq!(
        std::fs::read(models_dir.join("fleet-v1.onnx")).unwrap(),
        base
    );

    // Each bad bundle: refused with its reason, the accepted model keeps serving.
    let mut tampered = Bundle::from_bytes(&signed(&good, 2, &base, |_| {})).unwrap();
    let mut bytes = tampered.model_bytes().unwrap();
    bytes[200] ^= 0x55;
    tampered.model = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &bytes);
    let mut forged = Bundle::from_bytes(&signed(&good, 2, &base, |_| {})).unwrap();
    forged.manifest = forged.manifest.replace("\"version\":2", "\"version\":20");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("digest_mismatch", tampered.to_bytes(), "model altered"),
        ("bad_signature", forged.to_bytes(), "bad signature"),
        (
            "unknown_key",
            signed(&wrong, 2, &base, |_| {}),
            "unknown key",
        ),
        (
            "other_layout",
            signed(&good, 2, &base, |m| m.feature_vector_version += 1),
            "feature layout",
        ),
        (
            "expired",
            signed(&good, 2, &base, |m| {
                m.expires = "2020-01-01T00:00:00Z".into()
            }),
            "expired at 2020-01-01T00:00:00Z",
        ),
    ];
    for (i, (code, raw, text)) in cases.into_iter().enumerate() {
        put(raw).await;
        let st = wait_for(&s.handle, code, 10, |s| s.refused[code] == 1).await;
        let r = st.last_refusal.unwrap();
        assert_eq!(r.code, code);
        assert!(r.reason.contains(text), "{code}: {}", r.reason);
        assert_eq!(
            st.model.as_ref().unwrap().version,
            1,
            "{code}: v1 still serves"
        );
        assert_eq!(st.refused.values().sum::<u64>(), i as u64 + 1);
        assert_eq!(handle.generation(), 2, "{code}: no swap");
    }
    // v2, then the old v1 replayed.
    let v1 = signed(&good, 1, &base, |_| {});
    put(signed(&good, 2, &base, |_| {})).await;
    wait_for(&s.handle, "v2", 10, |s| {
        s.model.as_ref().unwrap().version == 2
    })
    .await;
    put(v1.clone()).await;
    let st = wait_for(&s.handle, "replay", 10, |s| s.refused["not_newer"] == 1).await;
    assert!(
        st.last_refusal
            .unwrap()
            .reason
            .contains("version 1 is not above the highest accepted 2")
    );
    assert_eq!(handle.generation(), 3);
    s.stop().await;

    // A restart serves v2 again and still refuses v1 (the channel's current value).
    let handle2 = ModelHandle::open(&root().join("models/base.onnx")).unwrap();
    let s = start(handle2.clone()).await.unwrap();
    let st = wait_for(&s.handle, "replay after restart", 10, |s| {
        s.refused["not_newer"] == 1
    })
    .await;
    assert_eq!(st.highest_version, Some(2));
    assert_eq!(st.model.unwrap().version, 2);
    assert_eq!(
        handle2.generation(),
        2,
        "the saved v2 was loaded at start, nothing since"
    );
    // The heartbeat reaches the sensors bucket.
    let hb = l.sensors.get("s1").await.unwrap().expect("heartbeat");
    let hb: Value = serde_json::from_slice(&hb).unwrap();
    assert_eq!(hb["sensor_id"], "s1");
    assert_eq!(hb["channel"], "canary");
    s.stop().await;
}

fn sample(i: u64) -> TrainingSample {
    TrainingSample {
        id: 0,
        ts_ns: 1_700_000_000_000_000_000 + i,
        src_ip: "192.0.2.1".parse().unwrap(),
        src_port: 40_000 + (i % 20_000) as u16,
        dst_ip: "192.0.2.2".parse().unwrap(),
        dst_port: 80,
        proto: 6,
        label: 0.0,
        source: LabelSource::AnnLow,
        confidence: 0.9,
        score: 0.1,
        kind: None,
        features: vec![1.0; safelink::ann::N_FEATURES],
        baseline: false,
        alert_id: None,
    }
}

async fn stream_messages(url: &str) -> u64 {
    let l = layout(url).await;
    let mut s = l.js.get_stream("SAFELINK_SAMPLES").await.unwrap();
    s.info().await.unwrap().state.messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_buffers_on_disk_drops_exactly_and_catches_up() {
    let mut nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let handle = ModelHandle::open(&root().join("models/base.onnx")).unwrap();
    let mut f = section(&nats.url(), "s2", &[&key(7)]);
    f.buffer_max_messages = 300;
    let models_dir = dir.path().join("models");
    let s = FleetSensor::start(
        &f,
        store.clone(),
        handle.clone(),
        dir.path(),
        &models_dir,
        64 << 20,
    )
    .await
    .unwrap();
    store
        .insert_samples(&(0..200).map(sample).collect::<Vec<_>>())
        .unwrap();
    wait_for(&s.handle, "200 published", 20, |s| {
        s.published_samples == 200
    })
    .await;
    assert_eq!(stream_messages(&nats.url()).await, 200);

    nats.stop();
    wait_for(&s.handle, "disconnected", 10, |s| !s.connected).await;
    store
        .insert_samples(&(200..700).map(sample).collect::<Vec<_>>())
        .unwrap();
    let st = wait_for(&s.handle, "buffer full", 20, |s| {
        s.buffered == 300 && s.dropped == 200
    })
    .await;
    assert_eq!(st.published_samples, 200);
    // A sensor restart during the outage keeps the buffer and the counters.
    s.stop().await;
    let s = FleetSensor::start(&f, store.clone(), handle, dir.path(), &models_dir, 64 << 20)
        .await
        .unwrap();
    let st = s.handle.snapshot();
    assert_eq!(
        (st.buffered, st.dropped, st.published_samples),
        (300, 200, 200)
    );

    nats.resume();
    let st = wait_for(&s.handle, "caught up", 30, |s| {
        s.buffered == 0 && s.connected
    })
    .await;
    assert_eq!((st.published_samples, st.dropped), (500, 200));
    // Sent 700, dropped 200: the stream holds exactly 500.
    assert_eq!(stream_messages(&nats.url()).await, 700 - 200);
    s.stop().await;
}

const BIN: &str = env!("CARGO_BIN_EXE_safelink");

/// A `safelink learner` on `url` with its stdout's JSON lines on a channel.
fn learner(
    url: &str,
    id: &str,
    data: &Path,
    key: &Path,
    min_samples: usize,
) -> (Proc, std::sync::mpsc::Receiver<Value>) {
    let mut c = std::process::Command::new(BIN)
        .args([
            "learner",
            "--fleet",
            url,
            "--learner-id",
            id,
            "--signing-key",
        ])
        .arg(key)
        .arg("--data-dir")
        .arg(data)
        .args([
            "--cycle-interval",
            "1",
            "--lease-secs",
            "6",
            "--max-publications",
            "1",
        ])
        .args(["--min-samples", &min_samples.to_string()])
        .current_dir(root())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let out = c.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&l) {
                eprintln!("learner {v}");
                if tx.send(v).is_err() {
                    return;
                }
            }
        }
    });
    (Proc(c), rx)
}

/// The next line of `rx` whose event is `event` (panics after `secs`).
fn next_event(rx: &std::sync::mpsc::Receiver<Value>, event: &str, secs: u64) -> Value {
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let v = rx
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("no {event} event within {secs} s ({e})"));
        if v["event"] == event {
            return v;
        }
    }
}

fn fleet_cmd(args: &[&str]) -> Value {
    let out = std::process::Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learner_lease_kill_resume_publish_promote_rollback() {
    let nats = NatsServer::start();
    let url = nats.url();
    let dir = tempfile::tempdir().unwrap();
    // Real labelled samples: captures through the pipeline (rule automata, ANN, collector).
    let store = Store::open(dir.path().join("sensor/store")).unwrap();
    let handle = ModelHandle::open(&root().join("models/base.onnx")).unwrap();
    let (st2, h2) = (store.clone(), handle.clone());
    let sum = tokio::task::spawn_blocking(move || {
        let files: Vec<PathBuf> = [
            "sshbrute__hydra-1task.pcap",
            "portscan__nmap-syn-scan-1000ports.pcapng",
            "benign__dns-lookups.pcapng",
            "benign__ssh-session.pcap",
            "benign__telnet-session.pcap",
        ]
        .iter()
        .map(|f| root().join("tests/pcaps").join(f))
        .collect();
        let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
        safelink::learn::ingest::ingest(
            &refs,
            &safelink::config::Config::default(),
            &safelink::privacy::Policy::default(),
            &h2,
            &safelink::learn::LearningParams::default(),
            &st2,
        )
        .unwrap()
    })
    .await
    .unwrap();
    let sent = sum.samples_stored as u64;
    assert!(sent >= 100, "{sum:?}");
    let key_file = dir.path().join("signing.key");
    let k = safelink::fleet::manifest::generate_key().unwrap();
    safelink::fleet::manifest::write_signing_key(&key_file, &k).unwrap();

    // Learner a holds the lease; learner b waits and never publishes while it does.
    let (a, a_rx) = learner(&url, "a", &dir.path().join("la"), &key_file, sent as usize);
    let lease = next_event(&a_rx, "lease", 20);
    let (b, b_rx) = learner(&url, "b", &dir.path().join("lb"), &key_file, 1);
    assert_eq!(next_event(&b_rx, "waiting", 20)["holder"], "a");

    // The sensor publishes its samples; kill -9 learner a while it is taking them.
    let f = section(&url, "s1", &[&k]);
    let s = FleetSensor::start(
        &f,
        store.clone(),
        handle.clone(),
        &dir.path().join("sensor"),
        &dir.path().join("sensor/models"),
        64 << 20,
    )
    .await
    .unwrap();
    let l = layout(&url).await;
    let t0 = Instant::now();
    let acked_at_kill = loop {
        let mut c: async_nats::jetstream::consumer::PullConsumer =
            l.js.get_stream("SAFELINK_SAMPLES")
                .await
                .unwrap()
                .get_consumer("safelink-learner")
                .await
                .unwrap();
        let acked = c.info().await.unwrap().ack_floor.stream_sequence;
        if acked >= 1 {
            break acked;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "learner a took nothing"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    drop(a); // SIGKILL
    assert!(
        acked_at_kill < sent,
        "killed mid-way: {acked_at_kill} of {sent} acknowledged"
    );
    for _ in 0..20 {
        assert!(b_rx.try_recv().map_or(true, |v| v["event"] != "published"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(b);

    // Restarted, a takes its own lease back and resumes the durable consumer.
    let (a2, a2_rx) = learner(&url, "a", &dir.path().join("la"), &key_file, sent as usize);
    let lease2 = next_event(&a2_rx, "lease", 20);
    assert!(lease2["revision"].as_u64() > lease["revision"].as_u64());
    let published = next_event(&a2_rx, "published", 90);
    let done = next_event(&a2_rx, "done", 10)["counters"].clone();
    drop(a2);
    eprintln!("sent {sent}, acknowledged at kill {acked_at_kill}, learner counters {done}");
    assert_eq!(
        done["unique"].as_u64(),
        Some(sent),
        "every sample trained once"
    );
    assert!(
        done["duplicates"].as_u64() <= done["redelivered"].as_u64(),
        "{done}"
    );
    assert_eq!(published["channel"], "canary");
    assert!(published["lease_revision"].as_u64() >= lease2["revision"].as_u64());
    let v = published["version"].as_u64().unwrap();
    let sha = published["sha256"].as_str().unwrap().to_string();

    // The canary sensor verifies and swaps it.
    let st = wait_for(&s.handle, "published model served", 10, |x| {
        x.model.as_ref().is_some_and(|m| m.version == v)
    })
    .await;
    assert_eq!(st.model.unwrap().sha256, sha);

    // The operator's view and levers.
    let models = fleet_cmd(&["fleet", "models", "--fleet", &url]);
    assert_eq!(models[0]["version"], v);
    assert_eq!(models[0]["channels"], serde_json::json!(["canary"]));
    // The next heartbeat (every second) reports the new model.
    let t0 = Instant::now();
    let sensors = loop {
        let s = fleet_cmd(&["fleet", "sensors", "--fleet", &url]);
        if s[0]["model_version"] == v || t0.elapsed() > Duration::from_secs(5) {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(sensors[0]["sensor_id"], "s1");
    assert_eq!(sensors[0]["state"], "online");
    assert_eq!(sensors[0]["model_version"], v);
    assert_eq!(sensors[0]["dropped"], 0);
    let p = fleet_cmd(&["fleet", "promote", &v.to_string(), "--fleet", &url]);
    assert_eq!(p["promoted"], v);
    let out = std::process::Command::new(BIN)
        .args(["fleet", "promote", "99", "--fleet", &url])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no published version 99"));
    let r = fleet_cmd(&[
        "fleet",
        "rollback",
        "--to",
        &v.to_string(),
        "--fleet",
        &url,
        "--signing-key",
        key_file.to_str().unwrap(),
    ]);
    assert_eq!(r["version"], v + 1);
    assert_eq!(r["content_of"], v);
    assert_eq!(r["sha256"], sha.as_str());
    wait_for(&s.handle, "rollback served", 10, |x| {
        x.model.as_ref().is_some_and(|m| m.version == v + 1)
    })
    .await;
    let models = fleet_cmd(&["fleet", "models", "--fleet", &url]);
    assert_eq!(
        models[0]["channels"],
        serde_json::json!(["stable", "canary"])
    );
    assert_eq!(models[1]["channels"], serde_json::json!([]));

    // A bad canary (signed by a key nobody trusts): the canary sensor refuses it, and it
    // never reaches the stable channel.
    let bad = signed(&key(9), v + 2, &base_bytes(), |_| {});
    l.models
        .put(format!("v{}", v + 2), bad.clone().into())
        .await
        .unwrap();
    l.models.put("canary", bad.into()).await.unwrap();
    wait_for(&s.handle, "bad canary refused", 10, |x| {
        x.refused["unknown_key"] == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await; // the next heartbeat says so
    let out = std::process::Command::new(BIN)
        .args(["fleet", "promote", &(v + 2).to_string(), "--fleet", &url])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("canary sensors refused version {}: s1", v + 2)),
        "{err}"
    );
    let models = fleet_cmd(&["fleet", "models", "--fleet", &url]);
    assert_eq!(models[0]["version"], v + 2);
    assert_eq!(models[0]["channels"], serde_json::json!(["canary"]));
    assert_eq!(models[1]["channels"], serde_json::json!(["stable"]));
    assert_eq!(
        s.handle.snapshot().model.unwrap().version,
        v + 1,
        "v{} still serves",
        v + 1
    );
    s.stop().await;
}
