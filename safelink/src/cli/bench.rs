//! Hidden `safelink bench xdp`: runs the XDP program over crafted frames with
//! `BPF_PROG_TEST_RUN` and prints kernel ns/packet per scenario, beside the toolchain probe's
//! counter program measured in the same run (the ratio is the figure that survives a busy
//! machine). Hidden `safelink bench keys`: the rule engine's cost per new source key while its
//! tables fill and once they are full (every new key then forgets the least recently updated
//! one). Hidden `safelink bench fleet`: simulated sensors against a NATS server
//! ([`safelink::fleet::bench`]).
//!
//! Scenarios (`scenario,repeat,kernel_ns_per_packet`, the median of `--rounds` interleaved
//! runs):
//! - `counter_probe`: the probe's counter program (`safelink-ebpf/src/bench.rs`);
//! - `established_tcp_flow`: an ACK of a flow that completed its handshake (in `FLOWS`);
//! - `established_vxlan_flow`: the same ACK inside VXLAN (VNI 42), of the same flow's
//!   tunnelled twin (its own handshake done, in `FLOWS`): the cost of opening the tunnel;
//! - `one_way_flow`: a packet of a flow only ever seen one way (stays in `EMBRYOS`);
//! - `new_flow_syn`: a SYN from a source never seen before, every packet (a random-source
//!   flood: `EMBRYOS` full and evicting after its first 65 536 flows), each with its
//!   flow-start event reserved, written and read back from the ring buffer;
//! - `arp`: ARP requests as a flood sends them (past the per-CPU event budget: counted);
//! - `malformed`: an IPv4 header with IHL 3.
use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context as _, ensure};
use aya::{
    Ebpf, EbpfLoader,
    maps::RingBuf,
    programs::{TestRun as _, TestRunOptions, Xdp},
};
use clap::{Args, ValueEnum};
use safelink::capture::{loader, maps::SensorMaps};
use safelink_common::{Counter, MAP_EVENTS, parse::ETH_HLEN};

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[arg(value_enum)]
    what: What,
    /// Repetitions per scenario (split over the rounds).
    #[arg(long, default_value_t = 1_000_000)]
    repeat: u32,
    /// Interleaved rounds per scenario; the median round is reported.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Load `safelink` and `safelink-bench` from this directory instead of the embedded objects
    /// (to compare builds of the eBPF crate in one run).
    #[arg(long, hide = true)]
    object: Option<PathBuf>,
    /// `fleet`: the NATS server (a fresh one).
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    url: String,
    /// `fleet`: simulated sensors.
    #[arg(long, default_value_t = 50)]
    sensors: usize,
    /// `fleet`: seconds of publishing.
    #[arg(long, default_value_t = 6.0)]
    secs: f64,
    /// `fleet`: samples per second per sensor.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum What {
    Xdp,
    Keys,
    Fleet,
}

/// `bench keys`: failed SYN probes from spoofed sources, 5 per source (every source-keyed
/// table gets a suspicious key), `max_keys` sources while the tables fill, then three times as
/// many with every table full. Prints ns per new key for both phases.
fn keys() -> anyhow::Result<ExitCode> {
    use safelink::{
        detect::dfa::{DfaConfig, Engine},
        expiry::EndReason,
        record::{FlowRecord, Record},
    };
    use safelink_common::{FAMILY_IPV4, FlowKey, FlowStats, IPPROTO_TCP};
    let cfg = DfaConfig::default();
    let max = cfg.max_keys as u32;
    let mut e = Engine::new(cfg)?;
    let base_ns = 1_700_000_000_000_000_000u64;
    let mut t = base_ns;
    let mut probe = |e: &mut Engine, src: u32, port: u16| {
        t += 1_000;
        let mut k = FlowKey {
            proto: IPPROTO_TCP,
            family: FAMILY_IPV4,
            port_a: 40_000,
            port_b: port,
            ..FlowKey::default()
        };
        k.addr_a[..4].copy_from_slice(&(0x0a00_0000 | src).to_be_bytes());
        k.addr_b[..4].copy_from_slice(&[192, 0, 2, 1]);
        let mut s = FlowStats {
            first_ns: t,
            last_ns: t,
            initiator_is_a: 1,
            ..FlowStats::default()
        };
        s.ab.packets = 1;
        s.ab.bytes = 60;
        s.ab.flags.syn = 1;
        s.ab.first_ns = t;
        s.ab.last_ns = t;
        e.observe(&Record::Flow(FlowRecord::new(
            &k,
            &s,
            0,
            EndReason::Unanswered,
        )));
    };
    let mut phase = |e: &mut Engine, from: u32, to: u32| {
        let t0 = std::time::Instant::now();
        for src in from..to {
            for port in 1..=5 {
                probe(e, src, port);
            }
        }
        t0.elapsed().as_nanos() as f64 / f64::from(to - from)
    };
    let filling = phase(&mut e, 0, max);
    let evicted_before = e.stats().evicted_keys;
    let full = phase(&mut e, max, 4 * max);
    anyhow::ensure!(
        e.stats().evicted_keys > evicted_before,
        "the tables never filled: the full phase measured nothing"
    );
    println!("phase,keys,ns_per_key");
    println!("filling,{max},{filling:.0}");
    println!("full,{},{full:.0}", 3 * max);
    Ok(ExitCode::SUCCESS)
}

/// Ethernet + IPv4 + TCP with the given flags, 60 bytes.
pub fn tcp_frame(flags: u8, sport: u16) -> Vec<u8> {
    let mut p = Vec::with_capacity(60);
    p.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00]);
    p.extend_from_slice(&[
        0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 192, 0, 2, 2, 192, 0, 2, 1,
    ]);
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&80u16.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    p.resize(60, 0);
    p
}

fn arp_frame() -> Vec<u8> {
    let mut p = vec![0xff; 6];
    p.extend_from_slice(&[0x02, 0, 0, 0, 0, 2, 0x08, 0x06]);
    p.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1, 0x02, 0, 0, 0, 0, 2, 192, 0, 2, 2]);
    p.extend_from_slice(&[0, 0, 0, 0, 0, 0, 192, 0, 2, 1]);
    p.resize(60, 0);
    p
}

/// [`tcp_frame`] travelling the other way (192.0.2.1:80 -> 192.0.2.2:`dport`).
fn tcp_reply(flags: u8, dport: u16) -> Vec<u8> {
    let mut p = tcp_frame(flags, dport);
    p[26..30].copy_from_slice(&[192, 0, 2, 1]);
    p[30..34].copy_from_slice(&[192, 0, 2, 2]);
    p[34..36].copy_from_slice(&80u16.to_be_bytes());
    p[36..38].copy_from_slice(&dport.to_be_bytes());
    p
}

/// New-flow frames per test run: their flow-start events (144 bytes each in the ring, with
/// the tunnel identity in the key) must fit the 1 MiB ring buffer, which is read empty after
/// every run.
const NEW_FLOW_CHUNK: u32 = 4096;

/// `inner` (an Ethernet frame) in VXLAN (VNI 42, UDP 4789) between tunnel endpoints
/// 198.51.100.2 and 198.51.100.1 (swapped for a `reply`).
fn in_vxlan(inner: &[u8], reply: bool) -> Vec<u8> {
    let (a, b) = ([198, 51, 100, 2], [198, 51, 100, 1]);
    let (src, dst) = if reply { (b, a) } else { (a, b) };
    let total = (20 + 8 + 8 + inner.len()) as u16;
    let mut p = Vec::with_capacity(14 + total as usize);
    p.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x11, 0x02, 0, 0, 0, 0, 0x22, 0x08, 0x00]);
    p.extend_from_slice(&[0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0]);
    p[16..18].copy_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(&49152u16.to_be_bytes());
    p.extend_from_slice(&4789u16.to_be_bytes());
    p.extend_from_slice(&(total - 20).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x08, 0, 0, 0, 0, 0, 42, 0]);
    p.extend_from_slice(inner);
    p
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Prog {
    Sensor,
    Counter,
    NewFlows,
}

struct Scenario {
    name: &'static str,
    prog: Prog,
    frame: Vec<u8>,
    /// ns per packet of each round.
    rounds: Vec<f64>,
}

fn xdp_prog<'a>(ebpf: &'a Ebpf, name: &str) -> anyhow::Result<&'a Xdp> {
    Ok(ebpf
        .program(name)
        .with_context(|| format!("program {name} missing"))?
        .try_into()?)
}

/// One test run of `repeat` repeats: kernel ns per packet.
fn test_run(prog: &Xdp, frame: &[u8], repeat: u32) -> anyhow::Result<f64> {
    let mut out = vec![0u8; 256];
    let res = prog.test_run(TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        repeat,
        ..Default::default()
    })?;
    ensure!(
        res.return_value == 2,
        "expected XDP_PASS, got {}",
        res.return_value
    );
    // The kernel reports the mean over the repeats.
    Ok(res.duration.as_nanos() as f64)
}

fn drain(ring: &mut RingBuf<aya::maps::MapData>) -> u64 {
    let mut n = 0;
    while ring.next().is_some() {
        n += 1;
    }
    n
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The sensor object and the benchmark object: embedded, or from `--object DIR`.
fn objects(dir: Option<&PathBuf>) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    Ok(match dir {
        None => (loader::XDP_OBJECT.to_vec(), loader::BENCH_OBJECT.to_vec()),
        Some(d) => (
            std::fs::read(d.join("safelink")).context("reading safelink")?,
            std::fs::read(d.join("safelink-bench")).context("reading safelink-bench")?,
        ),
    })
}

fn xdp(a: &BenchArgs) -> anyhow::Result<ExitCode> {
    ensure!(
        a.rounds >= 1 && a.repeat >= a.rounds,
        "need repeat >= rounds >= 1"
    );
    let (sensor_obj, bench_obj) = objects(a.object.as_ref())?;
    let mut sensor = loader::load_object(&sensor_obj, None)?;
    let mut bench = EbpfLoader::new()
        .load(&bench_obj)
        .context("loading the benchmark object")?;
    for name in ["counter", "new_flows"] {
        let p: &mut Xdp = bench
            .program_mut(name)
            .with_context(|| format!("program {name} missing"))?
            .try_into()?;
        p.load()?;
    }
    let sensor_maps = SensorMaps::from_ebpf(&mut sensor)?;
    let bench_maps = SensorMaps::from_ebpf(&mut bench)?;
    let take_ring = |e: &mut Ebpf| -> anyhow::Result<RingBuf<aya::maps::MapData>> {
        Ok(RingBuf::try_from(
            e.take_map(MAP_EVENTS).context("map EVENTS missing")?,
        )?)
    };
    let mut sensor_ring = take_ring(&mut sensor)?;
    let mut bench_ring = take_ring(&mut bench)?;
    let prog = loader::program(&mut sensor)?;
    let prog: &Xdp = prog;

    // The established flow: 192.0.2.2:40000 <-> 192.0.2.1:80 completes its handshake first.
    for f in [
        tcp_frame(0x02, 40000),
        tcp_reply(0x12, 40000),
        tcp_frame(0x10, 40000),
    ] {
        test_run(prog, &f, 1)?;
    }
    // The same flow inside VXLAN: a flow of its own (the tunnel is in its key).
    for (f, reply) in [
        (tcp_frame(0x02, 40000), false),
        (tcp_reply(0x12, 40000), true),
        (tcp_frame(0x10, 40000), false),
    ] {
        test_run(prog, &in_vxlan(&f, reply), 1)?;
    }
    let c = sensor_maps.counters()?;
    ensure!(
        c.get(Counter::FlowsPromoted) == 2 && c.get(Counter::Tunneled) == 3,
        "the handshakes (plain and in VXLAN) did not move both flows to FLOWS"
    );
    let mut malformed = tcp_frame(0x10, 1000);
    malformed[ETH_HLEN] = 0x43; // IHL 3: bad
    let mut scenarios = [
        ("counter_probe", Prog::Counter, tcp_frame(0x10, 40000)),
        ("established_tcp_flow", Prog::Sensor, tcp_frame(0x10, 40000)),
        (
            "established_vxlan_flow",
            Prog::Sensor,
            in_vxlan(&tcp_frame(0x10, 40000), false),
        ),
        ("one_way_flow", Prog::Sensor, tcp_frame(0x10, 40001)),
        ("new_flow_syn", Prog::NewFlows, tcp_frame(0x02, 1024)),
        ("arp", Prog::Sensor, arp_frame()),
        ("malformed", Prog::Sensor, malformed),
    ]
    .map(|(name, prog, frame)| Scenario {
        name,
        prog,
        frame,
        rounds: Vec::new(),
    });
    let counter = xdp_prog(&bench, "counter")?;
    let new_flows = xdp_prog(&bench, "new_flows")?;
    let per_round = a.repeat / a.rounds;
    let mut chunk_no = 0u32;
    let mut new_flow_events = 0u64;
    for _ in 0..a.rounds {
        for sc in &mut scenarios {
            let ns = match sc.prog {
                Prog::Sensor => test_run(prog, &sc.frame, per_round)?,
                Prog::Counter => test_run(counter, &sc.frame, per_round)?,
                Prog::NewFlows => {
                    // Chunks from fresh sources (198.x.y.z, where the program counts up the
                    // port from 1024): no flow repeats across chunks or rounds.
                    let (mut left, mut total) = (per_round, 0.0);
                    while left > 0 {
                        let n = left.min(NEW_FLOW_CHUNK);
                        chunk_no += 1;
                        let mut f = sc.frame.clone();
                        f[26..30].copy_from_slice(&(0xc600_0000 | chunk_no).to_be_bytes());
                        total += test_run(new_flows, &f, n)? * f64::from(n);
                        new_flow_events += drain(&mut bench_ring);
                        left -= n;
                    }
                    total / f64::from(per_round)
                }
            };
            drain(&mut sensor_ring);
            sc.rounds.push(ns);
        }
    }
    let b = bench_maps.counters()?;
    let flows = u64::from(per_round) * u64::from(a.rounds);
    ensure!(
        b.get(Counter::FlowsCreated) == flows && new_flow_events == flows,
        "new_flow_syn: {flows} SYNs made {} flows and {new_flow_events} events (dropped {})",
        b.get(Counter::FlowsCreated),
        b.get(Counter::EventsDropped)
    );
    let s = sensor_maps.counters()?;
    println!("scenario,repeat,kernel_ns_per_packet");
    let mut med = std::collections::HashMap::new();
    for sc in &mut scenarios {
        let m = median(&mut sc.rounds);
        med.insert(sc.name, m);
        println!("{},{},{m:.1}", sc.name, per_round * a.rounds);
    }
    println!(
        "# rounds per scenario (ns, sorted): {}",
        scenarios
            .iter()
            .map(|sc| format!(
                "{} [{}]",
                sc.name,
                sc.rounds
                    .iter()
                    .map(|v| format!("{v:.0}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ))
            .collect::<Vec<_>>()
            .join("; ")
    );
    println!(
        "# established_tcp_flow / counter_probe: {:.2}x; established_vxlan_flow / established_tcp_flow: {:.2}x; arp events {} / throttled {}",
        med["established_tcp_flow"] / med["counter_probe"],
        med["established_vxlan_flow"] / med["established_tcp_flow"],
        s.get(Counter::EventsSent),
        s.get(Counter::ArpEventsThrottled)
    );
    println!("program,xlated_insns,jited_bytes");
    for (name, e) in [
        ("safelink", &sensor),
        ("safelink_tc", &sensor),
        ("counter", &bench),
    ] {
        let info = e
            .program(name)
            .with_context(|| format!("program {name} missing"))?
            .info()?;
        println!(
            "{name},{},{}",
            info.size_translated().unwrap_or(0) / 8,
            info.size_jitted()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn fleet(a: &BenchArgs) -> anyhow::Result<ExitCode> {
    let base = safelink::config::AnnSection::default()
        .model_path()
        .ok_or_else(|| anyhow::anyhow!("no base model (models/base.onnx)"))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let r = rt.block_on(safelink::fleet::bench::run(
        &a.url, a.sensors, a.secs, a.rate, &base,
    ))?;
    println!("{}", serde_json::to_string(&r)?);
    Ok(ExitCode::SUCCESS)
}

pub fn bench(a: BenchArgs) -> anyhow::Result<ExitCode> {
    match a.what {
        What::Keys => keys(),
        What::Xdp => xdp(&a),
        What::Fleet => fleet(&a),
    }
}
