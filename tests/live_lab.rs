//! Live lab (root): the real sensor in a victim namespace with real services (sshd, an HTTP
//! server, dnsmasq, iperf3) on a bridge with an attacker and a gateway namespace, all created
//! by this test (TEST-NET-1 and 2001:db8::/64 only; nothing can reach the host's routes). Real
//! tools from Debian packages attack the victim and each must produce its alert through
//! `GET /alerts` within 5 s of the tool finishing; benign traffic first must produce none.
mod support;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use support::lab::{Sshd, hydra_ssh, wrong_passwords};
use support::{ATTACH_WITHIN, kernel_test_can_run, run, sh, spawn_attached};

const BIN: &str = env!("CARGO_BIN_EXE_safelink");
const VICTIM: &str = "192.0.2.1";
const VICTIM2: &str = "192.0.2.4";
const VICTIM6: &str = "2001:db8::1";
/// The attacker address of the IPv6 scan.
const ATTACKER6: &str = "2001:db8::10";
const API: &str = "127.0.0.1:18080";

struct Net {
    id: u32,
    pin_dir: PathBuf,
    children: Vec<Child>,
}

impl Net {
    fn ns(&self, n: &str) -> String {
        format!("sl-live-{n}-{}", self.id)
    }

    fn new() -> Self {
        let id = std::process::id() % 100_000;
        let net = Net {
            id,
            pin_dir: PathBuf::from(format!("/sys/fs/bpf/safelink-test-live-{id}")),
            children: Vec::new(),
        };
        net.cleanup();
        let (sw, vic, att, gw) = (net.ns("sw"), net.ns("vic"), net.ns("att"), net.ns("gw"));
        let mut script = format!(
            "ip netns add {sw}; ip netns add {vic}; ip netns add {att}; ip netns add {gw}
             ip -n {sw} link add br0 type bridge; ip -n {sw} link set br0 up"
        );
        for (ns, port, ip, ip6) in [
            (&vic, "v", "192.0.2.1", VICTIM6),
            (&att, "a", "192.0.2.2", "2001:db8::2"),
            (&gw, "g", "192.0.2.3", "2001:db8::3"),
        ] {
            // IPv6 on (documentation prefix, no duplicate address detection, no router
            // advertisements): its own neighbour discovery and multicast listener reports are
            // part of the benign traffic.
            script += &format!(
                "
                 ip link add eth0 netns {ns} type veth peer name sw{port} netns {sw}
                 ip netns exec {ns} sysctl -qw net.ipv6.conf.all.accept_ra=0 net.ipv6.conf.default.accept_ra=0
                 ip -n {sw} link set sw{port} master br0; ip -n {sw} link set sw{port} up
                 ip -n {ns} addr add {ip}/24 dev eth0
                 ip -n {ns} addr add {ip6}/64 dev eth0 nodad
                 ip -n {ns} link set lo up; ip -n {ns} link set eth0 up"
            );
        }
        // Extra attacker addresses: one per tool, so every tool raises its own alert.
        for last in 10..=19 {
            script += &format!("\n ip -n {att} addr add 192.0.2.{last}/24 dev eth0");
        }
        script += &format!("\n ip -n {att} addr add {ATTACKER6}/64 dev eth0 nodad");
        // A second victim address for the long floods (a fresh incident, not the first flood's).
        script += &format!("\n ip -n {vic} addr add {VICTIM2}/24 dev eth0");
        // No ICMP rate limit in the victim (nmap -sU waits on port-unreachables otherwise).
        script += &format!("\n ip netns exec {vic} sysctl -qw net.ipv4.icmp_ratelimit=0");
        sh(&script);
        net
    }

    fn cleanup(&self) {
        for n in ["sw", "vic", "att", "gw"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(n)])
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.pin_dir);
    }

    /// `ip netns exec NS cmd...` (for tools and services; they do not touch bpffs).
    fn exec(&self, ns: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(ns)]).args(args);
        c
    }

    fn spawn(&mut self, ns: &str, args: &[&str]) {
        let child = self
            .exec(ns, args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {args:?}: {e}"));
        self.children.push(child);
    }

    fn mac(&self, ns: &str) -> String {
        let out = run(&mut self.exec(ns, &["cat", "/sys/class/net/eth0/address"]));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn api(&self, path: &str) -> Value {
        let out = run(&mut self.exec(
            "vic",
            &[
                "curl",
                "-sS",
                "--max-time",
                "5",
                &format!("http://{API}{path}"),
            ],
        ));
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("GET {path}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for c in &mut self.children {
            // SAFETY: plain signal to our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
        }
        std::thread::sleep(Duration::from_millis(300));
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.cleanup();
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Polls `GET /alerts?kind=...` until an alert matches, for at most 5 s. Returns the latency.
fn expect_alert(net: &Net, what: &str, kind: &str, field: &str, value: &str) -> Duration {
    let t0 = Instant::now();
    loop {
        let v = net.api(&format!("/alerts?kind={kind}&limit=1000"));
        let alerts = v["alerts"].as_array().expect("alerts array");
        if alerts.iter().any(|a| a[field] == value) {
            eprintln!(
                "live_lab: {what}: {kind} alert ({field}={value}) after {:?}",
                t0.elapsed()
            );
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "{what}: no {kind} alert with {field}={value} within 5 s; alerts: {v}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn tool(net: &Net, args: &[&str]) {
    let t0 = Instant::now();
    let out = net.exec("att", args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("live_lab: {} ran {:?}", args[0], t0.elapsed());
}

#[test]
fn real_tools_raise_alerts_and_benign_traffic_does_not() {
    let tools = [
        "nmap",
        "masscan",
        "hping3",
        "hydra",
        "arpspoof",
        "/usr/sbin/sshd",
        "ssh",
        "iperf3",
        "curl",
        "dig",
        "/usr/sbin/dnsmasq",
        "nsenter",
    ];
    if !kernel_test_can_run("live_lab", &tools) {
        return;
    }
    let mut net = Net::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // Victim services (sshd: key logins for root, passwords refused).
    let sshd = Sshd::prepare(d, &[VICTIM], None);
    let www = d.join("www");
    std::fs::create_dir_all(&www).unwrap();
    write(&www, "index.html", "<html><body>lab</body></html>\n");
    net.spawn(
        "vic",
        &[
            "/usr/sbin/sshd",
            "-D",
            "-e",
            "-f",
            sshd.config.to_str().unwrap(),
        ],
    );
    net.spawn(
        "vic",
        &[
            "python3",
            "-m",
            "http.server",
            "80",
            "--bind",
            VICTIM,
            "--directory",
            www.to_str().unwrap(),
        ],
    );
    net.spawn(
        "vic",
        &[
            "/usr/sbin/dnsmasq",
            "--no-daemon",
            "--port=53",
            "--listen-address=192.0.2.1",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--address=/lab.test/192.0.2.1",
            &format!("--pid-file={}/dns.pid", d.display()),
        ],
    );
    net.spawn("vic", &["iperf3", "-s", "-B", VICTIM]);

    // The sensor, in the victim's namespace (nsenter keeps bpffs visible).
    let mut sensor = Command::new("nsenter");
    sensor
        .arg(format!("--net=/run/netns/{}", net.ns("vic")))
        .arg(BIN)
        .args([
            "run",
            "--iface",
            "eth0",
            "--xdp-mode",
            "skb",
            "--status-interval",
            "0",
            "--listen",
            API,
        ])
        .arg("--pin-dir")
        .arg(&net.pin_dir)
        .arg("--data-dir")
        .arg(d.join("data"));
    net.children
        .push(spawn_attached(sensor, ATTACH_WITHIN, None));
    std::thread::sleep(Duration::from_millis(800)); // services up

    // Benign: web, ssh login with the right key, iperf3, DNS, ping. No alert.
    let key = sshd.client_key.to_str().unwrap();
    for _ in 0..3 {
        tool(
            &net,
            &["curl", "-sf", "-o", "/dev/null", "http://192.0.2.1/"],
        );
        tool(
            &net,
            &[
                "dig",
                "+short",
                "+tries=1",
                "+time=2",
                "@192.0.2.1",
                "www.lab.test",
            ],
        );
    }
    tool(
        &net,
        &[
            "ssh",
            "-i",
            key,
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=5",
            "root@192.0.2.1",
            "true",
        ],
    );
    tool(&net, &["iperf3", "-c", VICTIM, "-t", "2"]);
    tool(&net, &["ping", "-c", "3", "-i", "0.2", VICTIM]);
    tool(&net, &["ping", "-6", "-c", "3", "-i", "0.2", VICTIM6]);
    std::thread::sleep(Duration::from_secs(7)); // closed flows linger 5 s, then the sweep
    let v = net.api("/alerts");
    assert_eq!(
        v["alerts"],
        serde_json::json!([]),
        "benign traffic raised alerts: {v}"
    );
    let st = net.api("/status");
    assert_eq!(st["sniffer_running"], true, "{st}");
    assert!(st["packets"].as_u64().unwrap() > 100, "{st}");

    // Attacks, one source address each.
    tool(
        &net,
        &[
            "nmap",
            "-sS",
            "-Pn",
            "-n",
            "-T4",
            "-p",
            "1-1000",
            "-e",
            "eth0",
            "-S",
            "192.0.2.10",
            VICTIM,
        ],
    );
    expect_alert(&net, "nmap -sS", "port_scan", "src_ip", "192.0.2.10");

    tool(
        &net,
        &[
            "nmap",
            "-sU",
            "-Pn",
            "-n",
            "-T5",
            "--max-retries",
            "1",
            "--top-ports",
            "60",
            "-e",
            "eth0",
            "-S",
            "192.0.2.11",
            VICTIM,
        ],
    );
    expect_alert(&net, "nmap -sU", "port_scan", "src_ip", "192.0.2.11");

    tool(
        &net,
        &[
            "nmap",
            "-sX",
            "-Pn",
            "-n",
            "-T4",
            "-p",
            "1-200",
            "-e",
            "eth0",
            "-S",
            "192.0.2.12",
            VICTIM,
        ],
    );
    expect_alert(&net, "nmap -sX", "port_scan", "src_ip", "192.0.2.12");

    // The same over IPv6 (the XDP program's IPv6 path).
    tool(
        &net,
        &[
            "nmap", "-6", "-sS", "-Pn", "-n", "-T4", "-p", "1-1000", "-e", "eth0", "-S", ATTACKER6,
            VICTIM6,
        ],
    );
    expect_alert(&net, "nmap -6 -sS", "port_scan", "src_ip", ATTACKER6);

    // Tiny fragments that split the TCP header (evasion).
    tool(
        &net,
        &[
            "nmap",
            "-f",
            "-sS",
            "-Pn",
            "-n",
            "-T4",
            "-p",
            "1-200",
            "-e",
            "eth0",
            "-S",
            "192.0.2.17",
            VICTIM,
        ],
    );
    expect_alert(&net, "nmap -f -sS", "port_scan", "src_ip", "192.0.2.17");

    // IP protocol scan: one datagram per protocol number (the answers are not needed).
    tool(
        &net,
        &[
            "nmap",
            "-sO",
            "-Pn",
            "-n",
            "-T4",
            "-p",
            "1-60",
            "-e",
            "eth0",
            "-S",
            "192.0.2.16",
            VICTIM,
        ],
    );
    expect_alert(&net, "nmap -sO", "port_scan", "src_ip", "192.0.2.16");

    // Floods in one long flow (fixed ports): alerted while they run, within 5 s of the start.
    for (what, kind, args) in [
        (
            "hping3 --icmp --faster",
            "icmp_flood",
            vec!["--icmp", "-a", "192.0.2.18"],
        ),
        (
            "hping3 --udp -k --faster",
            "udp_flood",
            vec![
                "--udp",
                "-k",
                "-s",
                "3000",
                "-p",
                "9998",
                "-a",
                "192.0.2.19",
            ],
        ),
    ] {
        let mut cmd = vec!["timeout", "8", "hping3", "-q", "--faster"];
        cmd.extend(args.iter().copied());
        cmd.push(VICTIM2);
        let mut flood = net
            .exec("att", &cmd)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let src = args[args.len() - 1];
        let took = expect_alert(&net, what, kind, "src_ip", src);
        let still_running = flood.try_wait().unwrap().is_none();
        let _ = flood.wait();
        assert!(
            still_running,
            "{what}: the alert came only after the flood ({took:?})"
        );
    }

    let (att_mac, vic_mac) = (net.mac("att"), net.mac("vic"));
    tool(
        &net,
        &[
            "masscan",
            VICTIM,
            "-p1-300",
            "--rate",
            "500",
            "--wait",
            "1",
            "--adapter",
            "eth0",
            "--adapter-ip",
            "192.0.2.13",
            "--adapter-mac",
            &att_mac,
            "--router-mac",
            &vic_mac,
        ],
    );
    expect_alert(&net, "masscan", "port_scan", "src_ip", "192.0.2.13");

    tool(
        &net,
        &[
            "hping3",
            "-q",
            "-S",
            "-p",
            "80",
            "-c",
            "3000",
            "-i",
            "u200",
            "-a",
            "192.0.2.14",
            VICTIM,
        ],
    );
    expect_alert(&net, "hping3 SYN flood", "syn_flood", "dest_ip", VICTIM);

    // ACK flood (a segment per source port, each answered by a reset) from the attacker's own
    // address: a TCP flood outside any connection, under syn_flood.
    tool(
        &net,
        &[
            "hping3", "-q", "-A", "-p", "8080", "-c", "3000", "-i", "u200", VICTIM,
        ],
    );
    expect_alert(&net, "hping3 ACK flood", "syn_flood", "src_ip", "192.0.2.2");

    // The same from random spoofed sources, at the second victim address: nothing answers
    // (the victim has no route back), so every flow is one bare ACK that ends unanswered after
    // the embryonic timeout. hping3 exits 1 when nothing answers: its count is checked instead.
    let out = net
        .exec(
            "att",
            &[
                "hping3",
                "-q",
                "-A",
                "--rand-source",
                "-p",
                "8081",
                "-c",
                "3000",
                "-i",
                "u200",
                VICTIM2,
            ],
        )
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("3000 packets transmitted"), "hping3: {said}");
    expect_alert(
        &net,
        "hping3 ACK flood --rand-source",
        "syn_flood",
        "dest_ip",
        VICTIM2,
    );

    tool(
        &net,
        &[
            "hping3",
            "-q",
            "--udp",
            "-p",
            "9999",
            "-c",
            "4000",
            "-i",
            "u100",
            "-a",
            "192.0.2.15",
            VICTIM,
        ],
    );
    expect_alert(&net, "hping3 UDP flood", "udp_flood", "dest_ip", VICTIM);

    // sshd's default MaxAuthTries (6): hydra tries ~5 passwords per connection, so 80 words
    // make ~16 sessions (support::lab::hydra_ssh: its wait and retries).
    let list = wrong_passwords(d, 80);
    let t0 = Instant::now();
    let tries = hydra_ssh(|a| net.exec("att", a), &list, VICTIM, 5, 3);
    eprintln!("live_lab: hydra ran {:?} ({tries} attempts)", t0.elapsed());
    expect_alert(&net, "hydra ssh", "ssh_brute_force", "src_ip", "192.0.2.2");

    // ARP poisoning of the victim: first the gateway's real binding, then the forged replies.
    run(&mut net.exec("vic", &["ping", "-c", "1", "192.0.2.3"]));
    let t0 = Instant::now();
    let out = net
        .exec(
            "att",
            &[
                "timeout",
                "8",
                "arpspoof",
                "-i",
                "eth0",
                "-t",
                VICTIM,
                "192.0.2.3",
            ],
        )
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(124),
        "arpspoof: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("live_lab: arpspoof ran {:?}", t0.elapsed());
    expect_alert(&net, "arpspoof", "arp_spoof", "src_mac", &att_mac);
}
