//! `safelink`: command-line entry point (daemon, offline analysis, map inspection, benchmarks).
mod cli;

/// glibc's malloc keeps up to 8 arenas per CPU, one per thread that allocated: the daemon's
/// detection, learning, sink and API threads each kept what address churn had made them
/// allocate and free, about 60 MiB in `cargo xtask bench soak --unique-ip` (README, "Soak").
/// Two arenas kept it down as well as jemalloc did, without jemalloc's cost to the automata's
/// throughput (a quarter fewer records a second in `bench detect`, and twice its peak RSS).
/// `MALLOC_ARENA_MAX` in the environment still decides when set.
#[cfg(target_env = "gnu")]
const MALLOC_ARENAS: libc::c_int = 2;

fn main() -> std::process::ExitCode {
    #[cfg(target_env = "gnu")]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets a tunable of the allocator; called before any thread starts.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS) };
    }
    cli::main()
}
