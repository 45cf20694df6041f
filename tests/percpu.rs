//! One flow's packets on several CPUs: the XDP program keeps one slot per CPU
//! (`LRU_PERCPU_HASH`) and userspace merges them, so counts are exact. The test pins itself to
//! each CPU in turn and runs the real program there with `BPF_PROG_TEST_RUN` (root).
mod support;

use aya::programs::{TestRun as _, TestRunOptions};
use safelink::capture::{loader, maps::SensorMaps};
use safelink_common::Counter;
use support::*;

fn pin_to_cpu(cpu: usize) {
    // SAFETY: plain syscall on a zeroed cpu_set_t.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set),
            0,
            "sched_setaffinity({cpu})"
        );
    }
}

#[test]
fn per_cpu_slots_merge_to_exact_counts() {
    if !kernel_test_can_run("percpu", &[]) {
        return;
    }
    let cpus = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4);
    if cpus < 2 {
        eprintln!("SKIP percpu: needs at least 2 CPUs");
        return;
    }
    let mut ebpf = loader::load(None).unwrap();
    let syn = tcp4((IP_B, 33000), (IP_A, 22), "S", 0);
    let synack = tcp4((IP_A, 22), (IP_B, 33000), "SA", 0);
    let data = tcp4((IP_B, 33000), (IP_A, 22), "PA", 200);
    let mut out = vec![0u8; 512];
    // Run in a dedicated thread so the affinity change does not leak into other tests.
    let handle = std::thread::spawn(move || {
        let prog = loader::program(&mut ebpf).unwrap();
        let mut run = |f: &[u8], repeat: u32| {
            let r = prog
                .test_run(TestRunOptions {
                    data_in: Some(f),
                    data_out: Some(&mut out),
                    repeat,
                    ..Default::default()
                })
                .unwrap();
            assert_eq!(r.return_value, 2);
        };
        pin_to_cpu(0);
        run(&syn, 1);
        run(&data, 1000);
        pin_to_cpu(1);
        run(&synack, 1);
        run(&data, 777);
        for cpu in 2..cpus {
            pin_to_cpu(cpu);
            run(&data, 100);
        }
        ebpf
    });
    let mut ebpf = handle.join().unwrap();
    let mut maps = SensorMaps::from_ebpf(&mut ebpf).unwrap();
    let flows = maps.flows().unwrap();
    assert_eq!(flows.len(), 1);
    let (key, s) = flows[0];
    let slots = maps.flow_slots(&key).unwrap();
    // The flow lived in EMBRYOS (one shared value) until CPU 1's SYN-ACK completed the
    // handshake: it moved whole into CPU 1's slot of FLOWS; later packets count per CPU.
    assert_eq!(slots[0].ba.packets, 0, "CPU 0 slot");
    assert_eq!(slots[1].ba.packets, 1001 + 777, "CPU 1 slot");
    assert_eq!(slots[1].ab.packets, 1, "CPU 1 slot");
    for (cpu, slot) in slots.iter().enumerate().take(cpus).skip(2) {
        assert_eq!(slot.ba.packets, 100, "CPU {cpu} slot");
    }
    let extra = 100 * (cpus as u64 - 2);
    // Endpoint a is 192.0.2.1 (smaller address): a->b carries the SYN-ACK only.
    assert_eq!(s.initiator_is_a, 0, "192.0.2.2 sent the first packet");
    assert_eq!(s.ba.packets, 1 + 1000 + 777 + extra);
    assert_eq!(s.ba.bytes, 54 + (1000 + 777 + extra) * 254);
    assert_eq!(s.ba.flags.syn, 1);
    assert_eq!(s.ba.flags.psh, 1777 + extra as u32);
    assert_eq!(s.ba.l3_min, 40);
    assert_eq!(s.ba.l3_max, 240);
    assert_eq!(s.ab.packets, 1);
    assert_eq!(s.ab.flags.synack, 1);
    let c = maps.counters().unwrap();
    assert_eq!(c.get(Counter::Packets), 1 + 1000 + 1 + 777 + extra);
    assert_eq!(
        c.get(Counter::FlowsCreated),
        1,
        "one flow, whatever the CPU"
    );
    assert_eq!(c.get(Counter::FlowsPromoted), 1);
}
