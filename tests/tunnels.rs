//! Tunnelled captures (tests/pcaps/tunnels, public suricata-verify captures: see SOURCE.md
//! there): `safelink analyze` reports every inner flow with its own 5-tuple, its packet count
//! and its tunnel (`tunnel: {type, id, outer_src, outer_dst}`), exactly as tshark dissects the
//! inner layer, an independent implementation. tshark's fields are read per frame: the inner
//! IP header is the second IP/IPv6 layer when no ICMP layer comes between the two (an ICMP
//! error quotes a header, it does not tunnel one); its conversation is keyed like SafeLink's
//! (inner endpoints and protocol, tunnel id and outer endpoints), so the same addresses inside
//! and outside a tunnel, or in two tunnels, are two conversations on both sides.
//!
//! Each tunnel's outer flow is a record of its own, whose packets and bytes per direction equal
//! tshark's, and which no detector counts.
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
    Counter, FlowKey, OuterStats, TUNNEL_NONE, TunnelKey,
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
    "frame.len",
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

/// One direction of a tunnel: (tunnel id, outer source, outer destination).
type OuterDir = (u32, IpAddr, IpAddr);

/// tshark's inner conversations of a capture: packets per conversation.
fn tshark_inner(p: &Path) -> BTreeMap<Conv, u64> {
    tshark_frames(p).0
}

/// tshark's view of a capture's decapsulated frames: packets per inner conversation, and
/// (packets, bytes) per direction of each tunnel (the frames with an IP packet inside).
#[allow(clippy::type_complexity)]
fn tshark_frames(p: &Path) -> (BTreeMap<Conv, u64>, BTreeMap<OuterDir, (u64, u64)>) {
    let mut cmd = Command::new("tshark");
    cmd.args(["-n", "-r"]).arg(p);
    cmd.args(["-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,"]);
    for f in FIELDS {
        cmd.args(["-e", f]);
    }
    let out = run(&mut cmd);
    let mut convs = BTreeMap::new();
    let mut outer = BTreeMap::new();
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
        let [outer_at, inner, ..] = net[..] else {
            continue;
        };
        if tokens[outer_at..inner]
            .iter()
            .any(|t| t.starts_with("icmp"))
        {
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
            addr(outer_at, "src"),
            addr(outer_at, "dst"),
        );
        *convs.entry(c).or_insert(0) += 1;
        let len: u64 = col("frame.len")[0].parse().unwrap();
        let o = outer
            .entry((id, addr(outer_at, "src"), addr(outer_at, "dst")))
            .or_insert((0, 0));
        o.0 += 1;
        o.1 += len;
    }
    (convs, outer)
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

/// `analyze --flows --summary` of a capture with timeouts longer than any capture: a
/// conversation is one flow, as in tshark (gre.pcap retries an unanswered DNS query after
/// 5 s, which the 2 s embryonic timeout splits).
fn analyze_whole(p: &Path) -> std::process::Output {
    run(Command::new(BIN)
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
        .arg(p))
}

fn safelink_inner(p: &Path) -> Seen {
    let out = analyze_whole(p);
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

/// SafeLink's outer flows of a capture: (packets, bytes) per direction of each tunnel, the
/// tunnel types, the records' `inner_flows` summed, and the number of records.
type OuterSeen = (BTreeMap<OuterDir, (u64, u64)>, Vec<String>, u64, usize);

fn safelink_outer(out: &std::process::Output) -> OuterSeen {
    let mut dirs = BTreeMap::new();
    let (mut kinds, mut inner_flows, mut records) = (Vec::new(), 0, 0);
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        if v["type"] != "outer_flow" {
            continue;
        }
        records += 1;
        let t = &v["tunnel"];
        let ip = |x: &serde_json::Value| x.as_str().unwrap().parse::<IpAddr>().unwrap();
        let (id, src, dst) = (
            t["id"].as_u64().unwrap() as u32,
            ip(&t["outer_src"]),
            ip(&t["outer_dst"]),
        );
        for (d, key) in [("fwd", (id, src, dst)), ("rev", (id, dst, src))] {
            let n = |f: &str| v[d][f].as_u64().unwrap();
            if n("packets") > 0 {
                let e = dirs.entry(key).or_insert((0, 0));
                e.0 += n("packets");
                e.1 += n("bytes");
            }
        }
        inner_flows += v["inner_flows"].as_u64().unwrap();
        let kind = t["type"].as_str().unwrap().to_owned();
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    (dirs, kinds, inner_flows, records)
}

/// The outer flow of each tunnel is a record of its own: per tunnel direction (VNI or key,
/// outer source, outer destination) its packets and bytes equal tshark's count and byte sum
/// of the frames with an IP packet inside (ARP inside VXLAN stays a plain outer UDP flow, on
/// both sides); one record per tunnel, of the capture's tunnel type; the packets add up to
/// the `tunneled` counter, and `inner_flows` to the inner flow records.
#[test]
fn outer_flows_match_tshark_per_capture() {
    let mut failures = Vec::new();
    for (name, kinds, _, n_packets) in CAPTURES {
        let p = dir().join(name);
        let (_, want) = tshark_frames(&p);
        let out = analyze_whole(&p);
        let (got, got_kinds, inner_flows, records) = safelink_outer(&out);
        let inner_records = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["type"] == "flow" && !v["tunnel"].is_null())
            .count() as u64;
        let tunnels: std::collections::BTreeSet<_> = want
            .keys()
            .map(|&(id, s, d)| (id, s.min(d), s.max(d)))
            .collect();
        let packets: u64 = got.values().map(|v| v.0).sum();
        eprintln!(
            "{name}: tshark {} tunnel(s), {} directions, {} packets / {} bytes; SafeLink {records} outer records {got:?}, {inner_flows} inner flows",
            tunnels.len(),
            want.len(),
            want.values().map(|v| v.0).sum::<u64>(),
            want.values().map(|v| v.1).sum::<u64>(),
        );
        if got != want || records != tunnels.len() {
            failures.push(format!(
                "{name}: SafeLink {records} outer records {got:?}\n  tshark {} tunnels {want:?}",
                tunnels.len()
            ));
        }
        if packets != *n_packets {
            failures.push(format!(
                "{name}: outer packets {packets}, tunneled {n_packets}"
            ));
        }
        if inner_flows != inner_records {
            failures.push(format!(
                "{name}: inner_flows {inner_flows}, inner flow records {inner_records}"
            ));
        }
        if got_kinds != kinds.iter().map(|k| k.to_string()).collect::<Vec<_>>() {
            failures.push(format!(
                "{name}: outer tunnel types {got_kinds:?}, want {kinds:?}"
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
    // Default: 13 inner flows, no outer UDP flow (the tunnel's outer packets are its
    // `outer_flow` record, not a flow record).
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

/// Outer flows by tunnel: (packets a→b, bytes a→b, packets b→a, bytes b→a, inner flows,
/// first packet from a).
type Outer = BTreeMap<TunnelKey, (u64, u64, u64, u64, u64, u8)>;

/// (flow key → packets, tunneled, tunnel_malformed, outer flows) of a flow table or map.
type View = (BTreeMap<FlowKey, u64>, u64, u64, Outer);

fn outer_view<'a>(it: impl Iterator<Item = (&'a TunnelKey, &'a OuterStats)>) -> Outer {
    it.map(|(k, s)| {
        (
            *k,
            (
                s.ab_packets,
                s.ab_bytes,
                s.ba_packets,
                s.ba_bytes,
                s.inner_flows,
                s.first_from_a,
            ),
        )
    })
    .collect()
}

/// The [`View`] of the userspace flow table.
fn table_view(fs: &[(Vec<u8>, u32)], cfg: TunnelConfig) -> View {
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
        outer_view(t.outer_iter()),
    )
}

/// The same through the real XDP program (`BPF_PROG_TEST_RUN`), loaded with `cfg`.
fn xdp_view(fs: &[(Vec<u8>, u32)], cfg: TunnelConfig) -> View {
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
    let outer = maps.outer_flows().unwrap();
    (
        flows,
        c.get(Counter::Tunneled),
        c.get(Counter::TunnelMalformed),
        outer_view(outer.iter().map(|(k, s)| (k, s))),
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
            kernel.0.keys().any(|k| k.tunnel.kind != TUNNEL_NONE),
            "{name}: no tunnelled flow in the kernel map"
        );
        // Every tunnelled packet is in exactly one outer flow of the kernel's `OUTER_FLOWS`.
        let outer_packets: u64 = kernel.3.values().map(|o| o.0 + o.2).sum();
        assert_eq!(outer_packets, *packets, "{name}: outer flow packets");
        tunneled_total += kernel.1;
    }
    assert_eq!(tunneled_total, 166);

    // Loaded with decoding off, the program sees only outer flows (the loader's global).
    let fs = frames(&dir().join("vxlan.pcap"));
    let off = xdp_view(&fs, TunnelConfig::OFF);
    assert_eq!(off, table_view(&fs, TunnelConfig::OFF));
    assert_eq!((off.1, off.2, off.3.len()), (0, 0, 0));
    assert!(
        off.0
            .keys()
            .all(|k| k.tunnel.kind == TUNNEL_NONE && k.port_b == 4789)
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
    assert_eq!((kernel.1, kernel.2, kernel.3.len()), (0, 0, 0));
    let keys: Vec<_> = kernel.0.keys().collect();
    assert_eq!(keys.len(), 1);
    assert_eq!(
        (keys[0].proto, keys[0].port_b, keys[0].tunnel.kind),
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
    assert_eq!((kernel.1, kernel.2, kernel.3.len()), (0, 1, 0));
    let keys: Vec<_> = kernel.0.keys().collect();
    assert_eq!(keys.len(), 1);
    assert_eq!(
        (keys[0].proto, keys[0].port_b, keys[0].tunnel.kind),
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

/// Alerts of `analyze` (JSON lines) with extra arguments: (kind, src, dest, count) each.
fn alerts(p: &Path, extra: &[&str]) -> Vec<(String, String, String, u64)> {
    let out = run(Command::new(BIN)
        .args(["analyze", "--format", "json"])
        .args(extra)
        .arg(p));
    let mut v: Vec<_> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|a| {
            let s = |f: &str| a[f].as_str().unwrap_or("").to_owned();
            (
                s("kind"),
                s("src_ip"),
                s("dest_ip"),
                a["count"].as_u64().unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Frames `step_us` apart (support::write_pcap spaces them by 1 ms).
fn write_pcap_us(path: &Path, frames: &[Vec<u8>], step_us: u64) {
    use pcap_file::pcap::{PcapPacket, PcapWriter};
    let mut w = PcapWriter::new(std::fs::File::create(path).unwrap()).unwrap();
    for (i, f) in frames.iter().enumerate() {
        let ts = std::time::Duration::from_secs(1_700_000_000)
            + std::time::Duration::from_micros(i as u64 * step_us);
        w.write_packet(&PcapPacket::new(ts, f.len() as u32, f))
            .unwrap();
    }
}

/// The outer flow is no detector input, so nothing is counted twice. Inside VXLAN 42 between
/// two nodes: a benign bulk TCP transfer (12 000 segments at some 3 200/s one way, an ACK per
/// four) and a SYN scan of 30 closed ports. Seen as outer UDP flows (decoding off), the
/// transfer's datagrams from one node to the other are a one-way flow heavy enough for
/// `udp_flood` against the node. Decapsulated, the alerts are exactly those of the same inner
/// frames captured plain (the scan, nothing between the nodes), while the one outer-flow
/// record holds every frame.
#[test]
fn outer_flows_are_not_detector_input() {
    const NODE_A: [u8; 4] = [198, 51, 100, 1];
    const NODE_B: [u8; 4] = [198, 51, 100, 2];
    let (client, server) = ((support::IP_B, 50000), (support::IP_A, 443));
    let mut inner = vec![
        support::tcp4(client, server, "S", 0),
        support::tcp4(server, client, "SA", 0),
        support::tcp4(client, server, "A", 0),
    ];
    for i in 0..12_000 {
        inner.push(support::tcp4(client, server, "A", 100));
        if i % 4 == 3 {
            inner.push(support::tcp4(server, client, "A", 0));
        }
    }
    for port in 1..=30u16 {
        let probe = (support::IP_B, 40000 + port);
        inner.push(support::tcp4(probe, (support::IP_A, port), "S", 0));
        inner.push(support::tcp4((support::IP_A, port), probe, "RA", 0));
    }
    // The inner frame's sender (byte 26.., the IPv4 source) picks the outer direction.
    let tunnelled: Vec<Vec<u8>> = inner
        .iter()
        .map(|f| {
            if f[26..30] == support::IP_B {
                in_vxlan(42, NODE_B, NODE_A, f)
            } else {
                in_vxlan(42, NODE_A, NODE_B, f)
            }
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let (plain, vxlan) = (dir.path().join("plain.pcap"), dir.path().join("vxlan.pcap"));
    write_pcap_us(&plain, &inner, 250);
    write_pcap_us(&vxlan, &tunnelled, 250);

    let nodes = ["198.51.100.1", "198.51.100.2"];
    let names_a_node = |a: &(String, String, String, u64)| {
        nodes.contains(&a.1.as_str()) || nodes.contains(&a.2.as_str())
    };
    // Decoding off: the outer datagrams are flows, and the transfer's are a UDP flood.
    let off = alerts(&vxlan, &["--set", "flows.tunnels=[]"]);
    eprintln!("decoding off: {off:?}");
    assert!(
        off.iter()
            .any(|a| (a.0.as_str(), a.2.as_str()) == ("udp_flood", "198.51.100.1")),
        "outer datagrams as flows: no udp_flood against the node: {off:?}"
    );
    // Decoding on: the plain capture's alerts, none between the nodes.
    let want = alerts(&plain, &[]);
    let got = alerts(&vxlan, &[]);
    eprintln!("plain: {want:?}\nvxlan: {got:?}");
    assert!(
        want.iter().any(|a| a.0 == "port_scan"),
        "the scan is alerted: {want:?}"
    );
    assert_eq!(
        got, want,
        "alerts inside VXLAN differ from the plain capture's"
    );
    assert!(!got.iter().any(names_a_node), "{got:?}");
    // ...and the outer flow holds every frame, one way and the other.
    let (outer, kinds, inner_flows, records) = safelink_outer(&analyze_whole(&vxlan));
    let from_b = inner.iter().filter(|f| f[26..30] == support::IP_B).count() as u64;
    let from_a = inner.len() as u64 - from_b;
    assert_eq!((records, kinds), (1, vec!["vxlan".to_owned()]));
    let packets: BTreeMap<_, _> = outer.iter().map(|(k, v)| (*k, v.0)).collect();
    let ip = |a: [u8; 4]| IpAddr::from(a);
    assert_eq!(
        packets,
        BTreeMap::from([
            ((42, ip(NODE_A), ip(NODE_B)), from_a),
            ((42, ip(NODE_B), ip(NODE_A)), from_b),
        ])
    );
    // The transfer and the 30 probes.
    assert_eq!(inner_flows, 31);
}
