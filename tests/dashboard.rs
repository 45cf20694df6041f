//! The dashboard (`GET /`) in a real browser and `GET /metrics` after processing captures.
//!
//! The browser is Debian's headless Chromium driven over WebDriver (chromedriver) by a small
//! W3C WebDriver client written here over reqwest. The tests:
//! - `dashboard_in_chromium_over_replayed_alerts`: a real API server with a real sled store
//!   holding the alerts `safelink analyze --ann` raises on three shared captures (retimed so
//!   the newest is 125 s old). Asserts the cards, a filter narrowing the table, the ANN
//!   explanation in the detail view, the token prompt and start/stop through the API's
//!   `SensorControl` (a flag here), and that the page loads without a token on loopback.
//! - `dashboard_learning_with_a_real_learner`: the same page against a real learner (temp
//!   data dir, shipped base model and golden set) fed the samples of the benign and port-scan
//!   captures: learning Inactive → Start → Active, Train now runs a real cycle (cycles "1",
//!   version "2" if it was deployed, "1" if rejected, as `/learning/history` says), one point
//!   per series in the history chart, a rollback to v1 through the version control, and a
//!   "Not an attack" verdict from an alert's detail view stored as one more sample.
//! - `metrics_after_processing_captures`: the same alerts through the daemon's alert sink,
//!   then exact `safelink_alerts_total` lines from `GET /metrics`.
//! - `dashboard_and_metrics_of_a_live_daemon` (root): `safelink run` on a veth in a namespace
//!   the test creates, two captures replayed into it with tcpreplay, Chromium in the same
//!   namespace; cards, filter, Stop/Start detaching and re-attaching the real XDP program,
//!   and the kernel counters in `/metrics`.
//!
//! Each browser test saves a screenshot and prints its path (`SCREENSHOT <path>`).
mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use safelink::alert::{Alert, AlertEvent, AlertSource, Timestamp};
use safelink::api::{self, ApiState, AuthPolicy, ControlFuture, SensorControl, SensorStatus};
use safelink::learn::{Learner, LearningParams, load_golden};
use safelink::store::Store;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_safelink");
const TOKEN: &str = "dashboard-test-token-42";
const PCAPS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/pcaps");
const ARTIFACTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/test-artifacts");

// ------------------------------------------------------------------ fixtures

/// The alerts `safelink analyze --ann` raises on `files` (in `tests/pcaps`), in its order.
fn analyze(files: &[&str]) -> Vec<Alert> {
    let out = support::run(
        Command::new(BIN)
            // The shipped model is found from the workspace root (models/).
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .args(["analyze", "--ann"])
            .args(files.iter().map(|f| Path::new(PCAPS).join(f))),
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// port_scan (DFA) + anomalous_flow (ANN), ssh_brute_force (DFA) + anomalous_flow (ANN),
/// arp_scan (DFA).
const CAPTURES: [&str; 3] = [
    "portscan__syn-scan-29ports.pcap",
    "sshbrute__password-guessing-11conns.pcap",
    "arpscan__arp-request-sweep-24.pcap",
];

/// Shifts every time of `alerts` by one offset so that the newest is `age` old (the order
/// and spacing of the capture stay).
fn retime(alerts: &mut [Alert], age: Duration) {
    let newest = alerts.iter().map(|a| a.timestamp).max().unwrap();
    let target = Timestamp::now().ns() - age.as_nanos() as u64;
    for a in alerts {
        for t in [&mut a.timestamp, &mut a.first_seen, &mut a.last_seen] {
            *t = Timestamp::from_ns(t.ns() - newest.ns() + target);
        }
    }
}

/// A sniffer that only flips a flag (the live test drives the real one).
struct FlagSensor {
    running: AtomicBool,
}

impl SensorControl for FlagSensor {
    fn status(&self) -> SensorStatus {
        let running = self.running.load(Ordering::SeqCst);
        SensorStatus {
            running,
            interface: Some("veth-test".into()),
            xdp_mode: running.then(|| "skb".into()),
            uptime_secs: 5,
            packets: 1234,
            flows: 3,
            ringbuf_events: 10,
            ringbuf_drops: 0,
            detection_sources: vec![AlertSource::Dfa, AlertSource::Ann],
            degraded: Vec::new(),
        }
    }

    fn start(&self) -> ControlFuture<'_> {
        Box::pin(async move { Ok(!self.running.swap(true, Ordering::SeqCst)) })
    }

    fn stop(&self) -> ControlFuture<'_> {
        Box::pin(async move { Ok(self.running.swap(false, Ordering::SeqCst)) })
    }
}

struct Server {
    base: String,
    store: Store,
    sensor: Arc<FlagSensor>,
    _dir: tempfile::TempDir,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

async fn serve() -> Server {
    serve_with_policy(None).await
}

/// `policy_addr`: the address the auth policy is computed for (default: the bound one).
async fn serve_with_policy(policy_addr: Option<&str>) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    serve_with(dir, store, policy_addr, None).await
}

/// An API server over `store` (in `dir`), with the learning API when `learner` is given (its
/// live model is the one `GET /model` reports).
async fn serve_with(
    dir: tempfile::TempDir,
    store: Store,
    policy_addr: Option<&str>,
    learner: Option<Learner>,
) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bound = listener.local_addr().unwrap();
    let sensor = Arc::new(FlagSensor {
        running: AtomicBool::new(true),
    });
    let policy_addr: SocketAddr = policy_addr.map_or(bound, |a| a.parse().unwrap());
    let policy = AuthPolicy::new(policy_addr, Some(TOKEN)).unwrap();
    let mut state = ApiState::new(store.clone(), sensor.clone(), policy);
    if let Some(l) = learner {
        state = state.with_model(l.handle()).with_learner(l);
    }
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(api::serve(listener, api::router(state), async move {
        let _ = rx.await;
    }));
    Server {
        base: format!("http://{bound}"),
        store,
        sensor,
        _dir: dir,
        _shutdown: tx,
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The browser tests need chromium and chromedriver; CI (`./setup.sh --test`) has them.
fn browser_available(name: &str) -> bool {
    let found = |t: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if found("chromedriver") && found("chromium") {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{name}: chromium/chromedriver missing; run ./setup.sh --test"
    );
    eprintln!("SKIP {name}: chromium and chromedriver not installed (./setup.sh --test)");
    false
}

// ------------------------------------------------------------------ WebDriver

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// chromedriver plus one headless Chromium session, spoken to over W3C WebDriver.
struct Browser {
    http: reqwest::Client,
    session: String,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free port of the current (thread's) network namespace.
    async fn start() -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chromedriver");
        let http = http();
        let root = format!("http://127.0.0.1:{port}");
        let t0 = Instant::now();
        while http.get(format!("{root}/status")).send().await.is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(15),
                "chromedriver did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1400,1100",
                         "--no-proxy-server",
                         format!("--user-data-dir={}", profile.path().display())],
            },
        }}});
        let v: Value = http
            .post(format!("{root}/session"))
            .json(&caps)
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {v}"));
        Browser {
            session: format!("{root}/session/{id}"),
            http,
            driver,
            _profile: profile,
        }
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.session));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let v: Value = req.send().await.unwrap().json().await.unwrap();
        if let Some(err) = v["value"].get("error") {
            panic!("WebDriver {path}: {err}: {}", v["value"]["message"]);
        }
        v["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    /// Runs `script` in the page (`arguments[0]` = `arg`) and returns its value.
    async fn js(&self, script: &str, arg: &str) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": [arg] })),
        )
        .await
    }

    async fn element(&self, css: &str) -> String {
        let v = self
            .cmd(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("find {css}: {v}"))
            .to_owned()
    }

    /// A real click (WebDriver scrolls the element into view and clicks its centre).
    async fn click(&self, css: &str) {
        let e = self.element(css).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{e}/click"),
            Some(json!({})),
        )
        .await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.element(css).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    async fn text(&self, css: &str) -> String {
        self.js(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent.trim() : null;",
            css,
        )
        .await
        .as_str()
        .unwrap_or("<missing>")
        .to_owned()
    }

    /// The text of one card's value.
    async fn card(&self, id: &str) -> String {
        self.text(&format!("#{id} .value")).await
    }

    /// Waits (at most `secs`) until the card `id` reads `want`; panics with the last value.
    async fn wait_card(&self, id: &str, want: &str, secs: u64) {
        self.wait_text(&format!("#{id} .value"), want, secs).await;
    }

    /// Waits (at most `secs`) until the text of `css` is `want`; panics with the last value.
    async fn wait_text(&self, css: &str, want: &str, secs: u64) {
        let t0 = Instant::now();
        loop {
            let got = self.text(css).await;
            if got == want {
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(secs),
                "{css}: want {want:?}, still {got:?} after {secs} s"
            );
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    /// The texts of every element matching `css`, in document order.
    async fn texts(&self, css: &str) -> Vec<String> {
        let v = self
            .js(
                "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.textContent);",
                css,
            )
            .await;
        serde_json::from_value(v).unwrap()
    }

    /// The `(kind, source, src_ip)` of every alert row of the table, top to bottom.
    async fn rows(&self) -> Vec<(String, String, String)> {
        let v = self
            .js(
                "return Array.from(document.querySelectorAll(arguments[0])).map(tr =>
                   [tr.children[3].textContent, tr.children[4].textContent, tr.children[6].textContent]);",
                "#alerts-table tbody tr.alert-row",
            )
            .await;
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let s = |i: usize| r[i].as_str().unwrap().to_owned();
                (s(0), s(1), s(2))
            })
            .collect()
    }

    async fn wait_rows(&self, n: usize, secs: u64) -> Vec<(String, String, String)> {
        let t0 = Instant::now();
        loop {
            let rows = self.rows().await;
            if rows.len() == n {
                return rows;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(secs),
                "table: want {n} rows, have {rows:?}"
            );
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    /// Saves a PNG of the page under target/test-artifacts and prints its path.
    async fn screenshot(&self, name: &str) -> PathBuf {
        let b64 = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        assert_eq!(&png[1..4], b"PNG");
        std::fs::create_dir_all(ARTIFACTS).unwrap();
        let path = Path::new(ARTIFACTS).join(name);
        std::fs::write(&path, png).unwrap();
        let path = path.canonicalize().unwrap();
        eprintln!("SCREENSHOT {}", path.display());
        path
    }

    async fn quit(mut self) {
        let _ = self.http.delete(&self.session).send().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Selects `value` in the `<select>` `css` by clicking its option, then applies the filter.
async fn filter_by(b: &Browser, select: &str, value: &str) {
    b.click(&format!("{select} option[value=\"{value}\"]"))
        .await;
    b.click("#f-apply").await;
}

/// Clicks a control that needs the token: the first time the page asks for it.
async fn click_with_token(b: &Browser, css: &str) {
    b.click(css).await;
    let hidden = b
        .js(
            "return document.querySelector(arguments[0]).hidden;",
            "#token-form",
        )
        .await;
    if hidden == json!(false) {
        b.type_into("#token-input", TOKEN).await;
        b.click("#token-save").await;
    }
}

// ------------------------------------------------------------------ tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_chromium_over_replayed_alerts() {
    if !browser_available("dashboard_in_chromium_over_replayed_alerts") {
        return;
    }
    let mut alerts = analyze(&CAPTURES);
    let summary: Vec<(&str, &str)> = alerts
        .iter()
        .map(|a| {
            let src = if a.source == AlertSource::Ann {
                "ann"
            } else {
                "dfa"
            };
            (a.kind.as_str(), src)
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("port_scan", "dfa"),
            ("anomalous_flow", "ann"),
            ("ssh_brute_force", "dfa"),
            ("anomalous_flow", "ann"),
            ("arp_scan", "dfa"),
        ]
    );
    retime(&mut alerts, Duration::from_secs(125));
    let srv = serve().await;
    for a in alerts {
        srv.store.insert(a).unwrap();
    }

    // The page and its assets are readable without a token on loopback.
    let page = http().get(format!("{}/", srv.base)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("<title>SafeLink sensor</title>")
    );
    let js = http()
        .get(format!("{}/assets/app.js", srv.base))
        .send()
        .await
        .unwrap();
    assert_eq!(js.status(), 200);
    assert_eq!(
        http()
            .get(format!("{}/assets/nope.js", srv.base))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    let b = Browser::start().await;
    b.goto(&format!("{}/", srv.base)).await;
    b.wait_card("card-total-alerts", "5", 10).await;
    assert_eq!(b.card("card-latest-alert").await, "2 minutes ago");
    assert_eq!(b.card("card-sources").await, "2 (ANN, DFA)");
    assert_eq!(b.card("card-sniffer").await, "Running");
    // No learning API on this server: degraded, not broken.
    b.wait_card("card-learning", "Inactive", 5).await;
    assert_eq!(b.card("card-cycles").await, "—");
    assert_eq!(b.card("card-model-version").await, "—");

    // Newest first: the arp_scan of the last capture, then the ssh capture's alerts.
    let rows = b.wait_rows(5, 5).await;
    assert_eq!(
        rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        [
            "arp_scan",
            "ssh_brute_force",
            "anomalous_flow",
            "port_scan",
            "anomalous_flow"
        ]
    );
    // The chart has a legend entry per kind with its count.
    assert_eq!(
        b.text("#chart-alerts .legend").await,
        "anomalous_flow (2)arp_scan (1)port_scan (1)ssh_brute_force (1)"
    );
    b.screenshot("dashboard-replayed.png").await;

    // Filters narrow the table: source ANN, then an IP, then kind.
    filter_by(&b, "#f-source", "ann").await;
    let rows = b.wait_rows(2, 5).await;
    assert!(
        rows.iter().all(|r| r.0 == "anomalous_flow" && r.1 == "ANN"),
        "{rows:?}"
    );
    b.type_into("#f-ip", "192.168.56.1").await;
    b.click("#f-apply").await;
    let rows = b.wait_rows(1, 5).await;
    assert_eq!(
        rows,
        [("anomalous_flow".into(), "ANN".into(), "192.168.56.1".into())]
    );

    // The detail view of that ANN alert shows its explanation.
    b.click("#alerts-table tbody tr.alert-row").await;
    let t0 = Instant::now();
    while b
        .js(
            "return document.querySelector(arguments[0]).hidden;",
            "#detail-explanation",
        )
        .await
        != json!(false)
    {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "no explanation shown"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let features = b
        .js(
            "return document.querySelectorAll(arguments[0]).length;",
            "#detail-explanation tbody tr",
        )
        .await;
    assert!(features.as_u64().unwrap() >= 1, "{features}");

    b.click("#f-clear").await;
    filter_by(&b, "#f-kind", "arp_scan").await;
    let rows = b.wait_rows(1, 5).await;
    assert_eq!(
        rows,
        [("arp_scan".into(), "DFA".into(), "10.0.0.128".into())]
    );
    b.click("#f-clear").await;
    b.wait_rows(5, 5).await;

    // Stop asks for the token once, then stops the sniffer; Start reuses the token.
    click_with_token(&b, "#sniffer-stop").await;
    b.wait_card("card-sniffer", "Stopped", 5).await;
    assert!(!srv.sensor.running.load(Ordering::SeqCst));
    b.click("#sniffer-start").await;
    b.wait_card("card-sniffer", "Running", 5).await;
    assert!(srv.sensor.running.load(Ordering::SeqCst));
    assert_eq!(b.text("#msg").await, "sniffer start: done");
    b.screenshot("dashboard-replayed-after-start.png").await;
    b.quit().await;
}

/// A real learner (temp data dir, the shipped base model and golden set) fed the samples of
/// real captures.
fn open_fed_learner(data: &Path) -> Learner {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let store = Store::open(data.join("store")).unwrap();
    let golden = load_golden(&root.join("models/golden.jsonl")).unwrap();
    let l = Learner::open(
        store,
        data,
        LearningParams::default(),
        Some(golden),
        Some(&root.join("models/base.onnx")),
        true,
    )
    .unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(PCAPS)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with("benign__") || n.starts_with("portscan__")
        })
        .collect();
    files.sort();
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let sum = safelink::learn::ingest::ingest(
        &refs,
        &safelink::config::Config::default(),
        &safelink::privacy::Policy::default(),
        &l.handle(),
        l.params(),
        l.store(),
    )
    .unwrap();
    assert_eq!(sum.files, 18);
    assert!(sum.samples_stored >= 100, "{sum:?}");
    l
}

/// Script: the value of the `<select>` `arguments[0]`.
const SELECTED: &str = "return document.querySelector(arguments[0]).value;";

async fn get_json(base: &str, path: &str) -> Value {
    let r = http().get(format!("{base}{path}")).send().await.unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.unwrap()
}

/// The learning cards, the learning-history chart and the rollback control against a real
/// learner: Start, Train now (a real cycle), then a rollback to the base model through the UI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_learning_with_a_real_learner() {
    if !browser_available("dashboard_learning_with_a_real_learner") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let l = tokio::task::spawn_blocking(move || open_fed_learner(&data))
        .await
        .unwrap();
    let store = l.store().clone();
    let srv = serve_with(dir, store, None, Some(l.clone())).await;
    let status = get_json(&srv.base, "/learning/status").await;
    let new = status["new_samples"].as_u64().unwrap();
    assert!(new >= 100, "{status}");
    assert_eq!(status["total_samples"], new);

    let b = Browser::start().await;
    b.goto(&format!("{}/", srv.base)).await;
    // "0" only once /learning/status answered (the static page says "—").
    b.wait_card("card-cycles", "0", 10).await;
    assert_eq!(b.card("card-learning").await, "Inactive");
    assert_eq!(
        b.js(
            "return document.querySelector(arguments[0]).title;",
            "#card-learning .value"
        )
        .await,
        json!(format!("{new} new / {new} samples (min 100)"))
    );
    b.wait_card("card-model-version", "1", 5).await;
    assert_eq!(
        b.texts("#rollback-version option").await,
        ["v1 base (active)"]
    );
    assert_eq!(
        b.text("#chart-learning").await,
        "No training cycle with metrics yet."
    );

    // Start asks for the token, then the learner is active (interval cycles: first one due
    // after an hour, so none runs during the test).
    click_with_token(&b, "#learning-start").await;
    b.wait_card("card-learning", "Active", 5).await;
    assert!(l.is_active());
    assert_eq!(b.text("#msg").await, "learning start: done");

    // Train now: a real cycle on the learner thread.
    b.click("#learning-train").await;
    b.wait_text("#msg", "train now: Training cycle started", 5)
        .await;
    b.wait_card("card-cycles", "1", 120).await;
    let t0 = Instant::now();
    while l.is_training() {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "cycle still running"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let h = get_json(&srv.base, "/learning/history?limit=5").await;
    assert_eq!(h["total_cycles"], 1, "{h}");
    let c = &h["history"][0];
    assert_eq!(c["trigger"], "manual", "{c}");
    let deployed = match c["outcome"].as_str().unwrap() {
        "deployed" => true,
        "rejected" => false,
        other => panic!("cycle {other}: {c}"),
    };
    eprintln!(
        "dashboard: cycle {} (accuracy {}, loss {})",
        c["outcome"], c["metrics"]["accuracy"], c["metrics"]["loss"]
    );
    let (version, options, point) = if deployed {
        assert_eq!(c["version"], 2, "{c}");
        (
            "2",
            vec!["v2 deployed (active)", "v1 base"],
            "v2".to_owned(),
        )
    } else {
        assert_eq!(c["version"], Value::Null, "{c}");
        ("1", vec!["v1 base (active)"], "#1 rejected".to_owned())
    };
    b.wait_card("card-learning", "Active", 10).await;
    b.wait_card("card-model-version", version, 10).await;
    assert_eq!(b.card("card-cycles").await, "1");
    assert_eq!(b.texts("#rollback-version option").await, options);
    // The control preselects the active version.
    assert_eq!(b.js(SELECTED, "#rollback-version").await, version);
    assert_eq!(
        get_json(&srv.base, "/models").await["current_version"],
        version.parse::<u64>().unwrap()
    );
    // One cycle with metrics: one accuracy point and one loss point, labelled with it.
    assert_eq!(b.texts("#chart-learning circle.acc").await.len(), 1);
    assert_eq!(b.texts("#chart-learning circle.loss").await.len(), 1);
    assert_eq!(
        b.texts("#chart-learning svg > text").await.last().unwrap(),
        &point
    );
    // Its tooltip: the cycle's accuracy (4 decimals) and outcome.
    let tip = b.text("#chart-learning circle.acc title").await;
    let acc: f64 = tip
        .strip_prefix(&format!("{point} accuracy "))
        .and_then(|t| t.strip_suffix(&format!(" (cycle 1, {})", c["outcome"].as_str().unwrap())))
        .unwrap_or_else(|| panic!("tooltip {tip:?}"))
        .parse()
        .unwrap();
    assert!(
        (acc - c["metrics"]["accuracy"].as_f64().unwrap()).abs() <= 5e-5,
        "{tip:?} vs {c}"
    );
    b.screenshot("dashboard-learning-trained.png").await;

    // Roll back to the base model through the version control.
    b.click("#rollback-version option[value=\"1\"]").await;
    b.click("#rollback-btn").await;
    b.wait_text("#msg", "activate model v1: done", 5).await;
    b.wait_card("card-model-version", "1", 5).await;
    let m = get_json(&srv.base, "/models").await;
    assert_eq!(m["current_version"], 1, "{m}");
    let active: Vec<&Value> = m["versions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["active"] == true)
        .map(|v| &v["version"])
        .collect();
    assert_eq!(active, [&json!(1)]);
    // The live model is the base model's file again.
    assert!(
        l.handle().current().info.source.ends_with("model_v1.onnx"),
        "{}",
        l.handle().current().info.source
    );
    b.wait_text(
        "#rollback-version option[value=\"1\"]",
        "v1 base (active)",
        5,
    )
    .await;
    let after = if deployed {
        vec!["v2 deployed", "v1 base (active)"]
    } else {
        vec!["v1 base (active)"]
    };
    assert_eq!(b.texts("#rollback-version option").await, after);
    assert_eq!(b.js(SELECTED, "#rollback-version").await, "1");

    // An operator verdict from an alert's detail view ("Not an attack"): the alert's flow
    // becomes one more (operator) sample in the learner's store.
    let before = get_json(&srv.base, "/learning/status").await["total_samples"]
        .as_u64()
        .unwrap();
    let mut alerts = analyze(&["portscan__syn-scan-29ports.pcap"]);
    alerts.retain(|a| a.kind.as_str() == "port_scan");
    assert_eq!(alerts.len(), 1);
    retime(&mut alerts, Duration::from_secs(60));
    let id = srv.store.insert(alerts.remove(0)).unwrap();
    b.wait_rows(1, 10).await;
    b.click("#alerts-table tbody tr.alert-row").await;
    b.wait_text("#detail-id", &format!("#{id}"), 5).await;
    b.click("#detail-fp").await;
    b.wait_text(
        "#msg",
        &format!("verdict false_positive on alert {id}: done"),
        10,
    )
    .await;
    let after_verdict = get_json(&srv.base, "/learning/status").await;
    assert_eq!(
        after_verdict["total_samples"].as_u64().unwrap(),
        before + 1,
        "{after_verdict}"
    );

    // Stop.
    b.click("#learning-stop").await;
    b.wait_card("card-learning", "Inactive", 5).await;
    assert!(!l.is_active());
    b.screenshot("dashboard-learning-rolled-back.png").await;
    b.quit().await;
    tokio::task::spawn_blocking(move || l.shutdown())
        .await
        .unwrap();
}

/// Off loopback every API call needs the token, but the static page does not (it holds no
/// data and asks for the token itself).
#[tokio::test]
async fn static_page_needs_no_token_off_loopback() {
    let srv = serve_with_policy(Some("0.0.0.0:8000")).await;
    let get = |p: &str| http().get(format!("{}{p}", srv.base)).send();
    assert_eq!(get("/").await.unwrap().status(), 200);
    assert_eq!(get("/assets/app.js").await.unwrap().status(), 200);
    assert_eq!(get("/assets/app.css").await.unwrap().status(), 200);
    for p in [
        "/status",
        "/metrics",
        "/alerts",
        "/assets/../status",
        "/index.html",
    ] {
        assert_eq!(get(p).await.unwrap().status(), 401, "{p}");
    }
    let authed = http()
        .get(format!("{}/status", srv.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(authed.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_after_processing_captures() {
    // As the daemon does at start: metrics recorded before the recorder exists are lost.
    safelink::telemetry::install();
    let srv = serve().await;
    let alerts = analyze(&CAPTURES);
    // Through the daemon's sink, which counts new alerts (updates are not counted).
    let (tx, rx) = std::sync::mpsc::sync_channel(64);
    let store = srv.store.clone();
    let sink = tokio::task::spawn_blocking(move || {
        safelink::pipeline::sink::run_sink(store, rx, &safelink::privacy::Policy::default())
    });
    for a in alerts {
        tx.send(AlertEvent::New(a)).unwrap();
    }
    drop(tx);
    assert_eq!(sink.await.unwrap(), (5, 0));

    let resp = http()
        .get(format!("{}/metrics", srv.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = resp.text().await.unwrap();
    for line in [
        "# TYPE safelink_alerts_total counter",
        "safelink_alerts_total{kind=\"port_scan\",source=\"dfa\"} 1",
        "safelink_alerts_total{kind=\"ssh_brute_force\",source=\"dfa\"} 1",
        "safelink_alerts_total{kind=\"arp_scan\",source=\"dfa\"} 1",
        "safelink_alerts_total{kind=\"anomalous_flow\",source=\"ann\"} 2",
        "safelink_sniffer_running 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
    let size = metric(&text, "safelink_store_size_bytes");
    let on_disk = srv.store.size_on_disk().unwrap() as f64;
    assert!(
        size > 0.0 && (size - on_disk).abs() / on_disk < 0.5,
        "{size} vs {on_disk}"
    );
}

/// The value of an unlabelled sample line `name value`.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in:\n{text}"))
}

// ------------------------------------------------------------------ live (root)

/// Moves the calling thread into network namespace `ns` (sockets and children it creates
/// from now on live there).
fn enter_netns(ns: &str) {
    let f = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
    // SAFETY: a valid namespace fd; only this thread changes namespace.
    let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
}

#[test]
fn dashboard_and_metrics_of_a_live_daemon() {
    if !support::kernel_test_can_run(
        "dashboard_and_metrics_of_a_live_daemon",
        &["tcpreplay", "nsenter", "ip"],
    ) || !browser_available("dashboard_and_metrics_of_a_live_daemon")
    {
        return;
    }
    let lab = support::Lab::new("dash");
    let data = tempfile::tempdir().unwrap();
    let api: SocketAddr = "127.0.0.1:18093".parse().unwrap();
    let mut cmd = lab.sensor_cmd(BIN, data.path());
    cmd.args(["--xdp-mode", "skb"])
        .arg("--eve-log")
        .arg(data.path().join("eve.json"))
        .args(["--listen", &api.to_string(), "--status-interval", "0"])
        .env("SAFELINK_API_TOKEN", TOKEN);
    let mut daemon = Daemon(support::spawn_attached(cmd, support::ATTACH_WITHIN, None));

    // 29 SYNs to 29 ports (no answers: nothing in `a` has the address) and 509 ARP requests.
    for f in [
        "portscan__syn-scan-29ports.pcap",
        "arpscan__arp-request-sweep-24.pcap",
    ] {
        lab.replay_into_a(&Path::new(PCAPS).join(f));
    }
    let xdp_attached = |lab: &support::Lab| {
        let out =
            support::run(Command::new("ip").args(["-n", &lab.ns_a, "link", "show", &lab.if_a]));
        String::from_utf8_lossy(&out.stdout).contains("xdp")
    };
    assert!(xdp_attached(&lab));

    let ns = lab.ns_a.clone();
    let lab_ref = &lab;
    std::thread::scope(|s| {
        s.spawn(move || {
            enter_netns(&ns);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(live_checks(api, lab_ref, &xdp_attached));
        })
        .join()
        .unwrap();
    });

    // The EVE log: one line per new alert. logrotate's way: move the file, SIGHUP; the next
    // alert goes to a new file and the daemon keeps running.
    let eve = data.path().join("eve.json");
    let lines = |p: &Path| -> Vec<Value> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let kinds = |v: &[Value]| -> Vec<String> {
        let mut k: Vec<String> = v
            .iter()
            .map(|e| e["alert"]["category"].as_str().unwrap().to_owned())
            .collect();
        k.sort();
        k
    };
    assert_eq!(kinds(&lines(&eve)), ["arp_scan", "port_scan"]);
    let rotated = data.path().join("eve.json.1");
    std::fs::rename(&eve, &rotated).unwrap();
    // SAFETY: plain signal to our own child.
    unsafe { libc::kill(daemon.0.id() as i32, libc::SIGHUP) };
    std::thread::sleep(Duration::from_millis(300));
    lab.replay_into_a(&Path::new(PCAPS).join("sshbrute__password-guessing-11conns.pcap"));
    let t0 = Instant::now();
    while lines(&eve).is_empty() && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(kinds(&lines(&eve)), ["ssh_brute_force"], "after SIGHUP");
    assert_eq!(kinds(&lines(&rotated)), ["arp_scan", "port_scan"]);
    assert!(
        daemon.0.try_wait().unwrap().is_none(),
        "SIGHUP ended the daemon"
    );

    // SAFETY: plain signal to our own child.
    unsafe { libc::kill(daemon.0.id() as i32, libc::SIGINT) };
    let st = daemon.0.wait().unwrap();
    assert!(st.success(), "daemon exited with {st}");
}

/// The sensor process; killed if the test fails before stopping it (it holds our stderr).
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn live_checks(
    api: SocketAddr,
    lab: &support::Lab,
    xdp_attached: &dyn Fn(&support::Lab) -> bool,
) {
    let base = format!("http://{api}");
    let b = Browser::start().await;
    b.goto(&format!("{base}/")).await;
    // The port scan ends with the 2 s embryonic timeout; the ARP scan alerts at once.
    b.wait_card("card-total-alerts", "2", 15).await;
    let latest = b.card("card-latest-alert").await;
    assert!(
        latest == "just now" || latest.ends_with(" seconds ago"),
        "{latest}"
    );
    // The ANN and the learner are on by default; the ANN is in its baseline phase (it scores
    // but raises nothing), so both alerts come from the rule automata.
    assert_eq!(b.card("card-sources").await, "2 (ANN, DFA)");
    assert_eq!(b.card("card-sniffer").await, "Running");
    b.wait_card("card-learning", "Active", 5).await;
    assert_eq!(b.card("card-ann-phase").await, "Baseline");
    let rows = b.wait_rows(2, 5).await;
    let mut kinds: Vec<_> = rows.iter().map(|r| r.0.as_str()).collect();
    kinds.sort();
    assert_eq!(kinds, ["arp_scan", "port_scan"]);
    filter_by(&b, "#f-kind", "port_scan").await;
    assert_eq!(
        b.wait_rows(1, 5).await,
        [("port_scan".into(), "DFA".into(), "10.100.25.14".into())]
    );
    b.screenshot("dashboard-live.png").await;

    // Stop detaches the real program, Start attaches it again.
    click_with_token(&b, "#sniffer-stop").await;
    b.wait_card("card-sniffer", "Stopped", 10).await;
    assert!(!xdp_attached(lab), "XDP still attached after Stop");
    let st: Value = http()
        .get(format!("{base}/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(st["sniffer_running"], false);
    b.click("#sniffer-start").await;
    b.wait_card("card-sniffer", "Running", 10).await;
    assert!(xdp_attached(lab), "XDP not attached after Start");
    b.screenshot("dashboard-live-restarted.png").await;
    b.quit().await;

    // The kernel counters and the alerts in /metrics (the sweeper refreshes once a second).
    let t0 = Instant::now();
    let text = loop {
        let text = http()
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.lines().any(|l| l == "safelink_packets_total 538")
            || t0.elapsed() > Duration::from_secs(5)
        {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!("dashboard: /metrics of the live daemon:\n{text}");
    for line in [
        "safelink_packets_total 538",
        "safelink_flows_created_total 29",
        "safelink_malformed_packets_total 0",
        "safelink_ringbuf_drops_total 0",
        "safelink_sniffer_running 1",
        "safelink_alerts_total{kind=\"port_scan\",source=\"dfa\"} 1",
        "safelink_alerts_total{kind=\"arp_scan\",source=\"dfa\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?}");
    }
    // 29 flow starts + 509 ARP events.
    assert_eq!(metric(&text, "safelink_ringbuf_events_total"), 538.0);
    assert!(metric(&text, "safelink_store_size_bytes") > 0.0);
}
