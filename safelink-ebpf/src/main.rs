//! SafeLink's XDP program and TC classifier (egress, and ingress where `auto` or `tc` mode
//! chooses it over XDP): both hand every frame to
//! [`sensor::observe_frame`], which parses it with the shared parser and keeps bidirectional
//! flow features in two pinned maps: every flow starts in `EMBRYOS` (`LRU_HASH`) and moves to
//! `FLOWS` (`LRU_PERCPU_HASH`, one exact slot per CPU) once it proves two-way, so a flood of
//! spoofed new flows only churns `EMBRYOS` and never evicts an established connection. It emits
//! flow-start and ARP events (ARP within a per-CPU budget) into the `EVENTS` ring buffer and
//! counts into the per-CPU `STATS` array. Bounded work per packet; both always pass the frame.
#![no_std]
#![no_main]

mod sensor;

use aya_ebpf::{
    bindings::{TC_ACT_OK, xdp_action},
    helpers::bpf_xdp_get_buff_len,
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};

#[xdp(frags)]
pub fn safelink(ctx: XdpContext) -> u32 {
    // SAFETY: ctx.ctx is the program's xdp_md.
    let len = unsafe { bpf_xdp_get_buff_len(ctx.ctx) } as usize;
    sensor::observe_frame(ctx.data(), ctx.data_end(), len, None);
    xdp_action::XDP_PASS
}

/// Egress: the host's own frames on the interface (its answers, its connections); ingress, in
/// place of XDP, in `tc` mode. The kernel may hold a frame's outer VLAN tag outside the frame
/// (taken off on receive before TC runs, or offloaded to the NIC on transmit): the tag it
/// holds is the frame's outermost one, and its 4 bytes count in the frame's wire length.
#[classifier]
pub fn safelink_tc(ctx: TcContext) -> i32 {
    // SAFETY: the program's own __sk_buff.
    let skb = unsafe { &*ctx.skb.skb };
    let vlan = (skb.vlan_present != 0).then_some((skb.vlan_tci & 0x0fff) as u16);
    // An XDP program cannot interrupt a TC program on the same CPU while it uses the scratch
    // slot: both run with bottom halves disabled.
    let len = ctx.len() as usize + if vlan.is_some() { 4 } else { 0 };
    sensor::observe_frame(ctx.data(), ctx.data_end(), len, vlan);
    TC_ACT_OK
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
