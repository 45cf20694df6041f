//! `cargo xtask bench ...`: figures, not pass/fail.
//!
//! - `xdp`: kernel ns/packet of the XDP program via `BPF_PROG_TEST_RUN` (root).
//! - `replay`: packets/s of `safelink analyze --flows` on a ~2 M-packet file (all shared
//!   captures concatenated 60 times with `mergecap -a`) and of nfstream on the same file.
//! - `detect`: records/s through all automata and peak RSS.
//! - `ann`: ANN scoring throughput and latency, whole path vs bare tract.
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, bail};
use clap::Subcommand;

use crate::{build, root, run};

#[derive(Subcommand)]
pub enum What {
    /// ns/packet of the XDP program (BPF_PROG_TEST_RUN, 1 M repeats per scenario).
    Xdp {
        #[arg(long, default_value_t = 1_000_000)]
        repeat: u32,
    },
    /// packets/s of `safelink analyze --flows` vs nfstream on the same ~2 M-packet file.
    Replay {
        /// How many times the shared captures are concatenated.
        #[arg(long, default_value_t = 60)]
        copies: usize,
        /// Directory of captures (default: tests/pcaps).
        #[arg(long)]
        pcaps: Option<PathBuf>,
        /// Skip nfstream (no Python venv).
        #[arg(long)]
        no_nfstream: bool,
    },
    /// records/s through all DFA automata on the captures, and peak RSS.
    Detect {
        #[arg(long)]
        pcaps: Option<PathBuf>,
    },
    /// flows/s and latency of ANN scoring (whole path vs bare tract) at batch 1, 64, 1024.
    Ann {
        #[arg(long)]
        pcaps: Option<PathBuf>,
    },
    /// One continuous-learning cycle on 10 000 samples (per step), and detection throughput
    /// and latency with and without cycles running.
    Learn {
        #[arg(long)]
        pcaps: Option<PathBuf>,
        /// Seconds of detection per run.
        #[arg(long, default_value_t = 5.0)]
        secs: f64,
    },
}

fn pcap_dir(p: Option<PathBuf>) -> PathBuf {
    p.unwrap_or_else(|| root().join("tests/pcaps"))
}

fn captures(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
        .collect();
    v.sort();
    if v.is_empty() {
        bail!("no captures in {}", dir.display());
    }
    Ok(v)
}

/// Packets in a capture file according to capinfos (independent of our reader).
fn capinfos_packets(p: &Path) -> anyhow::Result<u64> {
    let out = Command::new("capinfos")
        .args(["-M", "-c", "-T"])
        .arg(p)
        .output()?;
    let s = String::from_utf8_lossy(&out.stdout);
    s.lines()
        .nth(1)
        .and_then(|l| l.split('\t').nth(1))
        .and_then(|n| n.trim().parse().ok())
        .with_context(|| format!("capinfos output for {}: {s}", p.display()))
}

pub fn run_bench(what: What) -> anyhow::Result<()> {
    match what {
        What::Xdp { repeat } => {
            let bin = build()?;
            run(Command::new(bin).args(["bench", "xdp", "--repeat", &repeat.to_string()]))
        }
        What::Replay {
            copies,
            pcaps,
            no_nfstream,
        } => replay(copies, &pcap_dir(pcaps), no_nfstream),
        What::Detect { pcaps } => {
            let bin = build()?;
            run(Command::new(bin)
                .args(["analyze", "--bench-detect"])
                .args(captures(&pcap_dir(pcaps))?))
        }
        What::Ann { pcaps } => {
            let bin = build()?;
            run(Command::new(bin)
                .args(["model", "bench", "--model", "models/base.onnx", "--pcaps"])
                .arg(pcap_dir(pcaps)))
        }
        What::Learn { pcaps, secs } => {
            let bin = build()?;
            run(Command::new(bin)
                .args([
                    "learn",
                    "--config",
                    "/dev/null",
                    "bench",
                    "--secs",
                    &secs.to_string(),
                ])
                .arg("--pcaps")
                .arg(pcap_dir(pcaps))
                .env("RAYON_NUM_THREADS", "1"))
        }
    }
}

fn replay(copies: usize, dir: &Path, no_nfstream: bool) -> anyhow::Result<()> {
    let bin = build()?;
    let work = root().join("target/bench");
    std::fs::create_dir_all(&work)?;
    // One pcapng file: every capture once, then that file `copies` times.
    let once = work.join("all-once.pcapng");
    let big = work.join(format!("all-x{copies}.pcapng"));
    if !big.exists() {
        run(Command::new("mergecap")
            .args(["-a", "-F", "pcapng", "-w"])
            .arg(&once)
            .args(captures(dir)?))?;
        let mut c = Command::new("mergecap");
        c.args(["-a", "-F", "pcapng", "-w"]).arg(&big);
        for _ in 0..copies {
            c.arg(&once);
        }
        run(&mut c)?;
    }
    let packets = capinfos_packets(&big)?;
    println!("file: {} ({packets} packets)", big.display());

    let t0 = Instant::now();
    let st = Command::new(&bin)
        .args(["analyze", "--flows", "--no-dfa"])
        .arg(&big)
        .stdout(Stdio::null())
        .status()?;
    let ours = t0.elapsed().as_secs_f64();
    if !st.success() {
        bail!("safelink analyze failed");
    }
    let ours_pps = packets as f64 / ours;
    println!(
        "safelink analyze --flows --no-dfa: {ours:.2} s, {:.2} M packets/s",
        ours_pps / 1e6
    );

    if no_nfstream {
        return Ok(());
    }
    let venv = work.join("nfstream-venv");
    let py = venv.join("bin/python3");
    if !py.exists() {
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
        run(Command::new(venv.join("bin/pip")).args(["install", "-q", "nfstream"]))?;
    }
    let script = r#"
import sys, time
from nfstream import NFStreamer
t0 = time.time()
n = 0
for f in NFStreamer(source=sys.argv[1], statistical_analysis=True, n_meters=1):
    n += 1
print(f"{time.time() - t0:.3f} {n}")
"#;
    let out = Command::new(&py).args(["-c", script]).arg(&big).output()?;
    if !out.status.success() {
        bail!("nfstream failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let s = String::from_utf8_lossy(&out.stdout);
    let mut it = s.split_whitespace();
    let secs: f64 = it.next().context("nfstream output")?.parse()?;
    let flows: u64 = it.next().context("nfstream output")?.parse()?;
    let nf_pps = packets as f64 / secs;
    println!(
        "nfstream (statistical_analysis=True, n_meters=1): {secs:.2} s, {:.2} M packets/s, {flows} flows",
        nf_pps / 1e6
    );
    println!("ratio safelink/nfstream: {:.1}x", ours_pps / nf_pps);
    Ok(())
}
