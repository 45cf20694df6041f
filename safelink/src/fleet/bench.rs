//! `safelink bench fleet` (run by `cargo xtask bench fleet --sensors N`): N sensors simulated
//! in this process, each with its own connection, publishing samples at a fixed rate for a
//! bounded time with `Nats-Msg-Id`, and each watching the canary channel through its own KV
//! watch. Halfway through, a signed model is published; every sensor verifies it (the same
//! [`Verifier`] as a real sensor, model load included) and installs it in its own
//! [`ModelHandle`]. Reports sent vs received (the stream's message count) and the propagation
//! time from publication to each sensor's swap (p50, p99, max), and separately to each
//! sensor's receipt of the value (delivery alone: in one process the N verifications share
//! the machine's cores, where real sensors each have their own).
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, message::PublishMessage};
use ed25519_dalek::SigningKey;
use futures_util::StreamExt as _;
use serde::Serialize;
use tokio::sync::Mutex;

use super::manifest::{Bundle, Manifest, Verifier};
use super::{FleetSection, connect, names};
use crate::ann::ModelHandle;

#[derive(Clone, Debug, Serialize)]
pub struct Percentiles {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub n: usize,
}

fn percentiles(mut v: Vec<f64>) -> Percentiles {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| {
        if v.is_empty() {
            f64::NAN
        } else {
            v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1]
        }
    };
    Percentiles {
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: v.last().copied().unwrap_or(f64::NAN),
        n: v.len(),
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct FleetBench {
    pub sensors: usize,
    pub secs: f64,
    pub rate_per_sensor: f64,
    pub sent: u64,
    pub received: u64,
    /// Publication → the sensor's value arrived (KV watch).
    pub delivery: Percentiles,
    /// Publication → verified and swapped in.
    pub propagation: Percentiles,
    pub swapped: usize,
}

/// Runs the benchmark against the server at `url` (a fresh one: the stream must be empty).
pub async fn run(
    url: &str,
    sensors: usize,
    secs: f64,
    rate: f64,
    base_model: &std::path::Path,
) -> anyhow::Result<FleetBench> {
    let f = FleetSection::default();
    let admin = connect::connect_now(url, &f, "bench-admin").await?;
    let layout = connect::ensure_layout(&admin).await?;
    let model = std::fs::read(base_model)?;
    let key = SigningKey::from_bytes(&[0x42; 32]);
    let verifier = Verifier::new(&f.fleet_id, &[key.verifying_key()]);
    let sample = serde_json::to_vec(&crate::learn::TrainingSample {
        id: 1,
        ts_ns: 1,
        src_ip: "192.0.2.1".parse()?,
        src_port: 40000,
        dst_ip: "192.0.2.2".parse()?,
        dst_port: 22,
        proto: 6,
        label: 1.0,
        source: crate::learn::LabelSource::Dfa,
        confidence: 1.0,
        score: 0.99,
        kind: None,
        features: vec![1.0; crate::ann::N_FEATURES],
        baseline: false,
        alert_id: None,
    })?;
    let sent = Arc::new(AtomicU64::new(0));
    let published_at: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let delivered = Arc::new(Mutex::new(Vec::new()));
    let swapped = Arc::new(Mutex::new(Vec::new()));
    let run_for = Duration::from_secs_f64(secs);
    let t_start = Instant::now();
    let mut tasks = Vec::new();
    let mut ready = Vec::new();
    for i in 0..sensors {
        let client = connect::connect_now(url, &f, &format!("bench-{i}")).await?;
        let js = jetstream::new(client);
        let kv = js.get_key_value(names::MODELS_BUCKET).await?;
        let mut watch = kv.watch("canary").await?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        ready.push(rx);
        let (handle, verifier) = (ModelHandle::open(base_model)?, verifier.clone());
        let (published_at, delivered, swapped) =
            (published_at.clone(), delivered.clone(), swapped.clone());
        tasks.push(tokio::spawn(async move {
            let _ = tx.send(());
            if let Some(Ok(e)) = watch.next().await {
                let t0 = published_at
                    .lock()
                    .await
                    .expect("published before the value arrives");
                delivered
                    .lock()
                    .await
                    .push(t0.elapsed().as_secs_f64() * 1e3);
                let raw = e.value.to_vec();
                let ok = tokio::task::spawn_blocking(move || {
                    verifier
                        .verify(&raw, None, time::OffsetDateTime::now_utc())
                        .map(|v| handle.install(v.model))
                        .is_ok()
                })
                .await
                .unwrap_or(false);
                if ok {
                    swapped.lock().await.push(t0.elapsed().as_secs_f64() * 1e3);
                }
            }
        }));
        let (js, sent, payload) = (js.clone(), sent.clone(), sample.clone());
        tasks.push(tokio::spawn(async move {
            let every = Duration::from_secs_f64(1.0 / rate.max(0.001));
            let mut tick = tokio::time::interval(every);
            let mut seq = 0u64;
            while t_start.elapsed() < run_for {
                tick.tick().await;
                seq += 1;
                let p = PublishMessage::build()
                    .payload(payload.clone().into())
                    .message_id(format!("bench{i}.{seq}"));
                if let Ok(ack) = js
                    .send_publish(names::samples_subject(&format!("bench{i}")), p)
                    .await
                    && ack.await.is_ok()
                {
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for r in ready {
        let _ = r.await;
    }
    // Halfway: publish a model.
    tokio::time::sleep(run_for / 2).await;
    let m = Manifest::for_model(
        &f.fleet_id,
        1,
        &model,
        &key.verifying_key(),
        time::Duration::hours(1),
    );
    let bundle = Bundle::sign(m, &model, &key).to_bytes();
    *published_at.lock().await = Some(Instant::now());
    layout.models.put("canary", bundle.into()).await?;
    for t in tasks {
        let _ = tokio::time::timeout(run_for + Duration::from_secs(30), t).await;
    }
    let mut s = layout.js.get_stream(names::SAMPLES_STREAM).await?;
    let received = s.info().await?.state.messages;
    let delivered = delivered.lock().await.clone();
    let swapped = swapped.lock().await.clone();
    Ok(FleetBench {
        sensors,
        secs,
        rate_per_sensor: rate,
        sent: sent.load(Ordering::Relaxed),
        received,
        delivery: percentiles(delivered),
        swapped: swapped.len(),
        propagation: percentiles(swapped),
    })
}
