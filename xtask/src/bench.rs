//! `cargo xtask bench ...`: figures with their targets beside them, and a last line `target
//! met` / `target missed` (misses are findings; the exit status is non-zero only when the
//! measured path itself fails). `bench smoke` runs every benchmark in a tiny configuration
//! (`cargo xtask test` does, so a broken benchmark fails CI).
//!
//! - `xdp`: kernel ns/packet of the XDP program via `BPF_PROG_TEST_RUN` (root).
//! - `replay`: packets/s of `safelink analyze --flows` on a ~2 M-packet file (all shared
//!   captures one after another in time, 60 times over) and of nfstream on the same file.
//! - `detect`: records/s through all automata and peak RSS.
//! - `ann`: ANN scoring throughput and latency, whole path vs bare tract.
//! - `learn`: one learning cycle, and detection throughput while cycles run.
//! - `veth`: iperf3 across a veth pair without and with the sensor per attach mode (root;
//!   [`crate::veth`]).
//! - `fleet`: simulated sensors against a nats-server of its own: received = sent, and the
//!   propagation of a signed model to every sensor (p50/p99).
//! - `soak`: the captures replayed in a loop through the live daemon (root; [`crate::soak`]),
//!   its RSS sampled over time: flat or not.
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, bail};
use clap::Subcommand;

use crate::target::{Bound, Targets};
use crate::{build, root, run};

// The targets, written once.
/// XDP ns/packet per scenario (BPF_PROG_TEST_RUN). An existing flow is both an established
/// one (in `FLOWS`) and one only ever seen one way (in `EMBRYOS`).
const XDP_NS: [(&str, f64); 5] = [
    ("established_tcp_flow", 50.0),
    ("one_way_flow", 50.0),
    ("new_flow_syn", 250.0),
    ("arp", 60.0),
    ("malformed", 30.0),
];
/// An established flow's ns/packet over the toolchain probe's counter program, same run.
const XDP_OVER_COUNTER: f64 = 3.5;
/// `safelink analyze --flows --no-dfa` packets/s over nfstream's on the same file.
const REPLAY_VS_NFSTREAM: f64 = 12.0;
/// Records/s through every automaton, and peak RSS.
const DETECT_RECORDS_PER_SEC: f64 = 1.0e6;
const DETECT_PEAK_RSS_MIB: f64 = 256.0;
/// ANN whole path (record → features → batch → tract) over bare tract, every batch size.
const ANN_WHOLE_OVER_BARE: f64 = 0.90;
/// A deployed learning cycle on 10 000 samples, and detection slowdown while cycles run.
const LEARN_CYCLE_SECS: f64 = 0.5;
const LEARN_SLOWDOWN: f64 = 0.10;
/// Detector key tables: ns per new source key with every table full over ns per key while
/// they fill (amortised O(1): a full table must not make a new key dearer).
const KEYS_FULL_OVER_FILLING: f64 = 2.0;
/// Fleet: propagation p99 (publication → every sensor verified and swapped), by fleet size.
const FLEET_P99_MS_50: f64 = 250.0;
const FLEET_P99_MS_500: f64 = 1000.0;
/// Soak: daemon RSS growth from the end of the first quarter of the run to its end.
pub const SOAK_RSS_GROWTH_PCT: f64 = 10.0;
pub const SOAK_RSS_GROWTH_MIB: f64 = 16.0;

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
        /// Least seconds of detection.
        #[arg(long, default_value_t = 3.0)]
        secs: f64,
    },
    /// flows/s and latency of ANN scoring (whole path vs bare tract) at batch 1, 64, 1024.
    Ann {
        #[arg(long)]
        pcaps: Option<PathBuf>,
        /// Seconds per row.
        #[arg(long, default_value_t = 2.0)]
        secs: f64,
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
    /// The shared captures replayed in a loop (tcpreplay) into the live daemon on a veth
    /// between two namespaces of its own for `--secs`, RSS and counters sampled (root).
    Soak {
        /// Seconds of replay.
        #[arg(long, default_value_t = 120)]
        secs: u64,
        /// tcpreplay rate in Mbit/s; 0 = `--topspeed`.
        #[arg(long, default_value_t = 100.0)]
        mbps: f64,
        /// tcpreplay `--unique-ip`: new addresses every loop, so flows churn (created, expired)
        /// instead of the same flows running on.
        #[arg(long)]
        unique_ip: bool,
        #[arg(long)]
        pcaps: Option<PathBuf>,
    },
    /// iperf3 TCP and UDP (64 B, 1400 B) across a veth pair between two namespaces of its own,
    /// without and with the sensor in each attach mode, same run; sensor CPU share (root).
    Veth {
        /// Seconds per iperf3 run.
        #[arg(long, default_value_t = 5)]
        secs: u32,
    },
    /// ns per new source key of the rule engine while its tables fill and once they are full.
    Keys,
    /// Fleet mode against its own nats-server: N simulated sensors publish samples at a fixed
    /// rate (received = sent?) and verify and swap one signed model (propagation p50/p99).
    Fleet {
        #[arg(long, default_value_t = 50)]
        sensors: usize,
        /// Seconds of publishing (the model is published halfway).
        #[arg(long, default_value_t = 6.0)]
        secs: f64,
        /// Samples per second per sensor.
        #[arg(long, default_value_t = 20.0)]
        rate: f64,
    },
    /// Every benchmark in a tiny configuration (XDP and soak only as root): fails when one
    /// cannot run.
    Smoke,
}

fn pcap_dir(p: Option<PathBuf>) -> PathBuf {
    p.unwrap_or_else(|| root().join("tests/pcaps"))
}

pub fn captures(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
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

/// Runs `cmd` in the workspace root with stdout captured (and echoed) and stderr shown;
/// fails when it fails.
fn capture(cmd: &mut Command) -> anyhow::Result<String> {
    cmd.current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let out = cmd.output().with_context(|| format!("spawning {cmd:?}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    print!("{text}");
    if !out.status.success() {
        bail!("{cmd:?} failed with {}", out.status);
    }
    Ok(text)
}

fn json(text: &str) -> anyhow::Result<serde_json::Value> {
    serde_json::from_str(text.trim()).with_context(|| format!("not the expected JSON: {text}"))
}

fn num(v: &serde_json::Value, path: &[&str]) -> anyhow::Result<f64> {
    let mut v = v;
    for p in path {
        v = &v[*p];
    }
    v.as_f64()
        .with_context(|| format!("no number at {}", path.join(".")))
}

pub fn run_bench(what: What) -> anyhow::Result<()> {
    let t = match what {
        What::Xdp { repeat } => xdp(repeat)?,
        What::Replay {
            copies,
            pcaps,
            no_nfstream,
        } => replay(copies, &pcap_dir(pcaps), no_nfstream)?,
        What::Detect { pcaps, secs } => detect(&pcap_dir(pcaps), secs)?,
        What::Ann { pcaps, secs } => ann(&pcap_dir(pcaps), secs)?,
        What::Learn { pcaps, secs } => learn(&pcap_dir(pcaps), secs)?,
        What::Soak {
            secs,
            mbps,
            unique_ip,
            pcaps,
        } => crate::soak::soak(&captures(&pcap_dir(pcaps))?, secs, mbps, unique_ip)?,
        What::Keys => keys()?,
        What::Veth { secs } => crate::veth::veth(secs)?,
        What::Fleet {
            sensors,
            secs,
            rate,
        } => fleet(sensors, secs, rate)?,
        What::Smoke => return smoke(),
    };
    t.print();
    Ok(())
}

/// Every benchmark, tiny: each must run to its figures.
fn smoke() -> anyhow::Result<()> {
    let dir = pcap_dir(None);
    let mut runs: Vec<(&str, anyhow::Result<Targets>)> = vec![
        ("replay", replay(1, &dir, true)),
        ("detect", detect(&dir, 0.2)),
        ("ann", ann(&dir, 0.2)),
        ("learn", learn(&dir, 0.4)),
        ("keys", keys()),
        ("fleet", fleet(5, 2.0, 10.0)),
    ];
    if crate::is_root() {
        runs.push(("xdp", xdp(1000)));
        runs.push(("soak", crate::soak::soak(&captures(&dir)?, 8, 100.0, false)));
    } else {
        eprintln!(
            "xtask: not root: bench xdp (BPF_PROG_TEST_RUN) and bench soak (namespaces) left out of the smoke run"
        );
    }
    let mut failed = Vec::new();
    for (name, r) in runs {
        match r {
            Ok(t) => println!("bench {name}: ran{}", t.render().replace('\n', "\n  ")),
            Err(e) => failed.push(format!("bench {name}: {e:#}")),
        }
    }
    if !failed.is_empty() {
        bail!("{}", failed.join("; "));
    }
    Ok(())
}

/// A `nats-server -js` of the benchmark's own (127.0.0.1, a free port, a store under
/// target/bench), killed on drop.
struct Nats(std::process::Child, PathBuf);

impl Nats {
    fn start() -> anyhow::Result<(Nats, String)> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = root().join(format!("target/bench/nats-{port}"));
        std::fs::create_dir_all(&dir)?;
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("nats-server (./setup.sh --test installs it)")?;
        let n = Nats(child, dir);
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if t0.elapsed().as_secs() > 10 {
                bail!("nats-server did not start");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Ok((n, format!("nats://127.0.0.1:{port}")))
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn fleet(sensors: usize, secs: f64, rate: f64) -> anyhow::Result<Targets> {
    let bin = build()?;
    let (_nats, url) = Nats::start()?;
    let v = json(&capture(
        Command::new(bin)
            .args(["bench", "fleet", "--url", &url, "--sensors"])
            .arg(sensors.to_string())
            .arg("--secs")
            .arg(secs.to_string())
            .arg("--rate")
            .arg(rate.to_string()),
    )?)?;
    let mut t = Targets::default();
    let (sent, received) = (num(&v, &["sent"])?, num(&v, &["received"])?);
    t.check(
        &format!("received / sent ({received} / {sent})"),
        received / sent.max(1.0),
        "",
        Bound::AtLeast(1.0),
    );
    t.check(
        &format!("sensors swapped, of {sensors}"),
        num(&v, &["swapped"])?,
        "",
        Bound::AtLeast(sensors as f64),
    );
    let p99_target = if sensors <= 50 {
        FLEET_P99_MS_50
    } else {
        FLEET_P99_MS_500
    };
    println!(
        "propagation (publication → verified and swapped): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; delivery alone: p50 {:.1} ms, p99 {:.1} ms",
        num(&v, &["propagation", "p50_ms"])?,
        num(&v, &["propagation", "p99_ms"])?,
        num(&v, &["propagation", "max_ms"])?,
        num(&v, &["delivery", "p50_ms"])?,
        num(&v, &["delivery", "p99_ms"])?
    );
    t.check(
        &format!("propagation p99, {sensors} sensors"),
        num(&v, &["propagation", "p99_ms"])?,
        "ms",
        Bound::AtMost(p99_target),
    );
    Ok(t)
}

fn keys() -> anyhow::Result<Targets> {
    let bin = build()?;
    let out = capture(Command::new(bin).args(["bench", "keys"]))?;
    let ns = |phase: &str| {
        out.lines()
            .find_map(|l| {
                let mut f = l.split(',');
                (f.next() == Some(phase))
                    .then(|| f.nth(1).and_then(|v| v.parse::<f64>().ok()))
                    .flatten()
            })
            .with_context(|| format!("no figure for {phase}"))
    };
    let (filling, full) = (ns("filling")?, ns("full")?);
    let mut t = Targets::default();
    t.check(
        "ns per new key, tables full / filling",
        full / filling,
        "x",
        Bound::AtMost(KEYS_FULL_OVER_FILLING),
    );
    Ok(t)
}

fn xdp(repeat: u32) -> anyhow::Result<Targets> {
    let bin = build()?;
    let out = capture(Command::new(bin).args(["bench", "xdp", "--repeat", &repeat.to_string()]))?;
    let ns = |name: &str| {
        out.lines()
            .find_map(|l| {
                let mut f = l.split(',');
                (f.next() == Some(name))
                    .then(|| f.nth(1).and_then(|v| v.parse::<f64>().ok()))
                    .flatten()
            })
            .with_context(|| format!("no figure for {name}"))
    };
    let mut t = Targets::default();
    for (name, bound) in XDP_NS {
        t.check(name, ns(name)?, "ns/packet", Bound::AtMost(bound));
    }
    t.check(
        "established_tcp_flow / counter_probe",
        ns("established_tcp_flow")? / ns("counter_probe")?,
        "x",
        Bound::AtMost(XDP_OVER_COUNTER),
    );
    Ok(t)
}

fn detect(dir: &Path, secs: f64) -> anyhow::Result<Targets> {
    let bin = build()?;
    let v = json(&capture(
        Command::new(bin)
            .args([
                "analyze",
                "--bench-detect",
                "--bench-secs",
                &secs.to_string(),
            ])
            .args(captures(dir)?),
    )?)?;
    let mut t = Targets::default();
    t.check(
        "automata",
        num(&v, &["records_per_sec"])?,
        "records/s",
        Bound::AtLeast(DETECT_RECORDS_PER_SEC),
    );
    t.check(
        "peak RSS",
        num(&v, &["peak_rss_kib"])? / 1024.0,
        "MiB",
        Bound::AtMost(DETECT_PEAK_RSS_MIB),
    );
    Ok(t)
}

fn ann(dir: &Path, secs: f64) -> anyhow::Result<Targets> {
    let bin = build()?;
    let rows = json(&capture(
        Command::new(bin)
            .args(["model", "bench", "--json", "--model", "models/base.onnx"])
            .args(["--secs", &secs.to_string(), "--pcaps"])
            .arg(dir),
    )?)?;
    let rows = rows.as_array().context("model bench --json: not a list")?;
    let mut t = Targets::default();
    for r in rows {
        let batch = num(r, &["bare", "batch"])?;
        t.check(
            &format!("whole/bare, batch {batch}"),
            num(r, &["ratio"])?,
            "x",
            Bound::AtLeast(ANN_WHOLE_OVER_BARE),
        );
    }
    Ok(t)
}

fn learn(dir: &Path, secs: f64) -> anyhow::Result<Targets> {
    let bin = build()?;
    let v = json(&capture(
        Command::new(bin)
            .args(["learn", "--config", "/dev/null", "bench", "--secs"])
            .arg(secs.to_string())
            .arg("--pcaps")
            .arg(dir)
            .env("RAYON_NUM_THREADS", "1"),
    )?)?;
    let mut t = Targets::default();
    t.check(
        "deployed cycle, 10 000 samples",
        num(&v, &["cycle", "total"])?,
        "s",
        Bound::AtMost(LEARN_CYCLE_SECS),
    );
    t.check(
        "detection slowdown, training",
        num(&v, &["slowdown"])? * 100.0,
        "%",
        Bound::AtMost(LEARN_SLOWDOWN * 100.0),
    );
    Ok(t)
}

/// Seconds between one capture's last frame and the next one's first in the replay file:
/// longer than any flow timeout of either tool, so no flow spans two captures or two copies.
const REPLAY_GAP_S: f64 = 3600.0;
/// The replay file's first frame: 2026-01-01T00:00:00Z (any fixed time would do).
const REPLAY_START_S: f64 = 1_767_225_600.0;

/// First and last frame time (epoch seconds) of each capture, by capinfos.
fn capture_spans(files: &[PathBuf]) -> anyhow::Result<Vec<(f64, f64)>> {
    let out = Command::new("capinfos")
        .args(["-a", "-e", "-S", "-T", "-r"])
        .args(files)
        .output()
        .context("capinfos (Debian package wireshark-common)")?;
    let s = String::from_utf8_lossy(&out.stdout);
    let spans: Vec<(f64, f64)> = s
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t').skip(1).map(|v| v.trim().parse::<f64>());
            Some((f.next()?.ok()?, f.next()?.ok()?))
        })
        .collect();
    if spans.len() != files.len() {
        bail!(
            "capinfos gave {} spans for {} captures: {s}",
            spans.len(),
            files.len()
        );
    }
    Ok(spans)
}

/// `editcap -t offset src dst` (pcap): every frame's time moved by `offset` seconds.
fn shifted(src: &Path, dst: &Path, offset: f64) -> anyhow::Result<()> {
    run(Command::new("editcap")
        .args(["-F", "pcap", "-t", &format!("{offset:.6}")])
        .arg(src)
        .arg(dst))
}

/// The replay benchmark's file: every capture once, one after another in time (each moved
/// to start [`REPLAY_GAP_S`] after the previous one ended), and that sequence `copies` times,
/// again one after another, as one classic pcap (one link type, one snapshot length). Both
/// tools then see every frame and the same flows (18 300 per copy). The captures merely
/// concatenated into a pcapng (`mergecap -a`, before) went back in time at every capture and
/// copy, which SafeLink's replay clock follows as a capture gap, and nfstream (libpcap) read
/// only the frames of the interfaces whose snapshot length matched the first one's: 4 476 of
/// each copy's flows, so the two tools did not do the same work.
fn sequential_copies(
    files: &[PathBuf],
    copies: usize,
    work: &Path,
    out: &Path,
) -> anyhow::Result<()> {
    let tmp = work.join("replay-seq");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    let mut parts = Vec::new();
    let mut t = REPLAY_START_S;
    for (i, (f, (first, last))) in files.iter().zip(capture_spans(files)?).enumerate() {
        let p = tmp.join(format!("c{i:03}.pcap"));
        shifted(f, &p, t - first)?;
        parts.push(p);
        t += last - first + REPLAY_GAP_S;
    }
    let once = tmp.join("once.pcap");
    run(Command::new("mergecap")
        .args(["-a", "-F", "pcap", "-w"])
        .arg(&once)
        .args(&parts))?;
    let span = t - REPLAY_START_S;
    let mut all = Vec::new();
    for k in 0..copies {
        let p = tmp.join(format!("x{k:03}.pcap"));
        shifted(&once, &p, k as f64 * span)?;
        all.push(p);
    }
    run(Command::new("mergecap")
        .args(["-a", "-F", "pcap", "-w"])
        .arg(out)
        .args(&all))?;
    std::fs::remove_dir_all(&tmp)?;
    Ok(())
}

fn replay(copies: usize, dir: &Path, no_nfstream: bool) -> anyhow::Result<Targets> {
    let bin = build()?;
    let work = root().join("target/bench");
    std::fs::create_dir_all(&work)?;
    // One pcapng file: every capture once, then that file `copies` times.
    let big = work.join(format!("all-x{copies}-seq.pcap"));
    if !big.exists() {
        sequential_copies(&captures(dir)?, copies, &work, &big)?;
    }
    let packets = capinfos_packets(&big)?;
    println!("file: {} ({packets} packets)", big.display());

    let t0 = Instant::now();
    let out = Command::new(&bin)
        .args(["analyze", "--flows", "--no-dfa"])
        .arg(&big)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()?;
    let ours = t0.elapsed().as_secs_f64();
    let log = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("safelink analyze failed: {log}");
    }
    // The summary line of `analyze`: "... analysed file=... frames=N flows=N arp=N".
    let our_flows = log
        .split_whitespace()
        .find_map(|w| w.strip_prefix("flows="))
        .unwrap_or("?")
        .to_string();
    let ours_pps = packets as f64 / ours;
    println!(
        "safelink analyze --flows --no-dfa: {ours:.2} s, {:.2} M packets/s, {our_flows} flows",
        ours_pps / 1e6
    );

    let mut t = Targets::default();
    let want = format!("≥ {REPLAY_VS_NFSTREAM}x nfstream");
    if no_nfstream {
        t.unmeasured("replay vs nfstream", &want, "--no-nfstream");
        return Ok(t);
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
    t.check(
        "replay vs nfstream",
        ours_pps / nf_pps,
        "x",
        Bound::AtLeast(REPLAY_VS_NFSTREAM),
    );
    Ok(t)
}
