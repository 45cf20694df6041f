//! Command-line interface: argument parsing (clap) and dispatch to the subcommands.
mod alerts;
mod analyze;
mod bench;
mod fleet;
mod generate;
mod inspect;
mod learn;
mod model;
mod privacy;
mod run;

use std::{path::PathBuf, process::ExitCode};

use clap::{Args, Parser, Subcommand, ValueEnum};
use safelink::{capture::DEFAULT_PIN_DIR, config::FlowsConfig};

/// `safelink --version`: the crate version, the git commit it was built from and the shipped
/// base model's version.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("SAFELINK_GIT_COMMIT"),
    ", base model ",
    env!("SAFELINK_BASE_MODEL_VERSION"),
    ")"
);

#[derive(Debug, Parser)]
#[command(
    name = "safelink",
    version = VERSION,
    about = "SafeLink network intrusion detection sensor (XDP flow features)",
    long_about = "SafeLink network intrusion detection sensor.\n\n\
        `safelink run` attaches the XDP program to an interface and streams flow and ARP records; \
        `safelink analyze` runs the same feature code over pcap/pcapng files without root."
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human, env = "SAFELINK_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Attach the XDP program and run the sensor until Ctrl-C / SIGTERM (root).
    Run(run::RunArgs),
    /// Run capture files through the sensor's feature code (no root needed).
    Analyze(analyze::AnalyzeArgs),
    /// Configuration: `safelink config print` shows the effective configuration.
    #[command(subcommand)]
    Config(run::ConfigCmd),
    /// Print the kernel counters of a running sensor as JSON (reads the pinned STATS map).
    Stats(inspect::PinArgs),
    /// Print the flows currently in the kernel flow map as JSON lines (per-CPU slots merged),
    /// then the open outer flows of tunnels (`"type": "outer_flow"`).
    Flows(inspect::PinArgs),
    /// Benchmarks (used by `cargo xtask bench`).
    #[command(hide = true)]
    Bench(bench::BenchArgs),
    /// ANN model files: `info` and `validate` (and the hidden recipe and benchmark).
    Model(model::ModelArgs),
    /// Continuous learning offline: status, history, versions, ingest captures, train a cycle,
    /// activate a version (on a stopped daemon's data directory).
    Learn(learn::LearnArgs),
    /// Alerts of a running sensor: `verdict ID --verdict false_positive|confirmed` (through
    /// its API, token from SAFELINK_API_TOKEN).
    Alerts(alerts::AlertsArgs),
    /// The fleet learner: train on every sensor's samples (NATS JetStream), sign and publish
    /// the models (docs/fleet.md).
    Learner(fleet::LearnerArgs),
    /// Fleet operations: `sensors`, `models`, `promote`, `rollback`, `keygen`.
    Fleet(fleet::FleetArgs),
    /// Privacy: `forget --ip|--mac` deletes a subject's data, `report` shows what is stored
    /// (both on a stopped sensor's store).
    Privacy(privacy::PrivacyArgs),
    /// Write the man pages or shell completions (packaging).
    #[command(hide = true)]
    Generate(generate::GenerateArgs),
}

/// Flow expiry flags of `run` and `analyze`: each overrides its `[flows]` key.
#[derive(Debug, Args)]
pub struct TimeoutArgs {
    #[arg(long, value_name = "SECS", env = "SAFELINK_IDLE_TIMEOUT",
          help = flows_help("A flow with no packet for this many seconds ends", FlowsConfig::DEFAULT.idle_timeout_s))]
    idle_timeout: Option<u64>,
    #[arg(long, value_name = "SECS", env = "SAFELINK_ACTIVE_TIMEOUT",
          help = flows_help("A flow older than this many seconds is exported (and starts over)", FlowsConfig::DEFAULT.active_timeout_s))]
    active_timeout: Option<u64>,
    #[arg(long, value_name = "SECS", env = "SAFELINK_CLOSED_LINGER",
          help = flows_help("Seconds to wait after a TCP FIN/RST for the closing packets before exporting", FlowsConfig::DEFAULT.closed_linger_s))]
    closed_linger: Option<u64>,
    #[arg(long, value_name = "SECS", env = "SAFELINK_EMBRYONIC_TIMEOUT",
          help = flows_help("Seconds of silence after which a flow that is still only a SYN (or one TCP segment without data, or one datagram of UDP or another non-ICMP protocol) ends as unanswered", FlowsConfig::DEFAULT.embryonic_timeout_s))]
    embryonic_timeout: Option<u64>,
    #[arg(long, value_name = "PACKETS", env = "SAFELINK_INTERIM_PACKETS",
          help = flows_help("Report a running flow to the detectors each time it has this many more packets (at most once per sweep; 0: only when it ends)", FlowsConfig::DEFAULT.interim_packets))]
    interim_packets: Option<u64>,
}

/// `analyze`'s own `[flows]` flag: the replay flow table's bound (the live sensor's is the
/// kernel map's).
#[derive(Debug, Args)]
pub struct ReplayFlowArgs {
    #[arg(long, value_name = "FLOWS", env = "SAFELINK_MAX_FLOWS",
          help = flows_help("The most flows held at once; when full, the longest-idle sixteenth ends as evicted (the kernel map holds 65536)", FlowsConfig::DEFAULT.max_flows))]
    max_flows: Option<u64>,
}

impl ReplayFlowArgs {
    pub fn apply(&self, flows: &mut FlowsConfig) {
        if let Some(n) = self.max_flows {
            flows.max_flows = n;
        }
    }
}

fn flows_help(what: &str, default: u64) -> String {
    format!("{what} [default: {default}]")
}

impl TimeoutArgs {
    /// Writes the flags given into `flows`.
    pub fn apply(&self, flows: &mut FlowsConfig) {
        let set = |v: Option<u64>, into: &mut u64| {
            if let Some(v) = v {
                *into = v;
            }
        };
        set(self.idle_timeout, &mut flows.idle_timeout_s);
        set(self.active_timeout, &mut flows.active_timeout_s);
        set(self.closed_linger, &mut flows.closed_linger_s);
        set(self.embryonic_timeout, &mut flows.embryonic_timeout_s);
        set(self.interim_packets, &mut flows.interim_packets);
    }
}

pub fn default_pin_dir() -> PathBuf {
    PathBuf::from(DEFAULT_PIN_DIR)
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::{EnvFilter, fmt};
    let filter = EnvFilter::try_from_env("SAFELINK_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only on a terminal: a log file or the journal gets plain text.
    let b = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Human => b.init(),
        LogFormat::Json => b.json().init(),
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let res = match cli.cmd {
        Cmd::Run(a) => run::run(a),
        Cmd::Config(c) => run::config(c),
        Cmd::Analyze(a) => analyze::analyze(a),
        Cmd::Stats(a) => inspect::stats(a),
        Cmd::Flows(a) => inspect::flows(a),
        Cmd::Bench(a) => bench::bench(a),
        Cmd::Model(a) => model::model(a),
        Cmd::Learn(a) => learn::learn(a),
        Cmd::Alerts(a) => alerts::alerts(a),
        Cmd::Privacy(a) => privacy::privacy(a),
        Cmd::Learner(a) => fleet::learner(a),
        Cmd::Fleet(a) => fleet::fleet(a),
        Cmd::Generate(a) => generate::generate(a),
    };
    match res {
        Ok(code) => code,
        Err(e) => {
            eprintln!("safelink: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// The long options of the subcommand at `path` (its own, not the global `--log-format`).
    fn options(path: &[&str]) -> Vec<String> {
        let mut cmd = Cli::command();
        for p in path {
            cmd = cmd
                .find_subcommand(p)
                .unwrap_or_else(|| panic!("no subcommand {p}"))
                .clone();
        }
        cmd.get_arguments()
            .filter(|a| !a.is_global_set())
            .filter_map(|a| a.get_long().map(str::to_owned))
            .collect()
    }

    #[test]
    fn each_subcommand_shows_only_the_options_that_apply_to_it() {
        let run = [
            "config",
            "set",
            "iface",
            "xdp-mode",
            "no-egress",
            "pin-dir",
            "listen",
            "data-dir",
            "eve-log",
            "model",
            "ann",
            "no-ann",
            "idle-timeout",
            "active-timeout",
            "closed-linger",
            "embryonic-timeout",
            "interim-packets",
            "learning",
            "no-learning",
            "profile",
            "learning-interval",
            "min-samples",
            "sweep-interval",
            "status-interval",
            "fleet",
        ];
        let mut run_own = run.to_vec();
        run_own.push("print-records");
        assert_eq!(options(&["run"]), run_own);
        // `config print` shows what `run` would use: it takes the same settings.
        assert_eq!(options(&["config", "print"]), run);
        assert_eq!(
            options(&["analyze"]),
            [
                "flows",
                "features",
                "summary",
                "format",
                "no-dfa",
                "ann",
                "model",
                "store",
                "eve-log",
                "config",
                "set",
                "bench-detect",
                "bench-secs",
                "idle-timeout",
                "active-timeout",
                "closed-linger",
                "embryonic-timeout",
                "interim-packets",
                "max-flows",
            ]
        );
        // The offline learner: no interface, attach mode, API or flow-expiry flags.
        assert_eq!(
            options(&["learn"]),
            [
                "config",
                "set",
                "data-dir",
                "model",
                "profile",
                "learning-interval",
                "min-samples"
            ]
        );
        for sub in ["status", "versions", "train", "ingest", "activate"] {
            assert_eq!(
                options(&["learn", sub]),
                Vec::<String>::new(),
                "learn {sub}"
            );
        }
        assert_eq!(options(&["learn", "history"]), ["limit"]);
        assert_eq!(
            options(&["privacy", "forget"]),
            ["ip", "mac", "config", "set", "data-dir"]
        );
        assert_eq!(
            options(&["privacy", "report"]),
            ["config", "set", "data-dir"]
        );
        for sub in ["info", "validate"] {
            assert_eq!(
                options(&["model", sub]),
                Vec::<String>::new(),
                "model {sub}"
            );
        }
        assert_eq!(options(&["stats"]), ["pin-dir"]);
        assert_eq!(options(&["flows"]), ["pin-dir"]);
    }
}
