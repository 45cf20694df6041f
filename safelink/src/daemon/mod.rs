//! `safelink run`: wires the live sensor together. XDP capture (ring-buffer reader + flow-map
//! sweeper) → record stream → DFA engine → alert sink (sled store), and the HTTP API, until
//! SIGINT/SIGTERM (the sweeper also copies the kernel counters into the Prometheus metrics); then detaches the program, drains the pipeline and flushes the store.
pub mod alerts;
pub mod sensor;

use std::{
    io::Write as _,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use anyhow::Context as _;
use aya::maps::RingBuf;
use safelink_common::{Counter, MAP_EVENTS};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
};
use tracing::{info, info_span, warn};

use crate::{
    alert::AlertSource,
    ann::{AnnDetector, ModelHandle, run_stream},
    api,
    capture::{
        epoch_offset_ns,
        events::{self, EventCounts},
        loader,
        maps::SensorMaps,
        monotonic_ns, realtime_ns,
        sweeper::{SweepStats, sweep_once},
    },
    config::Config,
    detect::dfa::{AlertEvent, Engine},
    record::Record,
    store::Store,
    telemetry,
};
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
    let listener = tokio::net::TcpListener::bind(cfg.api.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.api.listen))?;
    let token = std::env::var("SAFELINK_API_TOKEN")
        .ok()
        .or_else(|| cfg.api.token.clone());
    let policy = api::AuthPolicy::new(listener.local_addr()?, token.as_deref())?;
    let store_dir = cfg.store.data_dir.join("store");
    std::fs::create_dir_all(&cfg.store.data_dir)
        .with_context(|| format!("cannot create data dir {}", cfg.store.data_dir.display()))?;
    let store = Store::open(&store_dir)
        .with_context(|| format!("cannot open the alert store in {}", store_dir.display()))?;
    let privacy = crate::privacy::Policy::from_env(&cfg.privacy)
        .map_err(|e| anyhow::anyhow!("invalid [privacy] configuration: {e}"))?;
    info!(
        ip_mode = privacy.mode().as_str(),
        hash_macs = privacy.hash_macs(),
        "privacy policy"
    );

    // The ANN model: a refused or missing model leaves the sensor on the rule automata alone.
    // The learner needs it too (scoring only when `[ann] enabled = false`).
    cfg.ann
        .detector
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid [ann] configuration: {e}"))?;
    let params = cfg.learning.params().map_err(anyhow::Error::msg)?;
    let want_model = cfg.ann.enabled || cfg.learning.enabled;
    let model_path = cfg.ann.model_path();
    let mut learner = None;
    if cfg.learning.enabled {
        let golden = match cfg.learning.golden_path() {
            Some(p) => match crate::learn::load_golden(&p) {
                Ok(g) => Some(g),
                Err(e) => {
                    warn!(golden = %p.display(), error = %e, "golden set refused; validating on new samples only");
                    None
                }
            },
            None => None,
        };
        match crate::learn::Learner::open(
            store.clone(),
            &cfg.store.data_dir,
            params.clone(),
            golden,
            model_path.as_deref(),
            true,
        ) {
            Ok(l) => learner = Some(l),
            Err(e) => warn!(error = %e, "continuous learning unavailable"),
        }
    }
    let model = match (&learner, want_model, &model_path) {
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
    let mut sources = vec![AlertSource::Dfa];
    if model.is_some() && cfg.ann.enabled {
        sources.push(AlertSource::Ann);
    }

    let mut ebpf = loader::load(Some(&cfg.sensor.pin_dir))?;
    let mut maps = SensorMaps::from_ebpf(&mut ebpf)?;
    let ring = RingBuf::try_from(ebpf.take_map(MAP_EVENTS).context("map EVENTS missing")?)?;
    let sensor = Arc::new(Sensor::new(
        ebpf,
        iface.clone(),
        cfg.sensor.xdp_mode,
        cfg.sensor.egress,
        sources,
    ));
    let mode = sensor.attach()?.unwrap_or_default();
    // Printed on stdout so scripts can wait for it.
    println!(
        "ATTACHED iface={iface} mode={mode} pins={} api=http://{}",
        cfg.sensor.pin_dir.display(),
        listener.local_addr()?
    );
    std::io::stdout().flush()?;

    let epoch = epoch_offset_ns();
    let counts = Arc::new(EventCounts::default());
    let (tx, mut rx) = mpsc::channel::<Record>(8192);
    let (alert_tx, alert_rx) = mpsc::channel::<AlertEvent>(4096);
    let (stop_tx, stop_rx) = watch::channel(false);

    // API.
    let mut state = api::ApiState::new(
        store.clone(),
        Arc::new(Control(sensor.clone(), learner.clone())),
        policy,
    )
    .with_privacy(privacy.clone());
    if let Some(h) = &model {
        state = state.with_model(h.clone());
    }
    if let Some(l) = &learner {
        state = state.with_learner(l.clone());
        // The sniffer is running: so is the learner.
        l.start();
    }
    let collector = learner
        .as_ref()
        .map(|_| crate::learn::CollectorThread::spawn(store.clone(), &params, privacy.clone()));
    let mut api_stop = stop_rx.clone();
    let api_task = tokio::spawn(api::serve(listener, api::router(state), async move {
        let _ = api_stop.wait_for(|s| *s).await;
    }));

    // Ring-buffer reader.
    let mut ev_task = tokio::spawn(events::run(ring, epoch, counts.clone(), tx.clone()));

    // Sweeper: exports finished flows, refreshes the status snapshot.
    let timeouts = cfg.flows.timeouts();
    let sweep_every = Duration::from_secs(cfg.sensor.sweep_interval_s.max(1));
    let status_every = Duration::from_secs(cfg.sensor.status_interval_s);
    let sweep_tx = tx.clone();
    drop(tx);
    let sweep_sensor = sensor.clone();
    let sweep_counts = counts.clone();
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
            let Ok(c) = maps.counters() else { continue };
            telemetry::record_kernel(&telemetry::KernelCounters {
                packets: c.get(Counter::Packets),
                bytes: c.get(Counter::Bytes),
                flows_active: stats.active,
                flows_created: c.get(Counter::FlowsCreated),
                malformed: c.get(Counter::Malformed),
                ringbuf_events: c.get(Counter::EventsSent),
                ringbuf_drops: c.get(Counter::EventsDropped),
            });
            telemetry::record_sniffer_running(sweep_sensor.attached_mode().is_some());
            *sweep_sensor.live.lock().expect("live lock") = Live {
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
                    events_read = sweep_counts.flow_start.load(Ordering::Relaxed)
                        + sweep_counts.flow_end.load(Ordering::Relaxed)
                        + sweep_counts.arp.load(Ordering::Relaxed),
                    lru_evicted_estimate = stats.lru_evicted_estimate,
                    "status"
                );
            }
        }
    });

    // ANN: its own task scoring batches of flow records (batch size / wait from [ann]).
    let (ann_tx, ann_task) = match &model {
        Some(h) => {
            let (rtx, rrx) = mpsc::channel::<Record>(8192);
            let mut det = AnnDetector::new(h.clone(), cfg.ann.detector.clone());
            if let Some(c) = &collector {
                let c = c.handle.clone();
                det = det.with_tap(Box::new(move |f, s, _| c.scored(f, s)));
            }
            if !cfg.ann.enabled {
                det = det.scoring_only();
            }
            (
                Some(rtx),
                Some(tokio::spawn(run_stream(det, rrx, alert_tx.clone()))),
            )
        }
        None => (None, None),
    };

    // Detection: records → DFA engine → alert events (and flow records to the ANN). Ticks once
    // a second so quiet incidents cool down on the wall clock.
    let mut engine = Engine::new(cfg.dfa.clone()).context("invalid [dfa] configuration")?;
    let print = opts.print_records;
    let collect = collector.as_ref().map(|c| c.handle.clone());
    let detector = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut out = Vec::new();
        loop {
            tokio::select! {
                r = rx.recv() => match r {
                    Some(rec) => {
                        if print {
                            let mut o = std::io::stdout().lock();
                            if serde_json::to_writer(&mut o, &rec).is_ok() {
                                let _ = o.write_all(b"\n");
                                let _ = o.flush();
                            }
                        }
                        engine.observe_into(&rec, &mut out);
                        if let (Some(tx), Record::Flow(_)) = (&ann_tx, &rec) {
                            // Detection never waits on the ANN: a full queue drops the record.
                            let _ = tx.try_send(rec);
                        }
                    }
                    None => break,
                },
                _ = tick.tick() => {
                    out.extend(engine.tick(realtime_ns()));
                    if let Some(c) = &collect {
                        c.tick(realtime_ns());
                    }
                }
            }
            for ev in out.drain(..) {
                if let (Some(c), AlertEvent::New(a)) = (&collect, &ev) {
                    c.alert(a);
                }
                if alert_tx.send(ev).await.is_err() {
                    return;
                }
            }
        }
        for ev in engine.finish() {
            let _ = alert_tx.send(ev).await;
        }
    });
    let sink_store = store.clone();
    let sink_privacy = privacy.clone();
    let sink =
        tokio::task::spawn_blocking(move || alerts::run_sink(sink_store, alert_rx, &sink_privacy));

    // Retention: deletes what is older than the [privacy] ages, at start and then periodically.
    let retention = tokio::spawn(crate::privacy::run_periodic(
        store.clone(),
        privacy.ages(),
        Duration::from_secs(privacy.retention_interval_s()),
        stop_rx.clone(),
    ));

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => info!("SIGTERM"),
        _ = int.recv() => info!("SIGINT"),
        r = &mut ev_task => warn!(result = ?r, "ring-buffer reader stopped"),
    }
    sensor.detach()?;
    // Let the reader drain what is already in the ring, then stop the producers; the detector
    // ends when every record sender is gone, the sink when the detector is done.
    tokio::time::sleep(Duration::from_millis(100)).await;
    ev_task.abort();
    sweeper.abort();
    let _ = ev_task.await;
    let _ = sweeper.await;
    let _ = detector.await;
    if let Some(t) = ann_task
        && let Ok(stats) = t.await
    {
        info!(?stats, "ANN scoring stopped");
    }
    let (new, updated) = sink.await.unwrap_or((0, 0));
    if let Some(l) = learner.clone() {
        // Ends a running cycle at its next step; the serving model stays as committed.
        let _ = tokio::task::spawn_blocking(move || l.shutdown()).await;
    }
    if let Some(c) = collector {
        let stats = tokio::task::spawn_blocking(move || c.finish())
            .await
            .unwrap_or_default();
        info!(?stats, "training samples collected");
    }
    let _ = stop_tx.send(true);
    let _ = retention.await;
    if let Ok(Err(e)) = api_task.await {
        warn!(error = %e, "API server error");
    }
    info!(
        alerts_new = new,
        alerts_updated = updated,
        flow_start_events = counts.flow_start.load(Ordering::Relaxed),
        flow_end_events = counts.flow_end.load(Ordering::Relaxed),
        arp_events = counts.arp.load(Ordering::Relaxed),
        pins = %cfg.sensor.pin_dir.display(),
        "stopped; maps stay pinned for the next run"
    );
    Ok(())
}
