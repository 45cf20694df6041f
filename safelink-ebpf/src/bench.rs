//! Benchmark-only object (`safelink-bench`, never attached to an interface): the programs
//! `cargo xtask bench xdp` runs with `BPF_PROG_TEST_RUN` beside the sensor's own.
//!
//! - `counter`: the toolchain probe's counter program (per-CPU counter by protocol plus an
//!   `LRU_HASH` lookup by IPv4 source), the floor the sensor's per-packet cost is compared to.
//! - `new_flows`: the sensor's own per-packet work ([`sensor::observe_frame`], the same code as
//!   the production program), after which it rewrites the frame's IPv4 source address and
//!   port so that the next repeat of the test run is a flow never seen before. That lets one
//!   test run measure a stream of new flows (a random-source flood) without the timer overhead
//!   of one syscall per packet.
#![no_std]
#![no_main]

mod sensor;

use aya_ebpf::{
    bindings::xdp_action,
    btf_maps::{LruHashMap, PerCpuArray},
    helpers::bpf_xdp_get_buff_len,
    macros::{btf_map, xdp},
    programs::XdpContext,
};

/// The probe's counters: packets and bytes per protocol class.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Counter {
    packets: u64,
    bytes: u64,
}

#[btf_map]
static COUNTERS: PerCpuArray<Counter, 8> = PerCpuArray::new();

#[btf_map]
static SRC_IPS: LruHashMap<u32, Counter, 1024> = LruHashMap::new();

const ETH_HLEN: usize = 14;

#[inline(always)]
fn count(idx: u32, bytes: u64) {
    if let Some(c) = COUNTERS.get_ptr_mut(idx) {
        // SAFETY: this CPU's slot.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += bytes;
        }
    }
}

/// The toolchain probe's IPv4 path: count by protocol, then count by source address.
#[xdp]
pub fn counter(ctx: XdpContext) -> u32 {
    let (start, end) = (ctx.data(), ctx.data_end());
    let len = (end - start) as u64;
    if start + ETH_HLEN + 20 > end {
        count(7, len);
        return xdp_action::XDP_PASS;
    }
    // SAFETY: bounds checked above.
    let eth = unsafe { &*(start as *const [u8; ETH_HLEN + 20]) };
    if u16::from_be_bytes([eth[12], eth[13]]) != 0x0800 {
        count(6, len);
        return xdp_action::XDP_PASS;
    }
    let idx = match eth[ETH_HLEN + 9] {
        1 => 0,
        6 => 1,
        17 => 2,
        _ => 3,
    };
    count(idx, len);
    let src = u32::from_ne_bytes([eth[26], eth[27], eth[28], eth[29]]);
    match SRC_IPS.get_ptr_mut(&src) {
        // SAFETY: a map value; racy across CPUs, as in the probe.
        Some(v) => unsafe {
            (*v).packets += 1;
            (*v).bytes += len;
        },
        None => {
            let _ = SRC_IPS.insert(
                &src,
                &Counter {
                    packets: 1,
                    bytes: len,
                },
                0,
            );
        }
    }
    xdp_action::XDP_PASS
}

/// The sensor on this frame, then the frame's source becomes the next one: IPv4 source port
/// (bytes 34..36) counts up, and the source address's last two bytes (28..30) count the
/// port's wraps, so a test run of up to 2^32 repeats sees that many distinct flows.
#[xdp(frags)]
pub fn new_flows(ctx: XdpContext) -> u32 {
    let (start, end) = (ctx.data(), ctx.data_end());
    // SAFETY: ctx.ctx is the program's xdp_md. (As in the production program: a length the
    // compiler cannot tie to `end` keeps the bounds checks the verifier needs.)
    let len = unsafe { bpf_xdp_get_buff_len(ctx.ctx) } as usize;
    sensor::observe_frame(start, end, len, None);
    if start + 36 > end {
        return xdp_action::XDP_PASS;
    }
    // SAFETY: bounds checked above; the test run's private copy of the frame.
    let f = unsafe { &mut *(start as *mut [u8; 36]) };
    let port = u16::from_be_bytes([f[34], f[35]]).wrapping_add(1);
    f[34..36].copy_from_slice(&port.to_be_bytes());
    if port == 0 {
        let host = u16::from_be_bytes([f[28], f[29]]).wrapping_add(1);
        f[28..30].copy_from_slice(&host.to_be_bytes());
    }
    xdp_action::XDP_PASS
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
