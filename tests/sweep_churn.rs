//! Sweeping while the kernel churns its flow maps (root): one thread creates new flows through
//! the real XDP program (`BPF_PROG_TEST_RUN`, far more than `EMBRYOS` holds, so the LRU evicts
//! all the time) while another walks the maps as the sweeper does. Every walk ends, within
//! twice the maps' capacity, and returns each flow once, with exact per-flow counts.
mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use aya::programs::{TestRun as _, TestRunOptions};
use safelink::capture::{loader, maps::SensorMaps};
use safelink_common::{MAX_EMBRYOS, MAX_FLOWS};
use support::*;

#[test]
fn walks_under_churn_end_and_return_each_flow_once() {
    if !kernel_test_can_run("sweep_churn", &[]) {
        return;
    }
    let mut ebpf = loader::load(None).unwrap();
    let mut maps = SensorMaps::from_ebpf(&mut ebpf).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let stop = done.clone();
    let churn = std::thread::spawn(move || {
        let prog = loader::program(&mut ebpf).unwrap();
        let mut out = vec![0u8; 256];
        let mut created = 0u64;
        // 200 000 distinct flows: three times what EMBRYOS holds.
        'outer: for hi in 0..4u16 {
            for port in 0..50_000u16 {
                let src = [198, 51, 100, hi as u8];
                let f = tcp4((src, 1024 + port), (IP_A, 80), "S", 0);
                prog.test_run(TestRunOptions {
                    data_in: Some(&f),
                    data_out: Some(&mut out),
                    ..Default::default()
                })
                .unwrap();
                created += 1;
                if stop.load(Ordering::Relaxed) {
                    break 'outer;
                }
            }
        }
        created
    });
    let cap = (MAX_FLOWS + MAX_EMBRYOS) as usize;
    let mut walks = 0;
    let mut slowest = Duration::ZERO;
    while !churn.is_finished() || walks < 3 {
        let t0 = Instant::now();
        let flows = maps.flows_map().unwrap();
        slowest = slowest.max(t0.elapsed());
        walks += 1;
        assert!(flows.len() <= cap, "walk {walks}: {} flows", flows.len());
        for (k, s) in &flows {
            // One SYN per flow: a flow counted twice (a restarted walk) would show 2.
            assert_eq!(s.ab.packets + s.ba.packets, 1, "walk {walks}: {k:?}");
        }
        if walks >= 200 {
            done.store(true, Ordering::Relaxed);
        }
    }
    let created = churn.join().unwrap();
    assert!(
        created > u64::from(MAX_EMBRYOS),
        "the churn created {created} flows"
    );
    eprintln!(
        "sweep_churn: {walks} walks while {created} flows were created; slowest walk {slowest:?}"
    );
}
