//! Tunnelled captures (tests/pcaps/tunnels, public suricata-verify captures: see SOURCE.md
//! there): `safelink analyze` reports every inner flow with its own 5-tuple, its packet count
//! and its tunnel (`tunnel: {type, id, outer_src, outer_dst}`), exactly as tshark dissects the
//! inner layer, an independent implementation. tshark's fields are read per frame: the inner
//! IP header is the second IP/IPv6 layer when no ICMP layer comes between the two (an ICMP
//! error quotes a header, it does not tunnel one); its conversation is keyed like SafeLink's
//! (inner endpoints and protocol, tunnel id and outer endpoints), so the same addresses inside
//! and outside a tunnel, or in two tunnels, are two conversations on both sides.
//!
//! With root, every frame also goes through the real XDP program (`BPF_PROG_TEST_RUN`): its
//! flow keys, packet counts and tunnel counters equal the replay's, with decoding on, off (the
//! loader's global), for a payload on the VXLAN port that is no VXLAN header (a plain flow,
//! not a malformed tunnel), and for a VXLAN frame whose inner header is broken (malformed).
mod support;

use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::{Path, PathBuf},
    process::Command,
};

use aya::programs::{TestRun as _, TestRunOptions};
use safelink::{
    capture::{loader, maps::SensorMaps},
    table::FlowTable,
};
use safelink_common::{
    Counter, FlowKey, TUNNEL_NONE,
    parse::{CapturedFrame, TunnelConfig},
};
use support::run;

const BIN: &str = env!("CARGO_BIN_EXE_safelink");

/// (inner proto, lower (ip, port), upper (ip, port), tunnel id, lower outer, upper outer).
type Conv = (u8, (IpAddr, u16), (IpAddr, u16), u32, IpAddr, IpAddr);

fn conv(proto: u8, a: (IpAddr, u16), b: (IpAddr, u16), id: u32, oa: IpAddr, ob: IpAddr) -> Conv {
    let (a, b) = if a <= b { (a, b) } else { (b, a) };
    let (oa, ob) = if oa <= ob { (oa, ob) } else { (ob, oa) };
    (proto, a, b, id, oa, ob)
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/pcaps/tunnels")
}

const FIELDS: &[&str] = &[
    "frame.protocols",
    "ip.src",
    "ip.dst",
    "ipv6.src",
    "ipv6.dst",
    "ip.proto",
    "ipv6.nxt",
    "tcp.srcport",
    "tcp.dstport",
    "udp.srcport",
    "udp.dstport",
    "vxlan.vni",
    "geneve.vni",
    "gre.key",
];

/// tshark's inner conversations of a capture: packets per conversation.
fn tshark_inner(p: &Path) -> BTreeMap<Conv, u64> {
    let mut cmd = Command::new("tshark");
    cmd.args(["-n", "-r"]).arg(p);
    cmd.args(["-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,"]);
    for f in FIELDS {
        cmd.args(["-e", f]);
    }
    let out = run(&mut cmd);
    let mut convs = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let cols: Vec<Vec<&str>> = line
            .split('\t')
            .map(|c| c.split(',').filter(|s| !s.is_empty()).collect())
            .collect();
        let col = |name: &str| &cols[FIELDS.iter().position(|f| *f == name).unwrap()];
        let tokens: Vec<&str> = col("frame.protocols")[0].split(':').collect();
        // The n-th occurrence of `tok` before position `pos`.
        let occ = |pos: usize| tokens[..pos].iter().filter(|t| **t == tokens[pos]).count();
        let net: Vec<usize> = (0..tokens.len())
            .filter(|&i| tokens[i] == "ip" || tokens[i] == "ipv6")
            .collect();
        let [outer, inner, ..] = net[..] else {
            continue;
        };
        if tokens[outer..inner].iter().any(|t| t.starts_with("icmp")) {
            continue;
        }
        let addr = |pos: usize, which: &str| -> IpAddr {
            let f = format!("{}.{which}", tokens[pos]);
            col(&f)[occ(pos)].parse().unwrap()
        };
        let l4 = tokens.get(inner + 1).copied().unwrap_or("");
        let (proto, ports) = match l4 {
            "tcp" | "udp" => {
                let k = occ(inner + 1);
                let port = |f: &str| col(&format!("{l4}.{f}"))[k].parse::<u16>().unwrap();
                (
                    if l4 == "tcp" { 6 } else { 17 },
                    (port("srcport"), port("dstport")),
                )
            }
            "icmp" => (1, (0, 0)),
            "icmpv6" => (58, (0, 0)),
            _ => {
                let f = if tokens[inner] == "ip" {
                    "ip.proto"
                } else {
                    "ipv6.nxt"
                };
                (col(f)[occ(inner)].parse().unwrap(), (0, 0))
            }
        };
        let id = ["vxlan.vni", "geneve.vni", "gre.key"]
            .iter()
            .find_map(|f| col(f).first().map(|v| parse_num(v)))
            .unwrap_or(0);
        let c = conv(
            proto,
            (addr(inner, "src"), ports.0),
            (addr(inner, "dst"), ports.1),
            id,
            addr(outer, "src"),
            addr(outer, "dst"),
        );
        *convs.entry(c).or_insert(0) += 1;
    }
    convs
}

fn parse_num(v: &str) -> u32 {
    match v.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16).unwrap(),
        None => v.parse().unwrap(),
    }
}

/// SafeLink's view: (inner conversations with their packets, flow records with a tunnel,
/// tunnel types seen, the summary's `tunneled` and `tunnel_malformed` counters).
type Seen = (BTreeMap<Conv, u64>, usize, Vec<String>, u64, u64);

fn safelink_inner(p: &Path) -> Seen {
    // Timeouts longer than any capture: a conversation is one flow, as in tshark (gre.pcap
    // retries an unanswered DNS query after 5 s, which the 2 s embryonic timeout splits).
    let out = run(Command::new(BIN)
        .args(["analyze", "--flows", "--summary"])
        .args([
            "--idle-timeout",
            "100000000",
            "--active-timeout",
            "100000000",
        ])
        .args([
            "--closed-linger",
            "100000000",
            "--embryonic-timeout",
            "100000000",
        ])
        .arg(p));
    let mut convs = BTreeMap::new();
    let mut records = 0;
    let mut kinds = Vec::new();
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        if v["type"] != "flow" || v["tunnel"].is_null() {
            continue;
        }
        let t = &v["tunnel"];
        let ip = |x: &serde_json::Value| x.as_str().unwrap().parse::<IpAddr>().unwrap();
        let port = |x: &serde_json::Value| x.as_u64().unwrap() as u16;
        let c = conv(
            v["proto"].as_u64().unwrap() as u8,
            (ip(&v["src_ip"]), port(&v["src_port"])),
            (ip(&v["dst_ip"]), port(&v["dst_port"])),
            t["id"].as_u64().unwrap() as u32,
            ip(&t["outer_src"]),
            ip(&t["outer_dst"]),
        );
        let packets = v["fwd"]["packets"].as_u64().unwrap() + v["rev"]["packets"].as_u64().unwrap();
        *convs.entry(c).or_insert(0) += packets;
        records += 1;
        let kind = t["type"].as_str().unwrap().to_owned();
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    let summary: serde_json::Value = String::from_utf8_lossy(&out.stderr)
        .lines()
        .find(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .expect("summary");
    let counter = |n: &str| summary[n].as_u64().unwrap_or_else(|| panic!("{n}"));
    (
        convs,
        records,
        kinds,
        counter("tunneled"),
        counter("tunnel_malformed"),
    )
}

/// Each capture: its tunnel type(s), inner conversations and inner packets (as tshark counts
/// them; asserted equal to tshark's below, and written here so that a tshark that dissects
/// nothing cannot pass).
const CAPTURES: &[(&str, &[&str], usize, u64)] = &[
    ("ipip.pcap", &["ipip"], 1, 1),
    ("6in6.pcap", &["6in6"], 1, 1),
    ("6in4.pcap", &["6in4"], 1, 1),
    ("4in6.pcap", &["ipip"], 1, 1),
    ("4in6-beside-plain.pcap", &["ipip"], 1, 2),
    ("gre-vlan-syslog.pcap", &["gre"], 1, 3),
    ("gre.pcap", &["gre"], 6, 40),
    ("geneve.pcap", &["geneve"], 1, 8),
    ("vxlan-arp-icmp.pcap", &["vxlan"], 1, 8),
    ("vxlan-beside-plain.pcap", &["vxlan"], 1, 1),
    ("vxlan.pcap", &["vxlan"], 13, 100),
];

#[test]
fn inner_flows_and_packets_match_tshark_per_capture() {
    let mut failures = Vec::new();
    for (name, kinds, n_convs, n_packets) in CAPTURES {
        let p = dir().join(name);
        let want = tshark_inner(&p);
        let (got, records, got_kinds, tunneled, malformed) = safelink_inner(&p);
        let want_packets: u64 = want.values().sum();
        eprintln!(
            "{name}: tshark {} inner conversations / {want_packets} packets; SafeLink {} / {} ({tunneled} tunneled, {malformed} malformed)",
            want.len(),
            got.len(),
            got.values().sum::<u64>()
        );
        // One record per conversation: both directions in one flow, whichever way the outer
        // packets travel (vxlan.pcap is a traffic mirror: every packet goes one way outside).
        if got != want || records != want.len() {
            failures.push(format!(
                "{name}: SafeLink {records} records {got:?}\n  tshark {want:?}"
            ));
        }
        if (want.len(), want_packets) != (*n_convs, *n_packets) {
            failures.push(format!(
                "{name}: tshark found {} conversations / {want_packets} packets, expected {n_convs} / {n_packets}",
                want.len()
            ));
        }
        if tunneled != want_packets || malformed != 0 {
            failures.push(format!(
                "{name}: tunneled {tunneled} (want {want_packets}), tunnel_malformed {malformed}"
            ));
        }
        if got_kinds != kinds.iter().map(|k| k.to_string()).collect::<Vec<_>>() {
            failures.push(format!(
                "{name}: tunnel types {got_kinds:?}, want {kinds:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Flow records of one `analyze` run with extra arguments: (proto, dst_port, packets, tunnel
/// type or "") per flow, and the summary's `tunneled` counter.
fn flows(p: &Path, extra: &[&str]) -> (Vec<(u64, u64, u64, String)>, u64) {
    let out = run(Command::new(BIN)
        .args(["analyze", "--flows", "--summary"])
        .args(extra)
        .arg(p));
    let mut v = Vec::new();
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        let r: serde_json::Value = serde_json::from_str(l).unwrap();
        if r["type"] == "flow" {
            v.push((
                r["proto"].as_u64().unwrap(),
                r["dst_port"].as_u64().unwrap(),
                r["fwd"]["packets"].as_u64().unwrap() + r["rev"]["packets"].as_u64().unwrap(),
                r["tunnel"]["type"].as_str().unwrap_or("").to_owned(),
            ));
        }
    }
    v.sort();
    let summary: serde_json::Value = String::from_utf8_lossy(&out.stderr)
        .lines()
        .find(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .expect("summary");
    (v, summary["tunneled"].as_u64().unwrap())
}

#[test]
fn outer_flows_when_decoding_is_off_or_the_payload_is_not_ip() {
    let vxlan = dir().join("vxlan.pcap");
    // Default: 13 inner flows, no outer one.
    let (on, tunneled) = flows(&vxlan, &[]);
    assert_eq!((on.len(), tunneled), (13, 100));
    assert!(on.iter().all(|f| f.3 == "vxlan"), "{on:?}");
    // `[flows] tunnels = []`: the VXLAN datagrams are outer UDP flows to 4789, nothing else.
    let (off, tunneled) = flows(&vxlan, &["--set", "flows.tunnels=[]"]);
    assert_eq!(tunneled, 0);
    assert!(!off.is_empty());
    assert!(
        off.iter()
            .all(|f| (f.0, f.1, f.3.as_str()) == (17, 4789, "")),
        "{off:?}"
    );
    assert_eq!(off.iter().map(|f| f.2).sum::<u64>(), 100);
    // Another VXLAN port: 4789 is then plain UDP.
    let (moved, tunneled) = flows(&vxlan, &["--set", "flows.vxlan_port=8472"]);
    assert_eq!((moved, tunneled), (off.clone(), 0));
    // Only GRE decoded: VXLAN stays outer.
    let (gre_only, _) = flows(&vxlan, &["--set", "flows.tunnels=[\"gre\"]"]);
    assert_eq!(gre_only, off);
    // ARP inside VXLAN is not an IP flow: its two datagrams stay outer UDP flows, beside the
    // inner ICMP flow.
    let (mixed, tunneled) = flows(&dir().join("vxlan-arp-icmp.pcap"), &[]);
    assert_eq!(tunneled, 8);
    assert_eq!(
        mixed,
        vec![
            (1, 0, 8, "vxlan".to_owned()),
            (17, 4789, 1, String::new()),
            (17, 4789, 1, String::new()),
        ]
    );
    // The same ICMP addresses plain and inside IPv4-in-IPv6 are two flows.
    let (both, _) = flows(&dir().join("4in6-beside-plain.pcap"), &[]);
    assert_eq!(
        both,
        vec![(1, 0, 2, String::new()), (1, 0, 2, "ipip".to_owned())]
    );
}

/// The frames of a capture (pcap).
fn frames(p: &Path) -> Vec<(Vec<u8>, u32)> {
    let mut r = pcap_file::pcap::PcapReader::new(std::fs::File::open(p).unwrap()).unwrap();
    let mut v = Vec::new();
    while let Some(pkt) = r.next_packet() {
        let pkt = pkt.unwrap();
        v.push((pkt.data.to_vec(), pkt.orig_len));
    }
    v
}

/// (flow key → packets, tunneled, tunnel_malformed) of the userspace flow table.
fn table_view(fs: &[(Vec<u8>, u32)], cfg: TunnelConfig) -> (BTreeMap<FlowKey, u64>, u64, u64) {
    let mut t = FlowTable::with_tunnels(cfg);
    for (i, (data, wire)) in fs.iter().enumerate() {
        let frame = CapturedFrame {
            data,
            wire_len: *wire as usize,
        };
        t.observe(frame, 1_000_000 * (i as u64 + 1));
    }
    let flows = t
        .iter()
        .map(|(k, s)| (*k, s.ab.packets + s.ba.packets))
        .collect();
    (
        flows,
        t.counters.get(Counter::Tunneled),
        t.counters.get(Counter::TunnelMalformed),
    )
}

/// The same through the real XDP program (`BPF_PROG_TEST_RUN`), loaded with `cfg`.
fn xdp_view(fs: &[(Vec<u8>, u32)], cfg: TunnelConfig) -> (BTreeMap<FlowKey, u64>, u64, u64) {
    let mut ebpf = loader::load_with(loader::XDP_OBJECT, None, &cfg).expect("load XDP object");
    let mut out = vec![0u8; 16 * 1024];
    for (data, _) in fs {
        let prog = loader::program(&mut ebpf).unwrap();
        let r = prog
            .test_run(TestRunOptions {
                data_in: Some(data),
                data_out: Some(&mut out),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(r.return_value, 2, "XDP_PASS");
    }
    let mut maps = SensorMaps::from_ebpf(&mut ebpf).unwrap();
    let c = maps.counters().unwrap();
    let flows = maps
        .flows()
        .unwrap()
        .into_iter()
        .map(|(k, s)| (k, s.ab.packets + s.ba.packets))
        .collect();
    (
        flows,
        c.get(Counter::Tunneled),
        c.get(Counter::TunnelMalformed),
    )
}

#[test]
fn xdp_program_opens_the_same_tunnels_as_replay() {
    if !support::kernel_test_can_run("tunnels/xdp", &[]) {
        return;
    }
    let mut tunneled_total = 0;
    for (name, _, _, packets) in CAPTURES {
        let fs = frames(&dir().join(name));
        let kernel = xdp_view(&fs, TunnelConfig::DEFAULT);
        let user = table_view(&fs, TunnelConfig::DEFAULT);
        assert_eq!(kernel, user, "{name}: XDP and replay differ");
        assert_eq!((kernel.1, kernel.2), (*packets, 0), "{name}: counters");
        assert!(
            kernel.0.keys().any(|k| k.tunnel_kind != TUNNEL_NONE),
            "{name}: no tunnelled flow in the kernel map"
        );
        tunneled_total += kernel.1;
    }
    assert_eq!(tunneled_total, 166);

    // Loaded with decoding off, the program sees only outer flows (the loader's global).
    let fs = frames(&dir().join("vxlan.pcap"));
    let off = xdp_view(&fs, TunnelConfig::OFF);
    assert_eq!(off, table_view(&fs, TunnelConfig::OFF));
    assert_eq!((off.1, off.2), (0, 0));
    assert!(
        off.0
            .keys()
            .all(|k| k.tunnel_kind == TUNNEL_NONE && k.port_b == 4789)
    );

    // A VXLAN header without its I flag is no VXLAN header: ordinary UDP on port 4789, the
    // plain flow, counted as neither tunnelled nor malformed.
    let (first, wire) = fs[0].clone();
    let vxlan_at = 14 + usize::from(first[14] & 0x0f) * 4 + 8;
    assert_eq!(first[vxlan_at], 0x08, "VXLAN flags of the first frame");
    let mut plain = first.clone();
    plain[vxlan_at] = 0;
    let one = [(plain, wire)];
    let kernel = xdp_view(&one, TunnelConfig::DEFAULT);
    assert_eq!(kernel, table_view(&one, TunnelConfig::DEFAULT));
    assert_eq!((kernel.1, kernel.2), (0, 0));
    let keys: Vec<_> = kernel.0.keys().collect();
    assert_eq!(keys.len(), 1);
    assert_eq!(
        (keys[0].proto, keys[0].port_b, keys[0].tunnel_kind),
        (17, 4789, TUNNEL_NONE)
    );
    // A credible VXLAN header whose inner IPv4 header claims more than the datagram holds:
    // counted as malformed, and the outer datagram is still a flow.
    let mut bad = first;
    let inner_ip = vxlan_at + 8 + 14;
    assert_eq!(bad[inner_ip] >> 4, 4, "inner IPv4 of the first frame");
    bad[inner_ip + 2..inner_ip + 4].copy_from_slice(&1400u16.to_be_bytes());
    let one = [(bad, wire)];
    let kernel = xdp_view(&one, TunnelConfig::DEFAULT);
    assert_eq!(kernel, table_view(&one, TunnelConfig::DEFAULT));
    assert_eq!((kernel.1, kernel.2), (0, 1));
    let keys: Vec<_> = kernel.0.keys().collect();
    assert_eq!(keys.len(), 1);
    assert_eq!(
        (keys[0].proto, keys[0].port_b, keys[0].tunnel_kind),
        (17, 4789, TUNNEL_NONE)
    );
}

/// `inner` (an Ethernet frame) in VXLAN `vni` from tunnel endpoint `from` to `to`.
fn in_vxlan(vni: u32, from: [u8; 4], to: [u8; 4], inner: &[u8]) -> Vec<u8> {
    let b = vni.to_be_bytes();
    let mut payload = vec![0x08, 0, 0, 0, b[1], b[2], b[3], 0];
    payload.extend_from_slice(inner);
    let mut v = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 0x10], [2, 0, 0, 0, 0, 0x20])
        .ipv4(from, to, 64)
        .udp(49152 + (vni as u16), 4789)
        .write(&mut v, &payload)
        .unwrap();
    v
}

#[test]
fn a_scan_inside_vxlan_is_alerted_with_the_inner_endpoints_and_the_tunnel() {
    const VTEP_SCANNER: [u8; 4] = [198, 51, 100, 2];
    const VTEP_VICTIM: [u8; 4] = [198, 51, 100, 1];
    let mut frames = Vec::new();
    // Tenant 42: 192.0.2.2 SYN-scans ports 1..=30 of 192.0.2.1; every port is closed (RST).
    for port in 1..=30u16 {
        let syn = support::tcp4((support::IP_B, 40000 + port), (support::IP_A, port), "S", 0);
        let rst = support::tcp4(
            (support::IP_A, port),
            (support::IP_B, 40000 + port),
            "RA",
            0,
        );
        frames.push(in_vxlan(42, VTEP_SCANNER, VTEP_VICTIM, &syn));
        frames.push(in_vxlan(42, VTEP_VICTIM, VTEP_SCANNER, &rst));
    }
    // Tenant 43 uses the same inner addresses for one ordinary exchange: not merged into the
    // scan's flows.
    let (c, s) = ((support::IP_B, 50000), (support::IP_A, 443));
    frames.push(in_vxlan(
        43,
        VTEP_SCANNER,
        VTEP_VICTIM,
        &support::tcp4(c, s, "S", 0),
    ));
    frames.push(in_vxlan(
        43,
        VTEP_VICTIM,
        VTEP_SCANNER,
        &support::tcp4(s, c, "SA", 0),
    ));
    frames.push(in_vxlan(
        43,
        VTEP_SCANNER,
        VTEP_VICTIM,
        &support::tcp4(c, s, "A", 0),
    ));
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("vxlan-scan.pcap");
    support::write_pcap(&pcap, &frames, 1_700_000_000);

    let out = run(Command::new(BIN).args(["analyze", "--flows"]).arg(&pcap));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let flows: Vec<_> = lines.iter().filter(|v| v["type"] == "flow").collect();
    assert_eq!(
        flows.len(),
        31,
        "30 probes of tenant 42 and one flow of tenant 43"
    );
    let t43: Vec<_> = flows.iter().filter(|f| f["tunnel"]["id"] == 43).collect();
    assert_eq!(t43.len(), 1);
    assert_eq!(
        t43[0]["fwd"]["packets"].as_u64().unwrap() + t43[0]["rev"]["packets"].as_u64().unwrap(),
        3
    );

    let out = run(Command::new(BIN).arg("analyze").arg(&pcap));
    let alerts: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let scans: Vec<_> = alerts.iter().filter(|v| v["kind"] == "port_scan").collect();
    assert_eq!(scans.len(), 1, "{alerts:#?}");
    let a = scans[0];
    assert_eq!(
        (a["src_ip"].as_str(), a["dest_ip"].as_str()),
        (Some("192.0.2.2"), Some("192.0.2.1"))
    );
    assert_eq!(
        a["tunnel"],
        serde_json::json!({
            "type": "vxlan",
            "id": 42,
            "outer_src": "198.51.100.2",
            "outer_dst": "198.51.100.1"
        })
    );
}
