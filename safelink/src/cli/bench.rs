//! Hidden `safelink bench xdp`: runs the XDP program over crafted frames with
//! `BPF_PROG_TEST_RUN` and prints kernel ns/packet per scenario. Hidden `safelink bench keys`:
//! the rule engine's cost per new source key while its tables fill and once they are full
//! (every new key then forgets the least recently updated one). Hidden `safelink bench fleet`:
//! simulated sensors against a NATS server ([`safelink::fleet::bench`]).
use std::process::ExitCode;

use anyhow::ensure;
use aya::programs::{TestRun as _, TestRunOptions};
use clap::{Args, ValueEnum};
use safelink::capture::loader;
use safelink_common::parse::ETH_HLEN;

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[arg(value_enum)]
    what: What,
    /// Repetitions per scenario.
    #[arg(long, default_value_t = 1_000_000)]
    repeat: u32,
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

pub fn bench(a: BenchArgs) -> anyhow::Result<ExitCode> {
    if let What::Keys = a.what {
        return keys();
    }
    if let What::Fleet = a.what {
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
        return Ok(ExitCode::SUCCESS);
    }
    let mut ebpf = loader::load(None)?;
    let prog = loader::program(&mut ebpf)?;
    let mut malformed = tcp_frame(0x10, 1000);
    malformed[ETH_HLEN] = 0x43; // IHL 3: bad
    let scenarios: [(&str, Vec<u8>); 4] = [
        ("existing_tcp_flow", tcp_frame(0x10, 40000)),
        ("new_flow_syn", tcp_frame(0x02, 40001)),
        ("arp", arp_frame()),
        ("malformed", malformed),
    ];
    println!("scenario,repeat,kernel_ns_per_packet");
    for (name, frame) in scenarios {
        // Warm: the first run creates the flow, so "existing" measures the lookup path. The
        // "new flow" scenario re-runs one SYN; after the first repeat it also finds its flow,
        // so it is measured with repeat=1 runs averaged instead.
        let mut out = vec![0u8; 256];
        let repeat = if name == "new_flow_syn" { 1 } else { a.repeat };
        let runs = if name == "new_flow_syn" { 20_000 } else { 1 };
        let mut total_ns = 0u128;
        for i in 0..runs {
            let mut f = frame.clone();
            if name == "new_flow_syn" {
                // A distinct source port per run: every run creates a new flow.
                f[34..36].copy_from_slice(&((i % 60_000) as u16 + 1024).to_be_bytes());
                f[26..30].copy_from_slice(&[198, 51, 100, (i / 60_000) as u8]);
            }
            let res = prog.test_run(TestRunOptions {
                data_in: Some(&f),
                data_out: Some(&mut out),
                repeat,
                ..Default::default()
            })?;
            ensure!(
                res.return_value == 2,
                "{name}: expected XDP_PASS, got {}",
                res.return_value
            );
            total_ns += res.duration.as_nanos();
        }
        println!(
            "{name},{},{:.1}",
            repeat as u64 * runs,
            total_ns as f64 / runs as f64
        );
    }
    Ok(ExitCode::SUCCESS)
}
