//! The ANN's local baseline and the operator's verdicts, on real captures through the real
//! pipeline, learner, store and API:
//! - `baseline_scores_without_alerting_then_goes_live`: in baseline the lab's benign captures
//!   (on which the base model raises ANN false alerts) raise none, become `baseline` samples;
//!   the local check stays in baseline when it cannot measure (reason named), goes live when
//!   the model's held-out local FPR passes, and the ANN alerts again after that;
//! - `a_verdict_stops_the_same_false_positive`: `POST /alerts/{id}/verdict` (token, 4xx named),
//!   then the next cycle no longer flags that flow; the verdict survives pruning, not forget.
mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use safelink::alert::AlertSource;
use safelink::api::{self, ApiState, AuthPolicy};
use safelink::config::Config;
use safelink::learn::{LabelSource, Learner, LearningParams, Phase, load_golden};
use safelink::pipeline::{Pipeline, Report, Stages};
use safelink::replay::replay_file;
use safelink::store::{AlertFilter, Store};
use serde_json::{Value, json};

const TOKEN: &str = "baseline-token-0123456789";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The lab's benign captures: the base model these tests start from flags 9 of their 85 flows
/// (ANN alone).
fn lab_benign() -> Vec<PathBuf> {
    [
        "curl-http",
        "ssh-sessions",
        "dns-lookups",
        "iperf3-tcp",
        "ping",
    ]
    .iter()
    .map(|n| root().join(format!("models/lab/benign__lab-{n}.pcapng")))
    .collect()
}

fn learner(dir: &Path, params: LearningParams) -> Learner {
    let store = Store::open(dir.join("store")).unwrap();
    let golden = load_golden(&root().join("models/golden.jsonl")).unwrap();
    Learner::open(
        store,
        dir,
        params,
        Some(golden),
        // The base recipe without the benign rows of `models/benign` and without the lab
        // training recordings, one member (`safelink model train-base --pcaps tests/pcaps
        // --benign-rows HEADER-ONLY.csv.gz --members 1`): it flags 8 of the lab's 85 benign
        // flows (replayed one after another through one pipeline), which is what the baseline and the verdict are for. Today's shipped model
        // flags none of them.
        Some(&root().join("tests/data/models/base-without-benign-rows.onnx")),
        true,
    )
    .unwrap()
}

/// The live sensor's pipeline on `files` (rules, ANN through the learner's gate, samples,
/// alerts into the learner's store when `store_alerts`): the report and the flows the ANN
/// scored at or above the alert threshold.
fn run(l: &Learner, files: &[PathBuf], store_alerts: bool) -> (Report, usize) {
    let cfg = Config::default();
    let high = Arc::new(Mutex::new(0usize));
    let h = high.clone();
    let t = cfg.ann.detector.threshold;
    let mut p = Pipeline::new(
        &cfg,
        Stages {
            dfa: true,
            model: Some(l.handle()),
            alerts: store_alerts.then(|| l.store().clone()),
            samples: Some((l.store().clone(), l.params().clone())),
            baseline: Some(l.baseline()),
            lossless: true,
            keep_alerts: true,
            score_tap: Some(Box::new(move |_, _, s, _| {
                if s >= t {
                    *h.lock().unwrap() += 1;
                }
            })),
            ..Stages::default()
        },
    )
    .unwrap();
    for f in files {
        replay_file(f, &cfg.flows.timeouts(), |_, _| {}, |r| p.feed(&r)).unwrap();
    }
    let r = p.finish();
    let n = *high.lock().unwrap();
    (r, n)
}

fn ann_alerts(r: &Report) -> usize {
    r.alerts
        .iter()
        .filter(|a| a.source == AlertSource::Ann)
        .count()
}

#[test]
fn baseline_scores_without_alerting_then_goes_live() {
    let params = LearningParams {
        baseline_s: 1,
        settle_s: 0,
        baseline_min_flows: 5,
        ..LearningParams::default()
    };
    // A check that cannot measure enough local flows stays in baseline and says why.
    let tmp = tempfile::tempdir().unwrap();
    let strict = learner(
        tmp.path(),
        LearningParams {
            baseline_min_flows: 1_000_000,
            ..params.clone()
        },
    );
    assert_eq!(strict.status().unwrap().phase, "baseline");
    run(&strict, &lab_benign(), false);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(strict.baseline_check_here().unwrap(), Phase::Baseline);
    let s = strict.status().unwrap();
    let heldout = s.local_heldout_flows;
    assert!(heldout > 0);
    assert_eq!(
        s.baseline_reason.as_deref(),
        Some(
            format!(
                "only {heldout} held-out local flows, need 1000000 to measure the false-positive \
                 rate; staying in baseline"
            )
            .as_str()
        )
    );
    assert_eq!(s.phase, "baseline");
    strict.shutdown();

    let tmp = tempfile::tempdir().unwrap();
    let l = learner(tmp.path(), params);
    let s = l.status().unwrap();
    assert_eq!((s.phase, s.local_fpr), ("baseline", None));
    assert!(s.baseline_ends.is_some());
    // In baseline: every flow scored, the base model's false positives raise no alert, and
    // every flow without a rule alert is a local benign sample.
    let (r, high) = run(&l, &lab_benign(), false);
    assert_eq!(high, 8, "the base model flags 8 of the lab's benign flows");
    assert_eq!(ann_alerts(&r), 0, "no ANN alert in baseline");
    let samples = r.samples.clone().unwrap();
    assert_eq!(samples.flows_seen, 85);
    assert_eq!((samples.baseline, samples.benign), (85, 85));
    assert_eq!(samples.attack_ann, 0, "no ann_high label in baseline");
    let s = l.status().unwrap();
    assert_eq!((s.baseline_samples, s.baseline_flows_seen), (85, 85));
    assert!(s.known_benign_services > 0);

    // The check: trains on the local flows, measures, goes live.
    std::thread::sleep(Duration::from_millis(1100));
    let phase = l.baseline_check_here().unwrap();
    let s = l.status().unwrap();
    let (_, hist) = l.history(1).unwrap();
    assert_eq!(phase, Phase::Live, "{s:?} {hist:?}");
    eprintln!(
        "baseline check: local FPR {:?} on {} held-out flows; {:?}",
        s.local_fpr, s.local_heldout_flows, s.baseline_reason
    );
    assert_eq!(s.phase, "live");
    assert!(s.local_heldout_flows >= 5);
    assert!(s.local_fpr.unwrap() <= 0.001);
    assert!(s.live_since.is_some() && s.baseline_ends.is_none());
    let (_, hist) = l.history(1).unwrap();
    assert_eq!(hist[0].trigger, "baseline");
    assert_eq!(hist[0].outcome.as_str(), "deployed", "{:?}", hist[0].reason);
    // Live: the gate is open; the ANN alerts on whatever the new model flags (the same
    // captures again: a high score on a known-benign service labels nothing).
    let (r, high) = run(&l, &lab_benign(), false);
    let samples = r.samples.clone().unwrap();
    assert_eq!(samples.baseline, 0);
    assert_eq!(samples.attack_ann, 0);
    eprintln!(
        "live: {high} of 85 flows at or above the threshold, {} ANN alerts",
        ann_alerts(&r)
    );
    assert_eq!(ann_alerts(&r) > 0, high > 0, "the ANN alerts once live");
    // The phase survives a restart.
    l.shutdown();
    drop(l);
    let again = learner(tmp.path(), LearningParams::default());
    assert_eq!(again.status().unwrap().phase, "live");
    again.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verdict_stops_the_same_false_positive() {
    let tmp = tempfile::tempdir().unwrap();
    let params = LearningParams {
        baseline_s: 0,
        settle_s: 0,
        ..LearningParams::default()
    };
    let l = {
        let d = tmp.path().to_path_buf();
        tokio::task::spawn_blocking(move || learner(&d, params))
            .await
            .unwrap()
    };
    assert_eq!(l.status().unwrap().phase, "live");
    // Live without a baseline: the base model's false alerts on the lab's benign traffic,
    // stored, and its flows as samples.
    let l2 = l.clone();
    let (r, _) = tokio::task::spawn_blocking(move || run(&l2, &lab_benign(), true))
        .await
        .unwrap();
    // The 9 flagged flows, grouped by source into 1 incident.
    assert_eq!(ann_alerts(&r), 1);
    let stored = l
        .store()
        .query(&AlertFilter::default(), 100, None)
        .unwrap()
        .alerts;
    let fp = stored
        .iter()
        .find(|a| a.source == AlertSource::Ann)
        .unwrap()
        .clone();
    let t = Config::default().ann.detector.threshold;
    assert!(l.handle().current().score(&fp.features).unwrap()[0] >= t);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bound: SocketAddr = listener.local_addr().unwrap();
    let state = ApiState::new(
        l.store().clone(),
        Arc::new(support::IdleSensor),
        AuthPolicy::new(bound, Some(TOKEN)).unwrap(),
    )
    .with_model(l.handle())
    .with_learner(l.clone());
    tokio::spawn(api::serve(
        listener,
        api::router(state),
        std::future::pending(),
    ));
    let base = format!("http://{bound}");
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let post = |path: String, token: Option<&str>, body: Value| {
        let mut r = http.post(format!("{base}{path}")).json(&body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        async move {
            let r = r.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let path = format!("/alerts/{}/verdict", fp.id);
    let fp_body = json!({"verdict": "false_positive"});
    assert_eq!(post(path.clone(), None, fp_body.clone()).await.0, 401);
    let (st, b) = post(path.clone(), Some(TOKEN), json!({"verdict": "maybe"})).await;
    assert_eq!(st, 422);
    let e = b["error"].as_str().unwrap();
    assert!(e.contains("verdict") && e.contains("false_positive"), "{e}");
    assert_eq!(
        post(
            "/alerts/999999/verdict".into(),
            Some(TOKEN),
            fp_body.clone()
        )
        .await,
        (404, json!({"error": "alert 999999 not found"}))
    );
    assert_eq!(
        post("/alerts/x/verdict".into(), Some(TOKEN), fp_body.clone())
            .await
            .0,
        400
    );
    let (st, b) = post(path.clone(), Some(TOKEN), fp_body.clone()).await;
    assert_eq!(st, 200, "{b}");
    // The stored automatic samples of the same flow took the operator's label.
    let relabelled = b["relabelled"].as_u64().unwrap();
    assert!(relabelled >= 1, "{b}");
    assert_eq!(
        (b["alert_id"].as_u64(), b["verdict"].as_str()),
        (Some(fp.id), Some("false_positive"))
    );
    let svc = std::net::SocketAddr::new(fp.dest_ip.unwrap(), fp.dest_port.unwrap()).to_string();
    assert_eq!(b["known_benign_service"], json!(svc));
    // Again: replaces the first (one operator sample per alert).
    let (st, b) = post(path.clone(), Some(TOKEN), fp_body).await;
    assert_eq!((st, b["replaced"].as_u64()), (200, Some(1)));
    let s: Value = http
        .get(format!("{base}/learning/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        s["operator_verdicts"],
        1 + relabelled,
        "the verdict and the samples it relabelled"
    );

    // The next cycle learns it: the same flow no longer reaches the alert threshold.
    let (st, _) = post("/learning/train-now".into(), Some(TOKEN), json!({})).await;
    assert_eq!(st, 202);
    let t0 = Instant::now();
    while l.is_training() || l.history(1).unwrap().0 == 0 {
        assert!(t0.elapsed() < Duration::from_secs(90), "no cycle");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let h: Value = http
        .get(format!("{base}/learning/history?limit=1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["total_cycles"], 1);
    let c = &h["history"][0];
    assert_eq!(c["outcome"], "deployed", "{c}");
    assert_eq!(c["label_sources"]["operator"], 1 + relabelled, "{c}");
    let after = l.handle().current().score(&fp.features).unwrap()[0];
    eprintln!(
        "the false positive scored {} before, {after} after one cycle",
        fp.confidence
    );
    assert!(after < t, "still flagged: {after}");

    // It survives pruning; forget removes it.
    l.store().prune_samples(0).unwrap();
    let left = l.store().samples_from(&[LabelSource::Operator]).unwrap();
    assert!(left.iter().any(|s| s.alert_id == Some(fp.id)));
    let ip = fp.src_ip.unwrap();
    let r = http
        .delete(format!("{base}/privacy/subject?ip={ip}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let left = l.store().samples_from(&[LabelSource::Operator]).unwrap();
    assert!(!left.iter().any(|s| s.involves(ip)), "{left:?}");
    l.shutdown();
}
