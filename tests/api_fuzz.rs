//! Fuzzing every route of the published OpenAPI document with schemathesis (Python; setup.sh
//! --test installs it in a venv) against a real API server on loopback: a real sled store
//! with alerts, the real base model behind `GET /model` and `POST /model/load` (files in the
//! models directory), no XDP. Two runs: with the token, no answer may be a 5xx; without it,
//! no answer may be a 5xx and nothing may change (alert and archive counts, every store
//! tree, the model generation, the sniffer state).
//!
//! `SAFELINK_FUZZ_EXAMPLES` sets the examples per operation (default 50: well under a minute per run);
//! `SAFELINK_SCHEMATHESIS` the schemathesis binary (default: setup.sh's venv, then `PATH`).
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use safelink::alert::{Alert, AlertKind, AlertSource, Severity, Timestamp};
use safelink::ann::ModelHandle;
use safelink::api::config::ApiConfig;
use safelink::api::{self, ApiState, AuthPolicy, ControlFuture, SensorControl, SensorStatus};
use safelink::store::Store;
use serde_json::Value;

const TOKEN: &str = "fuzz-token-0123456789";
/// Where `setup.sh --test` installs schemathesis.
const SETUP_VENV_BIN: &str = "/opt/safelink-schemathesis/bin/schemathesis";

/// A sniffer that only flips a flag (its state is part of what must not change).
#[derive(Default)]
struct FlagSensor(AtomicBool);

impl SensorControl for FlagSensor {
    fn status(&self) -> SensorStatus {
        SensorStatus {
            running: self.0.load(Ordering::SeqCst),
            interface: Some("veth0".into()),
            ..SensorStatus::default()
        }
    }
    fn start(&self) -> ControlFuture<'_> {
        Box::pin(async move { Ok(!self.0.swap(true, Ordering::SeqCst)) })
    }
    fn stop(&self) -> ControlFuture<'_> {
        Box::pin(async move { Ok(self.0.swap(false, Ordering::SeqCst)) })
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn schemathesis() -> PathBuf {
    if let Ok(p) = std::env::var("SAFELINK_SCHEMATHESIS") {
        return p.into();
    }
    if Path::new(SETUP_VENV_BIN).exists() {
        return SETUP_VENV_BIN.into();
    }
    let on_path = Command::new("schemathesis").arg("--version").output();
    assert!(
        on_path.is_ok_and(|o| o.status.success()),
        "schemathesis not found: run ./setup.sh --test (installs it in {SETUP_VENV_BIN}) or set \
         SAFELINK_SCHEMATHESIS"
    );
    "schemathesis".into()
}

fn alert(i: u64) -> Alert {
    let ts = Timestamp::from_ns(1_714_564_800_000_000_000 + i * 60_000_000_000);
    Alert {
        id: 0,
        timestamp: ts,
        source: AlertSource::Dfa,
        kind: AlertKind::PORT_SCAN,
        severity: Severity::High,
        confidence: 1.0,
        src_ip: Some(format!("198.51.100.{i}").parse().unwrap()),
        src_port: Some(40000),
        dest_ip: Some("192.0.2.10".parse().unwrap()),
        dest_port: Some(22),
        proto: "tcp".into(),
        src_mac: None,
        first_seen: ts,
        last_seen: ts,
        count: 1,
        description: "fuzz seed".into(),
        community_id: None,
        tunnel: None,
        explanation: None,
        resembles: None,
        features: vec![0.5],
    }
}

/// Everything a state-changing call could change.
#[derive(Debug, PartialEq)]
struct Snapshot {
    active: u64,
    archived: u64,
    trees: Vec<(&'static str, u64)>,
    model_generation: u64,
    sniffer_running: bool,
    alert_ids: Vec<u64>,
}

struct Fixture {
    addr: SocketAddr,
    store: Store,
    model: ModelHandle,
    sensor: Arc<FlagSensor>,
    dir: tempfile::TempDir,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl Fixture {
    async fn start() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        for i in 1..=20 {
            store.insert(alert(i)).unwrap();
        }
        store.archive_ids(&[1, 2]).unwrap();
        let models = dir.path().join("models");
        std::fs::create_dir(&models).unwrap();
        std::fs::copy(root().join("models/base.onnx"), models.join("base.onnx")).unwrap();
        let model = ModelHandle::open(&root().join("models/base.onnx")).unwrap();
        let sensor = Arc::new(FlagSensor::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cfg = ApiConfig::default();
        let state = ApiState::new(
            store.clone(),
            sensor.clone(),
            AuthPolicy::new(addr, Some(TOKEN)).unwrap(),
        )
        .with_limits(&cfg, models)
        .with_model(model.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(api::serve_with(
            listener,
            api::router(state),
            cfg.max_connections,
            async move {
                let _ = rx.await;
            },
        ));
        Fixture {
            addr,
            store,
            model,
            sensor,
            dir,
            _shutdown: tx,
        }
    }

    fn snapshot(&self) -> Snapshot {
        let c = self.store.counts().unwrap();
        let page = self
            .store
            .query(&Default::default(), 1000, None)
            .unwrap()
            .alerts;
        Snapshot {
            active: c.active,
            archived: c.archived,
            trees: self.store.tree_counts().unwrap().per_tree().to_vec(),
            model_generation: self.model.generation(),
            sniffer_running: self.sensor.0.load(Ordering::SeqCst),
            alert_ids: page.iter().map(|a| a.id).collect(),
        }
    }

    /// One schemathesis run over every operation (`token`: sent on every request). Fails the
    /// test on any 5xx.
    async fn fuzz(&self, token: Option<&str>) {
        let examples = std::env::var("SAFELINK_FUZZ_EXAMPLES").unwrap_or_else(|_| "50".into());
        let mut cmd = Command::new(schemathesis());
        // It keeps a cache (.schemathesis/) in its working directory: not in the source tree.
        cmd.current_dir(self.dir.path())
            .arg("run")
            .arg(format!("http://{}/openapi.json", self.addr))
            .args(["--checks", "not_a_server_error"])
            .args(["--max-examples", &examples])
            .args(["--phases", "examples,coverage,fuzzing"])
            .args(["--seed", "13"])
            .args(["--workers", "1"])
            .args(["--request-timeout", "20"])
            .arg("--no-color")
            .env("NO_COLOR", "1")
            .env("SCHEMATHESIS_HOOKS", "")
            .env_remove("HTTP_PROXY")
            .env_remove("http_proxy")
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy");
        if let Some(t) = token {
            cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
        }
        let t0 = std::time::Instant::now();
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "schemathesis ({}, {examples} examples per operation) took {:.1} s:\n{text}",
            if token.is_some() { "token" } else { "no token" },
            t0.elapsed().as_secs_f64()
        );
        assert!(out.status.success(), "schemathesis found failures:\n{text}");
        assert!(text.contains("passed"), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_survives_schemathesis() {
    let f = Fixture::start().await;

    // The document lists every operation the router serves.
    let doc: Value = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("http://{}/openapi.json", f.addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut ops: Vec<String> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(p, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |m| format!("{} {p}", m.to_uppercase()))
        })
        .collect();
    ops.sort();
    assert_eq!(ops.len(), 28, "{ops:#?}");

    // Without the token: no 5xx, and nothing changes.
    let before = f.snapshot();
    f.fuzz(None).await;
    assert_eq!(f.snapshot(), before);

    // With the token: no 5xx anywhere (state may change).
    f.fuzz(Some(TOKEN)).await;
}
