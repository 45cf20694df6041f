//! `safelink`: command-line entry point (daemon, offline analysis, map inspection, benchmarks).
mod cli;

/// jemalloc, not glibc's malloc: the daemon's detection, learning and API threads free what
/// address churn made them allocate, and jemalloc gives it back (background purging) where
/// glibc's per-thread arenas kept it (README, "Soak").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
