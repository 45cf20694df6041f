//! `safelink run` and `safelink config print`: the effective configuration (file, then
//! `SAFELINK_*` environment variables, then flags) and the live sensor.
use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::{Args, Subcommand};
use safelink::{
    capture::loader::AttachMode,
    config::Config,
    daemon::{self, RunOptions},
};
use tracing::info;

/// Where the configuration comes from: every command that reads it.
#[derive(Debug, Args)]
pub struct FileArgs {
    /// Configuration file (TOML). Default: ./safelink.toml, then /etc/safelink/safelink.toml,
    /// else built-in defaults.
    #[arg(long, value_name = "FILE", env = "SAFELINK_CONFIG")]
    config: Option<PathBuf>,
    /// Override any configuration key, e.g. `--set dfa.port_scan.ports=20` (repeatable; TOML
    /// values). Environment: `SAFELINK__DFA__PORT_SCAN__PORTS=20`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

impl FileArgs {
    /// The file's configuration with the `--set` and `SAFELINK__*` overrides.
    pub fn load(&self) -> anyhow::Result<Config> {
        let (c, from) = Config::load_with(self.config.as_deref(), &self.set)?;
        if let Some(p) = &from {
            info!(file = %p.display(), "configuration loaded");
        }
        Ok(c)
    }
}

/// The data directory (`[store] data_dir`).
#[derive(Debug, Args)]
pub struct DataArgs {
    /// Directory of the alert store [default: /var/lib/safelink].
    #[arg(long, value_name = "DIR", env = "SAFELINK_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

impl DataArgs {
    pub fn apply(&self, c: &mut Config) {
        if let Some(v) = &self.data_dir {
            c.store.data_dir = v.clone();
        }
    }
}

/// The model file (`[ann] model`).
#[derive(Debug, Args)]
pub struct ModelFileArgs {
    /// ANN model file (ONNX) [default: models/base.onnx, then
    /// /usr/local/share/safelink/base.onnx].
    #[arg(long, value_name = "FILE", env = "SAFELINK_MODEL")]
    model: Option<PathBuf>,
}

impl ModelFileArgs {
    pub fn apply(&self, c: &mut Config) {
        if let Some(v) = &self.model {
            c.ann.model = Some(v.clone());
        }
    }
}

/// The learning profile and its two most-tuned values (`[learning]`).
#[derive(Debug, Args)]
pub struct ProfileArgs {
    /// Learning profile: default, single (one quiet host) or mass (many sensors).
    #[arg(long, value_enum, env = "SAFELINK_PROFILE")]
    profile: Option<safelink::learn::Profile>,
    /// Seconds between learning due checks [default: from the profile].
    #[arg(long, value_name = "SECS", env = "SAFELINK_LEARNING_INTERVAL")]
    learning_interval: Option<u64>,
    /// New labelled samples needed for a cycle [default: from the profile].
    #[arg(long, value_name = "N", env = "SAFELINK_MIN_SAMPLES")]
    min_samples: Option<usize>,
}

impl ProfileArgs {
    pub fn apply(&self, c: &mut Config) {
        if let Some(v) = self.profile {
            c.learning.profile = v;
        }
        if let Some(v) = self.learning_interval {
            c.learning.learning_interval_s = Some(v);
        }
        if let Some(v) = self.min_samples {
            c.learning.min_samples = Some(v);
        }
    }
}

/// Everything `safelink run` reads: the file, then `SAFELINK_*` environment variables, then
/// these flags (precedence: flag > environment > file > built-in default). `config print`
/// takes the same, to show what `run` would use.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(flatten)]
    file: FileArgs,
    /// Interface to attach to (default: the interface of the default route).
    #[arg(short, long, value_name = "IF", env = "SAFELINK_IFACE")]
    iface: Option<String>,
    /// Ingress attach mode: auto = the TC classifier on a virtual interface (veth, bridge, tap),
    /// native XDP on a physical NIC where the driver supports it, else SKB (generic) XDP; tc =
    /// the TC classifier, no XDP.
    #[arg(long, value_enum, env = "SAFELINK_XDP_MODE")]
    xdp_mode: Option<AttachMode>,
    /// Do not attach the TC egress hook: watch received frames only.
    #[arg(long)]
    no_egress: bool,
    /// bpffs directory of the pinned maps [default: /sys/fs/bpf/safelink].
    #[arg(long, value_name = "DIR", env = "SAFELINK_PIN_DIR")]
    pin_dir: Option<PathBuf>,
    /// HTTP API listen address [default: 127.0.0.1:8000]; off loopback a token is required
    /// (SAFELINK_API_TOKEN).
    #[arg(long, value_name = "ADDR:PORT", env = "SAFELINK_LISTEN")]
    listen: Option<SocketAddr>,
    #[command(flatten)]
    data: DataArgs,
    /// Also append every new alert to FILE as an EVE JSON line (Suricata's eve.json form,
    /// for Filebeat/Elastic); SIGHUP reopens it for logrotate.
    #[arg(long, value_name = "FILE", env = "SAFELINK_EVE_LOG")]
    eve_log: Option<PathBuf>,
    #[command(flatten)]
    model: ModelFileArgs,
    /// Run the ANN flow classifier ([ann] enabled; the default).
    #[arg(long, overrides_with = "no_ann")]
    ann: bool,
    /// Rule automata only: no ANN scoring or alerts ([ann] enabled = false).
    #[arg(long)]
    no_ann: bool,
    #[command(flatten)]
    timeouts: super::TimeoutArgs,
    /// Run the continuous learner with the sniffer ([learning] enabled; the default).
    #[arg(long, overrides_with = "no_learning")]
    learning: bool,
    /// No continuous learner ([learning] enabled = false): no baseline phase either, the ANN
    /// (if on) alerts from the start with the model it has.
    #[arg(long)]
    no_learning: bool,
    #[command(flatten)]
    profile: ProfileArgs,
    /// Seconds between sweeps of the kernel flow map [default: 1].
    #[arg(long, value_name = "SECS", env = "SAFELINK_SWEEP_INTERVAL")]
    sweep_interval: Option<u64>,
    /// Seconds between status lines in the log, 0 = never [default: 60].
    #[arg(long, value_name = "SECS", env = "SAFELINK_STATUS_INTERVAL")]
    status_interval: Option<u64>,
    /// Fleet mode: publish samples and alerts to this NATS JetStream server and take signed
    /// models from it ([fleet] url; see docs/fleet.md).
    #[arg(long, value_name = "nats://HOST:PORT", env = "SAFELINK_FLEET")]
    fleet: Option<String>,
}

impl ConfigArgs {
    /// The effective configuration.
    pub fn resolve(&self) -> anyhow::Result<Config> {
        let mut c = self.file.load()?;
        if let Some(v) = &self.iface {
            c.sensor.iface = Some(v.clone());
        }
        if let Some(v) = self.xdp_mode {
            c.sensor.xdp_mode = v;
        }
        if self.no_egress {
            c.sensor.egress = false;
        }
        if let Some(v) = &self.pin_dir {
            c.sensor.pin_dir = v.clone();
        }
        if let Some(v) = self.listen {
            c.api.listen = v;
        }
        self.data.apply(&mut c);
        if let Some(v) = &self.eve_log {
            c.store.eve_log = Some(v.clone());
        }
        self.model.apply(&mut c);
        if self.ann {
            c.ann.enabled = true;
        }
        if self.no_ann {
            c.ann.enabled = false;
        }
        self.timeouts.apply(&mut c.flows);
        if self.learning {
            c.learning.enabled = true;
        }
        if self.no_learning {
            c.learning.enabled = false;
        }
        self.profile.apply(&mut c);
        if let Some(v) = self.sweep_interval {
            c.sensor.sweep_interval_s = v;
        }
        if let Some(v) = self.status_interval {
            c.sensor.status_interval_s = v;
        }
        if let Some(v) = &self.fleet {
            c.fleet.url = Some(v.clone());
        }
        if c.fleet.enabled() {
            // A fleet sensor learns through the fleet: its samples go to the fleet learner and
            // its models come from it, so the local learner (on by default) stays off.
            c.learning.enabled = false;
        }
        c.learning.params()?;
        c.fleet.validate().map_err(|e| anyhow::anyhow!(e))?;
        Ok(c)
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Print every record (flow start, flow, ARP) as a JSON line on stdout.
    #[arg(long)]
    print_records: bool,
}

pub fn run(a: RunArgs) -> anyhow::Result<ExitCode> {
    let cfg = a.config.resolve()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(daemon::run(
        cfg,
        RunOptions {
            print_records: a.print_records,
        },
    ))?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Print the effective configuration (file + environment + flags) as TOML.
    Print(ConfigArgs),
}

pub fn config(c: ConfigCmd) -> anyhow::Result<ExitCode> {
    match c {
        ConfigCmd::Print(a) => {
            let mut cfg = a.resolve()?;
            if cfg.api.token.is_some() {
                cfg.api.token = Some("<redacted>".into());
            }
            if cfg.privacy.key.is_some() {
                cfg.privacy.key = Some("<redacted>".into());
            }
            // nats://user:password@host: the password stays out of the listing.
            if let Some(u) = &mut cfg.fleet.url
                && let Some((scheme, rest)) = u.split_once("://")
                && let Some((_, host)) = rest.rsplit_once('@')
            {
                *u = format!("{scheme}://<redacted>@{host}");
            }
            print!("{}", cfg.to_toml());
            // What the learning profile resolves to (values not set in the file).
            let p = cfg.learning.params()?;
            println!(
                "# [learning] profile \"{}\" resolves to: learning_interval_s = {}, \
                 min_samples = {}, batch_size = {}, learning_rate = {}, epochs = {}, \
                 max_history = {}",
                p.profile.as_str(),
                p.interval_s,
                p.min_samples,
                p.batch_size,
                p.learning_rate,
                p.epochs,
                p.max_history
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
