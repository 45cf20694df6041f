//! Live capture: loads and attaches the XDP program ([`loader`], in the mode [`iface`] picks), reads its pinned maps
//! ([`maps`]), turns ring-buffer events into records ([`events`]) and sweeps finished flows
//! out of the flow map ([`sweeper`]). Together they produce the same [`crate::record::Record`]
//! stream as the replay path.
pub mod config;
pub mod events;
pub mod iface;
pub mod loader;
pub mod maps;
pub mod sweeper;

/// Default directory under bpffs where the maps are pinned.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/safelink";

/// `CLOCK_MONOTONIC` now, in ns (the clock of `bpf_ktime_get_ns`).
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// Offset that converts `CLOCK_MONOTONIC` ns to Unix-time ns.
pub fn epoch_offset_ns() -> i64 {
    clock_ns(libc::CLOCK_REALTIME) as i64 - clock_ns(libc::CLOCK_MONOTONIC) as i64
}

/// `CLOCK_REALTIME` now, in Unix ns.
pub fn realtime_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME)
}

/// Converts a `CLOCK_MONOTONIC` timestamp to Unix ns with an [`epoch_offset_ns`] offset.
pub fn to_epoch_ns(mono_ns: u64, epoch_offset_ns: i64) -> u64 {
    (mono_ns as i64).saturating_add(epoch_offset_ns).max(0) as u64
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid clock id and out-pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
