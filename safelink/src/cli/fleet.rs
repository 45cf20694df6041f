//! `safelink learner --fleet URL --signing-key FILE` (the fleet learner) and `safelink fleet
//! sensors|models|promote|rollback|keygen` (the operator's commands).
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use safelink::config::Config;
use safelink::fleet::{self, connect, learner::LearnerOptions, manifest};

use super::run::{DataArgs, FileArgs, ModelFileArgs};

/// The server and how to reach it.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// The fleet's NATS JetStream server [default: [fleet] url].
    #[arg(long, value_name = "nats://HOST:PORT", env = "SAFELINK_FLEET")]
    fleet: Option<String>,
    #[command(flatten)]
    file: FileArgs,
}

impl ServerArgs {
    fn resolve(&self) -> anyhow::Result<(Config, String)> {
        let mut c = self.file.load()?;
        if let Some(u) = &self.fleet {
            c.fleet.url = Some(u.clone());
        }
        let url = c
            .fleet
            .url
            .clone()
            .filter(|u| !u.is_empty())
            .context("no fleet server: --fleet nats://HOST:PORT or [fleet] url")?;
        Ok((c, url))
    }
}

#[derive(Debug, Args)]
pub struct LearnerArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The ed25519 signing key (`safelink fleet keygen --out FILE`).
    #[arg(long, value_name = "FILE", env = "SAFELINK_SIGNING_KEY")]
    signing_key: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    model: ModelFileArgs,
    /// This learner's name in the lease [default: the hostname].
    #[arg(long, value_name = "ID")]
    learner_id: Option<String>,
    /// Seconds between cycles [default: [learning] learning_interval_s].
    #[arg(long, value_name = "SECS")]
    cycle_interval: Option<u64>,
    /// Samples waiting before a cycle runs [default: [learning] min_samples].
    #[arg(long, value_name = "N")]
    min_samples: Option<usize>,
    /// Seconds the lease lasts without renewal.
    #[arg(long, value_name = "SECS", default_value_t = 15)]
    lease_secs: u64,
    /// Days a published manifest stays valid.
    #[arg(long, value_name = "DAYS", default_value_t = 30)]
    valid_days: i64,
    /// Exit after publishing this many models (0: run until stopped).
    #[arg(long, value_name = "N", default_value_t = 0)]
    max_publications: u64,
}

pub fn learner(a: LearnerArgs) -> anyhow::Result<ExitCode> {
    let (mut cfg, url) = a.server.resolve()?;
    a.data.apply(&mut cfg);
    a.model.apply(&mut cfg);
    let key = manifest::read_signing_key(&a.signing_key).map_err(anyhow::Error::msg)?;
    let mut params = cfg.learning.params()?;
    // The fleet's samples come from other machines: every family's golden rows are guarded.
    params.golden_per_family = cfg.learning.golden_per_family.unwrap_or(true);
    std::fs::create_dir_all(&cfg.store.data_dir)
        .with_context(|| format!("cannot create {}", cfg.store.data_dir.display()))?;
    let store = safelink::store::Store::open(cfg.store.data_dir.join("store"))
        .context("the learner's store (is another learner using this data directory?)")?;
    let golden = cfg
        .learning
        .golden_path()
        .map(|p| safelink::learn::load_golden(&p))
        .transpose()?;
    let l = safelink::learn::Learner::open(
        store.clone(),
        &cfg.store.data_dir,
        params.clone(),
        golden,
        cfg.ann.model_path().as_deref(),
        true,
    )?;
    let learner_id = a.learner_id.unwrap_or_else(|| cfg.fleet.sensor_id());
    let opts = LearnerOptions {
        url,
        fleet: cfg.fleet.clone(),
        learner_id,
        data_dir: cfg.store.data_dir.clone(),
        cycle_every: Duration::from_secs(a.cycle_interval.unwrap_or(params.interval_s)),
        min_samples: a.min_samples.unwrap_or(params.min_samples),
        lease_ttl: Duration::from_secs(a.lease_secs.max(3)),
        valid_for: time::Duration::days(a.valid_days),
        max_publications: a.max_publications,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let r = rt.block_on(async {
        tokio::select! {
            r = fleet::learner::run(opts, key, l.clone(), store) => r.map(Some),
            _ = tokio::signal::ctrl_c() => Ok(None),
        }
    });
    l.shutdown();
    if let Some(c) = r? {
        println!("{}", serde_json::json!({"event": "done", "counters": c}));
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct FleetArgs {
    #[command(subcommand)]
    cmd: FleetCmd,
}

#[derive(Debug, Subcommand)]
enum FleetCmd {
    /// Every sensor: id, last heartbeat, online/stale, channel, model version and hash,
    /// published/buffered/dropped (JSON).
    Sensors {
        #[command(flatten)]
        server: ServerArgs,
        /// A sensor silent this long is stale.
        #[arg(long, value_name = "SECS", default_value_t = 30)]
        stale_after: i64,
    },
    /// Published model versions, newest first, with the channels on them (JSON).
    Models {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Move a canary version to the stable channel.
    Promote {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(value_name = "VERSION")]
        version: u64,
        /// Promote even if no canary sensor serves it yet.
        #[arg(long)]
        force: bool,
    },
    /// Publish a new version whose content is an older version's model (both channels).
    Rollback {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long, value_name = "VERSION")]
        to: u64,
        #[arg(long, value_name = "FILE", env = "SAFELINK_SIGNING_KEY")]
        signing_key: PathBuf,
        #[arg(long, value_name = "DAYS", default_value_t = 30)]
        valid_days: i64,
    },
    /// Make an ed25519 signing key (FILE, mode 0600) and print its public key for
    /// `[fleet] trusted_keys`.
    Keygen {
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

async fn layout(server: &ServerArgs) -> anyhow::Result<(Config, connect::Layout)> {
    let (cfg, url) = server.resolve()?;
    let client = connect::connect_now(&url, &cfg.fleet, "safelink-operator").await?;
    let l = connect::ensure_layout(&client).await?;
    Ok((cfg, l))
}

fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub fn fleet(a: FleetArgs) -> anyhow::Result<ExitCode> {
    if let FleetCmd::Keygen { out } = &a.cmd {
        let k = manifest::generate_key()?;
        manifest::write_signing_key(out, &k)
            .with_context(|| format!("cannot write {} (it must not exist)", out.display()))?;
        let pk = k.verifying_key();
        print_json(&serde_json::json!({
            "public_key": hex::encode(pk.as_bytes()),
            "key_id": manifest::key_id(&pk),
            "signing_key_file": out,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let op = async {
        match a.cmd {
            FleetCmd::Sensors {
                server,
                stale_after,
            } => {
                let (_, l) = layout(&server).await?;
                print_json(&fleet::ops::sensors(&l, time::Duration::seconds(stale_after)).await?)?;
            }
            FleetCmd::Models { server } => {
                let (_, l) = layout(&server).await?;
                print_json(&fleet::ops::models(&l).await?)?;
            }
            FleetCmd::Promote {
                server,
                version,
                force,
            } => {
                let (_, l) = layout(&server).await?;
                let m = fleet::ops::promote(&l, version, force).await?;
                print_json(
                    &serde_json::json!({"promoted": m.version, "sha256": m.sha256, "channel": "stable"}),
                )?;
            }
            FleetCmd::Rollback {
                server,
                to,
                signing_key,
                valid_days,
            } => {
                let (cfg, l) = layout(&server).await?;
                let key = manifest::read_signing_key(&signing_key).map_err(anyhow::Error::msg)?;
                let m = fleet::ops::rollback(
                    &l,
                    &cfg.fleet.fleet_id,
                    &key,
                    to,
                    time::Duration::days(valid_days),
                )
                .await?;
                print_json(
                    &serde_json::json!({"version": m.version, "content_of": to, "sha256": m.sha256, "channels": ["canary", "stable"]}),
                )?;
            }
            FleetCmd::Keygen { .. } => unreachable!("handled above"),
        }
        Ok(ExitCode::SUCCESS)
    };
    rt.block_on(async {
        tokio::time::timeout(OPERATION_TIMEOUT, op)
            .await
            .unwrap_or_else(|_| {
                anyhow::bail!(
                    "no complete answer from the fleet server within {} s (is it up, and is JetStream enabled?)",
                    OPERATION_TIMEOUT.as_secs()
                )
            })
    })
}

/// An operator command gives up after this long rather than wait on the server forever.
const OPERATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
