//! `safelink analyze`: replays capture files through the feature code and the rule automata;
//! prints the alerts (JSON lines, or a table), or with `--flows` the flow and ARP records.
//! With `--store DIR` the alerts are also written into the sensor's alert store through the
//! daemon's alert sink, anonymised by the `[privacy]` policy of the configuration (which then
//! applies to the printed alerts too).
use std::{
    collections::BTreeMap,
    io::{BufWriter, IsTerminal as _, Write},
    path::PathBuf,
    process::ExitCode,
};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use safelink::{
    alert::{Alert, AlertSource},
    daemon::alerts::run_sink,
    detect::{
        bench,
        dfa::{AlertEvent, DfaConfig, Engine},
    },
    privacy::Policy,
    record::Record,
    replay::replay_file,
    store::Store,
};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::TimeoutArgs;

#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// Capture files (pcap or pcapng, Ethernet link type).
    #[arg(required = true, value_name = "PCAP")]
    files: Vec<PathBuf>,
    /// Print every flow record (and ARP record) as a JSON line on stdout.
    #[arg(long)]
    flows: bool,
    /// Print per-file counters (packets, malformed, flows, ...) as JSON on stderr.
    #[arg(long)]
    summary: bool,
    /// How alerts are printed: one JSON object per line, or a table for people.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
    /// Do not run the rule automata (DFA), e.g. with `--ann` for the ANN alone.
    #[arg(long)]
    no_dfa: bool,
    /// Also score every flow with the ANN classifier (the same code as `safelink run --ann`).
    #[arg(long)]
    ann: bool,
    /// ANN model file [default: models/base.onnx, then /usr/local/share/safelink/base.onnx].
    #[arg(long, value_name = "FILE", requires = "ann")]
    model: Option<PathBuf>,
    /// Thresholds and windows of the automata: a JSON file with any fields of the detection
    /// config (the rest keep their defaults; see safelink/src/detect/README.md).
    #[arg(long, value_name = "FILE")]
    detect_config: Option<PathBuf>,
    /// Also write the alerts into the alert store of this data directory (the store is
    /// DIR/store, as `safelink run --data-dir DIR`), through the daemon's alert sink and
    /// `[privacy]` policy. The store must not be in use by a running sensor.
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
    /// Configuration file whose `[privacy]` section anonymises the stored and printed alerts
    /// (the key from SAFELINK_PRIVACY_KEY or the file). With `--store` and no `--config`:
    /// ./safelink.toml, then /etc/safelink/safelink.toml, else addresses as seen.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Benchmark the automata on the given captures instead (records/s, peak RSS, as JSON).
    #[arg(long, hide = true)]
    bench_detect: bool,
    /// Least duration of the benchmark, seconds.
    #[arg(long, hide = true, default_value_t = 3.0)]
    bench_secs: f64,
    #[command(flatten)]
    timeouts: TimeoutArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    Json,
    Table,
}

fn detect_config(path: Option<&std::path::Path>) -> anyhow::Result<DfaConfig> {
    let Some(p) = path else {
        return Ok(DfaConfig::default());
    };
    let text =
        std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
    let cfg: DfaConfig = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a detection config", p.display()))?;
    cfg.validate().with_context(|| p.display().to_string())?;
    Ok(cfg)
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
            a.first_seen.clone(),
            a.last_seen.clone(),
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

pub fn analyze(a: AnalyzeArgs) -> anyhow::Result<ExitCode> {
    let timeouts = a.timeouts.timeouts();
    let cfg = detect_config(a.detect_config.as_deref())?;
    if a.bench_detect {
        let r = bench::run(&a.files, &timeouts, &cfg, a.bench_secs)?;
        println!("{}", serde_json::to_string(&r)?);
        return Ok(ExitCode::SUCCESS);
    }
    let policy = if a.config.is_some() || a.store.is_some() {
        let (c, _) = safelink::config::Config::load(a.config.as_deref())?;
        Policy::from_env(&c.privacy)
            .map_err(|e| anyhow::anyhow!("invalid [privacy] configuration: {e}"))?
    } else {
        Policy::default()
    };
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
    let print_alerts = !a.flows && (!a.no_dfa || a.ann);
    let model = if a.ann {
        let section = safelink::config::AnnSection {
            enabled: true,
            model: a.model.clone(),
            ..Default::default()
        };
        let p = section
            .model_path()
            .ok_or_else(|| anyhow::anyhow!("no ANN model found: pass --model FILE"))?;
        Some(
            safelink::ann::ModelHandle::open(&p)
                .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
        )
    } else {
        None
    };
    let mut next_id = 1u64;
    let mut table: Vec<Alert> = Vec::new();
    for path in &a.files {
        let mut write_err = None;
        let mut engine = if a.no_dfa {
            None
        } else {
            Some(Engine::new(cfg.clone())?)
        };
        // Final state of each alert of this file, by (source, engine id): the DFA engine and
        // the ANN detector number their alerts independently.
        let mut finals: BTreeMap<(AlertSource, u64), Alert> = BTreeMap::new();
        let mut events: Vec<AlertEvent> = Vec::new();
        let mut ann = model.as_ref().map(|h| {
            safelink::ann::AnnDetector::new(h.clone(), safelink::ann::AnnConfig::default())
        });
        let mut ann_events: Vec<AlertEvent> = Vec::new();
        // One sink per file: engine ids start over with each file.
        let sink = store.as_ref().map(|s| {
            let (tx, rx) = mpsc::channel::<AlertEvent>(4096);
            let (s, p) = (s.clone(), policy.clone());
            (tx, std::thread::spawn(move || run_sink(s, rx, &p)))
        });
        let to_sink = |ev: &AlertEvent| {
            if let Some((tx, _)) = &sink {
                // The sink only ends when the sender is dropped, so this cannot fail.
                let _ = tx.blocking_send(ev.clone());
            }
        };
        let res = replay_file(path, &timeouts, progress(path), |r: Record| {
            if let Some(d) = ann.as_mut() {
                d.observe_into(&r, &mut ann_events);
                for ev in ann_events.drain(..) {
                    to_sink(&ev);
                    let al = ev.into_alert();
                    finals.insert((al.source, al.id), al);
                }
            }
            if let Some(e) = engine.as_mut() {
                e.observe_into(&r, &mut events);
                for ev in events.drain(..) {
                    to_sink(&ev);
                    let al = ev.into_alert();
                    finals.insert((al.source, al.id), al);
                }
            }
            if a.flows
                && write_err.is_none()
                && !matches!(r, Record::FlowStart(_))
                && let Err(e) = serde_json::to_writer(&mut out, &r)
                    .map_err(std::io::Error::from)
                    .and_then(|_| out.write_all(b"\n"))
            {
                write_err = Some(e);
            }
        });
        if let Some(e) = write_err {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(ExitCode::SUCCESS);
            }
            return Err(e.into());
        }
        if let Some(d) = ann.as_mut() {
            for ev in d.finish() {
                to_sink(&ev);
                let al = ev.into_alert();
                finals.insert((al.source, al.id), al);
            }
        }
        if let Some(e) = engine.as_mut() {
            for ev in e.finish() {
                to_sink(&ev);
                let al = ev.into_alert();
                finals.insert((al.source, al.id), al);
            }
            info!(file = %path.display(), alerts = finals.len(), records = e.stats().records, "detection done");
        }
        if let Some((tx, handle)) = sink {
            drop(tx);
            let (new, updated) = handle
                .join()
                .map_err(|_| anyhow::anyhow!("the alert sink thread panicked"))?;
            info!(file = %path.display(), new, updated, "alerts stored");
        }
        if print_alerts && res.is_ok() {
            for mut al in finals.into_values() {
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
