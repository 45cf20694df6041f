//! `safelink`: command-line entry point (daemon, offline analysis, map inspection, benchmarks).
mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
