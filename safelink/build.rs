//! Builds the XDP object (`safelink-ebpf`) with aya-build on the pinned eBPF toolchain and
//! leaves it in `$OUT_DIR/safelink`, where `capture::loader` embeds it.
use anyhow::{Context as _, anyhow};
use aya_build::Toolchain;

/// LLVM major of this toolchain must match bpf-linker's (Debian llvm-22). Override with
/// SAFELINK_EBPF_TOOLCHAIN.
const DEFAULT_EBPF_TOOLCHAIN: &str = "nightly-2026-05-15";

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=SAFELINK_EBPF_TOOLCHAIN");
    let toolchain = std::env::var("SAFELINK_EBPF_TOOLCHAIN")
        .unwrap_or_else(|_| DEFAULT_EBPF_TOOLCHAIN.to_owned());
    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let pkg = packages
        .into_iter()
        .find(|p| p.name.as_str() == "safelink-ebpf")
        .ok_or_else(|| anyhow!("safelink-ebpf package not found"))?;
    let root = pkg
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", pkg.manifest_path))?;
    let ebpf = aya_build::Package {
        name: pkg.name.as_str(),
        root_dir: root.as_str(),
        ..Default::default()
    };
    aya_build::build_ebpf([ebpf], Toolchain::Custom(&toolchain))
}
