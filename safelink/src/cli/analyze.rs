//! `safelink analyze`: replays capture files through the feature code and prints records.
use std::{
    io::{BufWriter, IsTerminal as _, Read, Write as _},
    path::PathBuf,
    process::ExitCode,
};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use safelink::{record::Record, replay::replay_file};
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
    #[command(flatten)]
    timeouts: TimeoutArgs,
}

fn progress(path: &std::path::Path) -> impl FnOnce(Box<dyn Read>, u64) -> Box<dyn Read> {
    let name = path.display().to_string();
    move |r, size| {
        if !std::io::stderr().is_terminal() || size < 32 << 20 {
            return r;
        }
        let bar = ProgressBar::new(size).with_message(name);
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        Box::new(bar.wrap_read(r))
    }
}

pub fn analyze(a: AnalyzeArgs) -> anyhow::Result<ExitCode> {
    let timeouts = a.timeouts.timeouts();
    let mut out = BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let mut failed = 0usize;
    for path in &a.files {
        let mut write_err = None;
        let res = replay_file(path, &timeouts, progress(path), |r: Record| {
            if a.flows && write_err.is_none() && !matches!(r, Record::FlowStart(_)) {
                if let Err(e) = serde_json::to_writer(&mut out, &r).map_err(std::io::Error::from).and_then(|_| out.write_all(b"\n")) {
                    write_err = Some(e);
                }
            }
        });
        if let Some(e) = write_err {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(ExitCode::SUCCESS);
            }
            return Err(e.into());
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
    out.flush()?;
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
