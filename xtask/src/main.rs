//! `cargo xtask`: build, run, test and benchmark SafeLink.
//!
//! - `cargo xtask build`            release build (the eBPF object is built by safelink/build.rs)
//! - `cargo xtask run [-- ARGS]`    build, then `safelink run ARGS` (root; Ctrl-C detaches)
//! - `cargo xtask test`             fmt + clippy + every test (kernel tests need root)
//! - `cargo xtask train-base`       retrain models/base.onnx (reproducible recipe: tests/pcaps,
//!   models/lab/train and models/benign; models/lab is evaluated only)
//! - `cargo xtask eval [DIR...]`     rules / ANN / both on labelled capture directories
//! - `cargo xtask deb`              the Debian package (target/debian/)
//! - `cargo xtask bench xdp|veth|replay|detect|ann|learn|keys|fleet|soak|smoke`
//! - `cargo xtask fuzz [--target parser|frame|capture] [--runs N] [--secs S]`   cargo-fuzz, nightly
mod bench;
mod deb;
mod fuzz;
mod soak;
mod target;
mod veth;

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
    /// captures in tests/pcaps and the lab training recordings in models/lab/train (models/lab
    /// itself only for evaluation).
    TrainBase {
        /// Extra arguments for `safelink model train-base`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Rules only, ANN only and both on labelled capture directories (any directory with a
    /// MANIFEST.tsv; default: tests/pcaps and models/lab): capture-level and flow-level tables.
    Eval {
        /// Capture directories.
        #[arg(value_name = "DIR")]
        dirs: Vec<PathBuf>,
        /// Extra arguments for `safelink model eval-captures` (`--model FILE`, `--config
        /// FILE`, `--json`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Build the Debian package `target/debian/safelink_<version>_amd64.deb` (dpkg-deb).
    Deb,
    /// Fuzz the shared parser and feature code (`frame`) and the pcap/pcapng reader with the
    /// whole replay (`capture`) with cargo-fuzz on the pinned nightly, seeded with the shared
    /// captures; fails on any crash.
    Fuzz(fuzz::FuzzArgs),
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
            let mut test = cargo();
            if is_root() {
                // The package test installs and purges this package (tests/deb.rs).
                test.env("SAFELINK_DEB", deb::deb()?);
            } else {
                eprintln!(
                    "xtask: not root: kernel tests (XDP on veth, BPF_PROG_TEST_RUN) and the package test will print SKIP"
                );
            }
            run(test
                .args(["test", "--release", "--no-fail-fast"])
                .args(args.iter()))?;
            if args.is_empty() {
                // Every benchmark in a tiny configuration: a broken benchmark fails CI.
                bench::run_bench(bench::What::Smoke)?;
                // A short fuzz run of the shared parser and feature code (`fuzz/parser`:
                // safelink-common alone, about a minute to build). The full targets (`frame`
                // through the replay table, `capture` through the pcap reader) rebuild every
                // dependency instrumented, 11-15 minutes on a fresh 2-core machine: `cargo
                // xtask fuzz` runs them.
                fuzz::fuzz(&fuzz::FuzzArgs {
                    target: Some(fuzz::Target::Parser),
                    runs: None,
                    secs: Some(fuzz::CI_SECS),
                })?;
            }
            Ok(())
        }
        Cmd::Install => install(),
        Cmd::Deb => deb::deb().map(|_| ()),
        Cmd::TrainBase { args } => {
            let bin = build()?;
            run(Command::new(bin)
                .args(["model", "train-base"])
                .args(args)
                .env("RAYON_NUM_THREADS", "1"))
        }
        Cmd::Eval { dirs, args } => {
            let bin = build()?;
            let dirs = if dirs.is_empty() {
                vec![root().join("tests/pcaps"), root().join("models/lab")]
            } else {
                // Relative to where xtask was started, not the workspace root.
                let here = std::env::current_dir()?;
                dirs.into_iter().map(|d| here.join(d)).collect()
            };
            run(Command::new(bin)
                .args(["model", "eval-captures"])
                .args(&dirs)
                .args(args))
        }
        Cmd::Bench { what } => bench::run_bench(what),
        Cmd::Fuzz(args) => fuzz::fuzz(&args),
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
    // The base model's attack rows and benign rows (the learner rehearses them).
    copy(
        &root().join("models/attack_rows.jsonl"),
        "/usr/local/share/safelink/attack_rows.jsonl",
    )?;
    std::fs::create_dir_all("/usr/local/share/safelink/benign")?;
    copy(
        &root().join("models/benign/flows.csv.gz"),
        "/usr/local/share/safelink/benign/flows.csv.gz",
    )?;
    copy(
        &root().join("deploy/safelink.service"),
        "/etc/systemd/system/safelink.service",
    )?;
    // Man pages and completions, from the clap definitions.
    for (what, dir) in [
        ("man", "/usr/local/share/man/man1"),
        ("bash", "/usr/local/share/bash-completion/completions"),
        ("zsh", "/usr/local/share/zsh/site-functions"),
        ("fish", "/usr/local/share/fish/vendor_completions.d"),
    ] {
        run(Command::new(&bin).args(["generate", what, "--out", dir]))?;
        if what == "bash" {
            // bash-completion loads the file named after the command.
            std::fs::rename(format!("{dir}/safelink.bash"), format!("{dir}/safelink"))?;
        }
    }
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
