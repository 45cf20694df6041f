//! Shared helpers of the integration tests: crafted frames (etherparse), pcap writing,
//! network namespaces with veth pairs that the test owns, root/tool checks, starting the
//! sensor ([`spawn_attached`]), child processes killed and reaped on drop ([`Proc`]), and the
//! idle sniffer stand-in of the API tests that are not about the sniffer.
#![allow(dead_code)]

pub mod attach;
pub mod heldout;
pub mod hub;
pub mod lab;

pub use attach::{ATTACH_WITHIN, spawn_attached};

/// A child process killed (SIGKILL) and reaped on drop.
pub struct Proc(pub std::process::Child);

impl Proc {
    /// SIGTERM, then waits (at most `secs`, then SIGKILL) for the process to end.
    pub fn terminate(mut self, secs: u64) {
        // SAFETY: signalling our own child by its pid.
        unsafe {
            libc::kill(self.0.id() as i32, libc::SIGTERM);
        }
        let t0 = std::time::Instant::now();
        while t0.elapsed() < std::time::Duration::from_secs(secs) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use etherparse::{PacketBuilder, VlanId};
use pcap_file::pcap::{PcapPacket, PcapWriter};
use serde_json::Value;

pub const MAC_A: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
pub const MAC_B: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];
pub const IP_A: [u8; 4] = [192, 0, 2, 1];
pub const IP_B: [u8; 4] = [192, 0, 2, 2];
pub const IP6_A: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
pub const IP6_B: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
pub const VLAN_A: [u8; 4] = [198, 51, 100, 1];
pub const VLAN_B: [u8; 4] = [198, 51, 100, 2];

pub fn is_root() -> bool {
    // SAFETY: no arguments, no side effects.
    unsafe { libc::geteuid() == 0 }
}

/// Returns false (and says why) when a kernel test cannot run here. Under CI (root) a missing
/// tool is a failure, not a skip.
pub fn kernel_test_can_run(name: &str, tools: &[&str]) -> bool {
    if !is_root() {
        eprintln!("SKIP {name}: needs root (XDP, network namespaces); CI runs it as root");
        return false;
    }
    for t in tools {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(found, "{name}: tool `{t}` missing; run ./setup.sh --test");
    }
    true
}

pub fn tcp4(src: ([u8; 4], u16), dst: ([u8; 4], u16), flags: &str, payload: usize) -> Vec<u8> {
    let (smac, dmac) = if src.0 == IP_A {
        (MAC_A, MAC_B)
    } else {
        (MAC_B, MAC_A)
    };
    let mut b = PacketBuilder::ethernet2(smac, dmac)
        .ipv4(src.0, dst.0, 64)
        .tcp(src.1, dst.1, 1000, 64240);
    for f in flags.chars() {
        b = match f {
            'S' => b.syn(),
            'A' => b.ack(1),
            'F' => b.fin(),
            'P' => b.psh(),
            'R' => b.rst(),
            'U' => b.urg(0),
            'E' => b.ece(),
            'C' => b.cwr(),
            _ => panic!("flag {f}"),
        };
    }
    let mut v = Vec::new();
    b.write(&mut v, &vec![0x61; payload]).unwrap();
    v
}

pub fn tcp6(src: ([u8; 16], u16), dst: ([u8; 16], u16), flags: &str) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(MAC_B, MAC_A)
        .ipv6(src.0, dst.0, 64)
        .tcp(src.1, dst.1, 5000, 65535);
    for f in flags.chars() {
        b = match f {
            'S' => b.syn(),
            'A' => b.ack(1),
            'R' => b.rst(),
            _ => panic!("flag {f}"),
        };
    }
    let mut v = Vec::new();
    b.write(&mut v, &[]).unwrap();
    v
}

pub fn udp4(src: ([u8; 4], u16), dst: ([u8; 4], u16), payload: usize) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(MAC_B, MAC_A)
        .ipv4(src.0, dst.0, 64)
        .udp(src.1, dst.1)
        .write(&mut v, &vec![0x62; payload])
        .unwrap();
    v
}

pub fn udp4_vlan(vlan: u16, src: ([u8; 4], u16), dst: ([u8; 4], u16), payload: usize) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(MAC_B, MAC_A)
        .single_vlan(VlanId::try_new(vlan).unwrap())
        .ipv4(src.0, dst.0, 64)
        .udp(src.1, dst.1)
        .write(&mut v, &vec![0x63; payload])
        .unwrap();
    v
}

pub fn icmp4_echo(src: [u8; 4], dst: [u8; 4], reply: bool, seq: u16) -> Vec<u8> {
    let mut v = Vec::new();
    let b = PacketBuilder::ethernet2(MAC_B, MAC_A).ipv4(src, dst, 64);
    let b = if reply {
        b.icmpv4_echo_reply(7, seq)
    } else {
        b.icmpv4_echo_request(7, seq)
    };
    b.write(&mut v, &[0x64; 56]).unwrap();
    v
}

/// Ethernet/IPv4 ARP: op 1 request, 2 reply.
pub fn arp(op: u16, sha: [u8; 6], spa: [u8; 4], tha: [u8; 6], tpa: [u8; 4]) -> Vec<u8> {
    let dst = if op == 1 { [0xff; 6] } else { tha };
    let mut v = Vec::new();
    v.extend_from_slice(&dst);
    v.extend_from_slice(&sha);
    v.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4]);
    v.extend_from_slice(&op.to_be_bytes());
    v.extend_from_slice(&sha);
    v.extend_from_slice(&spa);
    v.extend_from_slice(&tha);
    v.extend_from_slice(&tpa);
    v
}

/// IPv6 UDP behind a hop-by-hop and a destination-options header (8 bytes each).
pub fn udp6_ext(src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16) -> Vec<u8> {
    let payload = 4usize;
    let plen = 8 + 8 + 8 + payload;
    let mut v = Vec::new();
    v.extend_from_slice(&MAC_A);
    v.extend_from_slice(&MAC_B);
    v.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
    v.extend_from_slice(&(plen as u16).to_be_bytes());
    v.extend_from_slice(&[0, 64]); // next: hop-by-hop, hop limit 64
    v.extend_from_slice(&src);
    v.extend_from_slice(&dst);
    v.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]); // HBH -> dest opts, PadN
    v.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]); // dest opts -> UDP, PadN
    v.extend_from_slice(&sport.to_be_bytes());
    v.extend_from_slice(&dport.to_be_bytes());
    v.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
    v.extend_from_slice(&[0, 0]); // checksum (not verified by the sensor)
    v.extend_from_slice(&[1, 2, 3, 4]);
    v
}

/// A non-first IPv4 fragment (offset 185 * 8) of a UDP datagram.
pub fn ipv4_fragment(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let mut v = udp4((src, 9999), (dst, 9999), 20);
    v[20] = 0x00;
    v[21] = 185; // fragment offset 185, MF clear
    v
}

/// Writes frames to a pcap file, 1 ms apart starting at `start_s` (Unix seconds).
pub fn write_pcap(path: &Path, frames: &[Vec<u8>], start_s: u64) {
    let f = std::fs::File::create(path).unwrap();
    let mut w = PcapWriter::new(f).unwrap();
    for (i, fr) in frames.iter().enumerate() {
        let ts = Duration::from_secs(start_s) + Duration::from_millis(i as u64);
        w.write_packet(&PcapPacket::new(ts, fr.len() as u32, fr))
            .unwrap();
    }
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn sh(script: &str) -> Output {
    run(Command::new("sh").args(["-ec", script]))
}

/// Two network namespaces joined by a veth pair, all owned (and deleted on drop) by the test.
/// Neither side has an address and IPv6 is disabled, so no kernel sends anything on its own
/// (no answers, no neighbour discovery): every frame on the link is one the test injected.
/// [`Lab::become_host`] gives `a` the scripted frames' address and MAC when a test wants `a`'s
/// kernel to answer.
pub struct Lab {
    pub ns_a: String,
    pub ns_b: String,
    pub if_a: String,
    pub if_b: String,
    pub pin_dir: PathBuf,
}

impl Lab {
    pub fn new(tag: &str) -> Self {
        let id = std::process::id() % 100_000;
        let lab = Lab {
            ns_a: format!("sl-{tag}-a-{id}"),
            ns_b: format!("sl-{tag}-b-{id}"),
            if_a: format!("sla{id}"),
            if_b: format!("slb{id}"),
            pin_dir: PathBuf::from(format!("/sys/fs/bpf/safelink-test-{tag}-{id}")),
        };
        lab.cleanup();
        let (a, b, ia, ib) = (&lab.ns_a, &lab.ns_b, &lab.if_a, &lab.if_b);
        sh(&format!(
            "ip netns add {a}; ip netns add {b}
             ip link add {ia} netns {a} type veth peer name {ib} netns {b}
             ip netns exec {b} sysctl -qw net.ipv6.conf.all.disable_ipv6=1
             ip netns exec {b} sysctl -qw net.ipv6.conf.default.disable_ipv6=1
             ip netns exec {a} sysctl -qw net.ipv6.conf.all.disable_ipv6=1
             ip netns exec {a} sysctl -qw net.ipv6.conf.default.disable_ipv6=1
             ip -n {a} link set lo up; ip -n {b} link set lo up
             ip -n {a} link set {ia} up; ip -n {b} link set {ib} up"
        ));
        lab
    }

    /// Makes `a` the host 192.0.2.1 (MAC_A) that the scripted frames address, with a static
    /// neighbour entry for 192.0.2.2 (no ARP of its own).
    pub fn become_host(&self) {
        let (a, ia) = (&self.ns_a, &self.if_a);
        sh(&format!(
            "ip -n {a} link set {ia} address 02:00:00:00:00:01
             ip -n {a} addr add 192.0.2.1/24 dev {ia}
             ip -n {a} neigh replace 192.0.2.2 lladdr 02:00:00:00:00:02 dev {ia} nud permanent"
        ));
    }

    pub fn cleanup(&self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.ns_a])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.ns_b])
            .output();
        let _ = std::fs::remove_dir_all(&self.pin_dir);
    }

    /// Injects a pcap's frames out of `b`'s interface (tcpreplay), i.e. into `a`.
    pub fn replay_into_a(&self, pcap: &Path) {
        run(Command::new("ip").args([
            "netns",
            "exec",
            &self.ns_b,
            "tcpreplay",
            "-q",
            "--pps=2000",
            "-i",
            &self.if_b,
            pcap.to_str().unwrap(),
        ]));
    }

    /// A command run in `a`'s network namespace with `nsenter --net`, which (unlike
    /// `ip netns exec`) keeps the host's /sys/fs/bpf visible for pinning.
    pub fn cmd_in_a(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.ns_a))
            .arg(program);
        c
    }

    /// `bin run` in `a`'s namespace on `a`'s interface, with this lab's pin directory and
    /// `data_dir`; the caller adds the rest (and starts it with [`spawn_attached`]).
    pub fn sensor_cmd(&self, bin: &str, data_dir: &Path) -> Command {
        let mut c = self.cmd_in_a(bin);
        c.args(["run", "--iface", &self.if_a, "--pin-dir"])
            .arg(&self.pin_dir)
            .arg("--data-dir")
            .arg(data_dir);
        c
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// The scripted frame set of the lab and equivalence tests: a TCP handshake + data + FIN
/// exchange, UDP both ways, ICMP echo, ARP, IPv6 TCP, VLAN-tagged UDP, IPv6 with extension
/// headers, and a non-first IPv4 fragment. 27 frames.
pub fn lab_frames() -> Vec<Vec<u8>> {
    let (c, s) = ((IP_B, 40000), (IP_A, 80));
    let (c6, s6) = ((IP6_B, 41000), (IP6_A, 443));
    vec![
        tcp4(c, s, "S", 0),
        tcp4(s, c, "SA", 0),
        tcp4(c, s, "A", 0),
        tcp4(c, s, "PA", 100),
        tcp4(s, c, "A", 0),
        tcp4(c, s, "FA", 0),
        tcp4(s, c, "FA", 0),
        tcp4(c, s, "A", 0),
        udp4((IP_B, 5353), (IP_A, 53), 30),
        udp4((IP_B, 5353), (IP_A, 53), 40),
        udp4((IP_A, 53), (IP_B, 5353), 120),
        icmp4_echo(IP_B, IP_A, false, 1),
        icmp4_echo(IP_A, IP_B, true, 1),
        icmp4_echo(IP_B, IP_A, false, 2),
        icmp4_echo(IP_A, IP_B, true, 2),
        icmp4_echo(IP_B, IP_A, false, 3),
        icmp4_echo(IP_A, IP_B, true, 3),
        arp(1, MAC_B, IP_B, [0; 6], IP_A),
        arp(1, MAC_B, IP_B, [0; 6], IP_A),
        arp(2, MAC_A, IP_A, MAC_B, IP_B),
        tcp6(c6, s6, "S"),
        tcp6(s6, c6, "SA"),
        tcp6(c6, s6, "R"),
        udp4_vlan(100, (VLAN_B, 1000), (VLAN_A, 2000), 10),
        udp4_vlan(100, (VLAN_B, 1000), (VLAN_A, 2000), 10),
        udp6_ext(IP6_B, IP6_A, 7000, 7001),
        ipv4_fragment(IP_B, IP_A),
    ]
}

/// Flow records (JSON lines) keyed by "proto src:port>dst:port vlan".
pub fn flows_by_key(jsonl: &str) -> std::collections::BTreeMap<String, Value> {
    jsonl
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v.get("type").is_none_or(|t| t == "flow"))
        .map(|v| {
            let k = format!(
                "{} {}:{}>{}:{} vlan{}",
                v["proto"],
                v["src_ip"].as_str().unwrap(),
                v["src_port"],
                v["dst_ip"].as_str().unwrap(),
                v["dst_port"],
                v["vlan"]
            );
            (k, v)
        })
        .collect()
}

/// The parts of a flow record that must agree between the kernel and the replay path
/// (everything but timestamps and inter-arrival times).
pub fn comparable(v: &Value) -> Value {
    let dir = |d: &Value| {
        serde_json::json!({
            "packets": d["packets"], "bytes": d["bytes"], "l3_min": d["l3_min"],
            "l3_max": d["l3_max"], "l3_sum": d["l3_sum"], "l3_sq_sum": d["l3_sq_sum"],
            "init_ttl": d["init_ttl"], "init_win": d["init_win"], "flags": d["flags"],
        })
    };
    serde_json::json!({
        "fwd": dir(&v["fwd"]), "rev": dir(&v["rev"]),
        "icmp_type": v["icmp_type"], "icmp_code": v["icmp_code"],
    })
}

/// The sniffer side of an API server in tests that exercise other routes (learning, docs):
/// reports a running sensor, start/stop change nothing. The sniffer itself is tested for real
/// in `kernel_lab`, `live_lab` and the dashboard's live test.
pub struct IdleSensor;

impl safelink::api::SensorControl for IdleSensor {
    fn status(&self) -> safelink::api::SensorStatus {
        safelink::api::SensorStatus {
            running: true,
            interface: Some("veth0".into()),
            xdp_mode: Some("skb".into()),
            uptime_secs: 1,
            packets: 0,
            flows: 0,
            ringbuf_events: 0,
            ringbuf_drops: 0,
            detection_sources: vec![
                safelink::alert::AlertSource::Dfa,
                safelink::alert::AlertSource::Ann,
            ],
            degraded: Vec::new(),
        }
    }
    fn start(&self) -> safelink::api::ControlFuture<'_> {
        Box::pin(async { Ok(false) })
    }
    fn stop(&self) -> safelink::api::ControlFuture<'_> {
        Box::pin(async { Ok(false) })
    }
}

/// A `nats-server -js` of the test's own: 127.0.0.1, a free port, a temporary store
/// directory; killed (and its store removed) on drop. `stop` and `start` again on the same
/// port and store simulate an outage.
pub struct NatsServer {
    pub port: u16,
    pub store_dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl NatsServer {
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut s = NatsServer {
            port,
            store_dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        s.resume();
        s
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.store_dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server missing: run ./setup.sh --test");
        self.child = Some(child);
        let t0 = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "nats-server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (the store stays for [`NatsServer::resume`]).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}
