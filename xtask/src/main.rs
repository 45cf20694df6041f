//! `cargo xtask`: build, run, test and benchmark SafeLink.
//!
//! - `cargo xtask build`            release build (the eBPF object is built by safelink/build.rs)
//! - `cargo xtask run [-- ARGS]`    build, then `safelink run ARGS` (root; Ctrl-C detaches)
//! - `cargo xtask test`             fmt + clippy + every test (kernel tests need root)
//! - `cargo xtask train-base`       retrain models/base.onnx (reproducible recipe)
//! - `cargo xtask bench xdp|replay|detect|ann|learn|smoke`
mod bench;
mod target;

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "SafeLink developer tasks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Release build of the workspace (eBPF object included).
    Build,
    /// Build, then run the sensor: `cargo xtask run -- --iface eth0` (default: the default
    /// route's interface). Needs root; stops cleanly on Ctrl-C.
    Run {
        /// Arguments passed to `safelink run`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// cargo fmt --check, clippy -D warnings, then every test (kernel tests run as root).
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Install the release binary to /usr/local/bin, the systemd unit to /etc/systemd/system
    /// and a default /etc/safelink/safelink.toml (kept when present). Root.
    Install,
    /// Retrain the shipped base model (models/base.onnx, model card, golden set) from the
    /// captures in tests/pcaps (and models/lab for evaluation).
    TrainBase {
        /// Extra arguments for `safelink model train-base`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Benchmarks; they print figures, they do not pass or fail on speed.
    Bench {
        #[command(subcommand)]
        what: bench::What,
    },
}

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Runs a command in the workspace root, failing with its name when it fails.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    cmd.current_dir(root());
    let st = cmd.status().with_context(|| format!("spawning {cmd:?}"))?;
    if !st.success() {
        bail!("{cmd:?} failed with {st}");
    }
    Ok(())
}

/// `cargo` with ~/.cargo/bin on PATH (bpf-linker lives there).
pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    if let Some(home) = std::env::var_os("HOME") {
        let bin = Path::new(&home).join(".cargo/bin");
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut parts = vec![bin];
        parts.extend(std::env::split_paths(&path));
        c.env("PATH", std::env::join_paths(parts).expect("valid PATH"));
    }
    c
}

pub fn build() -> anyhow::Result<PathBuf> {
    run(cargo().args(["build", "--release", "-p", "safelink"]))?;
    Ok(root().join("target/release/safelink"))
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Build => build().map(|_| ()),
        Cmd::Run { args } => {
            let bin = build()?;
            let mut cmd = if is_root() {
                Command::new(&bin)
            } else {
                eprintln!("xtask: not root, running the sensor through sudo");
                let mut c = Command::new("sudo");
                c.arg("-E").arg(&bin);
                c
            };
            // exec-like: the sensor gets Ctrl-C directly (same process group) and detaches.
            run(cmd.arg("run").args(args))
        }
        Cmd::Test { args } => {
            run(cargo().args(["fmt", "--all", "--", "--check"]))?;
            run(cargo().args([
                "clippy",
                "--release",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]))?;
            if !is_root() {
                eprintln!(
                    "xtask: not root: kernel tests (XDP on veth, BPF_PROG_TEST_RUN) will print SKIP"
                );
            }
            run(cargo()
                .args(["test", "--release", "--no-fail-fast"])
                .args(args.iter()))?;
            if args.is_empty() {
                // Every benchmark in a tiny configuration: a broken benchmark fails CI.
                bench::run_bench(bench::What::Smoke)?;
            }
            Ok(())
        }
        Cmd::Install => install(),
        Cmd::TrainBase { args } => {
            let bin = build()?;
            run(Command::new(bin)
                .args(["model", "train-base"])
                .args(args)
                .env("RAYON_NUM_THREADS", "1"))
        }
        Cmd::Bench { what } => bench::run_bench(what),
    }
}

fn install() -> anyhow::Result<()> {
    if !is_root() {
        bail!("install writes to /usr/local/bin and /etc: run as root");
    }
    let bin = build()?;
    let copy = |from: &Path, to: &str| -> anyhow::Result<()> {
        // Copy to a temporary name and rename: a running sensor keeps its binary.
        let tmp = format!("{to}.new");
        std::fs::copy(from, &tmp)
            .with_context(|| format!("copying {} to {tmp}", from.display()))?;
        std::fs::rename(&tmp, to).with_context(|| format!("renaming {tmp} to {to}"))?;
        println!("installed {to}");
        Ok(())
    };
    copy(&bin, "/usr/local/bin/safelink")?;
    // The base model and its golden set (the learner validates against it).
    std::fs::create_dir_all("/usr/local/share/safelink")?;
    copy(
        &root().join("models/base.onnx"),
        "/usr/local/share/safelink/base.onnx",
    )?;
    copy(
        &root().join("models/golden.jsonl"),
        "/usr/local/share/safelink/golden.jsonl",
    )?;
    copy(
        &root().join("deploy/safelink.service"),
        "/etc/systemd/system/safelink.service",
    )?;
    // The unit's Documentation= points here.
    std::fs::create_dir_all("/usr/local/share/doc/safelink")?;
    copy(
        &root().join("README.md"),
        "/usr/local/share/doc/safelink/README.md",
    )?;
    std::fs::create_dir_all("/etc/safelink")?;
    let conf = Path::new("/etc/safelink/safelink.toml");
    if conf.exists() {
        println!("kept {}", conf.display());
    } else {
        let out = Command::new(&bin)
            .args(["config", "print", "--config", "/dev/null"])
            .output()?;
        if !out.status.success() {
            bail!(
                "safelink config print failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::fs::write(conf, out.stdout)?;
        println!(
            "wrote {} (defaults; edit [sensor] iface and [api])",
            conf.display()
        );
    }
    if Command::new("systemctl")
        .arg("daemon-reload")
        .status()
        .is_ok_and(|s| s.success())
    {
        println!("systemd reloaded: `systemctl enable --now safelink` starts the sensor");
    }
    Ok(())
}
