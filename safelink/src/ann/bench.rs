//! Benchmark behind `safelink model bench`: on one thread, for batch sizes 1, 64 and 1024,
//! the whole scoring path (flow records → feature vectors → input tensor → tract → scores,
//! i.e. [`BatchScorer::score_flows`]) side by side with bare tract on the same model (a
//! prepared input tensor run through the same reused tract state).
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use serde::Serialize;

use super::batch::BatchScorer;
use super::features::{N_FEATURES, extract_into};
use super::model::{Scorer, input_tensor};
use super::swap::ModelHandle;
use crate::record::FlowRecord;

/// One measured row.
#[derive(Clone, Debug, Serialize)]
pub struct BenchRow {
    pub path: &'static str,
    pub batch: usize,
    pub batches: u64,
    pub flows_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Process CPU time / wall time during the row (1.0 = one core busy).
    pub cpu_per_wall: f64,
}

/// Both paths at one batch size.
#[derive(Clone, Debug, Serialize)]
pub struct BenchPair {
    pub bare: BenchRow,
    pub whole: BenchRow,
    /// whole flows/s ÷ bare flows/s.
    pub ratio: f64,
}

/// Process CPU seconds (user + system) from `/proc/self/stat`.
fn cpu_secs() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = s.rsplit_once(')').map_or("", |r| r.1);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e6
}

fn measure(
    path: &'static str,
    batch: usize,
    secs: f64,
    mut f: impl FnMut(usize) -> Result<()>,
) -> Result<BenchRow> {
    for i in 0..20 {
        f(i)?;
    }
    let mut lat = Vec::with_capacity(1 << 16);
    let (c0, t0) = (cpu_secs(), Instant::now());
    let mut i = 0usize;
    while t0.elapsed().as_secs_f64() < secs {
        let t = Instant::now();
        f(i)?;
        lat.push(t.elapsed());
        i += 1;
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_secs() - c0;
    lat.sort_unstable();
    Ok(BenchRow {
        path,
        batch,
        batches: lat.len() as u64,
        flows_per_sec: (lat.len() * batch) as f64 / wall,
        p50_us: pct(&lat, 0.5),
        p99_us: pct(&lat, 0.99),
        cpu_per_wall: cpu / wall,
    })
}

/// Runs both paths at each batch size for `secs` seconds each, over `flows` (cycled).
pub fn run(
    handle: &ModelHandle,
    flows: &[FlowRecord],
    batches: &[usize],
    secs: f64,
) -> Result<Vec<BenchPair>> {
    ensure!(!flows.is_empty(), "no flow records to benchmark with");
    let max = batches.iter().copied().max().unwrap_or(1);
    // A pool of flows at least as large as the largest batch, so every batch is distinct data.
    let pool: Vec<FlowRecord> = flows
        .iter()
        .cycle()
        .take(max.max(flows.len()))
        .cloned()
        .collect();
    let mut out = Vec::new();
    for &b in batches {
        // Bare tract: the feature matrix of the first b flows, prepared once.
        let mut x = vec![0f32; b * N_FEATURES];
        for (row, f) in x.chunks_exact_mut(N_FEATURES).zip(&pool) {
            extract_into(f, row);
        }
        let input = input_tensor(&x)?.into_tvalue();
        let mut scorer = Scorer::new(handle.current())?;
        let bare = measure("bare tract", b, secs, |_| {
            let o = scorer.run_value(&input)?;
            std::hint::black_box(&o);
            Ok(())
        })?;
        // Whole path: records → features → tensor → tract → Vec<f32>.
        let mut bs = BatchScorer::new(handle.clone());
        let windows = pool.len().saturating_sub(b) + 1;
        let whole = measure("whole path", b, secs, |i| {
            let start = (i * b) % windows;
            let s = bs.score_flows(pool[start..start + b].iter())?;
            std::hint::black_box(&s.scores);
            Ok(())
        })?;
        out.push(BenchPair {
            ratio: whole.flows_per_sec / bare.flows_per_sec,
            bare,
            whole,
        });
    }
    Ok(out)
}

use tract_onnx::prelude::IntoTValue as _;
