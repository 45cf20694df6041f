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
//!   rollback, sensors and models.
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
use support::NatsServer;

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
