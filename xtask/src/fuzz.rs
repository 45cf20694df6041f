//! `cargo xtask fuzz [--target parser|frame|capture] [--runs N] [--secs S]`: cargo-fuzz
//! (libFuzzer) on the pinned nightly over the targets in `fuzz/` and `fuzz/parser/`.
//!
//! - `parser` (`fuzz/parser/`, its own light project on `safelink-common` alone): the parser
//!   and feature code exactly as the XDP program calls it, seeded like `frame`. It builds in
//!   about a minute, so `cargo xtask test` runs it for [`CI_SECS`] on every CI run.
//! - `frame`: the shared parser and feature code (`FlowTable::observe`, `flow::merge`), seeded
//!   with every unique frame of every capture in `../shared/data/pcaps` and `tests/pcaps`
//!   (recursively), one file per frame, deduplicated by hash.
//! - `capture`: the pcap/pcapng reader and the whole replay (`replay::replay_bytes`), seeded
//!   with the capture files themselves and truncated copies of them.
//!
//! The seeds are written to `target/fuzz/seeds/<target>`; what libFuzzer finds goes to
//! `target/fuzz/corpus/<target>` (kept between runs), crashes to `<project>/artifacts/<target>`.
//! It prints the inputs run (libFuzzer's final `Done N runs in S second(s)`), the rate and the
//! panics per target, and fails on any crash.
use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};

use crate::{cargo, root};

/// The nightly that cargo-fuzz builds with (the eBPF toolchain, installed by setup.sh).
pub const NIGHTLY: &str = "nightly-2026-05-15";
/// Default runs outside CI. `frame`: 10 M (issue 13): 782 s on the 2-vCPU VM (12.8 k inputs/s).
const FRAME_RUNS: u64 = 10_000_000;
/// `capture` inputs are whole captures (up to [`CAPTURE_MAX_LEN`] bytes, many frames each):
/// 148 s (6.8 k inputs/s).
const CAPTURE_RUNS: u64 = 1_000_000;
const FRAME_MAX_LEN: usize = 4096;
const CAPTURE_MAX_LEN: usize = 65_536;
/// `cargo xtask test` (CI): seconds of the `parser` target.
pub const CI_SECS: u64 = 30;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Target {
    Parser,
    Frame,
    Capture,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Parser => "parser",
            Target::Frame => "frame",
            Target::Capture => "capture",
        }
    }

    /// The cargo-fuzz project (`--fuzz-dir`) that holds the target.
    fn project(self) -> PathBuf {
        match self {
            Target::Parser => root().join("fuzz/parser"),
            Target::Frame | Target::Capture => root().join("fuzz"),
        }
    }
}

#[derive(Args, Clone)]
pub struct FuzzArgs {
    /// Only this target (default: all three).
    #[arg(long)]
    pub target: Option<Target>,
    /// Inputs per target (default 10 000 000 for parser and frame, 1 000 000 for capture;
    /// with --secs alone, unlimited).
    #[arg(long)]
    pub runs: Option<u64>,
    /// Stop each target after this many seconds (whichever of --runs and --secs comes first).
    #[arg(long)]
    pub secs: Option<u64>,
}

/// One target's figures.
struct Outcome {
    runs: u64,
    secs: f64,
}

pub fn fuzz(args: &FuzzArgs) -> anyhow::Result<()> {
    let targets = match args.target {
        Some(t) => vec![t],
        None => vec![Target::Parser, Target::Frame, Target::Capture],
    };
    let captures = capture_files()?;
    let work = root().join("target/fuzz");
    // One build per project (debug assertions and overflow checks on, no sanitizer: the code
    // under test is safe Rust, and ASan would halve the rate on this 2-vCPU machine).
    let mut projects: Vec<PathBuf> = targets.iter().map(|t| t.project()).collect();
    projects.dedup();
    for dir in projects {
        let t0 = Instant::now();
        crate::run(
            cargo_fuzz()
                .args(["build", "--sanitizer", "none", "--fuzz-dir"])
                .arg(&dir),
        )?;
        println!(
            "fuzz: built the targets of {} in {:.0} s",
            dir.display(),
            t0.elapsed().as_secs_f64()
        );
    }
    let mut lines = Vec::new();
    for t in targets {
        let seeds = work.join("seeds").join(t.name());
        let n = match t {
            Target::Parser | Target::Frame => write_frame_seeds(&captures, &seeds)?,
            Target::Capture => write_capture_seeds(&captures, &seeds)?,
        };
        println!(
            "fuzz {}: {n} seeds from {} captures in {}",
            t.name(),
            captures.len(),
            seeds.display()
        );
        let runs = args.runs.or(match (args.secs, t) {
            (Some(_), _) => None,
            (None, Target::Parser | Target::Frame) => Some(FRAME_RUNS),
            (None, Target::Capture) => Some(CAPTURE_RUNS),
        });
        let o = run_target(
            t,
            &seeds,
            &work.join("corpus").join(t.name()),
            runs,
            args.secs,
        )?;
        let line = format!(
            "fuzz {:<8} {:>11} inputs in {:>7.1} s ({:>7.0} inputs/s), 0 panics",
            t.name(),
            o.runs,
            o.secs,
            o.runs as f64 / o.secs.max(1e-9)
        );
        println!("{line}");
        lines.push(line);
    }
    println!("\nfuzz summary:");
    for l in lines {
        println!("  {l}");
    }
    Ok(())
}

/// `cargo +NIGHTLY fuzz ... --fuzz-dir DIR`, through rustup's `cargo` proxy (`CARGO` names the pinned
/// stable cargo binary itself, which knows no `+toolchain`).
fn cargo_fuzz() -> Command {
    let proxy = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .map(|h| h.join("bin/cargo"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("cargo"));
    let mut c = Command::new(proxy);
    // PATH with ~/.cargo/bin (cargo-fuzz, bpf-linker), as `cargo()` sets it.
    if let Some((_, Some(path))) = cargo().get_envs().find(|(k, _)| *k == "PATH") {
        c.env("PATH", path);
    }
    for k in [
        "CARGO",
        "RUSTUP_TOOLCHAIN",
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTFLAGS",
    ] {
        c.env_remove(k);
    }
    c.arg(format!("+{NIGHTLY}")).arg("fuzz");
    c
}

fn run_target(
    t: Target,
    seeds: &Path,
    corpus: &Path,
    runs: Option<u64>,
    secs: Option<u64>,
) -> anyhow::Result<Outcome> {
    std::fs::create_dir_all(corpus)?;
    let max_len = match t {
        Target::Parser | Target::Frame => FRAME_MAX_LEN,
        Target::Capture => CAPTURE_MAX_LEN,
    };
    let mut c = cargo_fuzz();
    c.args(["run", "--sanitizer", "none", "--fuzz-dir"])
        .arg(t.project())
        .arg(t.name())
        .arg(corpus)
        .arg(seeds)
        .arg("--")
        .arg(format!("-max_len={max_len}"))
        .arg("-timeout=10")
        .arg("-rss_limit_mb=2048")
        .arg("-print_final_stats=1");
    if t != Target::Capture {
        c.arg(format!(
            "-dict={}",
            root().join("fuzz/frame.dict").display()
        ));
    }
    if let Some(r) = runs {
        c.arg(format!("-runs={r}"));
    }
    if let Some(s) = secs {
        c.arg(format!("-max_total_time={s}"));
    }
    println!("fuzz {}: {c:?}", t.name());
    // libFuzzer reports on stderr: keep the last lines, show progress lines as they come.
    // cargo-fuzz prints a crashing input's Debug form on stdout (megabytes for a capture): cut.
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let t0 = Instant::now();
    let mut child = c.spawn().context("spawning cargo fuzz run")?;
    let stdout = child.stdout.take().context("stdout")?;
    let echo = std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
            println!("{}", cut(&line));
        }
    });
    let stderr = child.stderr.take().context("stderr")?;
    let mut tail: Vec<String> = Vec::new();
    let mut done: Option<(u64, f64)> = None;
    for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
        let line = line?;
        // "Done 10000000 runs in 612 second(s)"
        if let Some(rest) = line.strip_prefix("Done ") {
            let mut it = rest.split_whitespace();
            if let (Some(n), Some("runs")) = (it.next(), it.next()) {
                done = n.parse().ok().map(|n| (n, t0.elapsed().as_secs_f64()));
            }
        }
        if (line.starts_with('#') && line.contains("pulse")) || line.contains("DONE") {
            eprintln!("{line}");
        }
        tail.push(line);
        if tail.len() > 200 {
            tail.drain(..100);
        }
    }
    let st = child.wait()?;
    let _ = echo.join();
    if !st.success() || tail.iter().any(|l| l.contains("panicked at")) {
        for l in &tail {
            eprintln!("{}", cut(l));
        }
        bail!(
            "fuzz {}: libFuzzer found a crash (1 panic or more; the input is in {}/artifacts/{}/): {st}",
            t.name(),
            t.project().display(),
            t.name()
        );
    }
    let (runs, secs) = done.with_context(|| {
        format!(
            "fuzz {}: no \"Done N runs\" line from libFuzzer:\n{}",
            t.name(),
            tail.join("\n")
        )
    })?;
    Ok(Outcome { runs, secs })
}

/// A line cut to 300 characters.
fn cut(line: &str) -> String {
    match line.char_indices().nth(300) {
        Some((i, _)) => format!("{} ... ({} bytes)", &line[..i], line.len()),
        None => line.to_owned(),
    }
}

/// Every capture under `../shared/data/pcaps` and `tests/pcaps` (recursively), sorted.
fn capture_files() -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for dir in [
        root().join("../shared/data/pcaps"),
        root().join("tests/pcaps"),
    ] {
        if dir.is_dir() {
            walk(&dir, &mut out)?;
        }
    }
    out.sort();
    if out.is_empty() {
        bail!("no capture files in ../shared/data/pcaps or tests/pcaps");
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e?.path();
        if p.is_dir() {
            walk(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "pcap" || e == "pcapng") {
            out.push(p);
        }
    }
    Ok(())
}

/// FNV-1a, 64 bits: stable names for deduplicated seeds.
fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Writes each input once (by hash) into a fresh `dir`; returns how many.
fn write_unique<'a>(
    dir: &Path,
    inputs: impl IntoIterator<Item = &'a [u8]>,
) -> anyhow::Result<usize> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    let mut seen = HashSet::new();
    for i in inputs {
        let h = fnv(i);
        if seen.insert(h) {
            std::fs::write(dir.join(format!("{h:016x}")), i)?;
        }
    }
    Ok(seen.len())
}

fn write_frame_seeds(captures: &[PathBuf], dir: &Path) -> anyhow::Result<usize> {
    let mut bufs = Vec::new();
    for p in captures {
        let data = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        let frames = frames(&data).with_context(|| format!("reading {}", p.display()))?;
        bufs.extend(frames.into_iter().map(<[u8]>::to_vec));
    }
    write_unique(dir, bufs.iter().map(Vec::as_slice))
}

fn write_capture_seeds(captures: &[PathBuf], dir: &Path) -> anyhow::Result<usize> {
    let mut bufs = Vec::new();
    for p in captures {
        let data = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        // Truncated copies (cut inside a record) and the head libFuzzer keeps of the file.
        for cut in [256, 2048, 16_384, CAPTURE_MAX_LEN] {
            if data.len() > cut {
                bufs.push(data[..cut].to_vec());
            }
        }
        bufs.push(data);
    }
    write_unique(dir, bufs.iter().map(Vec::as_slice))
}

/// The frames of a pcap or pcapng file (captured bytes), read independently of the reader
/// under test.
fn frames(data: &[u8]) -> anyhow::Result<Vec<&[u8]>> {
    let u32_at = |o: usize, big: bool| -> Option<u32> {
        let b: [u8; 4] = data.get(o..o.checked_add(4)?)?.try_into().ok()?;
        Some(if big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    };
    let mut out = Vec::new();
    let magic = u32_at(0, false).context("shorter than a header")?;
    if magic == 0x0A0D_0D0A {
        // pcapng: blocks of (type, total length, body, total length).
        let mut off = 0;
        let mut big = false;
        while off + 12 <= data.len() {
            if u32_at(off, false) == Some(0x0A0D_0D0A) {
                big = u32_at(off + 8, false) != Some(0x1A2B_3C4D);
            }
            let ty = u32_at(off, big).context("block type")?;
            let len = u32_at(off + 4, big).context("block length")? as usize;
            if len < 12 || off + len > data.len() {
                bail!("pcapng block at {off}: bad length {len}");
            }
            let body = &data[off + 8..off + len - 4];
            match ty {
                6 if body.len() >= 20 => {
                    let cap = u32_at(off + 8 + 12, big).context("EPB")? as usize;
                    out.push(
                        body.get(20..20 + cap)
                            .context("EPB shorter than its packet")?,
                    );
                }
                3 if body.len() >= 4 => {
                    let orig = u32_at(off + 8, big).context("SPB")? as usize;
                    out.push(&body[4..4 + orig.min(body.len() - 4)]);
                }
                _ => {}
            }
            off += len;
        }
    } else {
        let big = match magic {
            0xA1B2_C3D4 | 0xA1B2_3C4D => false,
            0xD4C3_B2A1 | 0x4D3C_B2A1 => true,
            m => bail!("not pcap or pcapng (magic {m:#x})"),
        };
        let mut off = 24;
        while off + 16 <= data.len() {
            let cap = u32_at(off + 8, big).context("record header")? as usize;
            let Some(frame) = data.get(off + 16..off + 16 + cap) else {
                break;
            };
            out.push(frame);
            off += 16 + cap;
        }
    }
    Ok(out)
}
