//! Privacy and data lifecycle on real captures (tests/pcaps) through the real binary
//! (`safelink analyze --store`, `safelink privacy forget|report`), a real sled store and a
//! real API server on 127.0.0.1:0: the stored forms of each anonymisation mode, keyed-hash
//! stability and aggregation, MAC hashing, retention sweeps at chosen times, deletion on
//! request with exact counts (API and CLI), and that no payload byte is stored or logged.
mod support;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use etherparse::PacketBuilder;
use reqwest::StatusCode;
use safelink::alert::{Alert, AlertKind, AlertSource};
use safelink::api::{
    self, ApiState, AuthPolicy, ControlError, ControlFuture, SensorControl, SensorStatus,
};
use safelink::config::PrivacyConfig;
use safelink::privacy::{self, IpMode, Policy, RetentionAges};
use safelink::store::{AlertFilter, Store, TreeCounts, parse_rfc3339};
use serde_json::{Value, json};

const TOKEN: &str = "privacy-test-token-0123";
const KEY: &str = "privacy-test-key-0123456789";
const OTHER_KEY: &str = "another-privacy-key-9876543210";

const PORTSCAN: &str = "portscan__syn-scan-29ports.pcap"; // 10.100.25.14, 2006-08-24
const SSH: &str = "sshbrute__password-guessing-11conns.pcap"; // 192.168.56.1, 2015-03-30
const FTP: &str = "loginbrute__ftp-bruteforce-30attempts.pcap"; // 192.168.56.1
const ARPSCAN: &str = "arpscan__arp-request-sweep-24.pcap"; // 10.0.0.128, 2022-06-13
const ICMP_SWEEP: &str = "sweep__icmp-echo-sweep-24.pcap"; // 10.0.0.128
const TCP_SWEEP: &str = "sweep__tcp-syn-ping-sweep-24.pcapng"; // 10.0.0.128
const ARPSPOOF: &str = "arpspoof__arpspoof-bidirectional-mitm.pcap"; // 00:e0:4d:3c:25:7b, 2022-07-07

fn pcap(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/pcaps")
        .join(name)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn policy(mode: IpMode, hash_macs: bool, key: Option<&str>) -> Policy {
    let cfg = PrivacyConfig {
        ip_mode: mode,
        hash_macs,
        ..Default::default()
    };
    Policy::new(&cfg, key).unwrap()
}

/// A data directory with a config file holding `privacy_toml` as its `[privacy]` section.
struct Data {
    dir: tempfile::TempDir,
}

impl Data {
    fn new(privacy_toml: &str) -> Data {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("safelink.toml"),
            format!("[privacy]\n{privacy_toml}"),
        )
        .unwrap();
        Data { dir }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("safelink.toml")
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `safelink` with the test's environment: the given key (or none), plain logs.
    fn cmd(&self, key: Option<&str>) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_safelink"));
        c.env_remove("SAFELINK_CONFIG")
            .env_remove("SAFELINK_DATA_DIR")
            .env_remove("SAFELINK_PRIVACY_KEY")
            .env("NO_COLOR", "1");
        if let Some(k) = key {
            c.env("SAFELINK_PRIVACY_KEY", k);
        }
        c
    }

    /// `safelink analyze --config … --store …` over the captures; must succeed.
    fn analyze(&self, key: Option<&str>, captures: &[&str]) -> Output {
        let mut c = self.cmd(key);
        c.arg("analyze")
            .arg("--config")
            .arg(self.config())
            .arg("--store")
            .arg(self.data_dir());
        for p in captures {
            c.arg(pcap(p));
        }
        support::run(&mut c)
    }

    fn store(&self) -> Store {
        Store::open(self.data_dir().join("store")).unwrap()
    }
}

/// Every active alert, oldest id first.
fn active(store: &Store) -> Vec<Alert> {
    let mut v = store
        .query(&AlertFilter::default(), 10_000, None)
        .unwrap()
        .alerts;
    v.sort_by_key(|a| a.id);
    v
}

fn archived(store: &Store) -> Vec<Alert> {
    let mut v = store
        .list_archive(&AlertFilter::default(), 10_000, None)
        .unwrap()
        .alerts;
    v.sort_by_key(|a| a.id);
    v
}

fn by_kind(alerts: &[Alert], kind: AlertKind) -> &Alert {
    alerts
        .iter()
        .find(|a| a.kind == kind)
        .unwrap_or_else(|| panic!("no {kind:?} alert in {alerts:?}"))
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The files under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    files(dir)
        .into_iter()
        .filter(|p| contains(&std::fs::read(p).unwrap(), needle))
        .collect()
}

#[test]
fn truncate_stores_prefixes_only() {
    let d = Data::new("ip_mode = \"truncate\"\n");
    let out = d.analyze(None, &[SSH]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let store = d.store();
    let alerts = active(&store);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let a = &alerts[0];
    assert_eq!(a.kind, AlertKind::SSH_BRUTE_FORCE);
    assert_eq!(a.src_ip, Some(ip("192.168.56.0")));
    assert_eq!(a.dest_ip, Some(ip("192.168.56.0")));
    assert_eq!(a.community_id, None);
    // MACs are not hashed in this configuration.
    assert_eq!(a.src_mac.as_deref(), Some("0a:00:27:00:00:00"));
    assert!(
        a.description
            .starts_with("SSH brute force from 192.168.56.0 against 192.168.56.0:22: "),
        "{}",
        a.description
    );
    drop(store);
    // The scan sees the stored text: the truncated form is there...
    assert!(!files_containing(&d.data_dir(), b"192.168.56.0").is_empty());
    // ...and neither the attacker (.1) nor the server (.103) is anywhere: store, logs, output.
    for raw in ["192.168.56.1", "192.168.56.103"] {
        assert_eq!(
            files_containing(&d.data_dir(), raw.as_bytes()),
            Vec::<PathBuf>::new()
        );
        assert!(!stderr.contains(raw), "{raw} logged: {stderr}");
        assert!(!stdout.contains(raw), "{raw} printed: {stdout}");
    }

    // Another prefix length.
    let d16 = Data::new("ip_mode = \"truncate\"\nipv4_prefix = 16\n");
    d16.analyze(None, &[SSH]);
    let a = active(&d16.store()).remove(0);
    assert_eq!(a.src_ip, Some(ip("192.168.0.0")));
    assert_eq!(a.dest_ip, Some(ip("192.168.0.0")));
}

#[test]
fn keyed_hash_is_stable_per_key_and_the_attacker_still_aggregates() {
    let captures = [ARPSCAN, ICMP_SWEEP, TCP_SWEEP, PORTSCAN];
    let toml = "ip_mode = \"keyed-hash\"\nhash_macs = true\n";
    let (a, b, c) = (Data::new(toml), Data::new(toml), Data::new(toml));
    a.analyze(Some(KEY), &captures);
    b.analyze(Some(KEY), &captures);
    c.analyze(Some(OTHER_KEY), &captures);
    let (sa, sb, sc) = (active(&a.store()), active(&b.store()), active(&c.store()));
    assert_eq!(sa.len(), 4);

    let p = policy(IpMode::KeyedHash, true, Some(KEY));
    let attacker = p.ip(ip("10.0.0.128"));
    let attacker_mac = p.mac("00:0c:29:20:a8:7f");
    let IpAddr::V4(v4) = attacker else {
        panic!("{attacker}")
    };
    assert_eq!(v4.octets()[0] & 0xf0, 0xf0, "hashed IPv4 in 240.0.0.0/4");
    // The three alerts of 10.0.0.128 share one hashed source and one hashed MAC.
    let of_attacker: Vec<&Alert> = sa.iter().filter(|x| x.src_ip == Some(attacker)).collect();
    assert_eq!(of_attacker.len(), 3, "{sa:?}");
    assert!(
        of_attacker
            .iter()
            .all(|x| x.src_mac.as_deref() == Some(attacker_mac.as_str()))
    );
    let kinds: Vec<AlertKind> = of_attacker.iter().map(|x| x.kind).collect();
    assert_eq!(
        kinds,
        [
            AlertKind::ARP_SCAN,
            AlertKind::HOST_SWEEP,
            AlertKind::HOST_SWEEP
        ]
    );
    let filtered = a
        .store()
        .query(
            &AlertFilter {
                src_ip: Some(attacker),
                ..Default::default()
            },
            100,
            None,
        )
        .unwrap();
    assert_eq!(filtered.alerts.len(), 3);
    let scan = by_kind(&sa, AlertKind::PORT_SCAN);
    assert_eq!(scan.src_ip, Some(p.ip(ip("10.100.25.14"))));
    assert_eq!(scan.dest_ip, Some(p.ip(ip("10.100.18.12"))));
    assert_eq!(
        scan.description,
        p.text("SYN port scan of 10.100.18.12 from 10.100.25.14: ")
            + scan.description.split_once(": ").unwrap().1
    );
    assert!(
        scan.description
            .contains(&p.ip(ip("10.100.25.14")).to_string())
    );

    // Same key, same forms; another key, other forms.
    // The written forms of every alert: addresses, MAC and description.
    let forms = |v: &[Alert]| -> Vec<String> {
        v.iter()
            .map(|x| {
                format!(
                    "{:?} {:?} {:?} {}",
                    x.src_ip, x.dest_ip, x.src_mac, x.description
                )
            })
            .collect()
    };
    assert_eq!(forms(&sa), forms(&sb));
    for (x, y) in sa.iter().zip(&sc) {
        assert_eq!(x.kind, y.kind);
        assert_ne!(x.src_ip, y.src_ip);
        assert_ne!(x.src_mac, y.src_mac);
    }
    for raw in [
        "10.0.0.128",
        "10.100.25.14",
        "00:0c:29:20:a8:7f",
        "00:15:c5:3c:4f:9e",
    ] {
        assert_eq!(
            files_containing(&a.data_dir(), raw.as_bytes()),
            Vec::<PathBuf>::new(),
            "{raw}"
        );
    }

    // keyed-hash without a key is refused, naming the problem.
    let out = a
        .cmd(None)
        .args(["analyze", "--config"])
        .arg(a.config())
        .arg("--store")
        .arg(a.data_dir())
        .arg(pcap(PORTSCAN))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("needs a key") && err.contains("SAFELINK_PRIVACY_KEY"),
        "{err}"
    );
}

#[test]
fn mac_hashing_rewrites_fields_and_descriptions() {
    let d = Data::new("hash_macs = true\n");
    let out = d.analyze(Some(KEY), &[ARPSPOOF]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    let p = policy(IpMode::None, true, Some(KEY));
    let alerts = active(&d.store());
    assert_eq!(alerts.len(), 1);
    let a = &alerts[0];
    assert_eq!(a.kind, AlertKind::ARP_SPOOF);
    let spoofer = p.mac("00:e0:4d:3c:25:7b");
    assert_eq!(a.src_mac.as_deref(), Some(spoofer.as_str()));
    let first = u8::from_str_radix(&spoofer[..2], 16).unwrap();
    assert_eq!(first & 0x03, 0x02, "locally administered unicast");
    // IPs stay as seen (ip_mode none); every MAC of the description is hashed.
    assert_eq!(a.dest_ip, Some(ip("10.0.0.153")));
    assert!(
        a.description.starts_with(&format!(
            "ARP spoofing by {spoofer}: man-in-the-middle: one MAC claims the addresses of \
             several hosts; claims 10.0.0.153 (owned by {}), 10.0.0.157 (owned by {});",
            p.mac("dc:f5:05:75:0b:cd"),
            p.mac("b0:7f:b9:4e:f0:9c")
        )),
        "{}",
        a.description
    );
    for raw in [
        "00:e0:4d:3c:25:7b",
        "dc:f5:05:75:0b:cd",
        "b0:7f:b9:4e:f0:9c",
    ] {
        assert_eq!(
            files_containing(&d.data_dir(), raw.as_bytes()),
            Vec::<PathBuf>::new()
        );
        assert!(!stderr.contains(raw), "{raw} logged");
    }
}

#[test]
fn retention_sweeps_delete_exactly_what_is_older() {
    let d = Data::new("ip_mode = \"none\"\n");
    d.analyze(None, &[PORTSCAN, SSH, ARPSCAN, ARPSPOOF]);
    let store = d.store();
    let alerts = active(&store);
    assert_eq!(alerts.len(), 4);
    // ip_mode = none stores the addresses as seen (and keeps the Community ID).
    let scan = by_kind(&alerts, AlertKind::PORT_SCAN);
    assert_eq!(scan.src_ip, Some(ip("10.100.25.14")));
    assert_eq!(scan.dest_ip, Some(ip("10.100.18.12")));
    assert_eq!(scan.src_mac.as_deref(), Some("00:15:c5:3c:4f:9e"));
    assert_eq!(
        scan.community_id.as_deref(),
        Some("1:6s/5g7vmJFkJHYnIxcoVpvLj1wA=")
    );
    let ssh = by_kind(&alerts, AlertKind::SSH_BRUTE_FORCE).id;
    assert_eq!(store.archive_ids(&[ssh]).unwrap(), 1);
    let t = |s: &str| parse_rfc3339(s).unwrap();
    let counts = |alerts, archive| TreeCounts {
        alerts,
        archive,
        samples: 0,
    };

    // Cutoff 2022-07-07T01:52:00Z: the 2006 port scan and the June 2022 ARP scan go; the ARP
    // spoofing alert was raised at 01:51:37 but last seen at 01:53:51, so it stays; the
    // archive is kept forever.
    let ages = RetentionAges {
        alerts: 1,
        archive: 0,
        samples: 30,
    };
    let now = t("2022-07-08T01:52:00Z");
    assert_eq!(privacy::sweep(&store, ages, now).unwrap(), counts(2, 0));
    let left = active(&store);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].kind, AlertKind::ARP_SPOOF);
    assert_eq!(archived(&store).len(), 1);
    assert_eq!(store.tree_counts().unwrap(), counts(1, 1));
    // Nothing more at the same time.
    assert_eq!(privacy::sweep(&store, ages, now).unwrap(), counts(0, 0));

    // The archive at one year: the 2015 SSH alert goes.
    let ages = RetentionAges {
        archive: 365,
        ..ages
    };
    assert_eq!(privacy::sweep(&store, ages, now).unwrap(), counts(0, 1));
    assert!(archived(&store).is_empty());

    // Two minutes later the ARP spoofing alert's last evidence is older than a day.
    let later = t("2022-07-08T01:54:00Z");
    assert_eq!(privacy::sweep(&store, ages, later).unwrap(), counts(1, 0));
    assert!(active(&store).is_empty());
    let c = store.counts().unwrap();
    assert_eq!((c.active, c.archived, c.latest_alert), (0, 0, None));
    assert_eq!(
        store.oldest(safelink::store::AlertTree::Active).unwrap(),
        None
    );
}

// ---------------------------------------------------------------------------------------
// API

struct NoSensor;

impl SensorControl for NoSensor {
    fn status(&self) -> SensorStatus {
        SensorStatus {
            running: false,
            interface: None,
            xdp_mode: None,
            uptime_secs: 0,
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

struct Server {
    base: String,
    http: reqwest::Client,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

async fn serve(store: Store, privacy: Policy) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bound: SocketAddr = listener.local_addr().unwrap();
    let auth = AuthPolicy::new(bound, Some(TOKEN)).unwrap();
    let state = ApiState::new(store, Arc::new(NoSensor), auth).with_privacy(privacy);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(api::serve(listener, api::router(state), async move {
        let _ = rx.await;
    }));
    Server {
        base: format!("http://{bound}"),
        http: reqwest::Client::builder().no_proxy().build().unwrap(),
        _shutdown: tx,
    }
}

impl Server {
    async fn get(&self, path: &str) -> (StatusCode, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    }

    async fn delete(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let mut req = self.http.delete(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        (r.status(), r.json().await.unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_subject_through_the_api_removes_it_from_alerts_archive_and_exports() {
    let d = Data::new("ip_mode = \"keyed-hash\"\nhash_macs = true\n");
    d.analyze(Some(KEY), &[ARPSCAN, ICMP_SWEEP, TCP_SWEEP, PORTSCAN, FTP]);
    let p = policy(IpMode::KeyedHash, true, Some(KEY));
    let store = d.store();
    let alerts = active(&store);
    assert_eq!(alerts.len(), 5);
    let arp = by_kind(&alerts, AlertKind::ARP_SCAN).id;
    assert_eq!(store.archive_ids(&[arp]).unwrap(), 1);
    let srv = serve(store.clone(), p.clone()).await;
    let hashed = p.ip(ip("10.0.0.128")).to_string();
    let hashed_mac = p.mac("00:0c:29:20:a8:7f");
    let (_, csv) = srv.get("/alerts/export.csv").await;
    assert!(csv.contains(&hashed) && csv.contains(&hashed_mac));

    // State-changing: the token is required.
    let (status, body) = srv.delete("/privacy/subject?ip=10.0.0.128", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body,
        json!({"error": "missing bearer token: send Authorization: Bearer <token>"})
    );
    // Neither, both, or a bad value: 400 naming the problem.
    for (q, msg) in [
        (
            "",
            "give exactly one of the query parameters \"ip\" or \"mac\"",
        ),
        (
            "?ip=10.0.0.128&mac=00:0c:29:20:a8:7f",
            "give exactly one of the query parameters \"ip\" or \"mac\"",
        ),
        (
            "?ip=10.0.0.300",
            "bad ip \"10.0.0.300\": expected an IPv4 or IPv6 address such as 192.0.2.7",
        ),
        (
            "?mac=00:0c:29",
            "bad mac \"00:0c:29\": expected six hex bytes such as 00:11:22:aa:bb:cc",
        ),
    ] {
        let (status, body) = srv
            .delete(&format!("/privacy/subject{q}"), Some(TOKEN))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(body, json!({ "error": msg }), "{q}");
    }
    assert_eq!(store.tree_counts().unwrap().total(), 5);

    // The raw address matches the hashed stored form: two active alerts and one archived.
    let (status, body) = srv
        .delete("/privacy/subject?ip=10.0.0.128", Some(TOKEN))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"subject": {"ip": "10.0.0.128"}, "deleted": {"alerts": 2, "archive": 1, "samples": 0}})
    );
    // The hashed form itself is accepted too (nothing left to delete).
    let (status, body) = srv
        .delete(&format!("/privacy/subject?ip={hashed}"), Some(TOKEN))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["deleted"],
        json!({"alerts": 0, "archive": 0, "samples": 0})
    );
    for path in [
        "/alerts",
        "/alerts/archive",
        "/alerts/export.csv",
        "/alerts/export.json",
        &format!("/alerts?src_ip={hashed}"),
    ] {
        let (status, body) = srv.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(!body.contains(&hashed), "{path}: {body}");
        assert!(!body.contains(&hashed_mac), "{path}: {body}");
    }
    let (_, list) = srv.get("/alerts").await;
    let list: Value = serde_json::from_str(&list).unwrap();
    let kinds: Vec<&str> = list["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["login_brute_force", "port_scan"]);

    // By MAC: the FTP brute forcer's hashed MAC.
    let (status, body) = srv
        .delete("/privacy/subject?mac=0A:00:27:00:00:00", Some(TOKEN))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"subject": {"mac": "0a:00:27:00:00:00"}, "deleted": {"alerts": 1, "archive": 0, "samples": 0}})
    );

    // The report: mode, retention, counts, never the key.
    let (status, report) = srv.get("/privacy/report").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!report.contains(KEY));
    let r: Value = serde_json::from_str(&report).unwrap();
    assert_eq!(r["ip_mode"], "keyed-hash");
    assert_eq!(r["hash_macs"], true);
    assert_eq!(r["key_configured"], true);
    assert_eq!(r["ipv4_prefix"], 24);
    assert_eq!(r["ipv6_prefix"], 48);
    assert_eq!(
        r["retention_days"],
        json!({"alerts": 90, "archive": 365, "samples": 30})
    );
    assert_eq!(
        r["stored"],
        json!({"alerts": 1, "archive": 0, "samples": 0})
    );
    assert_eq!(r["oldest"]["alerts"], "2006-08-24T14:35:28.237462Z");
    assert_eq!(r["oldest"]["archive"], Value::Null);
    assert!(r["payloads"].as_str().unwrap().starts_with("never stored"));
    assert!(r["deletion"].as_str().unwrap().contains("model"));
}

// ---------------------------------------------------------------------------------------
// CLI

#[test]
fn privacy_forget_cli_counts_and_refuses_a_locked_store() {
    let d = Data::new("ip_mode = \"truncate\"\n");
    d.analyze(None, &[SSH, FTP, PORTSCAN]);
    let forget = |args: &[&str]| -> Output {
        let mut c = d.cmd(None);
        c.args(["privacy", "forget"])
            .args(args)
            .arg("--config")
            .arg(d.config())
            .arg("--data-dir")
            .arg(d.data_dir());
        c.output().unwrap()
    };
    let json_of = |o: &Output| -> Value {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    // Locked by another process (here the test) holding the store open.
    {
        let _held = d.store();
        let o = forget(&["--ip", "192.168.56.1"]);
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("locked by a running sensor"), "{err}");
    }
    let o = forget(&["--ip", "192.168.56.1"]);
    assert_eq!(
        json_of(&o),
        json!({"subject": {"ip": "192.168.56.1"}, "deleted": {"alerts": 2, "archive": 0, "samples": 0}})
    );
    // The log names only the truncated form.
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("192.168.56.0") && !err.contains("192.168.56.1"),
        "{err}"
    );
    assert_eq!(
        json_of(&forget(&["--ip", "192.168.56.1"]))["deleted"],
        json!({"alerts": 0, "archive": 0, "samples": 0})
    );
    // Under truncate the stored form is the /24: another address of it matches too.
    assert_eq!(
        json_of(&forget(&["--ip", "10.100.25.99"]))["deleted"],
        json!({"alerts": 1, "archive": 0, "samples": 0})
    );
    let bad = forget(&["--mac", "nope"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("bad mac \"nope\""));

    let mut c = d.cmd(None);
    c.args(["privacy", "report", "--config"])
        .arg(d.config())
        .arg("--data-dir")
        .arg(d.data_dir());
    let r: Value = serde_json::from_slice(&support::run(&mut c).stdout).unwrap();
    assert_eq!(r["ip_mode"], "truncate");
    assert_eq!(
        r["stored"],
        json!({"alerts": 0, "archive": 0, "samples": 0})
    );
    assert_eq!(active(&d.store()).len(), 0);
}

// ---------------------------------------------------------------------------------------
// Payloads

/// Frames from 198.51.100.66 to 192.0.2.1 whose payloads all carry `marker`: SYNs with data
/// to 120 TCP ports and datagrams to 120 UDP ports.
fn marker_frames(marker: &[u8]) -> Vec<Vec<u8>> {
    let (mac_a, mac_b) = (support::MAC_A, support::MAC_B);
    let (attacker, victim) = ([198, 51, 100, 66], support::IP_A);
    let mut frames = Vec::new();
    for port in 1000..1120u16 {
        let mut v = Vec::new();
        PacketBuilder::ethernet2(mac_b, mac_a)
            .ipv4(attacker, victim, 64)
            .tcp(40000 + port, port, 1, 1024)
            .syn()
            .write(&mut v, marker)
            .unwrap();
        frames.push(v);
        let mut u = Vec::new();
        PacketBuilder::ethernet2(mac_b, mac_a)
            .ipv4(attacker, victim, 64)
            .udp(50000 + port, port)
            .write(&mut u, marker)
            .unwrap();
        frames.push(u);
    }
    frames
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_payload_byte_is_stored_logged_or_exported() {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let marker = format!("SAFELINK-PAYLOAD-MARKER-{nanos:x}-{}", std::process::id());
    let d = Data::new("ip_mode = \"none\"\n");
    let cap = d.dir.path().join("marker.pcap");
    support::write_pcap(&cap, &marker_frames(marker.as_bytes()), 1_700_000_000);
    assert!(contains(&std::fs::read(&cap).unwrap(), marker.as_bytes()));

    let out = d
        .cmd(None)
        .env("SAFELINK_LOG", "debug")
        .arg("analyze")
        .arg("--summary")
        .arg("--config")
        .arg(d.config())
        .arg("--store")
        .arg(d.data_dir())
        .arg(&cap)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let logs = d.dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::write(logs.join("analyze.stdout"), &out.stdout).unwrap();
    std::fs::write(logs.join("analyze.stderr"), &out.stderr).unwrap();
    // The same capture as training samples of the continuous learner.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = d
        .cmd(None)
        .env("SAFELINK_LOG", "debug")
        .arg("learn")
        .arg("--config")
        .arg(d.config())
        .arg("--data-dir")
        .arg(d.data_dir())
        .arg("--model")
        .arg(root.join("models/base.onnx"))
        .arg("ingest")
        .arg(&cap)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ingest: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(ingest["samples_stored"].as_u64().unwrap() >= 10, "{ingest}");
    std::fs::write(logs.join("learn.stdout"), &out.stdout).unwrap();
    std::fs::write(logs.join("learn.stderr"), &out.stderr).unwrap();

    let store = d.store();
    assert!(store.sample_counts(0).unwrap().0 >= 10);
    let alerts = active(&store);
    assert!(
        alerts
            .iter()
            .any(|a| a.kind == AlertKind::PORT_SCAN && a.src_ip == Some(ip("198.51.100.66"))),
        "{alerts:?}"
    );
    let srv = serve(store.clone(), Policy::default()).await;
    for (path, file) in [
        ("/alerts", "alerts.json"),
        ("/alerts/export.csv", "export.csv"),
        ("/alerts/export.json", "export.json"),
        ("/privacy/report", "report.json"),
    ] {
        let (status, body) = srv.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(body.contains("198.51.100.66") || path == "/privacy/report");
        std::fs::write(logs.join(file), body).unwrap();
    }
    drop(srv);
    drop(store);

    // Every file of the store, the logs and the exports: the marker is nowhere (nor any
    // 12-byte piece of it).
    // The scan sees what is stored (the attacker's address, as ip_mode = none keeps it)...
    assert!(!files_containing(&d.data_dir(), b"198.51.100.66").is_empty());
    assert!(!files_containing(&logs, b"198.51.100.66").is_empty());
    let scanned = files(&d.data_dir()).len() + files(&logs).len();
    assert!(scanned >= 6, "{scanned} files");
    for part in [
        marker.as_bytes(),
        &marker.as_bytes()[..12],
        &marker.as_bytes()[12..24],
    ] {
        assert_eq!(files_containing(&d.data_dir(), part), Vec::<PathBuf>::new());
        assert_eq!(files_containing(&logs, part), Vec::<PathBuf>::new());
    }
}
