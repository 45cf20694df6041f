//! `safelink analyze`: replays capture files through the feature code and the rule automata;
//! prints the alerts (JSON lines, or a table), or with `--flows` the flow and ARP records, or
//! with `--features` each finished flow's ANN feature row as CSV (no addresses).
//! With `--store DIR` the alerts are also written into the sensor's alert store through the
//! daemon's alert sink, anonymised by the `[privacy]` policy of the configuration (which then
//! applies to the printed alerts too).
use std::{
    io::{BufWriter, IsTerminal as _, Write},
    path::PathBuf,
    process::ExitCode,
};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use safelink::{
    alert::Alert,
    ann::{ModelHandle, rows::FeatureRow},
    config::Config,
    detect::bench,
    pipeline::{Pipeline, Stages, eve_log::EveLog},
    privacy::Policy,
    replay::replay_file,
    store::Store,
};
use tracing::{error, info, warn};

use super::TimeoutArgs;

#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// Capture files (pcap or pcapng, Ethernet link type).
    #[arg(required = true, value_name = "PCAP")]
    files: Vec<PathBuf>,
    /// Print every flow record, and every outer-flow record of a tunnel, as a JSON line on
    /// stdout.
    #[arg(long)]
    flows: bool,
    /// Print every finished flow's ANN feature row as CSV on stdout (a header line, then IP
    /// version, protocol, ports and the feature vector; no addresses), e.g. to build a
    /// training set.
    #[arg(long, conflicts_with = "flows")]
    features: bool,
    /// Print per-file counters (packets, malformed, flows, ...) as JSON on stderr.
    #[arg(long)]
    summary: bool,
    /// How alerts are printed: one JSON object per line, or a table for people.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
    /// Do not run the rule automata (DFA), e.g. with `--ann` for the ANN alone.
    #[arg(long)]
    no_dfa: bool,
    /// Also score every flow with the ANN classifier (the same code as the live sensor's
    /// ANN). Without it a replay runs the rule automata only, whatever `[ann] enabled` says.
    #[arg(long)]
    ann: bool,
    /// ANN model file [default: `[ann] model`, else the shipped base.onnx: ./models, beside
    /// the binary, <prefix>/share/safelink, /usr/local/share/safelink, /usr/share/safelink,
    /// the source tree].
    #[arg(long, value_name = "FILE", requires = "ann")]
    model: Option<PathBuf>,
    /// Also write the alerts into the alert store of this data directory (the store is
    /// DIR/store, as `safelink run --data-dir DIR`), through the daemon's alert sink and
    /// `[privacy]` policy. The store must not be in use by a running sensor.
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
    /// With `--store`: also append every new alert to FILE as an EVE JSON line (Suricata's
    /// eve.json form), as `safelink run --eve-log` does.
    #[arg(long, value_name = "FILE", requires = "store")]
    eve_log: Option<PathBuf>,
    /// Configuration file, the same TOML as `safelink run`: `[dfa]` thresholds and windows,
    /// `[ann]` detector settings, `[flows]` timeouts and the `[privacy]` policy of the stored
    /// and printed alerts (key from SAFELINK_PRIVACY_KEY or the file). Without it: built-in
    /// defaults, except that `--store` looks for ./safelink.toml, then
    /// /etc/safelink/safelink.toml.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Override any configuration key, e.g. `--set dfa.port_scan.ports=20` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Benchmark the automata on the given captures instead (records/s, peak RSS, as JSON).
    #[arg(long, hide = true)]
    bench_detect: bool,
    /// Least duration of the benchmark, seconds.
    #[arg(long, hide = true, default_value_t = 3.0)]
    bench_secs: f64,
    #[command(flatten)]
    timeouts: TimeoutArgs,
    #[command(flatten)]
    replay_flows: super::ReplayFlowArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    Json,
    Table,
}

/// One line per alert, for people.
fn write_table(out: &mut impl Write, alerts: &[Alert]) -> std::io::Result<()> {
    let row = |a: &Alert| -> [String; 9] {
        let ep = |ip: Option<std::net::IpAddr>, port: Option<u16>| match (ip, port) {
            (Some(i), Some(p)) if i.is_ipv6() => format!("[{i}]:{p}"),
            (Some(i), Some(p)) => format!("{i}:{p}"),
            (Some(i), None) => i.to_string(),
            (None, _) => "-".into(),
        };
        let mut src = ep(a.src_ip, a.src_port);
        if let Some(m) = &a.src_mac {
            src = format!("{src} ({m})");
        }
        [
            a.id.to_string(),
            a.kind.as_str().to_owned(),
            format!("{:?}", a.severity).to_lowercase(),
            src,
            ep(a.dest_ip, a.dest_port),
            a.count.to_string(),
            a.first_seen.to_string(),
            a.last_seen.to_string(),
            a.description.clone(),
        ]
    };
    let head = [
        "ID",
        "KIND",
        "SEVERITY",
        "SOURCE",
        "DESTINATION",
        "COUNT",
        "FIRST SEEN",
        "LAST SEEN",
        "DESCRIPTION",
    ];
    let rows: Vec<[String; 9]> = alerts.iter().map(row).collect();
    let mut w = head.map(str::len);
    for r in &rows {
        for (i, c) in r.iter().enumerate().take(8) {
            w[i] = w[i].max(c.len());
        }
    }
    let line = |out: &mut dyn Write, cells: &[&str]| -> std::io::Result<()> {
        for (i, c) in cells.iter().enumerate() {
            if i < 8 {
                write!(out, "{c:<width$}  ", width = w[i])?;
            } else {
                writeln!(out, "{c}")?;
            }
        }
        Ok(())
    };
    line(out, &head)?;
    for r in &rows {
        let cells: Vec<&str> = r.iter().map(String::as_str).collect();
        line(out, &cells)?;
    }
    if rows.is_empty() {
        writeln!(out, "(no alerts)")?;
    }
    Ok(())
}

/// A progress bar for large files when stderr is a terminal: a `(done, total)` callback.
fn progress(path: &std::path::Path) -> impl FnMut(u64, u64) {
    let name = path.display().to_string();
    let mut bar: Option<ProgressBar> = None;
    move |done, total| {
        if total < 32 << 20 || !std::io::stderr().is_terminal() {
            return;
        }
        let b = bar.get_or_insert_with(|| {
            let b = ProgressBar::new(total).with_message(name.clone());
            b.set_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            b
        });
        b.set_position(done);
        if done >= total {
            b.finish_and_clear();
        }
    }
}

/// The configuration: `--config`, or with `--store` the search path, else the defaults;
/// then `--set`, then the timeout flags.
fn load_config(a: &AnalyzeArgs) -> anyhow::Result<Config> {
    let mut cfg = if a.config.is_some() || a.store.is_some() || !a.set.is_empty() {
        let path = match (&a.config, &a.store) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(_)) => None,
            (None, None) => Some(PathBuf::from("/dev/null")),
        };
        Config::load_with(path.as_deref(), &a.set)?.0
    } else {
        Config::default()
    };
    a.timeouts.apply(&mut cfg.flows);
    a.replay_flows.apply(&mut cfg.flows);
    // `[ann] enabled` (on by default) is the live sensor's, which starts the ANN in a local
    // baseline; a replay has no baseline of its own, so it scores only when asked.
    cfg.ann.enabled = a.ann;
    if let Some(m) = &a.model {
        cfg.ann.model = Some(m.clone());
    }
    cfg.dfa.validate().context("invalid [dfa] configuration")?;
    Ok(cfg)
}

pub fn analyze(a: AnalyzeArgs) -> anyhow::Result<ExitCode> {
    let cfg = load_config(&a)?;
    let timeouts = cfg.flows.timeouts();
    if a.bench_detect {
        let r = bench::run(&a.files, &timeouts, &cfg.dfa, a.bench_secs)?;
        println!("{}", serde_json::to_string(&r)?);
        return Ok(ExitCode::SUCCESS);
    }
    let policy = Policy::from_env(&cfg.privacy)
        .map_err(|e| anyhow::anyhow!("invalid [privacy] configuration: {e}"))?;
    let store = match &a.store {
        Some(dir) => {
            let d = dir.join("store");
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create data dir {}", dir.display()))?;
            Some(
                Store::open(&d)
                    .with_context(|| format!("cannot open the alert store in {}", d.display()))?,
            )
        }
        None => None,
    };
    let mut out = BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let mut failed = 0usize;
    // Alerts are printed unless flow records are asked for; ids run 1..n over all files.
    let print_alerts = !a.flows && !a.features && (!a.no_dfa || a.ann);
    if a.features {
        writeln!(out, "{}", FeatureRow::csv_header())?;
    }
    let model = if cfg.ann.enabled {
        let p = cfg
            .ann
            .model_path()
            .ok_or_else(|| anyhow::anyhow!("no ANN model found: pass --model FILE"))?;
        Some(ModelHandle::open(&p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?)
    } else {
        None
    };
    let mut next_id = 1u64;
    let mut table: Vec<Alert> = Vec::new();
    for path in &a.files {
        let mut write_err = None;
        let eve_log = match &a.eve_log {
            Some(p) => Some(
                EveLog::open(p)
                    .with_context(|| format!("cannot open the EVE log {}", p.display()))?,
            ),
            None => None,
        };
        // One pipeline per file: detector ids start over with each file.
        let mut pipeline = Pipeline::new(
            &cfg,
            Stages {
                dfa: !a.no_dfa,
                model: model.clone(),
                alerts: store.clone(),
                eve_log,
                policy: policy.clone(),
                lossless: true,
                keep_alerts: print_alerts,
                ..Stages::default()
            },
        )?;
        let res = replay_file(path, &timeouts, progress(path), |r| {
            let r = pipeline.feed_seen(&r);
            let r = r.as_ref();
            if a.flows
                && write_err.is_none()
                && matches!(
                    r,
                    safelink::record::Record::Flow(_) | safelink::record::Record::OuterFlow(_)
                )
                && let Err(e) = serde_json::to_writer(&mut out, r)
                    .map_err(std::io::Error::from)
                    .and_then(|_| out.write_all(b"\n"))
            {
                write_err = Some(e);
            }
            if a.features
                && write_err.is_none()
                && let safelink::record::Record::Flow(f) = r
                && let Err(e) = writeln!(out, "{}", FeatureRow::of(f).to_csv())
            {
                write_err = Some(e);
            }
        });
        let report = pipeline.finish();
        let report_dfa = report.dfa.clone();
        if let Some(e) = write_err {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(ExitCode::SUCCESS);
            }
            return Err(e.into());
        }
        if let Some(d) = &report.dfa {
            info!(file = %path.display(), records = d.records, alerts = d.alerts_raised, "detection done");
        }
        if store.is_some() {
            let (new, updated) = report.stored;
            info!(file = %path.display(), new, updated, "alerts stored");
        }
        if print_alerts && res.is_ok() {
            for mut al in report.alerts {
                policy.apply(&mut al);
                al.id = next_id;
                next_id += 1;
                match a.format {
                    Format::Table => table.push(al),
                    Format::Json => {
                        let w = serde_json::to_writer(&mut out, &al)
                            .map_err(std::io::Error::from)
                            .and_then(|_| out.write_all(b"\n"));
                        if let Err(e) = w {
                            if e.kind() == std::io::ErrorKind::BrokenPipe {
                                return Ok(ExitCode::SUCCESS);
                            }
                            return Err(e.into());
                        }
                    }
                }
            }
        }
        match res {
            Ok(s) => {
                if let Some(t) = &s.truncated {
                    warn!(file = %path.display(), frames = s.frames, "capture ends mid-record ({t}); frames before it were analysed");
                }
                info!(file = %path.display(), frames = s.frames, flows = s.flows, arp = s.arp, "analysed");
                if a.summary {
                    let mut obj: serde_json::Map<String, serde_json::Value> = s
                        .counters
                        .named()
                        .map(|(k, v)| (k.to_owned(), v.into()))
                        .collect();
                    obj.insert("file".into(), path.display().to_string().into());
                    obj.insert("flow_records".into(), s.flows.into());
                    obj.insert("flows_evicted".into(), s.evicted.into());
                    obj.insert("clock_outliers".into(), s.clock.outliers.into());
                    obj.insert("clock_steps".into(), s.clock.steps.into());
                    if let Some(d) = &report_dfa {
                        obj.insert("engine_clock_outliers".into(), d.clock_outliers.into());
                        obj.insert("engine_clock_steps".into(), d.clock_steps.into());
                    }
                    eprintln!("{}", serde_json::Value::Object(obj));
                }
            }
            Err(e) => {
                error!("{e}");
                failed += 1;
            }
        }
    }
    if print_alerts && a.format == Format::Table {
        write_table(&mut out, &table)?;
    }
    match out.flush() {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
        r => r?,
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
