//! The daemon's driver of the [`Pipeline`]: a dedicated thread (`safelink-detect`) that takes
//! records from the capture's channel (ring-buffer reader and sweeper), feeds them, scores a
//! waiting ANN batch after `[ann] batch_wait_ms`, and ticks the pipeline once a second with
//! the [`Clock`]. The pipeline's work (automata, tract, sink hand-off) never runs on the async
//! runtime, so it cannot starve the ring reader or the API.
//!
//! The daemon ticks with [`SensorClock`], the records' own clock (`CLOCK_MONOTONIC` plus the
//! offset fixed at start), so a wall-clock step (NTP at boot, a VM resumed) cannot put the
//! ticks hours away from the records; the engine follows ticks by at most one tick's worth
//! anyway (see [`crate::clock`]).
use std::{
    io::Write as _,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use tokio::{runtime::Handle, sync::mpsc};

use crate::{
    pipeline::{Pipeline, Report},
    record::Record,
};

/// Where the pipeline's ticks take the time from.
pub trait Clock: Send + 'static {
    /// Now, ns since the Unix epoch.
    fn now_ns(&self) -> u64;
}

/// The wall clock (`CLOCK_REALTIME`). Not the daemon's: it steps when the system time is set.
pub struct WallClock;

impl Clock for WallClock {
    fn now_ns(&self) -> u64 {
        crate::capture::realtime_ns()
    }
}

/// The clock of the live records: `CLOCK_MONOTONIC` (that of `bpf_ktime_get_ns`) converted
/// with the same fixed offset as the ring-buffer events and swept flows.
pub struct SensorClock {
    epoch_offset_ns: i64,
}

impl SensorClock {
    /// With the offset the capture converts timestamps with ([`crate::capture::epoch_offset_ns`]
    /// taken once at start).
    pub fn new(epoch_offset_ns: i64) -> Self {
        Self { epoch_offset_ns }
    }
}

impl Clock for SensorClock {
    fn now_ns(&self) -> u64 {
        crate::capture::to_epoch_ns(crate::capture::monotonic_ns(), self.epoch_offset_ns)
    }
}

/// How the driver runs.
#[derive(Clone, Debug)]
pub struct DriveOptions {
    /// Print every record as a JSON line on stdout, addresses in this policy's written form.
    pub print_records: Option<crate::privacy::Policy>,
    /// Score a partial ANN batch once its oldest flow waited this long.
    pub batch_wait: Duration,
    /// Period of [`Pipeline::tick`].
    pub tick: Duration,
}

/// Starts the driver on its own thread; it ends when every sender of `records` is gone and
/// returns the pipeline's report. Call from within the tokio runtime (the thread waits on the
/// channel through the runtime's handle).
pub fn spawn(
    pipeline: Pipeline,
    records: mpsc::Receiver<Record>,
    clock: impl Clock,
    opts: DriveOptions,
) -> JoinHandle<Report> {
    let rt = Handle::current();
    std::thread::Builder::new()
        .name("safelink-detect".into())
        .spawn(move || drive(pipeline, records, &rt, &clock, opts))
        .expect("spawn the detection thread")
}

fn drive(
    mut p: Pipeline,
    mut rx: mpsc::Receiver<Record>,
    rt: &Handle,
    clock: &dyn Clock,
    opts: DriveOptions,
) -> Report {
    let mut next_tick = Instant::now() + opts.tick;
    // The test hook of `super::stages`: this thread dies a second after start.
    let fault_at =
        super::stages::fault_injected("detection").then(|| Instant::now() + Duration::from_secs(1));
    // When the oldest flow now waiting for an ANN batch arrived.
    let mut waiting_since: Option<Instant> = None;
    loop {
        let deadline = waiting_since.map_or(next_tick, |t| next_tick.min(t + opts.batch_wait));
        let wait = deadline.saturating_duration_since(Instant::now());
        match rt.block_on(async { tokio::time::timeout(wait, rx.recv()).await }) {
            Ok(Some(r)) => {
                feed(&mut p, &r, opts.print_records.as_ref());
                // Take what is already queued without going back to the runtime.
                while let Ok(r) = rx.try_recv() {
                    feed(&mut p, &r, opts.print_records.as_ref());
                }
            }
            Ok(None) => break,
            Err(_elapsed) => {}
        }
        let now = Instant::now();
        if p.ann_pending() == 0 {
            waiting_since = None;
        } else if let Some(t) = waiting_since {
            if now >= t + opts.batch_wait {
                p.score_pending();
                waiting_since = None;
            }
        } else {
            waiting_since = Some(now);
        }
        if now >= next_tick {
            if fault_at.is_some_and(|t| now >= t) {
                panic!("fault injected by {}", super::stages::FAULT_ENV);
            }
            // Without its sink, alerts would be lost: end the stage (the daemon then stops).
            assert!(!p.sink_stopped(), "the alert sink thread stopped");
            p.tick(clock.now_ns());
            if let Some(s) = p.dfa_stats() {
                crate::telemetry::record_clock(s);
            }
            next_tick = now + opts.tick;
        }
    }
    p.finish()
}

fn feed(p: &mut Pipeline, r: &Record, print: Option<&crate::privacy::Policy>) {
    if let Some(policy) = print {
        let mut o = std::io::stdout().lock();
        if serde_json::to_writer(&mut o, &policy.record(r)).is_ok() {
            let _ = o.write_all(b"\n");
            let _ = o.flush();
        }
    }
    p.feed(r);
}
