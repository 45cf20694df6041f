use which::which;

/// Rebuild the eBPF object whenever the bpf-linker binary changes (as aya-template does).
fn main() {
    let bpf_linker = which("bpf-linker").expect("bpf-linker not found in PATH (run ./setup.sh)");
    println!("cargo:rerun-if-changed={}", bpf_linker.to_str().unwrap());
}
