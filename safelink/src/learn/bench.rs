//! `cargo xtask bench learn`: one whole training cycle on `max_history` (10 000) samples —
//! collect, label, back up, train, validate, export, swap — timed per step, and detection
//! throughput and latency (the pipeline: rule automata + ANN scoring over replayed records)
//! with and without cycles running back to back on another thread.
//!
//! The samples are made as the sensor makes them: the captures go through `learn ingest` with
//! the default labelling (rule-labelled attacks capped per group, low-scored flows benign,
//! the benign reservoir), and what that yields is repeated, in the same attack/benign
//! proportion, up to `max_history`. The timed cycle must deploy, and so must every cycle of
//! the training window: a benchmark of a failing cycle is an error, not a figure.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Context as _;
use serde::Serialize;

use super::config::LearningParams;
use super::cycle::{Golden, StepTimes};
use super::history::Outcome;
use super::ingest::ingest;
use super::sample::TrainingSample;
use super::worker::Learner;
use crate::ann::ModelHandle;
use crate::config::Config;
use crate::pipeline::{Pipeline, Stages};
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

/// The sample set the cycle trained on.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SampleMix {
    /// Samples the captures yielded through `learn ingest` (before repetition).
    pub collected: usize,
    pub attack: usize,
    pub benign: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct LearnBench {
    pub samples: usize,
    pub mix: SampleMix,
    pub cycle_outcome: String,
    pub cycle: StepTimes,
    pub detect_idle: DetectRun,
    pub detect_while_training: DetectRun,
    /// Cycles run (and deployed) during the training windows.
    pub cycles_deployed_during: u64,
    /// `1 − while_training / idle` throughput.
    pub slowdown: f64,
}

fn detect_for(
    records: &[Record],
    handle: &ModelHandle,
    cfg: &Config,
    secs: f64,
    cycles: &AtomicU64,
) -> anyhow::Result<DetectRun> {
    let c0 = cycles.load(Ordering::SeqCst);
    let mut chunks = Vec::new();
    let mut n = 0u64;
    let t0 = Instant::now();
    while t0.elapsed().as_secs_f64() < secs {
        let mut p = Pipeline::new(
            cfg,
            Stages {
                dfa: true,
                model: Some(handle.clone()),
                ..Stages::default()
            },
        )?;
        for chunk in records.chunks(1024) {
            let t = Instant::now();
            for r in chunk {
                p.feed(r);
            }
            chunks.push(t.elapsed().as_secs_f64() * 1e6);
            n += chunk.len() as u64;
        }
        p.finish();
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
    let params = LearningParams::default();
    // The pipeline as `run --ann` has it: automata and ANN alerts.
    let mut cfg = Config::default();
    cfg.ann.enabled = true;
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
        &cfg,
        &crate::privacy::Policy::default(),
        &learner.handle(),
        &params,
        &store,
    )?;
    let mix = fill_history(&store, params.max_history)?;
    let samples = store.sample_counts(0)?.0 as usize;
    let rep = learner.run_cycle_here("bench")?;
    if rep.record.outcome != Outcome::Deployed {
        anyhow::bail!(
            "the timed cycle did not deploy ({}: {}): its times measure nothing",
            rep.record.outcome.as_str(),
            rep.record.reason.as_deref().unwrap_or("no reason recorded")
        );
    }

    let timeouts = cfg.flows.timeouts();
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
                let r = learner.run_cycle_here("bench")?;
                if r.record.outcome != Outcome::Deployed {
                    anyhow::bail!(
                        "a cycle of the training window did not deploy ({}: {}): no slowdown \
                         is reported against failing cycles",
                        r.record.outcome.as_str(),
                        r.record.reason.as_deref().unwrap_or("no reason recorded")
                    );
                }
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
        idle_runs.push(detect_for(&records, &handle, &cfg, window, &cycles)?);
        train.store(true, Ordering::SeqCst);
        busy_runs.push(detect_for(&records, &handle, &cfg, window, &cycles)?);
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
    let cycles_deployed_during = cycles.load(Ordering::SeqCst);
    if cycles_deployed_during == 0 {
        anyhow::bail!("no cycle ran during the training windows: no slowdown to report");
    }
    Ok(LearnBench {
        samples,
        mix,
        cycles_deployed_during,
        cycle_outcome: rep.record.outcome.as_str().into(),
        cycle: rep.times,
        slowdown: 1.0 - busy.records_per_sec / idle.records_per_sec,
        detect_idle: idle,
        detect_while_training: busy,
    })
}

/// Repeats the collected samples, in their attack/benign proportion, until the history holds
/// `max_history`. Fails when the captures gave no benign or no attack sample.
fn fill_history(store: &Store, max_history: usize) -> anyhow::Result<SampleMix> {
    let collected = store.samples_upto(u64::MAX, max_history, |_| true)?;
    let attack = collected.iter().filter(|s| s.is_attack()).count();
    let mix = SampleMix {
        collected: collected.len(),
        attack,
        benign: collected.len() - attack,
    };
    if mix.attack == 0 || mix.benign == 0 {
        anyhow::bail!(
            "the captures gave {} attack and {} benign samples: a cycle needs both",
            mix.attack,
            mix.benign
        );
    }
    let mut have = collected.len();
    while have < max_history {
        let take = (max_history - have).min(collected.len());
        // Evenly spaced over the collected set, so a partial copy keeps the proportion too.
        let part: Vec<TrainingSample> = (0..take)
            .map(|i| collected[i * collected.len() / take].clone())
            .collect();
        store.insert_samples(&part)?;
        have += take;
    }
    Ok(mix)
}
