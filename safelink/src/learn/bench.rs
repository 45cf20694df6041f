//! `cargo xtask bench learn`: one whole training cycle on `max_history` (10 000) real samples
//! — collect, label, back up, train, validate, export, swap — timed per step, and detection
//! throughput and latency (rule automata + ANN scoring over replayed records) with and
//! without cycles running back to back on another thread.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Context as _;
use serde::Serialize;

use super::config::LearningParams;
use super::cycle::{Golden, StepTimes};
use super::ingest::ingest;
use super::worker::Learner;
use crate::ann::{AnnConfig, AnnDetector, ModelHandle};
use crate::config::FlowTimeouts;
use crate::detect::dfa::{DfaConfig, Engine};
use crate::record::Record;
use crate::replay::replay_file;
use crate::store::Store;

/// Detection figures of one run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DetectRun {
    pub records: u64,
    pub seconds: f64,
    pub records_per_sec: f64,
    /// Per 1024-record chunk through the automata and the ANN, microseconds.
    pub chunk_p50_us: f64,
    pub chunk_p99_us: f64,
    pub cycles_during: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct LearnBench {
    pub samples: usize,
    pub cycle_outcome: String,
    pub cycle: StepTimes,
    pub detect_idle: DetectRun,
    pub detect_while_training: DetectRun,
    /// `1 − while_training / idle` throughput.
    pub slowdown: f64,
}

fn detect_for(
    records: &[Record],
    handle: &ModelHandle,
    dfa: &DfaConfig,
    secs: f64,
    cycles: &AtomicU64,
) -> anyhow::Result<DetectRun> {
    let c0 = cycles.load(Ordering::SeqCst);
    let mut chunks = Vec::new();
    let mut n = 0u64;
    let mut out = Vec::new();
    let t0 = Instant::now();
    while t0.elapsed().as_secs_f64() < secs {
        let mut engine = Engine::new(dfa.clone())?;
        let mut ann = AnnDetector::new(handle.clone(), AnnConfig::default());
        for chunk in records.chunks(1024) {
            let t = Instant::now();
            for r in chunk {
                engine.observe_into(r, &mut out);
                ann.observe_into(r, &mut out);
            }
            out.clear();
            chunks.push(t.elapsed().as_secs_f64() * 1e6);
            n += chunk.len() as u64;
        }
        out.extend(engine.finish());
        out.extend(ann.finish());
        out.clear();
    }
    let seconds = t0.elapsed().as_secs_f64();
    chunks.sort_by(f64::total_cmp);
    let q = |p: f64| chunks[((chunks.len() - 1) as f64 * p) as usize];
    Ok(DetectRun {
        records: n,
        seconds,
        records_per_sec: n as f64 / seconds,
        chunk_p50_us: q(0.5),
        chunk_p99_us: q(0.99),
        cycles_during: cycles.load(Ordering::SeqCst) - c0,
    })
}

/// Runs the benchmark in `work` (emptied first) over the captures of `pcaps`.
pub fn run(
    pcaps: &Path,
    base_model: &Path,
    golden: Option<Golden>,
    work: &Path,
    secs: f64,
) -> anyhow::Result<LearnBench> {
    let _ = std::fs::remove_dir_all(work);
    std::fs::create_dir_all(work)?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(pcaps)
        .with_context(|| format!("reading {}", pcaps.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"))
        .collect();
    files.sort();
    let store = Store::open(work.join("store"))?;
    // Every flow of the captures as a sample (no caps), then the newest 10 000 are the history.
    let params = LearningParams {
        attack_group_cap: usize::MAX,
        benign_reservoir: usize::MAX,
        ..LearningParams::default()
    };
    let learner = Learner::open(
        store.clone(),
        work,
        params.clone(),
        golden,
        Some(base_model),
        false,
    )?;
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    ingest(
        &refs,
        &crate::config::Config::default(),
        &crate::privacy::Policy::default(),
        &learner.handle(),
        &params,
        &store,
    )?;
    store.prune_samples(params.max_history)?;
    let samples = store.sample_counts(0)?.0 as usize;
    let rep = learner.run_cycle_here("bench")?;

    let (timeouts, dfa) = (FlowTimeouts::default(), DfaConfig::default());
    let mut records = Vec::new();
    for f in &files {
        replay_file(f, &timeouts, |_, _| {}, |r| records.push(r))?;
    }
    let handle = learner.handle();
    let cycles = Arc::new(AtomicU64::new(0));
    // Cycles back to back on another thread (as the daemon's learner: background priority,
    // the configured duty) while `train` is set; each gets 500 fresh samples (copies of stored
    // ones) so it has something new to train on. Idle and training windows alternate, four
    // of each, so drift of the machine affects both alike; the medians are reported.
    let stop = Arc::new(AtomicBool::new(false));
    let train = Arc::new(AtomicBool::new(false));
    let bg = {
        let (stop, train, cycles, learner, store) = (
            stop.clone(),
            train.clone(),
            cycles.clone(),
            learner.clone(),
            store.clone(),
        );
        std::thread::spawn(move || -> anyhow::Result<()> {
            crate::ann::train::single_thread();
            super::background_priority();
            while !stop.load(Ordering::SeqCst) {
                if !train.load(Ordering::SeqCst) {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    continue;
                }
                let fresh = store.samples_upto(u64::MAX, 500, |_| true)?;
                store.insert_samples(&fresh)?;
                learner.run_cycle_here("bench")?;
                cycles.fetch_add(1, Ordering::SeqCst);
            }
            Ok(())
        })
    };
    let window = secs / 4.0;
    let (mut idle_runs, mut busy_runs) = (Vec::new(), Vec::new());
    for _ in 0..4 {
        train.store(false, Ordering::SeqCst);
        while learner.is_training() {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        idle_runs.push(detect_for(&records, &handle, &dfa, window, &cycles)?);
        train.store(true, Ordering::SeqCst);
        busy_runs.push(detect_for(&records, &handle, &dfa, window, &cycles)?);
    }
    stop.store(true, Ordering::SeqCst);
    bg.join()
        .map_err(|_| anyhow::anyhow!("training thread panicked"))??;
    learner.shutdown();
    let median = |mut v: Vec<DetectRun>| -> DetectRun {
        let cycles_during = v.iter().map(|r| r.cycles_during).sum();
        v.sort_by(|a, b| a.records_per_sec.total_cmp(&b.records_per_sec));
        let mut m = v[v.len() / 2].clone();
        m.cycles_during = cycles_during;
        m
    };
    let (idle, busy) = (median(idle_runs), median(busy_runs));
    Ok(LearnBench {
        samples,
        cycle_outcome: rep.record.outcome.as_str().into(),
        cycle: rep.times,
        slowdown: 1.0 - busy.records_per_sec / idle.records_per_sec,
        detect_idle: idle,
        detect_while_training: busy,
    })
}
