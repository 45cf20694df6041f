//! Tunnels in the live sensor (root): VXLAN, Geneve and GRE between two network namespaces
//! this test creates over one veth pair (the underlay: 192.0.2.1 the victim's node, 192.0.2.2
//! the attacker's), the real sensor on the victim's underlay interface, and real tools through
//! each tunnel at inner TEST-NET-2 addresses: `nmap -sS` raises `port_scan`, `hydra` against an
//! sshd listening on the inner addresses raises `ssh_brute_force`, and an `hping3` flood (from
//! the attacker's second inner address) raises its flood alert (SYN flood through VXLAN, UDP
//! flood through Geneve, ICMP flood through GRE).
//! Each alert must be in `GET /alerts` within 5 s (of the tool's end; of a flood's start),
//! naming the inner attacker and victim and carrying the tunnel: type, VNI or GRE key, outer
//! endpoints. Before the attacks, pings through every tunnel raise nothing, and each tunnel's
//! outer flow (`safelink flows`: the pinned `OUTER_FLOWS` map) grows by exactly the frames and
//! bytes tshark sees the pings make between the two nodes, per direction; after the attacks
//! the sensor counted tunnelled packets and not one malformed tunnel.
//!
//! VXLAN is the kernel's own device. Geneve and GRE are userspace endpoints of this test
//! ([`Endpoint`]: a TAP or TUN device and a UDP or raw socket on each side), because the
//! kernels this runs on may lack the `geneve` and `ip_gre` drivers (the CI VM's has neither).
//! The sensor only sees the frames on the underlay, and tshark checks that they are VXLAN,
//! Geneve and GRE as Wireshark dissects them, with the expected VNI, key and addresses.
//!
//! Both veth ends live in the test's namespaces (`sltun-*`, a [`VethLab`]), forwarding stays
//! off, every tool is bounded (ports, passwords, `timeout`), and everything is deleted on drop.
mod support;

use std::{
    collections::BTreeMap,
    fs::File,
    io::{BufRead, BufReader},
    net::{Ipv4Addr, UdpSocket},
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use support::lab::{Side, Sshd, VethLab, hydra_ssh, wrong_passwords};
use support::{kernel_test_can_run, run, sh};

const BIN: &str = env!("CARGO_BIN_EXE_safelink");
const API: &str = "127.0.0.1:18095";
/// Underlay addresses of the two nodes (the tunnel endpoints).
const VICTIM_NODE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const ATTACKER_NODE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// Alerts must appear this soon.
const WITHIN: Duration = Duration::from_secs(5);

/// How a tunnel is built.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    /// The kernel's VXLAN device.
    KernelVxlan,
    /// A userspace endpoint ([`Endpoint`]).
    User(Encap),
}

/// One tunnel of the lab and what is run through it.
struct Tunnel {
    /// `tunnel.type` in alerts.
    kind: &'static str,
    via: Via,
    dev: &'static str,
    /// VNI or GRE key.
    id: u32,
    victim: &'static str,
    attacker: &'static str,
    /// The attacker's second inner address, the flood's source: a flow of its own (the pings
    /// of the benign phase made the first pair's ICMP flow, which has to stay apart).
    flooder: &'static str,
    /// The flood's alert kind and hping3 arguments (before the source and the target).
    flood: (&'static str, &'static [&'static str]),
}

const TUNNELS: [Tunnel; 3] = [
    Tunnel {
        kind: "vxlan",
        via: Via::KernelVxlan,
        dev: "vx42",
        id: 42,
        victim: "198.51.100.1",
        attacker: "198.51.100.2",
        flooder: "198.51.100.3",
        // A new source port per SYN: many half-open flows (flow starts).
        flood: ("syn_flood", &["-S", "-p", "80", "-i", "u500"]),
    },
    Tunnel {
        kind: "geneve",
        via: Via::User(Encap::Geneve { vni: 7 }),
        dev: "gnv7",
        id: 7,
        victim: "198.51.100.17",
        attacker: "198.51.100.18",
        flooder: "198.51.100.19",
        // A new source port per datagram: many one-packet flows (flow starts).
        flood: ("udp_flood", &["--udp", "-p", "9999", "-i", "u100"]),
    },
    Tunnel {
        kind: "gre",
        via: Via::User(Encap::Gre { key: 77 }),
        dev: "gre77",
        id: 77,
        victim: "198.51.100.33",
        attacker: "198.51.100.34",
        flooder: "198.51.100.35",
        // One ICMP flow (a heavy flow, judged while it runs).
        flood: ("icmp_flood", &["--icmp", "-i", "u200"]),
    },
];

/// A userspace tunnel's encapsulation.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Encap {
    /// Geneve (RFC 8926) on UDP 6081, Ethernet inside (a TAP device), no options.
    Geneve { vni: u32 },
    /// GRE (RFC 2890) with a key, IPv4 inside (a TUN device).
    Gre { key: u32 },
}

const GENEVE_PORT: u16 = 6081;
const IPPROTO_GRE: libc::c_int = 47;
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;

/// `struct ifreq` as TUNSETIFF reads it: the name, then the flags.
#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: libc::c_short,
    _pad: [u8; 22],
}

impl Encap {
    /// The tunnel header put before every inner frame.
    fn header(self) -> Vec<u8> {
        match self {
            Encap::Geneve { vni } => {
                let b = vni.to_be_bytes();
                // Version 0, no options, protocol: transparent Ethernet bridging.
                vec![0, 0, 0x65, 0x58, b[1], b[2], b[3], 0]
            }
            Encap::Gre { key } => {
                // K flag, protocol IPv4, the key.
                let mut h = vec![0x20, 0, 0x08, 0];
                h.extend_from_slice(&key.to_be_bytes());
                h
            }
        }
    }
}

fn cvt(r: libc::c_int) -> std::io::Result<libc::c_int> {
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn sockaddr(ip: Ipv4Addr) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain data; all zero is a valid value.
    let mut a: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    a.sin_family = libc::AF_INET as libc::sa_family_t;
    a.sin_addr.s_addr = u32::from_ne_bytes(ip.octets());
    a
}

/// A raw IPv4 socket of protocol GRE bound to `local` and connected to `remote`: it sends GRE
/// payloads (the kernel adds the IP header) and receives whole IP packets from `remote`.
fn raw_gre(local: Ipv4Addr, remote: Ipv4Addr) -> std::io::Result<OwnedFd> {
    // SAFETY: plain socket call.
    let fd = cvt(unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            IPPROTO_GRE,
        )
    })?;
    // SAFETY: a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let (l, r) = (sockaddr(local), sockaddr(remote));
    // SAFETY: valid sockaddr_in pointers and lengths.
    cvt(unsafe { libc::bind(fd.as_raw_fd(), (&raw const l).cast(), len) })?;
    // SAFETY: as above.
    cvt(unsafe { libc::connect(fd.as_raw_fd(), (&raw const r).cast(), len) })?;
    Ok(fd)
}

/// Waits until `fd` is readable (true) or `stop` is set (false), looking every 100 ms.
fn readable(fd: RawFd, stop: &AtomicBool) -> bool {
    while !stop.load(Ordering::Relaxed) {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut p, 1, 100) } > 0 {
            return true;
        }
    }
    false
}

/// One side of a userspace tunnel: the device `dev` in namespace `ns`, and two threads that
/// carry its frames to and from the peer node over the underlay.
struct Endpoint;

impl Endpoint {
    fn start(
        ns: &str,
        dev: &str,
        encap: Encap,
        local: Ipv4Addr,
        remote: Ipv4Addr,
        stop: &Arc<AtomicBool>,
    ) -> Vec<JoinHandle<()>> {
        let (path, name) = (format!("/run/netns/{ns}"), dev.to_owned());
        // The device and the socket are created inside the namespace: setns moves only the
        // calling thread, so a short-lived thread does it. Both keep their namespace after.
        let (tun, sock) = std::thread::spawn(move || -> std::io::Result<(OwnedFd, OwnedFd)> {
            let netns = File::open(path)?;
            // SAFETY: a namespace descriptor; affects this thread only.
            cvt(unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) })?;
            let tun = File::options()
                .read(true)
                .write(true)
                .open("/dev/net/tun")?;
            let mut req = IfReq {
                name: [0; 16],
                flags: IFF_NO_PI
                    | match encap {
                        Encap::Geneve { .. } => IFF_TAP,
                        Encap::Gre { .. } => IFF_TUN,
                    },
                _pad: [0; 22],
            };
            req.name[..name.len()].copy_from_slice(name.as_bytes());
            // SAFETY: TUNSETIFF reads and writes one ifreq.
            cvt(unsafe { libc::ioctl(tun.as_raw_fd(), TUNSETIFF as _, &raw mut req) })?;
            let sock = match encap {
                Encap::Geneve { .. } => {
                    let s = UdpSocket::bind((local, GENEVE_PORT))?;
                    s.connect((remote, GENEVE_PORT))?;
                    OwnedFd::from(s)
                }
                Encap::Gre { .. } => raw_gre(local, remote)?,
            };
            Ok((OwnedFd::from(tun), sock))
        })
        .join()
        .expect("tunnel setup thread")
        .unwrap_or_else(|e| panic!("userspace tunnel {dev} in {ns}: {e}"));
        let (tun, sock) = (Arc::new(tun), Arc::new(sock));
        let hdr = encap.header();
        let mut threads = Vec::new();
        // Device → peer: the header, then the frame.
        {
            let (tun, sock, stop, hdr) = (tun.clone(), sock.clone(), stop.clone(), hdr.clone());
            threads.push(std::thread::spawn(move || {
                let mut buf = vec![0u8; 65_536];
                buf[..hdr.len()].copy_from_slice(&hdr);
                while readable(tun.as_raw_fd(), &stop) {
                    let room = buf.len() - hdr.len();
                    // SAFETY: reads into the buffer's tail.
                    let n = unsafe {
                        libc::read(tun.as_raw_fd(), buf[hdr.len()..].as_mut_ptr().cast(), room)
                    };
                    if n > 0 {
                        // SAFETY: sends initialised bytes of the buffer. A failed send (the
                        // peer is gone at the end) is a lost frame, as on a wire.
                        unsafe {
                            libc::send(
                                sock.as_raw_fd(),
                                buf.as_ptr().cast(),
                                hdr.len() + n as usize,
                                0,
                            )
                        };
                    }
                }
            }));
        }
        // Peer → device: only frames with this tunnel's header.
        {
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || {
                let mut buf = vec![0u8; 65_536];
                while readable(sock.as_raw_fd(), &stop) {
                    // SAFETY: receives into the buffer.
                    let n = unsafe {
                        libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0)
                    };
                    if n <= 0 {
                        continue;
                    }
                    let got = &buf[..n as usize];
                    // A raw socket receives the outer IP header too.
                    let payload = match encap {
                        Encap::Gre { .. } => got.get(usize::from(got[0] & 0x0f) * 4..),
                        Encap::Geneve { .. } => Some(got),
                    };
                    let Some(inner) = payload.and_then(|p| p.strip_prefix(hdr.as_slice())) else {
                        continue;
                    };
                    // SAFETY: writes initialised bytes.
                    unsafe { libc::write(tun.as_raw_fd(), inner.as_ptr().cast(), inner.len()) };
                }
            }));
        }
        threads
    }
}

/// The two nodes ([`VethLab`]: the victim's and the attacker's, the underlay between them)
/// and the tunnels across them. On drop the userspace endpoints stop, then the lab's children
/// and namespaces go.
struct Lab {
    nodes: VethLab,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Lab {
    fn new() -> Self {
        let nodes = VethLab::new(
            "sltun",
            "sltun",
            &[&VICTIM_NODE.to_string()],
            &[&ATTACKER_NODE.to_string()],
        );
        let mut lab = Lab {
            nodes,
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
        };
        let (v, a) = (lab.nodes.victim_ns.clone(), lab.nodes.client_ns.clone());
        let mut script = String::new();
        for t in &TUNNELS {
            if t.via == Via::KernelVxlan {
                for (side, local, remote) in [
                    (Side::Victim, VICTIM_NODE, ATTACKER_NODE),
                    (Side::Client, ATTACKER_NODE, VICTIM_NODE),
                ] {
                    script += &format!(
                        "ip -n {ns} link add {dev} type vxlan id {id} local {local} remote {remote} dstport 4789 dev {underlay}\n",
                        ns = lab.nodes.ns(side),
                        underlay = lab.nodes.iface(side),
                        dev = t.dev,
                        id = t.id
                    );
                }
            }
        }
        sh(&script);
        for t in &TUNNELS {
            if let Via::User(encap) = t.via {
                let stop = lab.stop.clone();
                lab.threads.extend(Endpoint::start(
                    &v,
                    t.dev,
                    encap,
                    VICTIM_NODE,
                    ATTACKER_NODE,
                    &stop,
                ));
                lab.threads.extend(Endpoint::start(
                    &a,
                    t.dev,
                    encap,
                    ATTACKER_NODE,
                    VICTIM_NODE,
                    &stop,
                ));
            }
        }
        // Inner MTU 1400: the encapsulated frames fit the underlay's 1500 unfragmented.
        let mut script = String::new();
        for t in &TUNNELS {
            for (ns, ip) in [(&v, t.victim), (&a, t.attacker)] {
                script += &format!(
                    "ip -n {ns} link set {dev} mtu 1400 up; ip -n {ns} addr add {ip}/28 dev {dev}\n",
                    dev = t.dev
                );
            }
            script += &format!("ip -n {a} addr add {}/28 dev {}\n", t.flooder, t.dev);
        }
        sh(&script);
        lab
    }

    /// `args` in the attacker's namespace.
    fn attacker(&self, args: &[&str]) -> Command {
        self.nodes.exec(Side::Client, args)
    }

    /// `GET path` of the sensor's API (curl in the victim's namespace).
    fn api(&self, path: &str) -> Value {
        self.nodes.api(API, path)
    }

    /// Runs a tool in the attacker's namespace; returns how long it ran.
    fn tool(&self, t: &Tunnel, args: &[&str]) -> Duration {
        let t0 = Instant::now();
        let out = self.attacker(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("tunnel_lab: {}: {} ran {:?}", t.kind, args[0], t0.elapsed());
        t0.elapsed()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        // Then `nodes` drops: the sensor and sshd stopped, the namespaces deleted.
    }
}

/// The `tunnel` object an alert about `t` must carry: the attacker's node is the outer
/// source of every flow the attacks start.
fn tunnel_json(t: &Tunnel) -> Value {
    json!({
        "type": t.kind,
        "id": t.id,
        "outer_src": ATTACKER_NODE.to_string(),
        "outer_dst": VICTIM_NODE.to_string(),
    })
}

/// Polls `GET /alerts?kind=KIND` until an alert names the inner `attacker` and `t`'s inner
/// victim, for at most [`WITHIN`] after `since`; asserts its tunnel. Returns the time since
/// `since`.
fn expect_alert(
    lab: &Lab,
    t: &Tunnel,
    attacker: &str,
    what: &str,
    kind: &str,
    since: Instant,
) -> Duration {
    loop {
        let v = lab.api(&format!("/alerts?kind={kind}&limit=1000"));
        let alerts = v["alerts"].as_array().expect("alerts array");
        if let Some(a) = alerts
            .iter()
            .find(|a| a["src_ip"] == attacker && a["dest_ip"] == t.victim)
        {
            let took = since.elapsed();
            eprintln!(
                "tunnel_lab: {}: {what}: {kind} ({attacker} -> {}) after {took:?}",
                t.kind, t.victim
            );
            assert_eq!(a["tunnel"], tunnel_json(t), "{} {what}: {a}", t.kind);
            assert!(took <= WITHIN, "{} {what}: {kind} after {took:?}", t.kind);
            return took;
        }
        assert!(
            since.elapsed() < WITHIN,
            "{} {what}: no {kind} alert from {attacker} to {} within {WITHIN:?}; alerts: {v}",
            t.kind,
            t.victim
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// tshark on the victim's underlay while one ping crosses each tunnel: the frames are VXLAN,
/// Geneve and GRE as Wireshark dissects them, with the tunnel's id and both address pairs.
fn check_wire(lab: &Lab) {
    let mut ts = lab
        .nodes
        .exec(
            Side::Victim,
            &[
                "tshark",
                "-n",
                "-l",
                "-i",
                lab.nodes.iface(Side::Victim),
                "-a",
                "duration:5",
                "-f",
                "udp port 4789 or udp port 6081 or ip proto 47",
                "-T",
                "fields",
                "-E",
                "occurrence=a",
                "-E",
                "aggregator=,",
                "-e",
                "frame.protocols",
                "-e",
                "ip.src",
                "-e",
                "ip.dst",
                "-e",
                "vxlan.vni",
                "-e",
                "geneve.vni",
                "-e",
                "gre.key",
                "-e",
                "frame.len",
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(ts.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("Capturing on") {
        line.clear();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "tshark ended before capturing"
        );
    }
    let _ = std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    // "Capturing on" comes a little before the capture does.
    std::thread::sleep(Duration::from_millis(1000));
    // The outer flows before and after the pings: nothing else crosses the tunnels meanwhile
    // (IPv6 is off; ARP inside them is no outer-flow packet, and tshark's count leaves it out).
    let before = outer_flows(lab);
    for t in &TUNNELS {
        run(&mut lab.attacker(&["ping", "-c", "2", "-i", "0.2", "-W", "2", t.victim]));
    }
    let after = outer_flows(lab);
    let out = ts.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let num = |v: &str| match v.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    };
    for (t, (proto, col)) in TUNNELS
        .iter()
        .zip([("vxlan", 3), ("geneve", 4), ("gre", 5)])
    {
        let src = format!("{ATTACKER_NODE},{}", t.attacker);
        let dst = format!("{VICTIM_NODE},{}", t.victim);
        let seen = text.lines().any(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            c.len() == 7
                && c[0].split(':').any(|p| p == proto)
                && c[0].ends_with("icmp:data")
                && c[1] == src
                && c[2] == dst
                && num(c[col]) == Some(t.id)
        });
        assert!(
            seen,
            "{}: no {proto} frame {src} -> {dst} with id {} on the underlay:\n{text}",
            t.kind, t.id
        );
    }
    eprintln!("tunnel_lab: tshark sees VXLAN 42, Geneve 7 and GRE key 77 on the underlay");

    // Each tunnel's outer flow (`safelink flows`, read from the pinned `OUTER_FLOWS`) grew by
    // exactly the frames tshark saw carry an IP packet through it, per direction, in packets
    // and bytes.
    let mut want: OuterDirs = BTreeMap::new();
    for l in text.lines() {
        let c: Vec<&str> = l.split('\t').collect();
        let protos: Vec<&str> = c[0].split(':').collect();
        let Some((t, col)) = TUNNELS
            .iter()
            .zip([3, 4, 5])
            .find(|(t, _)| protos.contains(&t.kind))
        else {
            continue;
        };
        let at = protos.iter().position(|p| *p == t.kind).unwrap();
        if !protos[at..].contains(&"ip") {
            continue; // ARP inside the tunnel: a plain outer flow
        }
        let (src, dst) = (
            c[1].split(',').next().unwrap(),
            c[2].split(',').next().unwrap(),
        );
        let e = want
            .entry((
                t.kind.to_owned(),
                num(c[col]).unwrap(),
                src.to_owned(),
                dst.to_owned(),
            ))
            .or_default();
        e.0 += 1;
        e.1 += c[6].parse::<u64>().unwrap();
    }
    let grew: OuterDirs = after
        .iter()
        .filter_map(|(k, v)| {
            let b = before.get(k).copied().unwrap_or_default();
            (v.0 > b.0).then(|| (k.clone(), (v.0 - b.0, v.1 - b.1)))
        })
        .collect();
    eprintln!("tunnel_lab: outer flows grew by {grew:?}; tshark {want:?}");
    assert_eq!(grew, want, "outer flows against tshark");
    for t in &TUNNELS {
        for (src, dst) in [(ATTACKER_NODE, VICTIM_NODE), (VICTIM_NODE, ATTACKER_NODE)] {
            let k = (t.kind.to_owned(), t.id, src.to_string(), dst.to_string());
            assert_eq!(grew.get(&k).map(|v| v.0), Some(2), "{k:?}: two pings");
        }
    }
}

/// (tunnel type, id, outer source, outer destination) → (packets, bytes).
type OuterDirs = BTreeMap<(String, u32, String, String), (u64, u64)>;

/// The outer flows in the sensor's pinned `OUTER_FLOWS` map (`safelink flows`), per
/// direction.
fn outer_flows(lab: &Lab) -> OuterDirs {
    let out = run(Command::new(BIN)
        .arg("flows")
        .arg("--pin-dir")
        .arg(&lab.nodes.pin_dir));
    let mut dirs = BTreeMap::new();
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        let v: Value = serde_json::from_str(l).unwrap();
        if v["type"] != "outer_flow" {
            continue;
        }
        let t = &v["tunnel"];
        let (kind, id) = (
            t["type"].as_str().unwrap(),
            t["id"].as_u64().unwrap() as u32,
        );
        let (src, dst) = (
            t["outer_src"].as_str().unwrap(),
            t["outer_dst"].as_str().unwrap(),
        );
        for (d, (s, r)) in [("fwd", (src, dst)), ("rev", (dst, src))] {
            let n = |f: &str| v[d][f].as_u64().unwrap();
            if n("packets") > 0 {
                dirs.insert(
                    (kind.to_owned(), id, s.to_owned(), r.to_owned()),
                    (n("packets"), n("bytes")),
                );
            }
        }
    }
    dirs
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("metric {name} missing"))
}

#[test]
fn attacks_through_vxlan_geneve_and_gre_are_alerted_with_the_inner_endpoints_and_the_tunnel() {
    let tools = [
        "nmap",
        "hping3",
        "hydra",
        "/usr/sbin/sshd",
        "ssh-keygen",
        "tshark",
        "curl",
        "ping",
        "timeout",
        "nsenter",
    ];
    if !kernel_test_can_run("tunnel_lab", &tools) {
        return;
    }
    let t_start = Instant::now();
    // Dropped after the lab (the sensor writes its store here until it is stopped).
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut lab = Lab::new();

    // sshd on the three inner victim addresses.
    let victims: Vec<&str> = TUNNELS.iter().map(|t| t.victim).collect();
    let sshd = Sshd::prepare(d, &victims, None);
    let sshd = sshd.command(lab.nodes.ns(Side::Victim));
    lab.nodes.spawn_cmd(sshd);

    // The sensor on the victim node's underlay interface.
    let data = d.join("data");
    lab.nodes.start_sensor(
        BIN,
        &[
            "--status-interval",
            "0",
            "--listen",
            API,
            "--data-dir",
            data.to_str().unwrap(),
        ],
        None,
    );
    std::thread::sleep(Duration::from_millis(500)); // sshd and the API up

    // Benign: pings through every tunnel (this also resolves the inner neighbours), then the
    // frames on the wire. No alert.
    for t in &TUNNELS {
        run(&mut lab.attacker(&["ping", "-c", "3", "-i", "0.2", "-W", "2", t.victim]));
    }
    check_wire(&lab);
    let v = lab.api("/alerts");
    assert_eq!(v["alerts"], json!([]), "pings raised alerts: {v}");
    eprintln!("tunnel_lab: set up and checked in {:?}", t_start.elapsed());

    let list = wrong_passwords(d, 80);
    let mut figures = Vec::new();
    for t in &TUNNELS {
        // SYN scan of the inner victim.
        lab.tool(
            t,
            &["nmap", "-sS", "-Pn", "-n", "-T4", "-p", "1-300", t.victim],
        );
        let scan = expect_alert(&lab, t, t.attacker, "nmap -sS", "port_scan", Instant::now());

        // The flood: the alert must come while it runs, within 5 s of its start.
        let (kind, args) = t.flood;
        let mut cmd = vec!["timeout", "8", "hping3", "-q"];
        cmd.extend_from_slice(args);
        cmd.extend_from_slice(&["-a", t.flooder, t.victim]);
        let started = Instant::now();
        let mut flood = lab
            .attacker(&cmd)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let what = format!("hping3 {} -a {}", args.join(" "), t.flooder);
        let flooded = expect_alert(&lab, t, t.flooder, &what, kind, started);
        let still_running = flood.try_wait().unwrap().is_none();
        // nsenter became `timeout`, which passes the signal on to hping3.
        // SAFETY: plain signal to our own child.
        unsafe { libc::kill(flood.id() as i32, libc::SIGTERM) };
        let _ = flood.wait();
        assert!(
            still_running,
            "{}: the {kind} alert came only after the flood ({flooded:?})",
            t.kind
        );

        // SSH brute force against the inner victim (sshd's default MaxAuthTries: ~16
        // sessions of five guesses). hydra exits 0 when it found nothing too. Its wait for a
        // response is hydra's own warning threshold (10 s, not 2): under CI load a worker that
        // waited 2 s gave up and hydra exited 255. Up to three tries, as in live_lab: hydra
        // gives up on a target whose first connection fails, and in one CI run (2026-12-05)
        // its first connection through the VXLAN tunnel failed under load ("1 target did not
        // resolve or could not be connected"); the rerun passed with every tunnel.
        let t0 = Instant::now();
        hydra_ssh(|a| lab.attacker(a), &list, t.victim, 10, 3);
        eprintln!("tunnel_lab: {}: hydra ran {:?}", t.kind, t0.elapsed());
        let brute = expect_alert(
            &lab,
            t,
            t.attacker,
            "hydra ssh",
            "ssh_brute_force",
            Instant::now(),
        );
        figures.push(format!(
            "{}: port_scan {scan:?} after nmap, {kind} {flooded:?} after the flood's start, ssh_brute_force {brute:?} after hydra",
            t.kind
        ));
    }

    // Every attack was seen inside its tunnel; nothing was a malformed tunnel.
    let m = lab.api("/metrics");
    let m = m.as_str().unwrap();
    let tunneled = metric(m, "safelink_tunneled_packets_total");
    let malformed = metric(m, "safelink_tunnel_malformed_total");
    eprintln!("tunnel_lab: tunnelled packets {tunneled}, malformed tunnels {malformed}");
    assert!(tunneled > 1000.0, "tunnelled packets: {tunneled}");
    assert_eq!(malformed, 0.0, "malformed tunnels");
    for f in &figures {
        eprintln!("tunnel_lab: {f}");
    }
    eprintln!("tunnel_lab: total {:?}", t_start.elapsed());
}
