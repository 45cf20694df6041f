//! Benchmark of the rule automata: records per second through every automaton on replayed
//! captures, and the process's peak resident memory.
//!
//! The captures are replayed once into memory (replay cost is not measured), then fed to a
//! fresh [`Engine`] per file, as `safelink analyze` does, repeatedly until at least
//! `min_secs` have passed. Invocation: `safelink analyze --bench-detect [--bench-secs S] PCAP...`
//! prints one JSON object (see [`BenchReport`]).
use std::{path::PathBuf, time::Instant};

use serde::Serialize;

use super::dfa::{DfaConfig, Engine};
use crate::{
    config::FlowTimeouts,
    record::Record,
    replay::{ReplayError, replay_file},
};

/// Result of one benchmark run.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub files: usize,
    /// Records per pass over all files.
    pub records: u64,
    pub passes: u64,
    pub seconds: f64,
    pub records_per_sec: f64,
    /// Alerts raised per pass.
    pub alerts: u64,
    /// Peak resident set size of the process (VmHWM), KiB; None where /proc is missing.
    pub peak_rss_kib: Option<u64>,
}

/// Peak resident set size of this process in KiB (`VmHWM` of `/proc/self/status`).
pub fn peak_rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Replays `files`, then runs the automata over their records for at least `min_secs`.
pub fn run(
    files: &[PathBuf],
    timeouts: &FlowTimeouts,
    cfg: &DfaConfig,
    min_secs: f64,
) -> Result<BenchReport, BenchError> {
    let mut inputs: Vec<Vec<Record>> = Vec::with_capacity(files.len());
    for f in files {
        let mut v = Vec::new();
        replay_file(f, timeouts, |_, _| {}, |r| v.push(r))?;
        inputs.push(v);
    }
    let records: u64 = inputs.iter().map(|v| v.len() as u64).sum();
    let mut passes = 0u64;
    let mut out = Vec::new();
    let t0 = Instant::now();
    let alerts = loop {
        let mut alerts = 0;
        for recs in &inputs {
            let mut e = Engine::new(cfg.clone())?;
            for r in recs {
                e.observe_into(r, &mut out);
            }
            out.extend(e.finish());
            alerts += e.stats().alerts_raised;
            out.clear();
        }
        passes += 1;
        if t0.elapsed().as_secs_f64() >= min_secs {
            break alerts;
        }
    };
    let seconds = t0.elapsed().as_secs_f64();
    Ok(BenchReport {
        files: files.len(),
        records,
        passes,
        seconds,
        records_per_sec: (records * passes) as f64 / seconds.max(1e-9),
        alerts,
        peak_rss_kib: peak_rss_kib(),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Replay(#[from] ReplayError),
    #[error(transparent)]
    Config(#[from] super::dfa::DetectError),
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_peak_rss() {
        assert!(super::peak_rss_kib().is_some_and(|k| k > 0));
    }
}
