//! The server configuration of docs/fleet.md ("The server"), run as written on a real
//! `nats-server` 2.9 (only the listen address, store, certificate paths and passwords are
//! the test's: a CA and a server certificate for 127.0.0.1 made with openssl, plaintext
//! passwords instead of bcrypt hashes):
//! - TLS is required: a plain `nats://` client is turned away;
//! - the learner user creates the streams and buckets;
//! - sensor `edge1`, with its own restricted user, publishes its samples, sends its
//!   heartbeat and takes a signed model through its KV watch — everything a sensor does;
//! - a sensor calling itself `edge2` with `edge1`'s credentials publishes nothing: the
//!   server refuses `safelink.samples.edge2` to that user, its messages stay buffered and the
//!   stream holds none of them.
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use safelink::ann::ModelHandle;
use safelink::fleet::connect::{connect_now, ensure_layout};
use safelink::fleet::manifest::{Bundle, Manifest};
use safelink::fleet::sensor::FleetSensor;
use safelink::fleet::{Channel, FleetHandle, FleetSection, FleetStatus};
use safelink::learn::{LabelSource, TrainingSample};
use safelink::store::Store;
use support::run;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The server configuration block of docs/fleet.md.
fn documented_config() -> String {
    let doc = std::fs::read_to_string(root().join("docs/fleet.md")).unwrap();
    let start = doc.find("```\nlisten: ").expect("the server block") + 4;
    let len = doc[start..].find("```").unwrap();
    doc[start..start + len].to_string()
}

/// Makes a CA and a server certificate for 127.0.0.1 in `dir`.
fn certificates(dir: &Path) {
    run(Command::new("sh").current_dir(dir).args([
        "-ec",
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
           -keyout ca.key -out ca.crt -days 1 -subj /CN=safelink-test-ca \
           -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
         openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
           -keyout server.key -out server.csr -subj /CN=127.0.0.1 2>/dev/null
         printf 'subjectAltName=IP:127.0.0.1\\nextendedKeyUsage=serverAuth\\n' > ext.cnf
         openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
           -out server.crt -days 1 -extfile ext.cnf 2>/dev/null",
    ]));
}

fn sample(i: u64) -> TrainingSample {
    TrainingSample {
        id: 0,
        ts_ns: 1_700_000_000_000_000_000 + i,
        src_ip: "192.0.2.1".parse().unwrap(),
        src_port: 40_000 + i as u16,
        dst_ip: "192.0.2.2".parse().unwrap(),
        dst_port: 80,
        proto: 6,
        label: 0.0,
        source: LabelSource::AnnLow,
        confidence: 0.9,
        score: 0.1,
        kind: None,
        features: vec![1.0; safelink::ann::N_FEATURES],
        baseline: false,
        alert_id: None,
    }
}

async fn wait_for(
    f: &FleetHandle,
    what: &str,
    secs: u64,
    ok: impl Fn(&FleetStatus) -> bool,
) -> FleetStatus {
    let t0 = Instant::now();
    loop {
        let s = f.snapshot();
        if ok(&s) {
            return s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "{what}: last status {s:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_server_config_restricts_each_sensor_to_its_subjects() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = dir.path().display().to_string();
    let doc = documented_config();
    let conf = doc
        .replace("listen: 0.0.0.0:4222", &format!("listen: 127.0.0.1:{port}"))
        .replace("/var/lib/nats/jetstream", &format!("{d}/js"))
        .replace("/etc/nats/tls/server.crt", &format!("{d}/server.crt"))
        .replace("/etc/nats/tls/server.key", &format!("{d}/server.key"))
        .replace(
            "\"$2a$11$...bcrypt of edge1's password...\"",
            "\"edge1-pw\"",
        )
        .replacen("\"$2a$11$...\"", "\"edge2-pw\"", 1)
        .replacen("\"$2a$11$...\"", "\"learner-pw\"", 1);
    assert!(
        !conf.contains("$2a$"),
        "a password placeholder left:\n{conf}"
    );
    assert_ne!(conf, doc);
    std::fs::write(dir.path().join("nats.conf"), &conf).unwrap();
    // Killed on drop, also when an assertion fails.
    let _server = support::Proc(
        Command::new("nats-server")
            .arg("-c")
            .arg(dir.path().join("nats.conf"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server missing: run ./setup.sh --test"),
    );
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "nats-server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let ca = dir.path().join("ca.crt");
    let url = |user: &str| format!("tls://{user}:{user}-pw@127.0.0.1:{port}");
    let tls = FleetSection {
        tls_ca: Some(ca.clone()),
        ..FleetSection::default()
    };

    // Without TLS the server turns the client away.
    let plain = connect_now(
        &format!("nats://learner:learner-pw@127.0.0.1:{port}"),
        &FleetSection::default(),
        "plain",
    )
    .await;
    assert!(plain.is_err(), "a plain connection was accepted");
    // A wrong password is refused.
    assert!(
        connect_now(&format!("tls://edge1:nope@127.0.0.1:{port}"), &tls, "bad")
            .await
            .is_err()
    );

    // The learner's user creates the layout.
    let learner = connect_now(&url("learner"), &tls, "learner").await.unwrap();
    let layout = ensure_layout(&learner).await.unwrap();

    // edge1 with its own user: samples, heartbeat, a model.
    let key = SigningKey::from_bytes(&[7; 32]);
    let sensor = |id: &str, user: &str| FleetSection {
        url: Some(url(user)),
        sensor_id: Some(id.into()),
        trusted_keys: vec![hex::encode(key.verifying_key().as_bytes())],
        channel: Channel::Canary,
        heartbeat_s: 1,
        tls_ca: Some(ca.clone()),
        ..FleetSection::default()
    };
    let start = |f: FleetSection, name: &str, n: u64| {
        let d = dir.path().join(name);
        async move {
            let store = Store::open(d.join("store")).unwrap();
            store
                .insert_samples(&(0..n).map(sample).collect::<Vec<_>>())
                .unwrap();
            let h = ModelHandle::open(&root().join("models/base.onnx")).unwrap();
            FleetSensor::start(&f, store, h, &d, &d.join("models"), 64 << 20)
                .await
                .unwrap()
        }
    };
    let edge1 = start(sensor("edge1", "edge1"), "edge1", 50).await;
    let st = wait_for(&edge1.handle, "edge1 published", 20, |s| {
        s.connected && s.published_samples == 50
    })
    .await;
    assert_eq!((st.buffered, st.dropped), (0, 0));
    let t0 = Instant::now();
    let heartbeat = loop {
        if let Some(v) = layout.sensors.get("edge1").await.unwrap() {
            break String::from_utf8_lossy(&v).into_owned();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no heartbeat from edge1"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Every reader of the sensors bucket sees the heartbeat: no password in it.
    assert!(!heartbeat.contains("edge1-pw"), "{heartbeat}");
    assert!(
        heartbeat.contains("tls://edge1:<redacted>@127.0.0.1"),
        "{heartbeat}"
    );
    assert!(!edge1.handle.snapshot().url.contains("edge1-pw"));
    let model = std::fs::read(root().join("models/base.onnx")).unwrap();
    let m = Manifest::for_model(
        "safelink",
        1,
        &model,
        &key.verifying_key(),
        time::Duration::hours(1),
    );
    layout
        .models
        .put("canary", Bundle::sign(m, &model, &key).to_bytes().into())
        .await
        .unwrap();
    wait_for(&edge1.handle, "edge1 takes v1", 20, |s| {
        s.model.as_ref().is_some_and(|m| m.version == 1)
    })
    .await;

    // edge1's credentials, edge2's subjects: refused by the server.
    let impostor = start(sensor("edge2", "edge1"), "impostor", 30).await;
    wait_for(&impostor.handle, "impostor connected", 20, |s| s.connected).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let st = impostor.handle.snapshot();
    assert_eq!(
        (st.published_samples, st.buffered),
        (0, 30),
        "edge1's user published as edge2: {st:#?}"
    );
    let count = |subject: &'static str| {
        let js = layout.js.clone();
        async move {
            use futures_util::TryStreamExt as _;
            let s = js.get_stream("SAFELINK_SAMPLES").await.unwrap();
            let mut info = s.info_with_subjects(subject).await.unwrap();
            let mut n = 0u64;
            while let Some((_, c)) = info.try_next().await.unwrap() {
                n += c as u64;
            }
            n
        }
    };
    assert_eq!(count("safelink.samples.edge1").await, 50);
    assert_eq!(count("safelink.samples.edge2").await, 0);
    assert!(layout.sensors.get("edge2").await.unwrap().is_none());
    impostor.stop().await;
    edge1.stop().await;
}
