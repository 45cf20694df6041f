//! `safelink run`: the live sensor. [`run`] reads as the steps it takes: open the store, build
//! the pipeline, attach the capture, serve the API, wait for shutdown, then stop in order —
//! detach, drain the capture into the pipeline, finish the pipeline (every alert stored),
//! stop the learner, the fleet side, the retention task and the API. With `[fleet] url`
//! the sensor publishes its samples and alerts and takes its models from the fleet
//! ([`crate::fleet::sensor`]).
//!
//! - [`detect`]: the thread that drives the [`Pipeline`] from the capture's record channel;
//! - [`sensor`]: the loaded XDP object, its attachment and the status snapshot;
//! - the sweeper task here exports finished flows and copies the kernel counters into the
//!   metrics.
pub mod detect;
pub mod sensor;
pub mod stages;

use std::{
    io::Write as _,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use anyhow::Context as _;
use aya::maps::RingBuf;
use safelink_common::{Counter, MAP_EVENTS};
use tokio::{
    net::TcpListener,
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tracing::{error, info, info_span, warn};

use crate::{
    alert::AlertSource,
    ann::ModelHandle,
    api,
    capture::{
        epoch_offset_ns,
        events::{self, EventCounts},
        loader,
        maps::SensorMaps,
        monotonic_ns,
        sweeper::{SweepStats, sweep_once},
    },
    config::Config,
    learn::Learner,
    pipeline::{Pipeline, Report, Stages, eve_log::EveLog},
    privacy::Policy,
    record::Record,
    store::Store,
    telemetry,
};
use detect::{DriveOptions, SensorClock};
use sensor::{Control, Live, Sensor};

/// Options that are not part of the configuration file.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Print every record as a JSON line on stdout.
    pub print_records: bool,
}

pub async fn run(cfg: Config, opts: RunOptions) -> anyhow::Result<()> {
    // SAFETY: no arguments.
    if unsafe { libc::geteuid() } != 0 {
        warn!("not running as root: loading XDP needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON");
    }
    let iface = match &cfg.sensor.iface {
        Some(i) if !i.is_empty() => i.clone(),
        _ => loader::default_route_iface()?,
    };
    // Metrics first, so every component records from its start (GET /metrics renders them).
    telemetry::install();
    let span = info_span!("sensor", iface = %iface);
    let _g = span.enter();

    // Refuse an unsafe API configuration before touching the kernel.
    let (listener, auth) = bind_api(&cfg).await?;
    let store = open_store(&cfg)?;
    let privacy = Policy::from_env(&cfg.privacy)
        .map_err(|e| anyhow::anyhow!("invalid [privacy] configuration: {e}"))?;
    info!(
        ip_mode = privacy.mode().as_str(),
        hash_macs = privacy.hash_macs(),
        "privacy policy"
    );
    let (learner, model) = open_model(&cfg, &store)?;
    // Fleet mode: samples and alerts go to the fleet, models come from it.
    let fleet = match (cfg.fleet.enabled(), &model) {
        (false, _) => None,
        (true, None) => {
            anyhow::bail!("fleet mode needs the ANN model to label flows (set [ann] model)")
        }
        (true, Some(m)) => Some(
            crate::fleet::sensor::FleetSensor::start(
                &cfg.fleet,
                store.clone(),
                m.clone(),
                &cfg.store.data_dir,
                &cfg.api.model_dir(&cfg.store.data_dir),
                cfg.api.max_model_bytes,
            )
            .await
            .context("fleet mode")?,
        ),
    };
    let eve = match &cfg.store.eve_log {
        Some(p) => Some(
            EveLog::open(p).with_context(|| format!("cannot open the EVE log {}", p.display()))?,
        ),
        None => None,
    };
    let eve_reopen = eve.as_ref().map(EveLog::reopen_flag);
    let pipeline = build_pipeline(&cfg, &store, &privacy, learner.as_ref(), model.clone(), eve)?;
    let mut sources = vec![AlertSource::Dfa];
    if pipeline.ann_alerts() {
        sources.push(AlertSource::Ann);
    }
    // Signal handlers before the program is attached: a SIGTERM from now on is queued and
    // still detaches it.
    let mut signals = Signals::install()?;
    let capture = attach_capture(&cfg, &iface, sources)?;
    println!(
        "ATTACHED iface={iface} mode={} pins={} api=http://{}",
        capture.mode,
        cfg.sensor.pin_dir.display(),
        listener.local_addr()?
    );
    std::io::stdout().flush()?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let api_task = serve_api(
        &cfg,
        listener,
        auth,
        &store,
        &capture.sensor,
        learner.clone(),
        model,
        fleet.as_ref().map(|f| f.handle.clone()),
        privacy.clone(),
        stop_rx.clone(),
    );
    // Records flow one way: capture → channel → detection thread → sink and collector.
    // One monotonic → Unix offset for the events, the swept flows and the ticks: a later
    // wall-clock step moves none of them apart.
    let epoch = epoch_offset_ns();
    let (tx, rx) = mpsc::channel::<Record>(8192);
    let detector = detect::spawn(
        pipeline,
        rx,
        SensorClock::new(epoch),
        DriveOptions {
            print_records: opts.print_records.then(|| privacy.clone()),
            batch_wait: Duration::from_millis(cfg.ann.detector.batch_wait_ms),
            tick: Duration::from_secs(1),
        },
    );
    let Capture {
        sensor,
        maps,
        ring,
        mode: _,
    } = capture;
    let counts = Arc::new(EventCounts::default());
    let retention_every = Duration::from_secs(privacy.retention_interval_s());
    let (ages, store2) = (privacy.ages(), store.clone());
    let mut stages = Running {
        tasks: vec![
            stages::spawn(
                "ring_reader",
                events::run(ring, epoch, counts.clone(), tx.clone()),
            ),
            stages::spawn(
                "sweeper",
                sweep_loop(&cfg, maps, sensor.clone(), counts.clone(), epoch, tx),
            ),
            stages::spawn("api", async move { Ok(api_task.await??) }),
            stages::spawn("retention", async move {
                crate::privacy::run_periodic(store2, ages, retention_every, stop_rx).await;
                Ok(())
            }),
        ],
        detection: Some(tokio::task::spawn_blocking(move || detector.join())),
    };

    let hup = tokio::spawn(reopen_on_sighup(eve_reopen));
    let ended = wait_for_shutdown(&mut signals, &mut stages).await;
    hup.abort();
    if let Ended::Stage(stage, reason) = &ended {
        error!(stage, %reason, "a stage of the sensor stopped; shutting down");
        sensor.stages.failed(stage, reason.clone());
        // GET /status says so for a moment before the API goes too.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    // A failed detach is reported at the end; the drain below still runs.
    let detached = sensor.detach();
    if let Err(e) = &detached {
        error!(error = %e, "detaching the XDP program failed");
    }
    // Let the reader drain what is already in the ring, then stop the producers: the
    // detection thread ends when every record sender is gone.
    tokio::time::sleep(Duration::from_millis(100)).await;
    for name in ["ring_reader", "sweeper"] {
        if let Some(h) = stages.take(name) {
            h.abort();
            let _ = h.await;
        }
    }
    let report = match stages.detection.take() {
        Some(h) => h
            .await?
            .map_err(|p| anyhow::anyhow!("the detection thread panicked: {}", panic_text(&p)))?,
        None => Report::default(),
    };
    if let Some(stats) = &report.ann {
        info!(?stats, "ANN scoring stopped");
    }
    if let Some(stats) = &report.samples {
        info!(?stats, "training samples collected");
    }
    if let Some(l) = learner {
        // Ends a running cycle at its next step; the serving model stays as committed.
        let _ = tokio::task::spawn_blocking(move || l.shutdown()).await;
    }
    if let Some(f) = fleet {
        // One last tail round: every sample the pipeline stored is queued (published later
        // if the server is not there now).
        f.stop().await;
    }
    let _ = stop_tx.send(true);
    for name in ["retention", "api"] {
        if let Some(h) = stages.take(name)
            && let Ok(Err(e)) = h.await
        {
            warn!(stage = name, error = %e, "stage error at shutdown");
        }
    }
    info!(
        alerts_new = report.stored.0,
        alerts_updated = report.stored.1,
        flow_start_events = counts.flow_start.load(Ordering::Relaxed),
        arp_events = counts.arp.load(Ordering::Relaxed),
        pins = %cfg.sensor.pin_dir.display(),
        "stopped; maps stay pinned for the next run"
    );
    if let Ended::Stage(stage, reason) = ended {
        anyhow::bail!("the {stage} stage stopped: {reason}");
    }
    detached.context("detaching the XDP program")?;
    Ok(())
}

/// Binds the API's listener and checks its auth policy (no token off loopback is refused).
async fn bind_api(cfg: &Config) -> anyhow::Result<(TcpListener, api::AuthPolicy)> {
    let listener = TcpListener::bind(cfg.api.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.api.listen))?;
    let token = std::env::var("SAFELINK_API_TOKEN")
        .ok()
        .or_else(|| cfg.api.token.clone());
    let auth = api::AuthPolicy::new(listener.local_addr()?, token.as_deref())?
        .with_allowed_hosts(&cfg.api.allowed_hosts);
    Ok((listener, auth))
}

/// The alert store under `[store] data_dir`.
fn open_store(cfg: &Config) -> anyhow::Result<Store> {
    let dir = cfg.store.data_dir.join("store");
    std::fs::create_dir_all(&cfg.store.data_dir)
        .with_context(|| format!("cannot create data dir {}", cfg.store.data_dir.display()))?;
    Store::open(&dir).with_context(|| format!("cannot open the alert store in {}", dir.display()))
}

/// The continuous learner (with `[learning] enabled`) and the model the ANN scores with: the
/// learner's, else the configured file. A refused or missing model leaves the sensor on the
/// rule automata alone.
fn open_model(
    cfg: &Config,
    store: &Store,
) -> anyhow::Result<(Option<Learner>, Option<ModelHandle>)> {
    let params = cfg.learning_params()?;
    let model_path = cfg.ann.model_path();
    if cfg.learning.enabled && cfg.fleet.enabled() {
        anyhow::bail!(
            "[learning] enabled and [fleet] url are exclusive: a fleet sensor sends its samples \
             to the fleet learner and takes its models from the fleet"
        );
    }
    let learner = if cfg.learning.enabled {
        let golden = cfg
            .learning
            .golden_path()
            .and_then(|p| match crate::learn::load_golden(&p) {
                Ok(g) => {
                    info!(golden = %p.display(), rows = g.len(), points = g.points(), "golden set loaded");
                    Some(g)
                }
                Err(e) => {
                    warn!(golden = %p.display(), error = %e, "golden set refused; validating on new samples only");
                    None
                }
            });
        match Learner::open(
            store.clone(),
            &cfg.store.data_dir,
            params,
            golden,
            model_path.as_deref(),
            true,
        ) {
            Ok(l) => Some(l),
            Err(e) => {
                warn!(error = %e, "continuous learning unavailable");
                None
            }
        }
    } else {
        None
    };
    let model = match (
        &learner,
        cfg.ann.enabled || cfg.learning.enabled || cfg.fleet.enabled(),
        &model_path,
    ) {
        (Some(l), _, _) => {
            info!(version = ?l.versions().ok().and_then(|v| v.0), "ANN model served by the learner");
            Some(l.handle())
        }
        (None, true, Some(p)) => match ModelHandle::open(p) {
            Ok(h) => {
                info!(model = %p.display(), "ANN model loaded");
                Some(h)
            }
            Err(e) => {
                warn!(model = %p.display(), error = %e, "ANN model refused; running with the rule automata only");
                None
            }
        },
        (None, true, None) => {
            warn!("no ANN model found (set [ann] model); running with the rule automata only");
            None
        }
        (None, false, _) => None,
    };
    Ok((learner, model))
}

/// The pipeline of the live sensor: automata, the ANN on `model`, the store's alert sink and,
/// with a learner, the sample collector (live: a full collector queue drops, counted).
pub fn build_pipeline(
    cfg: &Config,
    store: &Store,
    privacy: &Policy,
    learner: Option<&Learner>,
    model: Option<ModelHandle>,
    eve_log: Option<EveLog>,
) -> anyhow::Result<Pipeline> {
    Ok(Pipeline::new(
        cfg,
        Stages {
            dfa: true,
            model,
            alerts: Some(store.clone()),
            eve_log,
            // The collector labels flows for the local learner or, in fleet mode, for the
            // fleet's (the fleet publisher reads the stored samples).
            samples: match learner {
                Some(l) => Some((store.clone(), l.params().clone())),
                None if cfg.fleet.enabled() => Some((store.clone(), cfg.learning.params()?)),
                None => None,
            },
            baseline: learner.map(Learner::baseline),
            policy: privacy.clone(),
            ..Stages::default()
        },
    )?)
}

/// The loaded and attached XDP program, its maps and ring buffer.
struct Capture {
    sensor: Arc<Sensor>,
    maps: SensorMaps,
    ring: RingBuf<aya::maps::MapData>,
    mode: String,
}

fn attach_capture(cfg: &Config, iface: &str, sources: Vec<AlertSource>) -> anyhow::Result<Capture> {
    let mut ebpf = loader::load_with(
        loader::XDP_OBJECT,
        Some(&cfg.sensor.pin_dir),
        &cfg.flows.tunnel_config(),
    )?;
    let maps = SensorMaps::from_ebpf(&mut ebpf)?;
    let ring = RingBuf::try_from(ebpf.take_map(MAP_EVENTS).context("map EVENTS missing")?)?;
    let sensor = Arc::new(Sensor::new(
        ebpf,
        iface.to_owned(),
        cfg.sensor.xdp_mode,
        cfg.sensor.egress,
        sources,
    ));
    let mode = sensor.attach()?.unwrap_or_default();
    Ok(Capture {
        sensor,
        maps,
        ring,
        mode,
    })
}

/// The HTTP API until `stop` turns true; with a learner, the learner starts with it.
#[allow(clippy::too_many_arguments)]
fn serve_api(
    cfg: &Config,
    listener: TcpListener,
    auth: api::AuthPolicy,
    store: &Store,
    sensor: &Arc<Sensor>,
    learner: Option<Learner>,
    model: Option<ModelHandle>,
    fleet: Option<crate::fleet::FleetHandle>,
    privacy: Policy,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<std::io::Result<()>> {
    let mut state = api::ApiState::new(
        store.clone(),
        Arc::new(Control(sensor.clone(), learner.clone())),
        auth,
    )
    .with_privacy(privacy)
    .with_limits(&cfg.api, cfg.api.model_dir(&cfg.store.data_dir));
    if let Some(h) = model {
        state = state.with_model(h);
    }
    if let Some(f) = fleet {
        state = state.with_fleet(f);
    }
    if let Some(l) = learner {
        // The sniffer is running: so is the learner.
        l.start();
        state = state.with_learner(l);
    }
    let max_connections = cfg.api.max_connections;
    tokio::spawn(api::serve_with(
        listener,
        api::router(state),
        max_connections,
        async move {
            let _ = stop.wait_for(|s| *s).await;
        },
    ))
}

/// The sweeper: every `[sensor] sweep_interval_s` exports finished flows from the kernel map,
/// copies the kernel counters into the metrics and the status snapshot, and logs a status
/// line every `status_interval_s`.
fn sweep_loop(
    cfg: &Config,
    mut maps: SensorMaps,
    sensor: Arc<Sensor>,
    counts: Arc<EventCounts>,
    epoch: i64,
    tx: mpsc::Sender<Record>,
) -> impl std::future::Future<Output = anyhow::Result<()>> + Send + 'static {
    let timeouts = cfg.flows.timeouts();
    let every = Duration::from_secs(cfg.sensor.sweep_interval_s.max(1));
    let status_every = Duration::from_secs(cfg.sensor.status_interval_s);
    async move {
        let mut stats = SweepStats::default();
        let mut interim = crate::expiry::Interim::default();
        let mut tick = tokio::time::interval(every);
        let mut last_status = tokio::time::Instant::now();
        loop {
            tick.tick().await;
            // The map walk is blocking syscalls (up to 2 x 65 536 per map): off the runtime,
            // so the ring reader and the API keep going while it runs.
            let swept = tokio::task::spawn_blocking(move || {
                let t0 = std::time::Instant::now();
                let r = sweep_once(
                    &mut maps,
                    &timeouts,
                    &mut interim,
                    monotonic_ns(),
                    epoch,
                    &mut stats,
                );
                (maps, interim, stats, r, t0.elapsed())
            })
            .await;
            let (m, i, st, result, took) =
                swept.map_err(|e| anyhow::anyhow!("the blocking sweep failed: {e}"))?;
            (maps, interim, stats) = (m, i, st);
            telemetry::record_sweep(took);
            let records = match result {
                Ok(r) => r,
                Err(e) => {
                    warn!(error = %e, "sweep failed");
                    continue;
                }
            };
            for r in records {
                if tx.send(r).await.is_err() {
                    anyhow::bail!("the detection stage no longer takes records");
                }
            }
            let Ok(c) = maps.counters() else { continue };
            telemetry::record_kernel(&telemetry::KernelCounters {
                packets: c.get(Counter::Packets),
                bytes: c.get(Counter::Bytes),
                flows_active: stats.active,
                flows_created: c.get(Counter::FlowsCreated),
                malformed: c.get(Counter::Malformed),
                ringbuf_events: c.get(Counter::EventsSent),
                ringbuf_drops: c.get(Counter::EventsDropped),
                flows_promoted: c.get(Counter::FlowsPromoted),
                flows_evicted: stats.lru_evicted_estimate,
                flow_updates: stats.interim_updates,
                arp_throttled: c.get(Counter::ArpEventsThrottled),
                tunneled: c.get(Counter::Tunneled),
                tunnel_malformed: c.get(Counter::TunnelMalformed),
            });
            telemetry::record_sniffer_running(sensor.attached_mode().is_some());
            *sensor.live.lock().expect("live lock") = Live {
                packets: c.get(Counter::Packets),
                flows: stats.active,
                ringbuf_events: c.get(Counter::EventsSent),
                ringbuf_drops: c.get(Counter::EventsDropped),
            };
            if !status_every.is_zero() && last_status.elapsed() >= status_every {
                last_status = tokio::time::Instant::now();
                info!(
                    packets = c.get(Counter::Packets),
                    bytes = c.get(Counter::Bytes),
                    flows_active = stats.active,
                    flows_exported = stats.exported,
                    malformed = c.get(Counter::Malformed),
                    events_sent = c.get(Counter::EventsSent),
                    events_dropped = c.get(Counter::EventsDropped),
                    events_read = counts.flow_start.load(Ordering::Relaxed)
                        + counts.arp.load(Ordering::Relaxed),
                    lru_evicted_estimate = stats.lru_evicted_estimate,
                    "status"
                );
            }
        }
    }
}

/// SIGHUP reopens the EVE log (logrotate); without one it is logged and ignored, never fatal.
async fn reopen_on_sighup(flag: Option<Arc<std::sync::atomic::AtomicBool>>) -> anyhow::Result<()> {
    let mut hup = signal(SignalKind::hangup())?;
    while hup.recv().await.is_some() {
        match &flag {
            Some(f) => {
                info!("SIGHUP: reopening the EVE log");
                f.store(true, Ordering::SeqCst);
            }
            None => info!("SIGHUP: no EVE log to reopen"),
        }
    }
    Ok(())
}

/// SIGTERM and SIGINT, installed before the program is attached.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }
}

/// The running stages: async tasks by name, and the detection thread.
struct Running {
    tasks: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)>,
    detection: Option<JoinHandle<std::thread::Result<Report>>>,
}

impl Running {
    /// The task of `name`, unless it already ended.
    fn take(&mut self, name: &str) -> Option<JoinHandle<anyhow::Result<()>>> {
        let i = self.tasks.iter().position(|(n, _)| *n == name)?;
        Some(self.tasks.remove(i).1)
    }
}

/// Why the daemon stops.
enum Ended {
    Signal,
    /// A stage stopped on its own: a failure.
    Stage(&'static str, String),
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "panic".into())
}

/// Until SIGTERM or SIGINT, or until any stage stops on its own.
async fn wait_for_shutdown(sig: &mut Signals, stages: &mut Running) -> Ended {
    let tasks = &mut stages.tasks;
    let any_task = std::future::poll_fn(|cx| {
        for (i, (_, h)) in tasks.iter_mut().enumerate() {
            if let std::task::Poll::Ready(r) = std::pin::Pin::new(h).poll(cx) {
                return std::task::Poll::Ready((i, r));
            }
        }
        std::task::Poll::Pending
    });
    let detection = async {
        match stages.detection.as_mut() {
            Some(h) => h.await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = sig.term.recv() => { info!("SIGTERM"); Ended::Signal }
        _ = sig.int.recv() => { info!("SIGINT"); Ended::Signal }
        (i, r) = any_task => {
            let (name, _) = stages.tasks.remove(i);
            let reason = match r {
                Ok(Ok(())) => "ended".to_owned(),
                Ok(Err(e)) => format!("{e:#}"),
                Err(e) => format!("{e}"),
            };
            Ended::Stage(name, reason)
        }
        r = detection => {
            stages.detection = None;
            let reason = match r {
                Ok(Ok(_)) => "ended".to_owned(),
                Ok(Err(p)) => format!("panicked: {}", panic_text(&p)),
                Err(e) => format!("{e}"),
            };
            Ended::Stage("detection", reason)
        }
    }
}
