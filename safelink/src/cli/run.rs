//! `safelink run`: the live sensor. Loads and attaches the XDP program, reads the ring buffer,
//! sweeps finished flows, and streams records until Ctrl-C / SIGTERM, then detaches cleanly.
use std::{
    io::Write as _,
    path::PathBuf,
    process::ExitCode,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use anyhow::Context as _;
use aya::maps::RingBuf;
use clap::Args;
use safelink::{
    capture::{
        epoch_offset_ns,
        events::{self, EventCounts},
        loader::{self, AttachMode},
        maps::SensorMaps,
        monotonic_ns,
        sweeper::{SweepStats, sweep_once},
    },
    record::Record,
};
use safelink_common::{Counter, MAP_EVENTS};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};
use tracing::{info, info_span, warn};

use super::TimeoutArgs;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Interface to attach to (default: the interface of the default route).
    #[arg(short, long, value_name = "IF", env = "SAFELINK_IFACE")]
    iface: Option<String>,
    /// XDP attach mode: native (driver) where supported, else SKB (generic).
    #[arg(long, value_enum, default_value_t = AttachMode::Auto, env = "SAFELINK_XDP_MODE")]
    xdp_mode: AttachMode,
    /// Directory under bpffs where maps are pinned (and reused after a restart).
    #[arg(long, value_name = "DIR", default_value_os_t = super::default_pin_dir(), env = "SAFELINK_PIN_DIR")]
    pin_dir: PathBuf,
    /// How often the flow map is swept for finished flows, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 1)]
    sweep_interval: u64,
    /// Print every flow and ARP record as a JSON line on stdout.
    #[arg(long)]
    print_records: bool,
    /// Seconds between status lines in the log (0: never).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    status_interval: u64,
    #[command(flatten)]
    timeouts: TimeoutArgs,
}

pub fn run(a: RunArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run_async(a))
}

async fn run_async(a: RunArgs) -> anyhow::Result<ExitCode> {
    if unsafe { libc::geteuid() } != 0 {
        warn!("not running as root: loading XDP needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON");
    }
    let iface = match a.iface {
        Some(i) => i,
        None => loader::default_route_iface()?,
    };
    let span = info_span!("sensor", iface = %iface);
    let _g = span.enter();
    let timeouts = a.timeouts.timeouts();
    let mut ebpf = loader::load(Some(&a.pin_dir))?;
    let attachment = loader::attach(&mut ebpf, &iface, a.xdp_mode)?;
    // Printed on stdout so scripts can wait for it.
    println!(
        "ATTACHED iface={} mode={} pins={}",
        attachment.iface,
        attachment.mode_name(),
        a.pin_dir.display()
    );
    std::io::stdout().flush()?;

    let mut maps = SensorMaps::from_ebpf(&mut ebpf)?;
    let ring = RingBuf::try_from(ebpf.take_map(MAP_EVENTS).context("map EVENTS missing")?)?;
    let epoch = epoch_offset_ns();
    let counts = Arc::new(EventCounts::default());
    let (tx, mut rx) = mpsc::channel::<Record>(4096);

    let mut ev_task = tokio::spawn(events::run(ring, epoch, counts.clone(), tx.clone()));

    let sweep_every = Duration::from_secs(a.sweep_interval.max(1));
    let status_every = Duration::from_secs(a.status_interval);
    let sweep_tx = tx.clone();
    drop(tx);
    let sweeper = tokio::spawn(async move {
        let mut stats = SweepStats::default();
        let mut tick = tokio::time::interval(sweep_every);
        let mut last_status = tokio::time::Instant::now();
        loop {
            tick.tick().await;
            let records = match sweep_once(&mut maps, &timeouts, monotonic_ns(), epoch, &mut stats)
            {
                Ok(r) => r,
                Err(e) => {
                    warn!(error = %e, "sweep failed");
                    continue;
                }
            };
            for r in records {
                if sweep_tx.send(Record::Flow(r)).await.is_err() {
                    return;
                }
            }
            if !status_every.is_zero() && last_status.elapsed() >= status_every {
                last_status = tokio::time::Instant::now();
                if let Ok(c) = maps.counters() {
                    info!(
                        packets = c.get(Counter::Packets),
                        bytes = c.get(Counter::Bytes),
                        flows_active = stats.active,
                        flows_exported = stats.exported,
                        malformed = c.get(Counter::Malformed),
                        events_sent = c.get(Counter::EventsSent),
                        events_dropped = c.get(Counter::EventsDropped),
                        lru_evicted_estimate = stats.lru_evicted_estimate,
                        "status"
                    );
                }
            }
        }
    });

    let print = a.print_records;
    let consumer = tokio::spawn(async move {
        let mut n = 0u64;
        while let Some(r) = rx.recv().await {
            n += 1;
            if print {
                let mut out = std::io::stdout().lock();
                if serde_json::to_writer(&mut out, &r).is_ok() {
                    let _ = out.write_all(b"\n");
                    let _ = out.flush();
                }
            }
        }
        n
    });

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => info!("SIGTERM"),
        _ = int.recv() => info!("SIGINT"),
        r = &mut ev_task => warn!(result = ?r, "ring-buffer reader stopped"),
    }
    loader::detach(&mut ebpf, attachment)?;
    // Let the reader drain what is already in the ring, then stop the producers; the consumer
    // ends once every sender is gone.
    tokio::time::sleep(Duration::from_millis(100)).await;
    ev_task.abort();
    sweeper.abort();
    let _ = ev_task.await;
    let _ = sweeper.await;
    let records = tokio::time::timeout(Duration::from_secs(2), consumer)
        .await
        .ok()
        .and_then(|r| r.ok())
        .unwrap_or(0);
    info!(
        records,
        flow_start_events = counts.flow_start.load(Ordering::Relaxed),
        flow_end_events = counts.flow_end.load(Ordering::Relaxed),
        arp_events = counts.arp.load(Ordering::Relaxed),
        pins = %a.pin_dir.display(),
        "stopped; maps stay pinned for the next run"
    );
    Ok(ExitCode::SUCCESS)
}
