//! Alert floods and full disks, through the real alert sink ([`SinkThread`]) on a real sled
//! store, with the real HTTP API on the same store:
//!
//! - group commit: a flood of alerts costs far fewer fsyncs than alerts, and every alert is
//!   acknowledged (its EVE line written, which happens only after its group's fsync) within
//!   the commit interval plus an fsync;
//! - full disk (root: a 4 MiB tmpfs, skipped with `SKIP` otherwise): alerts raised while a
//!   filler file eats the space are queued (and beyond the retry cap dropped, counted),
//!   `/status` and `/metrics` show the store degraded with the error; after the filler is
//!   deleted the store recovers by itself and writes the queue. Prints the recovery time.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use safelink::alert::{Alert, AlertEvent, AlertKind, AlertSource, Severity, Timestamp};
use safelink::api::{
    self, ApiState, AuthPolicy, ControlError, ControlFuture, SensorControl, SensorStatus,
};
use safelink::pipeline::eve_log::EveLog;
use safelink::pipeline::sink::{SinkOptions, SinkThread};
use safelink::privacy::Policy;
use safelink::store::Store;
use serde_json::Value;

fn alert(engine_id: u64, count: u64) -> Alert {
    let ts = Timestamp::parse("2024-05-01T12:00:00Z").unwrap();
    let src = format!("198.51.{}.{}", engine_id / 250 % 250, engine_id % 250 + 1);
    Alert {
        id: engine_id,
        timestamp: ts,
        source: AlertSource::Dfa,
        kind: AlertKind::SYN_FLOOD,
        severity: Severity::High,
        confidence: 1.0,
        src_ip: Some(src.parse().unwrap()),
        src_port: None,
        dest_ip: Some("192.0.2.10".parse().unwrap()),
        dest_port: Some(80),
        proto: "tcp".into(),
        src_mac: None,
        first_seen: ts,
        last_seen: ts,
        count,
        description: format!("SYN flood #{engine_id} ({count})"),
        community_id: None,
        tunnel: None,
        explanation: None,
        resembles: None,
        features: vec![0.25; 32],
    }
}

fn eve_lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !done() {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
    t0.elapsed()
}

#[test]
fn group_commit_batches_a_flood_with_bounded_latency() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let eve_path = dir.path().join("eve.json");
    let opts = SinkOptions {
        commit_interval: Duration::from_millis(50),
        commit_max: 256,
        ..SinkOptions::default()
    };

    // A flood: 5000 new alerts and 5000 updates as fast as the detectors can hand them over.
    const N: u64 = 5000;
    let sink = SinkThread::spawn(
        store.clone(),
        Policy::default(),
        Some(EveLog::open(&eve_path).unwrap()),
        opts,
    );
    let fsyncs0 = store.health().fsyncs;
    let t0 = Instant::now();
    for i in 1..=N {
        sink.send(AlertEvent::New(alert(i, 1)));
        sink.send(AlertEvent::Updated(alert(i, 7)));
    }
    assert_eq!(sink.finish(), (N, N));
    let elapsed = t0.elapsed();
    let fsyncs = store.health().fsyncs - fsyncs0;
    println!(
        "flood: {N} alerts + {N} updates, {fsyncs} fsyncs, {elapsed:?} ({:.0} writes per fsync)",
        (2 * N) as f64 / fsyncs as f64
    );
    // At most one fsync per 256 writes plus one per 50 ms of the flood, plus the last one.
    let bound = 2 * N / 256 + (elapsed.as_millis() / 50) as u64 + 2;
    assert!(fsyncs <= bound, "{fsyncs} fsyncs > {bound}");
    assert!(fsyncs * 20 < 2 * N, "{fsyncs} fsyncs for {} writes", 2 * N);
    assert_eq!(store.counts().unwrap().active, N);
    assert_eq!(eve_lines(&eve_path), N as usize);
    assert_eq!(store.get(N).unwrap().unwrap().count, 7);

    // A trickle: one alert every 5 ms. Each is acknowledged (EVE line, after its fsync)
    // within the commit interval plus an fsync; the fsyncs stay one per interval at most.
    let sink = SinkThread::spawn(
        store.clone(),
        Policy::default(),
        Some(EveLog::open(&eve_path).unwrap()),
        opts,
    );
    let fsyncs0 = store.health().fsyncs;
    const TRICKLE: u64 = 100;
    // A watcher notes when each EVE line (acknowledgement) appears.
    let watch_path = eve_path.clone();
    let watcher = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let t = Instant::now();
        while seen.len() < TRICKLE as usize && t.elapsed() < Duration::from_secs(20) {
            let n = eve_lines(&watch_path).saturating_sub(N as usize);
            while seen.len() < n {
                seen.push(Instant::now());
            }
            std::thread::sleep(Duration::from_micros(250));
        }
        seen
    });
    let t0 = Instant::now();
    let mut sent_at = Vec::new();
    for i in 1..=TRICKLE {
        sent_at.push(Instant::now());
        sink.send(AlertEvent::New(alert(N + i, 1)));
        std::thread::sleep(Duration::from_millis(5));
    }
    let acked_at = watcher.join().unwrap();
    assert_eq!(acked_at.len(), TRICKLE as usize);
    let worst = sent_at
        .iter()
        .zip(&acked_at)
        .map(|(s, a)| a.saturating_duration_since(*s))
        .max()
        .unwrap();
    let elapsed = t0.elapsed();
    assert_eq!(sink.finish(), (TRICKLE, 0));
    let fsyncs = store.health().fsyncs - fsyncs0;
    println!(
        "trickle: {TRICKLE} alerts over {elapsed:?}, {fsyncs} fsyncs, worst acknowledgement {worst:?}"
    );
    assert!(
        worst < Duration::from_millis(50 + 250),
        "an alert waited {worst:?} for its fsync"
    );
    assert!(fsyncs <= (elapsed.as_millis() / 50) as u64 + 2, "{fsyncs}");
    assert!(fsyncs * 3 < TRICKLE, "{fsyncs} fsyncs for {TRICKLE} alerts");
    assert_eq!(eve_lines(&eve_path), (N + TRICKLE) as usize);
    assert_eq!(store.counts().unwrap().active, N + TRICKLE);
}

struct IdleSensor;

impl SensorControl for IdleSensor {
    fn status(&self) -> SensorStatus {
        SensorStatus {
            running: true,
            interface: Some("lab0".into()),
            xdp_mode: Some("skb".into()),
            uptime_secs: 1,
            packets: 0,
            flows: 0,
            ringbuf_events: 0,
            ringbuf_drops: 0,
            detection_sources: vec![AlertSource::Dfa],
            degraded: Vec::new(),
        }
    }

    fn start(&self) -> ControlFuture<'_> {
        Box::pin(async { Err(ControlError::Conflict("test".into())) })
    }

    fn stop(&self) -> ControlFuture<'_> {
        Box::pin(async { Err(ControlError::Conflict("test".into())) })
    }
}

/// The API on `store`, on its own runtime thread; returns its base URL.
fn serve(store: Store) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            safelink::telemetry::install();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let bound: SocketAddr = listener.local_addr().unwrap();
            let policy = AuthPolicy::new(bound, Some("t0ken-t0ken-t0ken")).unwrap();
            let state = ApiState::new(store, Arc::new(IdleSensor), policy);
            tx.send(format!("http://{bound}")).unwrap();
            api::serve(listener, api::router(state), std::future::pending())
                .await
                .unwrap();
        });
    });
    rx.recv().unwrap()
}

fn get(url: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "--noproxy", "*", "-w", "\n%{http_code}", url])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), body.to_string())
}

fn status(base: &str) -> Value {
    let (code, body) = get(&format!("{base}/status"));
    assert_eq!(code, 200, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["store"].clone()
}

fn metric(base: &str, name: &str) -> f64 {
    let (code, body) = get(&format!("{base}/metrics"));
    assert_eq!(code, 200, "{body}");
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from /metrics"))
}

/// A tmpfs of `size` at a fresh directory, unmounted on drop.
struct Tmpfs(PathBuf, #[allow(dead_code)] tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let at = dir.path().join("mnt");
        std::fs::create_dir(&at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&at)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount tmpfs");
        Tmpfs(at, dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes zeros into `path` until the filesystem is full.
fn fill(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 64 * 1024];
    while f.write_all(&block).is_ok() {}
    let small = [0u8; 512];
    while f.write_all(&small).is_ok() {}
    let _ = f.sync_all();
}

#[test]
fn full_disk_degrades_queues_and_recovers() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP full_disk_degrades_queues_and_recovers: needs root (mount tmpfs)");
        return;
    }
    let fs = Tmpfs::mount("4m");
    let keep = tempfile::tempdir().unwrap();
    let eve_path = keep.path().join("eve.json");
    let store = Store::open(fs.0.join("store")).unwrap();
    let base = serve(store.clone());
    const RETRY_CAP: usize = 300;
    let sink = SinkThread::spawn(
        store.clone(),
        Policy::default(),
        Some(EveLog::open(&eve_path).unwrap()),
        SinkOptions {
            retry_cap: RETRY_CAP,
            ..SinkOptions::default()
        },
    );

    // The attack starts while the disk has room.
    let mut sent = 0u64;
    for _ in 0..100 {
        sent += 1;
        sink.send(AlertEvent::New(alert(sent, 1)));
    }
    wait_for("the first alerts", Duration::from_secs(10), || {
        eve_lines(&eve_path) == 100
    });
    assert_eq!(status(&base)["state"], "ok");

    // A filler eats the space; the attack goes on until the store fails, then for as many
    // alerts again as the retry queue holds and 50 more. Alert 1 (stored) is updated and
    // so is a new alert waiting in the queue.
    let filler = fs.0.join("filler");
    fill(&filler);
    let t_full = Instant::now();
    sink.send(AlertEvent::Updated(alert(1, 13)));
    while !store.degraded() {
        assert!(
            t_full.elapsed() < Duration::from_secs(20),
            "the store never failed"
        );
        sent += 1;
        sink.send(AlertEvent::New(alert(sent, 1)));
        std::thread::sleep(Duration::from_millis(2));
    }
    let degraded_after = t_full.elapsed();
    // The alerts sent until the store failed and the first RETRY_CAP of the rest fill the
    // retry queue, the newest are dropped; the update goes to the 50th alert sent after the
    // failure, queued however many went before it (it was the 60th from the end, which a
    // slow failure pushed out of the queue: then its update was an entry of its own).
    let updated_in_queue = sent + 50;
    for _ in 0..RETRY_CAP + 50 {
        sent += 1;
        sink.send(AlertEvent::New(alert(sent, 1)));
    }
    sink.send(AlertEvent::Updated(alert(updated_in_queue, 9)));
    // Everything sent is acknowledged, waiting for a retry or dropped (counted): no alert
    // vanishes silently. (The update of alert 1 may wait in the queue as its own entry.)
    wait_for(
        "the sink to take every event",
        Duration::from_secs(10),
        || {
            let h = store.health();
            eve_lines(&eve_path) as u64 + h.alerts_queued + h.alerts_dropped >= sent
        },
    );
    let h = store.health();
    let acked_before = eve_lines(&eve_path) as u64;
    println!(
        "disk full: degraded {degraded_after:?} after the filler was written; \
         {acked_before} acknowledged, {} queued, {} dropped of {sent} alerts",
        h.alerts_queued, h.alerts_dropped
    );
    let accounted = acked_before + h.alerts_queued + h.alerts_dropped;
    assert!(
        accounted == sent || accounted == sent + 1,
        "{accounted} != {sent}"
    );
    assert_eq!(h.alerts_queued, RETRY_CAP as u64);
    assert!(h.alerts_dropped >= 50, "{}", h.alerts_dropped);
    let s = status(&base);
    assert_eq!(s["state"], "degraded", "{s}");
    assert!(
        s["last_error"]
            .as_str()
            .unwrap()
            .contains("No space left on device"),
        "{s}"
    );
    assert_eq!(s["alerts_queued"], RETRY_CAP as u64);
    assert_eq!(s["alerts_dropped"], h.alerts_dropped);
    assert!(s["bytes"].as_u64().unwrap() > 0);
    assert_eq!(metric(&base, "safelink_store_healthy"), 0.0);
    assert_eq!(metric(&base, "safelink_alerts_queued"), RETRY_CAP as f64);
    assert_eq!(
        metric(&base, "safelink_alerts_dropped_total"),
        h.alerts_dropped as f64
    );
    // Still degraded a while later: nothing recovers while the disk is full.
    std::thread::sleep(Duration::from_millis(1200));
    assert!(store.degraded());

    // Space returns: the store recovers by itself and writes the queue.
    std::fs::remove_file(&filler).unwrap();
    let t_free = Instant::now();
    // Drops take the newest writes: the dropped ones are new alerts.
    let expected = sent - h.alerts_dropped;
    let recovery = wait_for("the store to recover", Duration::from_secs(10), || {
        !store.degraded() && eve_lines(&eve_path) as u64 == expected
    });
    println!(
        "recovered {recovery:?} after the filler was deleted: {} alerts written from the queue",
        expected - acked_before
    );
    assert!(recovery < Duration::from_secs(3), "{recovery:?}");
    let _ = t_free;
    let s = status(&base);
    assert_eq!(
        (&s["state"], &s["alerts_queued"]),
        (&"ok".into(), &0.into())
    );
    assert_eq!(s["recoveries"], 1);
    assert_eq!(metric(&base, "safelink_store_healthy"), 1.0);
    assert_eq!(metric(&base, "safelink_alerts_queued"), 0.0);

    // After the attack: every acknowledged alert is stored once, updates made during the
    // outage included.
    let (new, _) = sink.finish();
    assert_eq!(new, expected);
    let c = store.counts().unwrap();
    assert_eq!(c.active, expected);
    let first = store.get(1).unwrap().unwrap();
    assert_eq!(
        first.count, 13,
        "update of a stored alert during the outage lost"
    );
    let queued = store
        .query(&Default::default(), 100_000, None)
        .unwrap()
        .alerts
        .into_iter()
        .find(|a| {
            a.description
                .starts_with(&format!("SYN flood #{updated_in_queue} "))
        })
        .expect("the queued alert updated during the outage");
    assert_eq!(queued.count, 9);
    let all = store
        .query(&Default::default(), 100_000, None)
        .unwrap()
        .alerts;
    let mut engine: Vec<&str> = all
        .iter()
        .map(|a| a.description.split(" (").next().unwrap())
        .collect();
    engine.sort();
    engine.dedup();
    assert_eq!(engine.len() as u64, expected, "an alert stored twice");
    drop(store);
}
