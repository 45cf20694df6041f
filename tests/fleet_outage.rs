//! Fleet mode through a server outage (root): two real `safelink run --fleet` sensors, each
//! attached with XDP in a network namespace of its own, and a real `nats-server -js` in a hub
//! namespace ([`Hub`]). The server is stopped for 30 s while the sensors run:
//! - they keep detecting (captures replayed during the outage raise alerts, served by the API
//!   while `/fleet/status` says `connected: false`);
//! - what they produce waits in the on-disk buffer up to `buffer_max_messages`, and exactly
//!   the overflow is dropped: dropped = (messages produced during the outage) − the bound;
//! - with the server back they catch up, and the stream holds, per sensor, exactly
//!   sent − dropped messages (sent: the samples and alerts in the sensor's own store, read
//!   after it stopped; stream: the server's per-subject counts).
mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::hub::{FleetSensor, Hub, keygen};
use support::{Lab, kernel_test_can_run};

const BIN: &str = env!("CARGO_BIN_EXE_safelink");
const NATS_PORT: u16 = 4222;
const API: &str = "127.0.0.1:18251";
/// The sensors' buffer bound (`[fleet] buffer_max_messages`): above what one tail round
/// queues before the outage (the bound holds with the server up too), below what the outage
/// brings.
const BOUND: u64 = 60;
/// How long the server stays down.
const OUTAGE: Duration = Duration::from_secs(30);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn curl(lab: &Lab, path: &str) -> (u16, Value) {
    support::hub::curl(lab, API, path)
}

fn status(lab: &Lab) -> Value {
    curl(lab, "/fleet/status").1
}

/// Polls `lab`'s fleet status until `ok` (panics with the last status after `secs`).
fn wait_status(lab: &Lab, what: &str, secs: u64, ok: impl Fn(&Value) -> bool) -> Value {
    let t0 = Instant::now();
    loop {
        let s = status(lab);
        if ok(&s) {
            return s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "{what}: last status {s}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until `lab`'s counters (published, buffered, dropped) have not moved for 5 s.
fn settle(lab: &Lab, what: &str) -> Value {
    let t0 = Instant::now();
    let key = |s: &Value| {
        (
            s["published"].clone(),
            s["buffered"].clone(),
            s["dropped"].clone(),
        )
    };
    let (mut last, mut since) = (key(&status(lab)), Instant::now());
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let s = status(lab);
        if key(&s) != last {
            (last, since) = (key(&s), Instant::now());
        } else if since.elapsed() >= Duration::from_secs(5) {
            return s;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "{what}: {s}");
    }
}

fn alerts(lab: &Lab) -> usize {
    let (code, v) = curl(lab, "/alerts?limit=1000");
    assert_eq!(code, 200, "{v}");
    v["alerts"].as_array().unwrap().len()
}

/// Messages on `subject` in `stream`, asked of the server in the hub.
fn on_subject(hub: &Hub, stream: &'static str, subject: String) -> u64 {
    hub.within(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                use futures_util::TryStreamExt as _;
                let c = async_nats::connect(format!("127.0.0.1:{NATS_PORT}"))
                    .await
                    .unwrap();
                let js = async_nats::jetstream::new(c);
                let s = js.get_stream(stream).await.unwrap();
                let mut info = s.info_with_subjects(&subject).await.unwrap();
                let mut n = 0;
                while let Some((subj, count)) = info.try_next().await.unwrap() {
                    assert_eq!(subj, subject);
                    n += count as u64;
                }
                n
            })
    })
}

#[test]
fn sensors_keep_detecting_through_a_30_s_server_outage() {
    if !kernel_test_can_run(
        "fleet_outage",
        &["tcpreplay", "nsenter", "ip", "curl", "nats-server"],
    ) {
        return;
    }
    let labs: Vec<Lab> = (1..=2).map(|i| Lab::new(&format!("fo{i}"))).collect();
    let hub = Hub::new("fo", &labs);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("nats");
    let nats = hub.nats(NATS_PORT, &store);
    let (_, pk) = keygen(BIN, dir.path());
    let model = root().join("models/base.onnx");
    let bound = format!("buffer_max_messages = {BOUND}\n");
    let sensors = FleetSensor {
        bin: BIN,
        dir: dir.path(),
        model: &model,
        trusted_key: &pk,
        fleet_extra: &bound,
        api: API,
        nats_port: NATS_PORT,
    }
    .spawn_all(&labs);
    for lab in &labs {
        wait_status(lab, "connected", 10, |s| s["connected"] == true);
    }
    let pcaps = root().join("tests/pcaps");
    let replay = |plan: [&[&str]; 2]| {
        std::thread::scope(|s| {
            for (lab, files) in labs.iter().zip(plan) {
                let pcaps = &pcaps;
                s.spawn(move || {
                    for f in files {
                        lab.replay_into_a(&pcaps.join(f));
                    }
                });
            }
        })
    };

    // Before the outage: traffic, everything published, nothing buffered or dropped.
    replay([
        &[
            "sshbrute__password-guessing-11conns.pcap",
            "benign__dns-lookups.pcapng",
        ],
        &[
            "portscan__syn-scan-29ports.pcap",
            "benign__ssh-session.pcap",
        ],
    ]);
    let before: Vec<Value> = labs.iter().map(|l| settle(l, "before")).collect();
    for s in &before {
        assert_eq!(
            (s["buffered"].as_u64(), s["dropped"].as_u64()),
            (Some(0), Some(0)),
            "{s}"
        );
        assert!(s["published"].as_u64().unwrap() > 0, "{s}");
    }
    let alerts_before: Vec<usize> = labs.iter().map(alerts).collect();

    // The server goes away for 30 s.
    drop(nats);
    let down = Instant::now();
    for lab in &labs {
        wait_status(lab, "disconnected", 10, |s| s["connected"] == false);
    }
    replay([
        &[
            "sshbrute__ncrack-sneaky.pcap",
            "benign__telnet-session.pcap",
        ],
        &[
            "portscan__nmap-syn-scan-1000ports.pcapng",
            "benign__dns-lookups.pcapng",
        ],
    ]);
    let during: Vec<Value> = labs
        .iter()
        .map(|l| settle(l, "during the outage"))
        .collect();
    assert!(down.elapsed() < OUTAGE, "the replays outlasted the outage");
    for (i, lab) in labs.iter().enumerate() {
        let s = &during[i];
        // Still detecting: new alerts, served while the fleet is unreachable.
        let n = alerts(lab);
        assert!(n > alerts_before[i], "s{i}: no new alert ({n})");
        assert_eq!(s["connected"], false, "{s}");
        assert_eq!(s["published"], before[i]["published"], "{s}");
        assert_eq!(s["buffered"], BOUND, "s{i}: the buffer is full: {s}");
        assert!(s["dropped"].as_u64().unwrap() > 0, "{s}");
        eprintln!(
            "s{i} during the outage: alerts {} -> {n}, buffered {}, dropped {}",
            alerts_before[i], s["buffered"], s["dropped"]
        );
    }
    std::thread::sleep(OUTAGE.saturating_sub(down.elapsed()));
    let outage = down.elapsed();
    let _nats = hub.nats(NATS_PORT, &store);
    eprintln!("server down for {:.1} s", outage.as_secs_f64());

    // Back: the buffer drains, the counters keep the drops.
    let after: Vec<Value> = labs
        .iter()
        .map(|l| {
            wait_status(l, "caught up", 60, |s| {
                s["connected"] == true && s["buffered"] == 0
            });
            settle(l, "after")
        })
        .collect();
    for (i, s) in after.iter().enumerate() {
        assert_eq!(s["dropped"], during[i]["dropped"], "{s}");
        assert_eq!(
            s["published"].as_u64().unwrap(),
            before[i]["published"].as_u64().unwrap() + BOUND,
            "{s}"
        );
    }
    // Sent: what each sensor's store holds (read after a clean stop).
    for s in sensors {
        s.terminate(20);
    }
    for (i, s) in after.iter().enumerate() {
        let st = safelink::store::Store::open(dir.path().join(format!("s{i}/store"))).unwrap();
        let samples = st.samples_after(0).unwrap().len() as u64;
        let alerts = st.alerts_after(0, usize::MAX).unwrap().len() as u64;
        drop(st);
        let sent = samples + alerts;
        let dropped = s["dropped"].as_u64().unwrap();
        let published_before = before[i]["published"].as_u64().unwrap();
        let stream = on_subject(&hub, "SAFELINK_SAMPLES", format!("safelink.samples.s{i}"))
            + on_subject(&hub, "SAFELINK_ALERTS", format!("safelink.alerts.s{i}"));
        eprintln!(
            "s{i}: sent {sent} ({samples} samples, {alerts} alerts), published before the \
             outage {published_before}, produced during it {}, buffer bound {BOUND}, dropped \
             {dropped}, in the stream {stream}",
            sent - published_before
        );
        // Exact drops: everything produced during the outage beyond the bound.
        assert_eq!(dropped, sent - published_before - BOUND, "s{i}");
        // The stream holds sent − dropped.
        assert_eq!(stream, sent - dropped, "s{i}");
    }
}
