//! `cargo xtask bench veth` (root): what the sensor costs a host whose traffic crosses a veth
//! pair (containers), per attach mode.
//!
//! Two namespaces of its own (`slbv-a-<pid>`, `slbv-b-<pid>`) joined by a veth pair whose both
//! ends live in them (TEST-NET-2 addresses, default offloads, no forwarding). `iperf3` runs from
//! `a` to a server in `b`: TCP, UDP with 64-byte and with 1400-byte datagrams. The same run
//! measures every traffic kind without the sensor (before and after the sensor runs, averaged)
//! and with `safelink run` attached to `b`'s end (`nsenter --net`, its own pin and data
//! directories, API on `b`'s loopback) in each attach mode: native and generic (SKB) XDP and
//! the TC classifier on ingress, each with and without the TC egress hook, and the daemon's
//! default choice (`auto`).
//! With `kernel.bpf_stats_enabled` on for the run (restored after), the sensor programs'
//! run time gives their CPU share and ns per packet. Target: throughput with the sensor at
//! least [`VETH_MIN_RATIO`] of without, for the default choice.
use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::target::{Bound, Targets};

/// Throughput with the sensor over throughput without, every traffic kind (default mode).
pub const VETH_MIN_RATIO: f64 = 0.90;

const ADDR_A: &str = "198.51.100.1/24";
const ADDR_B: &str = "198.51.100.2";
const API: &str = "127.0.0.1:8000";
const IPERF_PORT: &str = "5201";

/// The attach modes compared: a name and the `safelink run` arguments (`None`: no sensor).
const MODES: [(&str, Option<&[&str]>); 8] = [
    ("none", None),
    ("native + egress", Some(&["--xdp-mode", "native"])),
    ("native", Some(&["--xdp-mode", "native", "--no-egress"])),
    ("skb + egress", Some(&["--xdp-mode", "skb"])),
    ("skb", Some(&["--xdp-mode", "skb", "--no-egress"])),
    ("tc + egress", Some(&["--xdp-mode", "tc"])),
    ("tc", Some(&["--xdp-mode", "tc", "--no-egress"])),
    ("default (auto)", Some(&[])),
];

#[derive(Clone, Copy)]
enum Traffic {
    Tcp,
    Udp(u32),
}

impl Traffic {
    fn name(self) -> String {
        match self {
            Traffic::Tcp => "TCP".into(),
            Traffic::Udp(n) => format!("UDP {n} B"),
        }
    }
    fn unit(self) -> &'static str {
        match self {
            Traffic::Tcp => "Gbit/s",
            Traffic::Udp(_) => "k packets/s",
        }
    }
}

const TRAFFIC: [Traffic; 3] = [Traffic::Tcp, Traffic::Udp(64), Traffic::Udp(1400)];

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

/// Namespaces, directories and the `bpf_stats_enabled` setting of one run; dropping it
/// restores and removes them all.
struct Lab {
    id: u32,
    pin_dir: PathBuf,
    data_dir: PathBuf,
    stats_was: Option<String>,
}

fn ns_name(side: char, id: u32) -> String {
    format!("slbv-{side}-{id}")
}

impl Lab {
    fn ns(&self, side: char) -> String {
        ns_name(side, self.id)
    }

    fn new() -> anyhow::Result<Self> {
        remove_stale();
        let id = std::process::id();
        let mut lab = Lab {
            id,
            pin_dir: PathBuf::from(format!("/sys/fs/bpf/slbv-{id}")),
            data_dir: std::env::temp_dir().join(format!("slbv-{id}")),
            stats_was: None,
        };
        let (a, b) = (lab.ns('a'), lab.ns('b'));
        std::fs::create_dir_all(&lab.data_dir)?;
        let ip = |args: &[&str]| sh(Command::new("ip").args(args));
        ip(&["netns", "add", &a])?;
        ip(&["netns", "add", &b])?;
        ip(&[
            "link", "add", "slbv0", "netns", &a, "type", "veth", "peer", "name", "slbv1", "netns",
            &b,
        ])?;
        let addr_b = format!("{ADDR_B}/24");
        for (ns, dev, addr) in [(&a, "slbv0", ADDR_A), (&b, "slbv1", addr_b.as_str())] {
            ip(&["-n", ns, "addr", "add", addr, "dev", dev])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        let was = std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled")
            .context("reading kernel.bpf_stats_enabled")?;
        std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "1")
            .context("enabling kernel.bpf_stats_enabled")?;
        lab.stats_was = Some(was.trim().to_owned());
        Ok(lab)
    }

    fn nsenter(&self, side: char) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.ns(side)));
        c
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(was) = &self.stats_was {
            let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", was);
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

/// Namespaces and pin directories of earlier runs whose process is gone.
fn remove_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(pid) = name
            .strip_prefix("slbv-a-")
            .or_else(|| name.strip_prefix("slbv-b-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
            let _ = std::fs::remove_dir_all(format!("/sys/fs/bpf/slbv-{pid}"));
        }
    }
}

/// The running daemon; dropping it stops it (SIGINT: it detaches).
struct Daemon {
    child: Child,
    mode: String,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_daemon(lab: &Lab, bin: &Path, args: &[&str]) -> anyhow::Result<Daemon> {
    let _ = std::fs::remove_dir_all(&lab.pin_dir);
    let log = lab.data_dir.join("daemon.log");
    let mut child = lab
        .nsenter('b')
        .arg(bin)
        .args(["run", "--iface", "slbv1", "--status-interval", "0"])
        .args(["--listen", API])
        .args(args)
        .arg("--pin-dir")
        .arg(&lab.pin_dir)
        .arg("--data-dir")
        .arg(lab.data_dir.join("data"))
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .context("spawning the daemon through nsenter")?;
    let stdout = child.stdout.take().context("daemon stdout")?;
    let mut lines = BufReader::new(stdout);
    let mut first = String::new();
    lines.read_line(&mut first)?;
    let d = Daemon {
        child,
        mode: first.trim().to_owned(),
    };
    if !first.starts_with("ATTACHED ") {
        bail!(
            "the daemon did not attach ({first:?}); its log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    std::thread::spawn(move || for _ in lines.lines() {});
    Ok(d)
}

/// Run time and run count of the sensor's programs (those using the pinned `STATS` map).
fn prog_stats(lab: &Lab) -> anyhow::Result<(u64, u64)> {
    let map: serde_json::Value = serde_json::from_str(&sh(Command::new("bpftool").args([
        "map",
        "show",
        "pinned",
        &lab.pin_dir.join("STATS").to_string_lossy(),
        "--json",
    ]))?)?;
    let map_id = map["id"].as_u64().context("bpftool map show: no id")?;
    let progs: serde_json::Value = serde_json::from_str(&sh(
        Command::new("bpftool").args(["prog", "show", "--json"])
    )?)?;
    let (mut ns, mut cnt) = (0, 0);
    for p in progs.as_array().context("bpftool prog show: not a list")? {
        let uses = p["map_ids"]
            .as_array()
            .is_some_and(|ids| ids.iter().any(|i| i.as_u64() == Some(map_id)));
        if uses {
            ns += p["run_time_ns"].as_u64().unwrap_or(0);
            cnt += p["run_cnt"].as_u64().unwrap_or(0);
        }
    }
    Ok((ns, cnt))
}

/// One iperf3 run from `a` to `b`: Gbit/s (TCP) or received k packets/s (UDP).
fn iperf(lab: &Lab, t: Traffic, secs: u32) -> anyhow::Result<f64> {
    let mut server = lab
        .nsenter('b')
        .args(["iperf3", "-s", "-1", "-p", IPERF_PORT])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("spawning iperf3 -s")?;
    let mut client = lab.nsenter('a');
    client.args(["iperf3", "-J", "-c", ADDR_B, "-p", IPERF_PORT, "-t"]);
    client.arg(secs.to_string());
    if let Traffic::Udp(len) = t {
        client.args(["-u", "-b", "0", "-l", &len.to_string()]);
    }
    // The server needs a moment to listen.
    let mut out = None;
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(150));
        let o = client.output()?;
        if o.status.success() {
            out = Some(o);
            break;
        }
    }
    let _ = server.kill();
    let _ = server.wait();
    let out = out.context("iperf3 client never connected")?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("iperf3 -J")?;
    let r = &v["end"]["sum_received"];
    let secs = r["seconds"].as_f64().context("iperf3: no seconds")?;
    Ok(match t {
        Traffic::Tcp => r["bits_per_second"].as_f64().context("iperf3: no rate")? / 1e9,
        Traffic::Udp(len) => {
            r["bytes"].as_f64().context("iperf3: no bytes")? / f64::from(len) / secs / 1e3
        }
    })
}

struct ModeResult {
    name: &'static str,
    attached: String,
    /// Per traffic kind: throughput, sensor CPU share (% of one CPU), sensor ns per packet.
    rows: Vec<(f64, Option<(f64, f64)>)>,
}

pub fn veth(secs: u32) -> anyhow::Result<Targets> {
    if !crate::is_root() {
        bail!("bench veth needs root (network namespaces, XDP)");
    }
    let bin = crate::build()?;
    let lab = Lab::new()?;
    let mut results: Vec<ModeResult> = Vec::new();
    // No sensor first and last: the baseline is their mean.
    let order = MODES.iter().chain(MODES.iter().take(1));
    for &(name, args) in order {
        let daemon = match args {
            Some(a) => Some(start_daemon(&lab, &bin, a)?),
            None => None,
        };
        let mut rows = Vec::new();
        for t in TRAFFIC {
            let before = daemon.as_ref().map(|_| prog_stats(&lab)).transpose()?;
            let t0 = Instant::now();
            let v = iperf(&lab, t, secs)?;
            let wall = t0.elapsed().as_secs_f64();
            let cpu = match before {
                Some((ns0, n0)) => {
                    let (ns1, n1) = prog_stats(&lab)?;
                    let dns = ns1.saturating_sub(ns0) as f64;
                    Some((
                        dns / (wall * 1e9) * 100.0,
                        dns / (n1.saturating_sub(n0)).max(1) as f64,
                    ))
                }
                None => None,
            };
            println!(
                "{name:>16} {:>10}: {v:>9.2} {}{}",
                t.name(),
                t.unit(),
                cpu.map_or(String::new(), |(share, ns)| format!(
                    ", sensor {share:.1} % of a CPU, {ns:.0} ns/packet"
                ))
            );
            rows.push((v, cpu));
        }
        results.push(ModeResult {
            name,
            attached: daemon.as_ref().map_or(String::new(), |d| d.mode.clone()),
            rows,
        });
    }
    let base: Vec<f64> = (0..TRAFFIC.len())
        .map(|i| {
            let none: Vec<f64> = results
                .iter()
                .filter(|r| r.name == "none")
                .map(|r| r.rows[i].0)
                .collect();
            none.iter().sum::<f64>() / none.len() as f64
        })
        .collect();
    println!(
        "\nthroughput with the sensor / without (baseline: mean of the runs without, {secs} s each)"
    );
    print!("{:>16}", "mode");
    for t in TRAFFIC {
        print!(" {:>12}", t.name());
    }
    println!("  attached as");
    let mut tg = Targets::default();
    for r in results.iter().filter(|r| r.name != "none") {
        print!("{:>16}", r.name);
        for (i, (v, _)) in r.rows.iter().enumerate() {
            print!(" {:>11.0}%", v / base[i] * 100.0);
        }
        println!("  {}", r.attached);
        if r.name.starts_with("default") {
            for (i, t) in TRAFFIC.iter().enumerate() {
                tg.check(
                    &format!("veth {} with/without sensor (default mode)", t.name()),
                    r.rows[i].0 / base[i],
                    "x",
                    Bound::AtLeast(VETH_MIN_RATIO),
                );
            }
        }
    }
    drop(lab);
    Ok(tg)
}
