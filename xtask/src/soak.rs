//! `cargo xtask bench soak --secs N` (root): the captures replayed through the live daemon in
//! a loop, its RSS over time printed, and whether it stayed flat.
//!
//! Two network namespaces of its own (`sl-soak-a-<pid>`, `sl-soak-b-<pid>`) joined by a veth
//! pair whose both ends live in them (TEST-NET-1 addresses, no forwarding, nothing on the
//! host's own interfaces). The real daemon runs in `a` (`safelink run --xdp-mode skb`, entered
//! with `nsenter --net`, which keeps bpffs visible), with its own pin directory, data directory
//! and API on the namespace's loopback; `tcpreplay --loop=0` sends the captures from `b`. Every
//! `max(1, N/60)` s the daemon's `VmRSS` and its `/status` and `/metrics` figures are sampled.
//! Target: RSS growth from the end of the first quarter to the end within
//! [`SOAK_RSS_GROWTH_PCT`] % and [`SOAK_RSS_GROWTH_MIB`] MiB. Everything is removed on exit,
//! on error too; namespaces left by a killed run (its pid gone) are removed at the next start.
use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::bench::{SOAK_RSS_GROWTH_MIB, SOAK_RSS_GROWTH_PCT};
use crate::target::{Bound, Targets};

const ADDR_A: &str = "192.0.2.1/24";
const ADDR_B: &str = "192.0.2.2/24";
/// The API, on namespace `a`'s own loopback.
const API: &str = "127.0.0.1:8000";

/// The namespaces, processes and directories of one run; dropping it removes them all.
struct Lab {
    id: u32,
    pin_dir: PathBuf,
    data_dir: PathBuf,
    daemon: Option<Child>,
    replay: Option<Child>,
}

fn ns_name(side: char, id: u32) -> String {
    format!("sl-soak-{side}-{id}")
}

fn sh(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("spawning {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Lab {
    fn ns(&self, side: char) -> String {
        ns_name(side, self.id)
    }

    fn new() -> anyhow::Result<Self> {
        remove_stale();
        let id = std::process::id();
        let lab = Lab {
            id,
            pin_dir: PathBuf::from(format!("/sys/fs/bpf/safelink-soak-{id}")),
            data_dir: std::env::temp_dir().join(format!("safelink-soak-{id}")),
            daemon: None,
            replay: None,
        };
        let (a, b) = (lab.ns('a'), lab.ns('b'));
        std::fs::create_dir_all(&lab.data_dir)?;
        let ip = |args: &[&str]| sh(Command::new("ip").args(args));
        ip(&["netns", "add", &a])?;
        ip(&["netns", "add", &b])?;
        ip(&[
            "link", "add", "soak0", "netns", &a, "type", "veth", "peer", "name", "soak1", "netns",
            &b,
        ])?;
        for (ns, dev, addr) in [(&a, "soak0", ADDR_A), (&b, "soak1", ADDR_B)] {
            // No IPv6 autoconfiguration chatter: the sensor sees the captures only.
            sh(Command::new("ip").args(["netns", "exec", ns]).args([
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
            ]))?;
            // Jumbo MTU: captured frames above 1500 bytes are sent too.
            ip(&["-n", ns, "link", "set", dev, "mtu", "9000"])?;
            ip(&["-n", ns, "addr", "add", addr, "dev", dev])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        Ok(lab)
    }

    /// `ip netns exec NS ...` (tools that do not need bpffs).
    fn exec(&self, side: char, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(side)]).args(args);
        c
    }

    fn api(&self, path: &str) -> anyhow::Result<String> {
        sh(&mut self.exec(
            'a',
            &[
                "curl",
                "-sS",
                "--max-time",
                "5",
                &format!("http://{API}{path}"),
            ],
        ))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut r) = self.replay.take() {
            let _ = r.kill();
            let _ = r.wait();
        }
        if let Some(mut d) = self.daemon.take() {
            // SIGINT: the daemon detaches and flushes; then it is waited for (5 s at most).
            let _ = Command::new("kill")
                .args(["-INT", &d.id().to_string()])
                .status();
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = d.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = d.kill();
            let _ = d.wait();
        }
        for side in ['a', 'b'] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(side)])
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.pin_dir);
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// Namespaces and pin directories of earlier runs whose process is gone (killed by a signal).
fn remove_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(pid) = name
            .strip_prefix("sl-soak-a-")
            .or_else(|| name.strip_prefix("sl-soak-b-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
            let _ = std::fs::remove_dir_all(format!("/sys/fs/bpf/safelink-soak-{pid}"));
        }
    }
}

/// One sample of the running daemon.
struct Sample {
    t: f64,
    rss_kib: u64,
    packets: u64,
    flows: u64,
    alerts: u64,
    ringbuf_drops: u64,
    flows_created: u64,
    malformed: u64,
    /// Keys the rule automata forgot to make room (their tables are full from then on).
    keys_evicted: u64,
    store_bytes: u64,
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("the daemon (pid {pid}) is gone"))?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS")
}

/// The value of an unlabelled metric in Prometheus text.
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            let (n, v) = l.split_once(' ')?;
            (n == name).then(|| v.trim().parse::<f64>().ok())?
        })
        .map_or(0, |v| v as u64)
}

fn sample(lab: &Lab, pid: u32, t: f64) -> anyhow::Result<Sample> {
    let status: serde_json::Value =
        serde_json::from_str(&lab.api("/status")?).context("GET /status: not JSON")?;
    let metrics = lab.api("/metrics")?;
    let n = |k: &str| status[k].as_u64().unwrap_or(0);
    Ok(Sample {
        t,
        rss_kib: rss_kib(pid)?,
        packets: n("packets"),
        flows: n("flows"),
        alerts: n("total_alerts"),
        ringbuf_drops: n("ringbuf_drops"),
        flows_created: metric(&metrics, "safelink_flows_created_total"),
        malformed: metric(&metrics, "safelink_malformed_packets_total"),
        keys_evicted: metric(&metrics, "safelink_detector_keys_evicted_total"),
        store_bytes: metric(&metrics, "safelink_store_size_bytes"),
    })
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

pub fn soak(
    captures: &[PathBuf],
    secs: u64,
    mbps: f64,
    unique_ip: bool,
) -> anyhow::Result<Targets> {
    if !crate::is_root() {
        bail!("bench soak needs root (network namespaces, XDP)");
    }
    let bin = crate::build()?;
    let mut lab = Lab::new()?;
    let log = lab.data_dir.join("daemon.log");
    let mut daemon = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", lab.ns('a')))
        .arg(&bin)
        .args([
            "run",
            "--iface",
            "soak0",
            "--xdp-mode",
            "skb",
            "--status-interval",
            "0",
            "--listen",
            API,
        ])
        .arg("--pin-dir")
        .arg(&lab.pin_dir)
        .arg("--data-dir")
        .arg(lab.data_dir.join("data"))
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .context("spawning the daemon through nsenter")?;
    // nsenter execs the daemon: this pid is the daemon's.
    let pid = daemon.id();
    let stdout = daemon.stdout.take().context("daemon stdout")?;
    lab.daemon = Some(daemon);
    let mut first = String::new();
    let mut lines = BufReader::new(stdout);
    lines.read_line(&mut first)?;
    if !first.starts_with("ATTACHED ") {
        bail!(
            "the daemon did not attach ({first:?}); its log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    // Keep reading its stdout (records, if any) so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.lines() {});
    println!("soak: daemon pid {pid} {}", first.trim());

    let mut replay = lab.exec('b', &["tcpreplay", "-i", "soak1", "--loop=0", "-K"]);
    if mbps > 0.0 {
        replay.arg(format!("--mbps={mbps}"));
    } else {
        replay.arg("--topspeed");
    }
    if unique_ip {
        replay.arg("--unique-ip");
    }
    replay
        .args(captures)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    println!(
        "soak: {} captures replayed in a loop at {}{} for {secs} s",
        captures.len(),
        if mbps > 0.0 {
            format!("{mbps} Mbit/s")
        } else {
            "top speed".into()
        },
        if unique_ip {
            ", new addresses every loop"
        } else {
            ""
        }
    );
    lab.replay = Some(replay.spawn().context("spawning tcpreplay")?);

    let every = (secs as f64 / 60.0).max(1.0);
    let t0 = Instant::now();
    let mut samples = vec![sample(&lab, pid, 0.0)?];
    println!(
        "{:>7} {:>9} {:>11} {:>7} {:>13} {:>7} {:>10} {:>9} {:>12} {:>9}",
        "t (s)",
        "RSS MiB",
        "packets",
        "flows",
        "flows created",
        "alerts",
        "malformed",
        "rb drops",
        "keys evicted",
        "store MiB"
    );
    let print = |s: &Sample| {
        println!(
            "{:>7.1} {:>9.1} {:>11} {:>7} {:>13} {:>7} {:>10} {:>9} {:>12} {:>9.1}",
            s.t,
            mib(s.rss_kib),
            s.packets,
            s.flows,
            s.flows_created,
            s.alerts,
            s.malformed,
            s.ringbuf_drops,
            s.keys_evicted,
            s.store_bytes as f64 / (1024.0 * 1024.0)
        );
    };
    print(&samples[0]);
    let mut k = 1.0;
    while t0.elapsed().as_secs_f64() < secs as f64 {
        let next = Duration::from_secs_f64((k * every).min(secs as f64));
        if let Some(wait) = next.checked_sub(t0.elapsed()) {
            std::thread::sleep(wait);
        }
        k += 1.0;
        if let Some(r) = lab.replay.as_mut()
            && let Some(st) = r.try_wait()?
        {
            bail!("tcpreplay stopped early: {st}");
        }
        let s = sample(&lab, pid, t0.elapsed().as_secs_f64())?;
        print(&s);
        samples.push(s);
    }
    let last = samples.last().context("no sample")?;
    if last.packets <= samples[0].packets {
        bail!("the daemon saw no packet of the replay");
    }
    // The sample nearest the end of the first quarter.
    let quarter = samples
        .iter()
        .min_by(|x, y| {
            let q = secs as f64 / 4.0;
            (x.t - q).abs().total_cmp(&(y.t - q).abs())
        })
        .context("no sample")?;
    let peak = samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    let growth_kib = last.rss_kib as f64 - quarter.rss_kib as f64;
    let pps = (last.packets - samples[0].packets) as f64 / last.t.max(1e-9);
    println!(
        "soak: {} samples; RSS start {:.1} MiB, first quarter (t={:.0} s) {:.1} MiB, end {:.1} MiB, peak {:.1} MiB; {:.0} packets/s seen, {} flows created, {} alerts, {} ring-buffer drops",
        samples.len(),
        mib(samples[0].rss_kib),
        quarter.t,
        mib(quarter.rss_kib),
        mib(last.rss_kib),
        mib(peak),
        pps,
        last.flows_created,
        last.alerts,
        last.ringbuf_drops
    );
    let mut t = Targets::default();
    t.check(
        "RSS growth, 1st quarter → end",
        growth_kib / quarter.rss_kib.max(1) as f64 * 100.0,
        "%",
        Bound::AtMost(SOAK_RSS_GROWTH_PCT),
    );
    t.check(
        "RSS growth, 1st quarter → end",
        growth_kib / 1024.0,
        "MiB",
        Bound::AtMost(SOAK_RSS_GROWTH_MIB),
    );
    drop(lab);
    Ok(t)
}
