//! HTTP API tests against a real server: `safelink::api::serve` on 127.0.0.1:0, a real sled
//! store in a temp dir (alerts inserted through `Store`), and a real HTTP client. Covers
//! filters, cursor paging, exact CSV and EVE bodies, archiving, auth refusals, 4xx JSON
//! errors and 404s; hostile traffic: streamed exports of a large store, the connection cap,
//! oversized bodies, and `POST /model/load` confined to the models directory with real tract
//! and crafted model files.
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use reqwest::StatusCode;
use safelink::alert::{Alert, AlertKind, AlertSource, Severity, Timestamp};
use safelink::api::config::ApiConfig;
use safelink::api::{
    self, ApiState, AuthPolicy, ControlError, ControlFuture, SensorControl, SensorStatus,
};
use safelink::store::Store;
use serde_json::{Value, json};

const TOKEN: &str = "test-token-0123456789";

/// A sniffer that only flips a flag; `refuse` makes start/stop answer a conflict.
#[derive(Default)]
struct FakeSensor {
    running: AtomicBool,
    refuse: bool,
}

impl SensorControl for FakeSensor {
    fn status(&self) -> SensorStatus {
        let running = self.running.load(Ordering::SeqCst);
        SensorStatus {
            running,
            interface: Some("veth0".into()),
            xdp_mode: running.then(|| "skb".into()),
            uptime_secs: 42,
            packets: 1000,
            flows: 17,
            ringbuf_events: 300,
            ringbuf_drops: 2,
            detection_sources: vec![AlertSource::Dfa, AlertSource::Ann],
            degraded: Vec::new(),
        }
    }

    fn start(&self) -> ControlFuture<'_> {
        Box::pin(async move {
            if self.refuse {
                return Err(ControlError::Conflict("no interface configured".into()));
            }
            Ok(!self.running.swap(true, Ordering::SeqCst))
        })
    }

    fn stop(&self) -> ControlFuture<'_> {
        Box::pin(async move {
            if self.refuse {
                return Err(ControlError::Conflict("no interface configured".into()));
            }
            Ok(self.running.swap(false, Ordering::SeqCst))
        })
    }
}

struct Server {
    base: String,
    http: reqwest::Client,
    store: Store,
    dir: tempfile::TempDir,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

/// Starts a server bound to 127.0.0.1:0 whose auth policy is computed for `policy_addr`
/// (default: the bound address) and `token`.
async fn start_with(policy_addr: Option<&str>, token: Option<&str>, sensor: FakeSensor) -> Server {
    start_full(policy_addr, token, sensor, ApiConfig::default(), None).await
}

/// [`start_with`] with the limits of `cfg` and, with `model`, an ANN model served from the
/// models directory `<temp dir>/models` (created).
async fn start_full(
    policy_addr: Option<&str>,
    token: Option<&str>,
    sensor: FakeSensor,
    cfg: ApiConfig,
    model: Option<safelink::ann::ModelHandle>,
) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bound = listener.local_addr().unwrap();
    let policy_addr: SocketAddr = policy_addr.map_or(bound, |a| a.parse().unwrap());
    let policy = AuthPolicy::new(policy_addr, token).unwrap();
    std::fs::create_dir(dir.path().join("models")).unwrap();
    let mut state = ApiState::new(store.clone(), Arc::new(sensor), policy)
        .with_limits(&cfg, cfg.model_dir(dir.path()));
    if let Some(m) = model {
        state = state.with_model(m);
    }
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let max = cfg.max_connections;
    tokio::spawn(api::serve_with(
        listener,
        api::router(state),
        max,
        async move {
            let _ = rx.await;
        },
    ));
    Server {
        base: format!("http://{bound}"),
        http: reqwest::Client::builder().no_proxy().build().unwrap(),
        store,
        dir,
        _shutdown: tx,
    }
}

async fn start() -> Server {
    start_with(None, Some(TOKEN), FakeSensor::default()).await
}

fn alert(minute: u32, source: AlertSource, kind: AlertKind, src: Option<&str>) -> Alert {
    let ts = Timestamp::parse(&format!("2024-05-01T12:{minute:02}:00Z")).unwrap();
    Alert {
        id: 0,
        timestamp: ts,
        source,
        kind,
        severity: Severity::High,
        confidence: 1.0,
        src_ip: src.map(|s| s.parse().unwrap()),
        src_port: Some(40000 + minute as u16),
        dest_ip: Some("192.0.2.10".parse().unwrap()),
        dest_port: Some(22),
        proto: "tcp".into(),
        src_mac: None,
        first_seen: ts,
        last_seen: ts,
        count: u64::from(minute) * 10,
        description: format!("{} test alert", kind.as_str()),
        community_id: Some(format!("1:test{minute}=")),
        tunnel: None,
        explanation: None,
        resembles: None,
        features: vec![0.5, 1.0],
    }
}

/// Five alerts, ids 1..=5, one minute apart:
/// 1 port_scan/dfa from .1, 2 ssh_brute_force/dfa from .2, 3 port_scan/dfa from .1,
/// 4 anomalous_flow/ann from 2001:db8::5 (with explanation, resembling port_scan), 5 arp_spoof/dfa without IP,
/// with a description that needs CSV quoting.
fn seed(store: &Store) {
    let ann = Alert {
        severity: Severity::Medium,
        confidence: 0.875,
        proto: "udp".into(),
        explanation: Some(json!({"dst_port_entropy": 0.4})),
        resembles: Some(safelink::ann::Resemblance {
            family: AlertKind::PORT_SCAN,
            probability: 0.8,
        }),
        ..alert(
            4,
            AlertSource::Ann,
            AlertKind::ANOMALOUS_FLOW,
            Some("2001:db8::5"),
        )
    };
    let spoof = Alert {
        severity: Severity::Critical,
        src_port: None,
        dest_ip: Some("192.0.2.1".parse().unwrap()),
        dest_port: None,
        proto: "arp".into(),
        src_mac: Some("02:00:00:00:00:02".into()),
        community_id: None,
        tunnel: None,
        description: "192.0.2.1 claimed by \"02:00:00:00:00:02\", was 02:00:00:00:00:01".into(),
        ..alert(5, AlertSource::Dfa, AlertKind::ARP_SPOOF, None)
    };
    let alerts = [
        alert(
            1,
            AlertSource::Dfa,
            AlertKind::PORT_SCAN,
            Some("198.51.100.1"),
        ),
        alert(
            2,
            AlertSource::Dfa,
            AlertKind::SSH_BRUTE_FORCE,
            Some("198.51.100.2"),
        ),
        alert(
            3,
            AlertSource::Dfa,
            AlertKind::PORT_SCAN,
            Some("198.51.100.1"),
        ),
        ann,
        spoof,
    ];
    for (i, a) in alerts.into_iter().enumerate() {
        assert_eq!(store.insert(a).unwrap(), i as u64 + 1);
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

    async fn get_json(&self, path: &str) -> (StatusCode, Value) {
        let (status, body) = self.get(path).await;
        (
            status,
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}")),
        )
    }

    async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.post(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}")),
        )
    }

    /// Ids of an alert page, and its next cursor.
    async fn page(&self, path: &str) -> (Vec<u64>, Option<String>) {
        let (status, v) = self.get_json(path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {v}");
        let ids = v["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_u64().unwrap())
            .collect();
        (ids, v["next_cursor"].as_str().map(String::from))
    }
}

fn err(msg: &str) -> Value {
    json!({ "error": msg })
}

#[tokio::test]
async fn lists_newest_first_with_the_stored_fields() {
    let s = start().await;
    seed(&s.store);
    let (status, v) = s.get_json("/alerts").await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<u64> = v["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [5, 4, 3, 2, 1]);
    assert_eq!(v["next_cursor"], Value::Null);
    // Each listed alert is exactly the stored one, field names as in the Alert contract.
    for a in v["alerts"].as_array().unwrap() {
        let stored = s.store.get(a["id"].as_u64().unwrap()).unwrap().unwrap();
        assert_eq!(a, &serde_json::to_value(&stored).unwrap());
    }
    let (status, one) = s.get_json("/alerts/4").await;
    assert_eq!(status, StatusCode::OK);
    // The stored alert, with its feature row named (the ANN feature table, in order).
    let stored = s.store.get(4).unwrap().unwrap();
    assert_eq!(
        one,
        serde_json::to_value(safelink::alert::AlertView::from(&stored)).unwrap()
    );
    assert_eq!(
        one["feature_table"],
        json!([{"name": "duration_s", "unit": "s", "value": 0.5},
               {"name": "proto_tcp", "unit": "0/1", "value": 1.0}])
    );
    assert_eq!(one["source"], "ann");
    assert_eq!(one["kind"], "anomalous_flow");
    assert_eq!(one["explanation"], json!({"dst_port_entropy": 0.4}));
    assert_eq!(
        one["resembles"],
        json!({"family": "port_scan", "probability": 0.8})
    );
    let (_, three) = s.get_json("/alerts/3").await;
    assert!(three.get("resembles").is_none(), "{three}");
}

#[tokio::test]
async fn filters_by_kind_source_ip_and_time() {
    let s = start().await;
    seed(&s.store);
    for (query, want) in [
        ("kind=port_scan", vec![3, 1]),
        ("kind=arp_spoof", vec![5]),
        ("kind=udp_flood", vec![]),
        ("source=ann", vec![4]),
        ("source=dfa", vec![5, 3, 2, 1]),
        ("src_ip=198.51.100.1", vec![3, 1]),
        ("src_ip=2001:db8::5", vec![4]),
        ("src_ip=203.0.113.1", vec![]),
        ("kind=port_scan&src_ip=198.51.100.2", vec![]),
        (
            "kind=ssh_brute_force&source=dfa&src_ip=198.51.100.2",
            vec![2],
        ),
        ("since=2024-05-01T12:02:00.000000Z", vec![5, 4, 3, 2]),
        ("until=2024-05-01T12:02:00.000000Z", vec![1]),
        (
            "since=2024-05-01T12:02:00.000000Z&until=2024-05-01T12:04:00.000000Z",
            vec![3, 2],
        ),
        (
            "since=2024-05-01T14:02:00%2B02:00&until=2024-05-01T12:04:00.000001Z",
            vec![4, 3, 2],
        ),
        ("kind=port_scan&since=2024-05-01T12:02:00.000000Z", vec![3]),
        // Empty values count as absent (HTML forms send them).
        (
            "kind=&source=&src_ip=&since=&until=&limit=&cursor=",
            vec![5, 4, 3, 2, 1],
        ),
    ] {
        assert_eq!(
            s.page(&format!("/alerts?{query}")).await,
            (want, None),
            "{query}"
        );
    }
}

#[tokio::test]
async fn pages_with_cursors() {
    let s = start().await;
    seed(&s.store);
    let (p1, c1) = s.page("/alerts?limit=2").await;
    assert_eq!(p1, [5, 4]);
    let c1 = c1.expect("more pages");
    let (p2, c2) = s.page(&format!("/alerts?limit=2&cursor={c1}")).await;
    assert_eq!(p2, [3, 2]);
    let (p3, c3) = s
        .page(&format!("/alerts?limit=2&cursor={}", c2.unwrap()))
        .await;
    assert_eq!((p3, c3), (vec![1], None));
    // With a filter the cursor walks the filtered listing; a full last page has no cursor.
    let (p, c) = s.page("/alerts?source=dfa&limit=1").await;
    assert_eq!(p, [5]);
    let (p, c) = s
        .page(&format!("/alerts?source=dfa&limit=2&cursor={}", c.unwrap()))
        .await;
    assert_eq!(p, [3, 2]);
    let (p, c) = s
        .page(&format!("/alerts?source=dfa&limit=1&cursor={}", c.unwrap()))
        .await;
    assert_eq!((p, c), (vec![1], None));
    assert_eq!(s.page("/alerts?limit=5").await, (vec![5, 4, 3, 2, 1], None));
    // Default limit is 100, maximum 1000.
    for _ in 0..100 {
        s.store
            .insert(alert(
                0,
                AlertSource::Dfa,
                AlertKind::HOST_SWEEP,
                Some("198.51.100.9"),
            ))
            .unwrap();
    }
    let (p, c) = s.page("/alerts").await;
    assert_eq!(p.len(), 100);
    let (p, c) = s.page(&format!("/alerts?cursor={}", c.unwrap())).await;
    assert_eq!((p.len(), c), (5, None));
    let (p, c) = s.page("/alerts?limit=1000").await;
    assert_eq!((p.len(), c), (105, None));
}

#[tokio::test]
async fn get_by_id_and_404s() {
    let s = start().await;
    seed(&s.store);
    assert_eq!(
        s.get_json("/alerts/99").await,
        (StatusCode::NOT_FOUND, err("alert 99 not found"))
    );
    let bad = err("bad alert id \"abc\": expected a positive integer");
    assert_eq!(
        s.get_json("/alerts/abc").await,
        (StatusCode::BAD_REQUEST, bad)
    );
    let zero = err("bad alert id \"0\": expected a positive integer");
    assert_eq!(
        s.get_json("/alerts/0").await,
        (StatusCode::BAD_REQUEST, zero)
    );
    assert_eq!(
        s.get_json("/nope").await,
        (StatusCode::NOT_FOUND, err("no such endpoint: GET /nope"))
    );
    assert_eq!(
        s.get_json("/alerts/").await,
        (StatusCode::NOT_FOUND, err("no such endpoint: GET /alerts/"))
    );
    assert_eq!(
        s.post("/alerts", Some(TOKEN), None).await,
        (
            StatusCode::METHOD_NOT_ALLOWED,
            err("method POST not allowed on /alerts")
        )
    );
    s.store.archive_ids(&[2]).unwrap();
    assert_eq!(
        s.get_json("/alerts/2").await,
        (
            StatusCode::NOT_FOUND,
            err("alert 2 is archived: list it with GET /alerts/archive")
        )
    );
}

#[tokio::test]
async fn csv_export_is_exact() {
    let s = start().await;
    seed(&s.store);
    let r = s
        .http
        .get(format!("{}/alerts/export.csv", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    assert_eq!(
        r.headers()["content-disposition"],
        "attachment; filename=\"safelink-alerts.csv\""
    );
    let want = "\
id,timestamp,source,kind,severity,confidence,src_ip,src_port,dest_ip,dest_port,proto,src_mac,first_seen,last_seen,count,description,community_id,explanation,resembles,resembles_probability
5,2024-05-01T12:05:00.000000Z,dfa,arp_spoof,critical,1,,,192.0.2.1,,arp,02:00:00:00:00:02,2024-05-01T12:05:00.000000Z,2024-05-01T12:05:00.000000Z,50,\"192.0.2.1 claimed by \"\"02:00:00:00:00:02\"\", was 02:00:00:00:00:01\",,,,
4,2024-05-01T12:04:00.000000Z,ann,anomalous_flow,medium,0.875,2001:db8::5,40004,192.0.2.10,22,udp,,2024-05-01T12:04:00.000000Z,2024-05-01T12:04:00.000000Z,40,anomalous_flow test alert,1:test4=,\"{\"\"dst_port_entropy\"\":0.4}\",port_scan,0.8
3,2024-05-01T12:03:00.000000Z,dfa,port_scan,high,1,198.51.100.1,40003,192.0.2.10,22,tcp,,2024-05-01T12:03:00.000000Z,2024-05-01T12:03:00.000000Z,30,port_scan test alert,1:test3=,,,
2,2024-05-01T12:02:00.000000Z,dfa,ssh_brute_force,high,1,198.51.100.2,40002,192.0.2.10,22,tcp,,2024-05-01T12:02:00.000000Z,2024-05-01T12:02:00.000000Z,20,ssh_brute_force test alert,1:test2=,,,
1,2024-05-01T12:01:00.000000Z,dfa,port_scan,high,1,198.51.100.1,40001,192.0.2.10,22,tcp,,2024-05-01T12:01:00.000000Z,2024-05-01T12:01:00.000000Z,10,port_scan test alert,1:test1=,,,
";
    assert_eq!(r.text().await.unwrap(), want);
    // Same filters as /alerts.
    let (status, body) = s.get("/alerts/export.csv?kind=ssh_brute_force").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.lines().count(), 2);
    assert!(body.lines().nth(1).unwrap().starts_with("2,"));
    let (status, body) = s.get("/alerts/export.csv?kind=udp_flood").await;
    assert_eq!((status, body.lines().count()), (StatusCode::OK, 1));
}

#[tokio::test]
async fn eve_export_is_exact() {
    let s = start().await;
    seed(&s.store);
    let r = s
        .http
        .get(format!(
            "{}/alerts/export.json?since=2024-05-01T12:03:00.000000Z",
            s.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    // Suricata's EVE form: numeric UTC offset, SafeLink's fields as lists of strings in
    // `alert.metadata`, a flow_id where there is a flow (from the Community ID).
    let want = [
        r#"{"timestamp":"2024-05-01T12:05:00.000000+0000","event_type":"alert","dest_ip":"192.0.2.1","proto":"ARP","alert":{"action":"allowed","gid":1,"signature_id":5100004,"rev":1,"signature":"192.0.2.1 claimed by \"02:00:00:00:00:02\", was 02:00:00:00:00:01","category":"arp_spoof","severity":1,"metadata":{"confidence":["1"],"count":["50"],"features":["duration_s=0.5","proto_tcp=1"],"first_seen":["2024-05-01T12:05:00.000000Z"],"kind":["arp_spoof"],"last_seen":["2024-05-01T12:05:00.000000Z"],"safelink_id":["5"],"severity":["critical"],"source":["dfa"],"src_mac":["02:00:00:00:00:02"]}}}"#,
        r#"{"timestamp":"2024-05-01T12:04:00.000000+0000","flow_id":2131588275819480219,"event_type":"alert","src_ip":"2001:db8::5","src_port":40004,"dest_ip":"192.0.2.10","dest_port":22,"proto":"UDP","community_id":"1:test4=","alert":{"action":"allowed","gid":1,"signature_id":5101011,"rev":1,"signature":"anomalous_flow test alert","category":"anomalous_flow","severity":2,"metadata":{"confidence":["0.875"],"count":["40"],"explanation":["{\"dst_port_entropy\":0.4}"],"features":["duration_s=0.5","proto_tcp=1"],"first_seen":["2024-05-01T12:04:00.000000Z"],"kind":["anomalous_flow"],"last_seen":["2024-05-01T12:04:00.000000Z"],"resembles":["port_scan"],"resembles_probability":["0.8"],"safelink_id":["4"],"severity":["medium"],"source":["ann"]}}}"#,
        r#"{"timestamp":"2024-05-01T12:03:00.000000+0000","flow_id":539728108521349070,"event_type":"alert","src_ip":"198.51.100.1","src_port":40003,"dest_ip":"192.0.2.10","dest_port":22,"proto":"TCP","community_id":"1:test3=","alert":{"action":"allowed","gid":1,"signature_id":5100001,"rev":1,"signature":"port_scan test alert","category":"port_scan","severity":1,"metadata":{"confidence":["1"],"count":["30"],"features":["duration_s=0.5","proto_tcp=1"],"first_seen":["2024-05-01T12:03:00.000000Z"],"kind":["port_scan"],"last_seen":["2024-05-01T12:03:00.000000Z"],"safelink_id":["3"],"severity":["high"],"source":["dfa"]}}}"#,
    ];
    let body = r.text().await.unwrap();
    assert_eq!(
        body,
        want.iter().map(|l| format!("{l}\n")).collect::<String>()
    );
    let (status, body) = s.get("/alerts/export.json?source=ann&kind=port_scan").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, ""));
}

#[tokio::test]
async fn archive_by_ids_and_older_than() {
    let s = start().await;
    seed(&s.store);
    assert_eq!(
        s.post(
            "/alerts/archive",
            Some(TOKEN),
            Some(r#"{"ids":[2,4,4,99]}"#)
        )
        .await,
        (StatusCode::OK, json!({"archived": 2}))
    );
    assert_eq!(s.page("/alerts").await, (vec![5, 3, 1], None));
    assert_eq!(s.page("/alerts/archive").await, (vec![4, 2], None));
    // Strictly older than 12:03 → alert 1 (2 already archived).
    assert_eq!(
        s.post(
            "/alerts/archive",
            Some(TOKEN),
            Some(r#"{"older_than":"2024-05-01T12:03:00.000000Z"}"#)
        )
        .await,
        (StatusCode::OK, json!({"archived": 1}))
    );
    assert_eq!(s.page("/alerts").await, (vec![5, 3], None));
    let (p, c) = s.page("/alerts/archive?limit=2").await;
    assert_eq!(p, [4, 2]);
    assert_eq!(
        s.page(&format!("/alerts/archive?limit=2&cursor={}", c.unwrap()))
            .await,
        (vec![1], None)
    );
    assert_eq!(
        s.page("/alerts/archive?kind=port_scan").await,
        (vec![1], None)
    );
    let (status, v) = s.get_json("/status").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (
            &v["total_alerts"],
            &v["active_alerts"],
            &v["archived_alerts"]
        ),
        (&json!(5), &json!(2), &json!(3))
    );
    assert_eq!(
        s.post(
            "/alerts/archive",
            Some(TOKEN),
            Some(r#"{"older_than":"2030-01-01T00:00:00+01:00"}"#)
        )
        .await,
        (StatusCode::OK, json!({"archived": 2}))
    );
    assert_eq!(s.page("/alerts").await, (vec![], None));
}

#[tokio::test]
async fn state_changing_calls_need_the_token() {
    let s = start().await;
    seed(&s.store);
    let missing = err("missing bearer token: send Authorization: Bearer <token>");
    let wrong = err("wrong bearer token");
    for path in [
        "/alerts/archive",
        "/sniffer/start",
        "/sniffer/stop",
        "/nope",
    ] {
        let body = Some(r#"{"ids":[1]}"#);
        assert_eq!(
            s.post(path, None, body).await,
            (StatusCode::UNAUTHORIZED, missing.clone()),
            "{path}"
        );
        assert_eq!(
            s.post(path, Some("wrong"), body).await,
            (StatusCode::UNAUTHORIZED, wrong.clone()),
            "{path}"
        );
        assert_eq!(
            s.post(path, Some(&TOKEN[1..]), body).await,
            (StatusCode::UNAUTHORIZED, wrong.clone()),
            "{path}"
        );
    }
    let r = s
        .http
        .post(format!("{}/sniffer/start", s.base))
        .header("authorization", "Basic dG9rZW4=")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"safelink\"");
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        err("Authorization header is not of the form Bearer <token>")
    );
    // Nothing was archived or started by the refused calls.
    assert_eq!(s.page("/alerts").await.0, [5, 4, 3, 2, 1]);
    assert_eq!(s.get_json("/status").await.1["sniffer_running"], false);
    // Reads on loopback need no token.
    assert_eq!(s.get("/alerts/1").await.0, StatusCode::OK);
}

#[tokio::test]
async fn reads_need_the_token_when_not_on_loopback() {
    // Policy for a wildcard listen address; the socket itself stays on loopback for the test.
    let s = start_with(Some("0.0.0.0:8000"), Some(TOKEN), FakeSensor::default()).await;
    seed(&s.store);
    let missing = err("missing bearer token: send Authorization: Bearer <token>");
    for path in [
        "/status",
        "/alerts",
        "/alerts/1",
        "/alerts/export.csv",
        "/alerts/archive",
        "/nope",
    ] {
        assert_eq!(
            s.get_json(path).await,
            (StatusCode::UNAUTHORIZED, missing.clone()),
            "{path}"
        );
        let r = s
            .http
            .get(format!("{}{path}", s.base))
            .bearer_auth("nope")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    let r = s
        .http
        .get(format!("{}/alerts/1", s.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // And no token on a non-loopback address refuses to start.
    let e = AuthPolicy::new("0.0.0.0:8000".parse().unwrap(), None).unwrap_err();
    assert_eq!(
        e.to_string(),
        "refusing to serve the API on non-loopback address 0.0.0.0:8000 without a token: set \
         SAFELINK_API_TOKEN (or api token in the config), or listen on 127.0.0.1"
    );
}

#[tokio::test]
async fn without_a_configured_token_state_changes_are_forbidden() {
    let s = start_with(None, None, FakeSensor::default()).await;
    let forbidden = err(
        "state-changing calls are disabled: no API token is configured (set SAFELINK_API_TOKEN)",
    );
    assert_eq!(
        s.post("/sniffer/start", Some(TOKEN), None).await,
        (StatusCode::FORBIDDEN, forbidden)
    );
    assert_eq!(s.get("/status").await.0, StatusCode::OK);
}

#[tokio::test]
async fn status_and_sniffer_control() {
    let s = start().await;
    let (status, mut v) = s.get_json("/status").await;
    assert_eq!(status, StatusCode::OK);
    let store = v.as_object_mut().unwrap().remove("store").unwrap();
    assert!(store["bytes"].as_u64().unwrap() > 0, "{store}");
    assert_eq!(
        (
            &store["state"],
            &store["last_error"],
            &store["alerts_dropped"]
        ),
        (&json!("ok"), &json!(null), &json!(0))
    );
    assert_eq!(
        v,
        json!({
            "sniffer_running": false, "interface": "veth0", "xdp_mode": null, "uptime_secs": 42,
            "packets": 1000, "flows": 17, "total_alerts": 0, "active_alerts": 0,
            "archived_alerts": 0, "latest_alert_time": null, "detection_sources": ["dfa", "ann"],
            "ringbuf_events": 300, "ringbuf_drops": 2, "health": "ok", "degraded_stages": [],
            "ann": null
        })
    );
    let on = json!({"running": true, "changed": true});
    assert_eq!(
        s.post("/sniffer/start", Some(TOKEN), None).await,
        (StatusCode::OK, on)
    );
    let again = json!({"running": true, "changed": false});
    assert_eq!(
        s.post("/sniffer/start", Some(TOKEN), None).await,
        (StatusCode::OK, again)
    );
    seed(&s.store);
    let (_, v) = s.get_json("/status").await;
    assert_eq!(
        (&v["sniffer_running"], &v["xdp_mode"]),
        (&json!(true), &json!("skb"))
    );
    assert_eq!(
        (&v["total_alerts"], &v["latest_alert_time"]),
        (&json!(5), &json!("2024-05-01T12:05:00.000000Z"))
    );
    let off = json!({"running": false, "changed": true});
    assert_eq!(
        s.post("/sniffer/stop", Some(TOKEN), None).await,
        (StatusCode::OK, off)
    );
    assert_eq!(
        s.get("/sniffer/stop").await,
        (
            StatusCode::METHOD_NOT_ALLOWED,
            r#"{"error":"method GET not allowed on /sniffer/stop"}"#.to_string()
        )
    );

    let refusing = start_with(
        None,
        Some(TOKEN),
        FakeSensor {
            refuse: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        refusing.post("/sniffer/start", Some(TOKEN), None).await,
        (
            StatusCode::CONFLICT,
            err("cannot start the sniffer: no interface configured")
        )
    );
}

#[tokio::test]
async fn bad_query_parameters_are_400_json() {
    let s = start().await;
    seed(&s.store);
    let kinds = "`port_scan`, `host_sweep`, `arp_scan`, `arp_spoof`, `ssh_brute_force`, \
                 `login_brute_force`, `syn_flood`, `udp_flood`, `icmp_flood`, `amplification`, \
                 `anomalous_flow`";
    let cases = [
        ("/alerts?kind=foo", format!("bad kind \"foo\": unknown variant `foo`, expected one of {kinds}")),
        ("/alerts?source=rules", "bad source \"rules\": unknown variant `rules`, expected `dfa` or `ann`".into()),
        ("/alerts?src_ip=1.2.3", "bad src_ip \"1.2.3\": invalid IP address syntax".into()),
        ("/alerts?since=yesterday", "bad since \"yesterday\": expected an RFC 3339 time such as 2024-05-01T12:00:00Z (the 'year' component could not be parsed)".into()),
        ("/alerts?until=2024-05-01", "bad until \"2024-05-01\": expected an RFC 3339 time such as 2024-05-01T12:00:00Z (the 'separator' component could not be parsed)".into()),
        ("/alerts?since=2024-05-02T00:00:00Z&until=2024-05-01T00:00:00Z", "since is after until".into()),
        ("/alerts?limit=0", "limit 0 is out of range: expected 1 to 1000".into()),
        ("/alerts?limit=1001", "limit 1001 is out of range: expected 1 to 1000".into()),
        ("/alerts?limit=-1", "bad limit \"-1\": expected an integer from 1 to 1000".into()),
        ("/alerts?limit=ten", "bad limit \"ten\": expected an integer from 1 to 1000".into()),
        ("/alerts?cursor=abc", "bad cursor \"abc\": expected the next_cursor value of a previous page".into()),
        ("/alerts?limit=1&limit=2", "Failed to deserialize query string: duplicate field `limit`".into()),
        ("/alerts?colour=red", "Failed to deserialize query string: colour: unknown field `colour`, expected one of `kind`, `source`, `src_ip`, `since`, `until`, `limit`, `cursor`".into()),
        ("/alerts/archive?kind=nope", format!("bad kind \"nope\": unknown variant `nope`, expected one of {kinds}")),
        ("/alerts/export.csv?limit=5", "export.csv takes no limit or cursor: it exports every matching alert".into()),
        ("/alerts/export.json?src_ip=::g", "bad src_ip \"::g\": invalid IP address syntax".into()),
    ];
    for (path, msg) in cases {
        assert_eq!(
            s.get_json(path).await,
            (StatusCode::BAD_REQUEST, err(&msg)),
            "{path}"
        );
    }
}

#[tokio::test]
async fn bad_archive_bodies_are_4xx_json() {
    let s = start().await;
    seed(&s.store);
    let archive = |body: Option<&'static str>| s.post("/alerts/archive", Some(TOKEN), body);
    let cases: [(Option<&str>, StatusCode, &str); 9] = [
        (
            None,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Expected request with `Content-Type: application/json`",
        ),
        (
            Some("{"),
            StatusCode::BAD_REQUEST,
            "Failed to parse the request body as JSON: EOF while parsing an object at line 1 column 1",
        ),
        (
            Some(r#"{"ids":"all"}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "Failed to deserialize the JSON body into the target type: ids: invalid type: string \"all\", expected a sequence at line 1 column 12",
        ),
        (
            Some(r#"{"ids":[-1]}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "Failed to deserialize the JSON body into the target type: ids[0]: invalid value: integer `-1`, expected u64 at line 1 column 10",
        ),
        (
            Some(r#"{"id":[1]}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "Failed to deserialize the JSON body into the target type: id: unknown field `id`, expected `ids` or `older_than` at line 1 column 5",
        ),
        (
            Some("{}"),
            StatusCode::BAD_REQUEST,
            "give exactly one of \"ids\" or \"older_than\"",
        ),
        (
            Some(r#"{"ids":[1],"older_than":"2024-05-01T00:00:00Z"}"#),
            StatusCode::BAD_REQUEST,
            "give exactly one of \"ids\" or \"older_than\"",
        ),
        (
            Some(r#"{"ids":[]}"#),
            StatusCode::BAD_REQUEST,
            "\"ids\" is empty",
        ),
        (
            Some(r#"{"older_than":"last week"}"#),
            StatusCode::BAD_REQUEST,
            "bad older_than \"last week\": expected an RFC 3339 time such as 2024-05-01T12:00:00Z (the 'year' component could not be parsed)",
        ),
    ];
    for (body, status, msg) in cases {
        assert_eq!(archive(body).await, (status, err(msg)), "{body:?}");
    }
    // Nothing was archived by the refused calls.
    assert_eq!(s.page("/alerts/archive").await, (vec![], None));
}

#[tokio::test]
async fn serve_returns_after_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let policy = AuthPolicy::new(addr, Some(TOKEN)).unwrap();
    let state = ApiState::new(store, Arc::new(FakeSensor::default()), policy);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(api::serve(listener, api::router(state), async move {
        let _ = rx.await;
    }));
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = http
        .get(format!("http://{addr}/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    drop(http);
    tx.send(()).unwrap();
    let done = tokio::time::timeout(std::time::Duration::from_secs(10), server).await;
    done.expect("serve did not stop").unwrap().unwrap();
    assert_eq!(api::DEFAULT_LISTEN.to_string(), "127.0.0.1:8000");
}

/// `GET /kinds` and `GET /features` serve the sensor's one list of kinds and its feature table
/// (the dashboard builds its kind filter from the first).
#[tokio::test]
async fn kinds_and_features_come_from_the_one_list() {
    let s = start().await;
    let (status, v) = s.get_json("/kinds").await;
    assert_eq!(status, StatusCode::OK);
    let kinds: Vec<&str> = v["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "port_scan",
            "host_sweep",
            "arp_scan",
            "arp_spoof",
            "ssh_brute_force",
            "login_brute_force",
            "syn_flood",
            "udp_flood",
            "icmp_flood",
            "amplification",
            "anomalous_flow"
        ]
    );
    assert_eq!(
        v["kinds"][4],
        json!({"kind": "ssh_brute_force", "number": 5, "severity": "high", "source": "dfa",
               "summary": "many short failed-looking SSH sessions from one source"})
    );
    assert_eq!(v["kinds"][10]["source"], "ann");
    let (status, f) = s.get_json("/features").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        f["features"].as_array().unwrap().len(),
        safelink::ann::N_FEATURES
    );
    assert_eq!(f["features"][0]["name"], "duration_s");
    assert_eq!(f["version"], safelink::ann::FEATURE_VECTOR_VERSION);
}

/// DNS rebinding: on loopback, where reads need no token, a request naming another host (a
/// page whose name was re-pointed at 127.0.0.1) is refused with a 403 JSON error; IP
/// addresses and localhost are answered.
#[tokio::test]
async fn loopback_answers_only_ip_and_localhost_host_names() {
    let s = start().await;
    seed(&s.store);
    let get = |host: &'static str| {
        let r = s
            .http
            .get(format!("{}/alerts", s.base))
            .header("host", host)
            .send();
        async move {
            let r = r.await.unwrap();
            let st = r.status();
            (st, r.json::<Value>().await.unwrap())
        }
    };
    let (st, v) = get("evil.example:8000").await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert!(
        v["error"].as_str().unwrap().contains("DNS rebinding"),
        "{v}"
    );
    let (st, v) = get("localhost:8000").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["alerts"].as_array().unwrap().len(), 5);
    let (st, _) = get("127.0.0.1:8000").await;
    assert_eq!(st, StatusCode::OK);
}

// ---------------------------------------------------------------- hostile traffic

/// `n` alerts, one second apart, inserted from 4 threads (every insert is fsynced).
fn seed_many(store: &Store, n: u32) {
    let per = n / 4;
    std::thread::scope(|sc| {
        for t in 0..4 {
            sc.spawn(move || {
                for i in t * per..(t + 1) * per {
                    let mut a = alert(
                        0,
                        AlertSource::Dfa,
                        AlertKind::PORT_SCAN,
                        Some("198.51.100.7"),
                    );
                    a.timestamp = Timestamp::from_ns(
                        1_714_564_800_000_000_000 + u64::from(i) * 1_000_000_000,
                    );
                    store.insert(a).unwrap();
                }
            });
        }
    });
}

/// Reads a response body frame by frame: (frames, body).
async fn frames(mut r: reqwest::Response) -> (usize, String) {
    let (mut n, mut body) = (0, Vec::new());
    while let Some(chunk) = r.chunk().await.unwrap() {
        n += 1;
        body.extend_from_slice(&chunk);
    }
    (n, String::from_utf8(body).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_of_a_large_store_stream_every_row() {
    const N: u32 = 20_000;
    let s = start().await;
    let store = s.store.clone();
    tokio::task::spawn_blocking(move || seed_many(&store, N))
        .await
        .unwrap();
    assert_eq!(s.store.counts().unwrap().active, u64::from(N));

    for (path, rows_before_alerts) in [("/alerts/export.csv", 1), ("/alerts/export.json", 0)] {
        let r = s
            .http
            .get(format!("{}{path}", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        // Streamed: chunked, no length known up front...
        assert_eq!(r.headers()["transfer-encoding"], "chunked", "{path}");
        assert!(r.headers().get("content-length").is_none(), "{path}");
        let (n_frames, body) = frames(r).await;
        // ...one chunk per store page of 500 alerts at least.
        assert!(n_frames >= (N / 500) as usize, "{path}: {n_frames} frames");
        let lines: Vec<&str> = body.lines().collect();
        assert_eq!(lines.len(), N as usize + rows_before_alerts, "{path}");
        // Every alert exactly once, newest first.
        let ids: Vec<u64> = lines[rows_before_alerts..]
            .iter()
            .map(|l| {
                if path.ends_with(".csv") {
                    l.split(',').next().unwrap().parse().unwrap()
                } else {
                    let v: Value = serde_json::from_str(l).unwrap();
                    v["alert"]["metadata"]["safelink_id"][0]
                        .as_str()
                        .unwrap()
                        .parse()
                        .unwrap()
                }
            })
            .collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), N as usize, "{path}");
        assert_eq!((sorted[0], sorted[N as usize - 1]), (1, u64::from(N)));
        let times: Vec<&str> = lines[rows_before_alerts..]
            .iter()
            .map(|l| {
                if path.ends_with(".csv") {
                    l.split(',').nth(1).unwrap()
                } else {
                    &l[14..45]
                }
            })
            .collect();
        assert!(
            times.windows(2).all(|w| w[0] >= w[1]),
            "{path}: newest first"
        );
    }
    // Filters still apply to the streamed export.
    let (status, body) = s
        .get("/alerts/export.csv?since=2024-05-01T12:00:00Z&until=2024-05-01T12:16:40Z")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.lines().count(), 1 + 1000);
}

/// Sends one request on a raw connection and reads the answer head (the connection stays
/// open: keep-alive). Blocking socket calls, off the runtime that serves the API.
async fn held_connection(base: &str) -> std::net::TcpStream {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://").to_string();
    tokio::task::spawn_blocking(move || {
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.write_all(b"GET /kinds HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let n = c.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK"));
        c
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn connections_over_the_cap_get_a_503_json_answer() {
    let cfg = ApiConfig {
        max_connections: 2,
        ..ApiConfig::default()
    };
    let s = start_full(None, Some(TOKEN), FakeSensor::default(), cfg, None).await;
    let a = held_connection(&s.base).await;
    let _b = held_connection(&s.base).await;

    // A third connection: one answer, then closed.
    let want = err(
        "too many connections: this sensor serves at most 2 at once ([api] max_connections); \
         retry shortly",
    );
    let r = s
        .http
        .get(format!("{}/status", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.json::<Value>().await.unwrap(), want);
    // Also for a state-changing call (refused before any handler runs).
    let (status, v) = s.post("/sniffer/start", Some(TOKEN), None).await;
    assert_eq!((status, v), (StatusCode::SERVICE_UNAVAILABLE, want));

    // A slot comes back when a connection closes.
    drop(a);
    let mut waited = 0;
    loop {
        let r = s.http.get(format!("{}/status", s.base)).send().await;
        if r.is_ok_and(|r| r.status() == StatusCode::OK) {
            break;
        }
        waited += 1;
        assert!(waited < 100, "no slot after a connection closed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn oversized_bodies_get_413_json() {
    let s = start().await;
    let limit = ApiConfig::default().max_body_bytes;
    assert_eq!(limit, 256 * 1024);
    let ids = |n: usize| format!("{{\"ids\":[{}]}}", vec!["123456"; n].join(","));
    let big = ids(40_000);
    assert!(big.len() > limit);
    let big_for_raw = big.clone();
    let want = err("request body larger than 262144 bytes ([api] max_body_bytes)");
    for token in [Some(TOKEN), None] {
        let (status, v) = s.post("/alerts/archive", token, Some(&big)).await;
        assert_eq!((status, v), (StatusCode::PAYLOAD_TOO_LARGE, want.clone()));
    }
    // Whatever the route: the declared length is checked first.
    let (status, v) = s.post("/sniffer/start", Some(TOKEN), Some(&big)).await;
    assert_eq!((status, v), (StatusCode::PAYLOAD_TOO_LARGE, want));

    // A chunked body (no declared length) is cut at the limit.
    let addr = s.base.trim_start_matches("http://").to_string();
    let answer = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        let head = format!(
            "POST /alerts/archive HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        );
        c.write_all(head.as_bytes()).unwrap();
        for part in big_for_raw.as_bytes().chunks(16 * 1024) {
            let chunk = [format!("{:x}\r\n", part.len()).as_bytes(), part, b"\r\n"].concat();
            if c.write_all(&chunk).is_err() {
                break; // the server answered and closed
            }
        }
        let _ = c.write_all(b"0\r\n\r\n");
        let mut answer = Vec::new();
        let _ = c.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(body).unwrap(),
        err("request body too large ([api] max_body_bytes)")
    );

    // The largest archive call (10 000 ids) still fits.
    let (status, v) = s
        .post("/alerts/archive", Some(TOKEN), Some(&ids(10_000)))
        .await;
    assert_eq!((status, v), (StatusCode::OK, json!({"archived": 0})));
}

mod model_files {
    //! `POST /model/load` with real tract and real, crafted model files.
    use prost::Message as _;
    use safelink::ann::export::{Activation, Dense, ExportSpec, build_model};
    use safelink::ann::features::N_FEATURES;
    use safelink::ann::model::meta;
    use tract_onnx::pb;

    use super::*;

    fn root() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    fn spec() -> ExportSpec {
        ExportSpec {
            n_features: N_FEATURES,
            mean: vec![0.0; N_FEATURES],
            std: vec![1.0; N_FEATURES],
            layers: vec![Dense {
                out_dim: 1,
                in_dim: N_FEATURES,
                weight: vec![0.01; N_FEATURES],
                bias: vec![0.0],
            }],
            activation: Activation::Relu,
            metadata: meta::for_this_build("crafted"),
        }
    }

    fn tensor(name: &str, dims: &[i64], v: &[f32]) -> pb::TensorProto {
        pb::TensorProto {
            name: name.into(),
            dims: dims.to_vec(),
            data_type: pb::tensor_proto::DataType::Float as i32,
            float_data: v.to_vec(),
            ..Default::default()
        }
    }

    fn node(op: &str, inputs: &[&str], output: &str) -> pb::NodeProto {
        pb::NodeProto {
            op_type: op.into(),
            name: output.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            ..Default::default()
        }
    }

    /// The exporter's graph whose score goes through `edit` (it gets the graph with the
    /// sigmoid's output renamed `s` and must produce `score`).
    fn crafted(edit: impl FnOnce(&mut pb::GraphProto)) -> Vec<u8> {
        let mut proto = build_model(&spec());
        let g = proto.graph.as_mut().unwrap();
        g.node.last_mut().unwrap().output = vec!["s".into()];
        edit(g);
        proto.encode_to_vec()
    }

    /// Finite weights, NaN on every row: the score is multiplied by `0 / 0`.
    fn nan_on_probe() -> Vec<u8> {
        crafted(|g| {
            g.node.push(node("Sub", &["x_norm", "x_norm"], "zero"));
            g.initializer
                .push(tensor("sum.w", &[N_FEATURES as i64, 1], &[1.0; N_FEATURES]));
            g.node.push(node("MatMul", &["zero", "sum.w"], "zero1"));
            g.node.push(node("Div", &["zero1", "zero1"], "gate"));
            g.node.push(node("Mul", &["s", "gate"], "score"));
        })
    }

    /// `ConstantOfShape` (tract would build its output while loading).
    fn constant_of_shape() -> Vec<u8> {
        crafted(|g| {
            g.initializer.push(pb::TensorProto {
                name: "huge_shape".into(),
                dims: vec![1],
                data_type: pb::tensor_proto::DataType::Int64 as i32,
                int64_data: vec![1 << 40],
                ..Default::default()
            });
            g.node.push(node("ConstantOfShape", &["huge_shape"], "big"));
            g.node.push(node("Identity", &["s"], "score"));
        })
    }

    /// An allowed operator on constants alone (folded by tract while loading).
    fn constants_only() -> Vec<u8> {
        crafted(|g| {
            g.node.push(node("Add", &["one", "one"], "two"));
            g.node.push(node("Mul", &["s", "two"], "score"));
        })
    }

    /// A broadcast that turns each row into 4096 × N_FEATURES values (then folded back into the
    /// score, adding 0).
    fn broadcast() -> Vec<u8> {
        const WIDE: usize = 4096 * N_FEATURES;
        crafted(|g| {
            g.initializer.push(tensor(
                "wide",
                &[4096, 1, N_FEATURES as i64],
                &vec![0.0; WIDE],
            ));
            g.initializer.push(pb::TensorProto {
                name: "rows".into(),
                dims: vec![2],
                data_type: pb::tensor_proto::DataType::Int64 as i32,
                int64_data: vec![-1, WIDE as i64],
                ..Default::default()
            });
            g.initializer
                .push(tensor("fold", &[WIDE as i64, 1], &vec![0.0; WIDE]));
            g.node.push(node("Add", &["x_norm", "wide"], "blown"));
            g.node.push(node("Reshape", &["blown", "rows"], "per_row"));
            g.node.push(node("MatMul", &["per_row", "fold"], "zero"));
            g.node.push(node("Add", &["s", "zero"], "score"));
        })
    }

    #[tokio::test]
    async fn model_files_load_only_from_the_models_directory() {
        let h = safelink::ann::ModelHandle::open(&root().join("models/base.onnx")).unwrap();
        let s = start_full(
            None,
            Some(TOKEN),
            FakeSensor::default(),
            ApiConfig::default(),
            Some(h.clone()),
        )
        .await;
        let models = s.dir.path().join("models");
        let m = |f: &str| models.join(f);
        std::fs::copy(root().join("models/base.onnx"), m("good.onnx")).unwrap();
        std::fs::copy(
            root().join("models/base.onnx"),
            s.dir.path().join("outside.onnx"),
        )
        .unwrap();
        std::os::unix::fs::symlink("/etc/passwd", m("passwd.onnx")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", m("zero.onnx")).unwrap();
        std::os::unix::fs::symlink(s.dir.path().join("outside.onnx"), m("escape.onnx")).unwrap();
        let status = std::process::Command::new("mkfifo")
            .arg(m("fifo.onnx"))
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::create_dir(m("sub")).unwrap();
        std::fs::File::create(m("huge.onnx"))
            .unwrap()
            .set_len(64 * 1024 * 1024 + 1)
            .unwrap();
        std::fs::write(m("nan.onnx"), nan_on_probe()).unwrap();
        std::fs::write(m("constant-of-shape.onnx"), constant_of_shape()).unwrap();
        std::fs::write(m("constants.onnx"), constants_only()).unwrap();
        std::fs::write(m("broadcast.onnx"), broadcast()).unwrap();

        let load = |path: String| {
            let body = json!({ "path": path }).to_string();
            let s = &s;
            async move { s.post("/model/load", Some(TOKEN), Some(&body)).await }
        };
        let dir = models.display().to_string();
        let forbidden = |p: &str, why: &str| {
            (
                StatusCode::FORBIDDEN,
                err(&format!("model path {p:?} {why}")),
            )
        };
        let refused = |status: StatusCode, why: &str| {
            (
                status,
                err(&format!(
                    "model refused, the current model keeps serving: {why}"
                )),
            )
        };
        let home = format!("the models directory {dir} ([api] model_dir)");
        let cases: Vec<(String, (StatusCode, Value))> = vec![
            (
                "/dev/zero".into(),
                forbidden("/dev/zero", &format!("is not in {home}")),
            ),
            (
                "/etc/passwd".into(),
                forbidden("/etc/passwd", &format!("is not in {home}")),
            ),
            (
                "../outside.onnx".into(),
                forbidden(
                    "../outside.onnx",
                    &format!("contains \"..\": models are loaded only from {home}"),
                ),
            ),
            (
                format!("{dir}/../outside.onnx"),
                forbidden(
                    &format!("{dir}/../outside.onnx"),
                    &format!("contains \"..\": models are loaded only from {home}"),
                ),
            ),
            (
                "passwd.onnx".into(),
                forbidden(
                    "passwd.onnx",
                    &format!("leads out of {home} through a symbolic link"),
                ),
            ),
            (
                "zero.onnx".into(),
                forbidden(
                    "zero.onnx",
                    &format!("leads out of {home} through a symbolic link"),
                ),
            ),
            (
                "escape.onnx".into(),
                forbidden(
                    "escape.onnx",
                    &format!("leads out of {home} through a symbolic link"),
                ),
            ),
            (
                "missing.onnx".into(),
                (
                    StatusCode::BAD_REQUEST,
                    err("no model file \"missing.onnx\" in the models directory"),
                ),
            ),
            (
                "huge.onnx".into(),
                refused(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "\"huge.onnx\" is larger than 67108864 bytes ([api] max_model_bytes)",
                ),
            ),
            (
                "fifo.onnx".into(),
                refused(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "\"fifo.onnx\" is not a regular file",
                ),
            ),
            (
                "sub".into(),
                refused(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "\"sub\" is not a regular file",
                ),
            ),
        ];
        for (path, want) in cases {
            let got = load(path.clone()).await;
            assert_eq!(got, want, "{path}");
        }
        // Refused by the model checks, with their own message.
        let real = |f: &str| models.canonicalize().unwrap().join(f).display().to_string();
        let model_cases = [
            (
                "nan.onnx",
                format!(
                    "{}: non-finite model: it scores probe row 0 as NaN (scores must be finite, \
                     in [0, 1])",
                    real("nan.onnx")
                ),
            ),
            (
                "constant-of-shape.onnx",
                format!(
                    "{}: graph refused: node \"big\" uses operator \"ConstantOfShape\"; accepted \
                     operators: Abs, Add, Clip, Div, Exp, Flatten, Gemm, Identity, LeakyRelu, \
                     Log, MatMul, Max, Min, Mul, Neg, Relu, Reshape, Sigmoid, Softmax, Sqrt, \
                     Sub, Tanh",
                    real("constant-of-shape.onnx")
                ),
            ),
            (
                "constants.onnx",
                format!(
                    "{}: graph refused: node \"two\" (Add) computes from constants only",
                    real("constants.onnx")
                ),
            ),
        ];
        for (file, why) in model_cases {
            let got = load(file.into()).await;
            assert_eq!(
                got,
                refused(StatusCode::UNPROCESSABLE_ENTITY, &why),
                "{file}"
            );
        }
        let (status, v) = load("broadcast.onnx".into()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        let e = v["error"].as_str().unwrap();
        assert!(
            e.contains("graph refused: tensor blown")
                && e.contains(&format!("{} elements per row", 4096 * N_FEATURES)),
            "{e}"
        );
        assert_eq!(h.generation(), 1);

        // Inside the directory: by relative name and by absolute path.
        let (status, v) = load("good.onnx".into()).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["generation"], 2);
        assert_eq!(v["model"]["source"], real("good.onnx"));
        let (status, v) = load(m("good.onnx").display().to_string()).await;
        assert_eq!(
            (status, v["generation"].clone()),
            (StatusCode::OK, json!(3))
        );
        assert_eq!(h.generation(), 3);
    }
}
