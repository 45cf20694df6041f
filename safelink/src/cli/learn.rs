//! `safelink learn …`: the continuous learner offline, on a stopped daemon's data directory
//! (sled allows one process): `status`, `history`, `versions`, `ingest` captures as training
//! samples, `train` one cycle now, `activate` a kept version (manual rollback).
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use safelink::config::Config;
use safelink::learn::{self, Learner, ingest::ingest};
use safelink::store::Store;

use super::run::{DataArgs, FileArgs, ModelFileArgs, ProfileArgs};

/// The offline learner reads the configuration file, the data directory, the base model and
/// the learning profile; nothing about interfaces or the API applies to it.
#[derive(Debug, Args)]
pub struct LearnArgs {
    #[command(flatten)]
    file: FileArgs,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    model: ModelFileArgs,
    #[command(flatten)]
    profile: ProfileArgs,
    #[command(subcommand)]
    cmd: LearnCmd,
}

impl LearnArgs {
    fn resolve(&self) -> anyhow::Result<Config> {
        let mut c = self.file.load()?;
        self.data.apply(&mut c);
        self.model.apply(&mut c);
        self.profile.apply(&mut c);
        c.learning.params()?;
        Ok(c)
    }
}

#[derive(Debug, Subcommand)]
enum LearnCmd {
    /// The learner's state as JSON (as `GET /learning/status`).
    Status,
    /// The newest training cycles as JSON (as `GET /learning/history`).
    History {
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Model versions as JSON (as `GET /models`).
    Versions,
    /// Run capture files through the rule automata and the ANN and store the auto-labelled
    /// flows as training samples.
    Ingest {
        #[arg(value_name = "FILE", required = true)]
        files: Vec<PathBuf>,
    },
    /// Run one training cycle now and print its record as JSON (exit 1 if it was not
    /// deployed).
    Train,
    /// Benchmark: one cycle on 10 000 samples, detection with and without training.
    #[command(hide = true)]
    Bench {
        #[arg(long, default_value = "tests/pcaps")]
        pcaps: PathBuf,
        #[arg(long, default_value = "target/bench/learn")]
        work: PathBuf,
        /// Seconds of detection per run.
        #[arg(long, default_value_t = 5.0)]
        secs: f64,
    },
    /// Serve a kept model version again (manual rollback).
    Activate {
        #[arg(value_name = "VERSION")]
        version: u64,
    },
}

fn open(cfg: &Config) -> anyhow::Result<Learner> {
    std::fs::create_dir_all(&cfg.store.data_dir)
        .with_context(|| format!("cannot create data dir {}", cfg.store.data_dir.display()))?;
    let dir = cfg.store.data_dir.join("store");
    let store = Store::open(&dir).with_context(|| {
        format!(
            "cannot open the store in {} (is the daemon running? stop it first)",
            dir.display()
        )
    })?;
    let params = cfg.learning_params()?;
    let golden = match cfg.learning.golden_path() {
        Some(p) => {
            Some(learn::load_golden(&p).with_context(|| format!("golden set {}", p.display()))?)
        }
        None => None,
    };
    let base = cfg.ann.model_path();
    Ok(Learner::open(
        store,
        &cfg.store.data_dir,
        params,
        golden,
        base.as_deref(),
        cfg.learning.enabled,
    )?)
}

fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub fn learn(a: LearnArgs) -> anyhow::Result<ExitCode> {
    let cfg = a.resolve()?;
    if let LearnCmd::Bench { pcaps, work, secs } = &a.cmd {
        let golden = cfg
            .learning
            .golden_path()
            .map(|p| learn::load_golden(&p))
            .transpose()?;
        let base = cfg
            .ann
            .model_path()
            .context("no base model (models/base.onnx)")?;
        let r = learn::bench::run(pcaps, &base, golden, work, *secs)?;
        print_json(&r)?;
        eprintln!(
            "deployed cycle on {} samples ({} attack / {} benign from the captures, repeated): {:.3} s (train {:.3} s); detection {:.0} rec/s idle, {:.0} rec/s while {} deployed cycles ran: slowdown {:.1} %",
            r.samples,
            r.mix.attack,
            r.mix.benign,
            r.cycle.total,
            r.cycle.train,
            r.detect_idle.records_per_sec,
            r.detect_while_training.records_per_sec,
            r.cycles_deployed_during,
            r.slowdown * 100.0
        );
        return Ok(ExitCode::SUCCESS);
    }
    let learner = open(&cfg)?;
    let code = match a.cmd {
        LearnCmd::Status => {
            print_json(&learner.status()?)?;
            ExitCode::SUCCESS
        }
        LearnCmd::History { limit } => {
            let (total, cycles) = learner.history(limit)?;
            print_json(&serde_json::json!({"total_cycles": total, "history": cycles}))?;
            ExitCode::SUCCESS
        }
        LearnCmd::Versions => {
            let (current, versions) = learner.versions()?;
            print_json(&serde_json::json!({"current_version": current, "versions": versions}))?;
            ExitCode::SUCCESS
        }
        LearnCmd::Ingest { files } => {
            let files: Vec<&std::path::Path> = files.iter().map(PathBuf::as_path).collect();
            let policy = safelink::privacy::Policy::from_env(&cfg.privacy)
                .map_err(|e| anyhow::anyhow!("invalid [privacy] configuration: {e}"))?;
            let sum = ingest(
                &files,
                &cfg,
                &policy,
                &learner.handle(),
                learner.params(),
                learner.store(),
            )?;
            print_json(&sum)?;
            ExitCode::SUCCESS
        }
        LearnCmd::Train => {
            let r = learner.run_cycle_here("manual")?;
            print_json(&r)?;
            if r.record.outcome == learn::Outcome::Deployed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        LearnCmd::Bench { .. } => unreachable!("handled above"),
        LearnCmd::Activate { version } => {
            print_json(&learner.activate(version)?)?;
            ExitCode::SUCCESS
        }
    };
    learner.shutdown();
    Ok(code)
}
