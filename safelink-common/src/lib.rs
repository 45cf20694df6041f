//! Types and pure functions shared by the XDP program (`no_std`, `bpfel-unknown-none`) and the
//! userspace daemon / pcap replay path.
//!
//! This crate is the single source of truth for:
//! - the wire layout of everything that crosses the kernel/userspace boundary
//!   ([`layout`]: flow key, per-flow features, ring-buffer events, counters),
//! - the packet parser ([`parse`]) — generic over [`parse::PacketBytes`] so the kernel reads from
//!   the XDP context and userspace from a captured frame, through the same code,
//! - the feature maths ([`flow`]): per-packet update and the per-CPU merge, of inner flows and
//!   of the outer flows of tunnels.
#![no_std]

pub mod flow;
pub mod layout;
pub mod parse;

pub use layout::*;

#[cfg(feature = "user")]
mod user {
    use super::layout::*;
    // SAFETY: all of these are #[repr(C)], contain only integers and byte arrays, and have no
    // implicit padding (checked by the size assertions in `layout`).
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for MapKey {}
    unsafe impl aya::Pod for TunnelKey {}
    unsafe impl aya::Pod for OuterStats {}
    unsafe impl aya::Pod for FlowStats {}
    unsafe impl aya::Pod for DirStats {}
    unsafe impl aya::Pod for Event {}
    unsafe impl aya::Pod for Stats {}
    unsafe impl aya::Pod for super::parse::TunnelConfig {}
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tunnel_tests;
