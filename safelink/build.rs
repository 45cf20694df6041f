//! Builds the XDP object (`safelink-ebpf`) with aya-build on the pinned eBPF toolchain and
//! leaves it in `$OUT_DIR/safelink`, where `capture::loader` embeds it.
use anyhow::{Context as _, anyhow};
use aya_build::Toolchain;

/// LLVM major of this toolchain must match bpf-linker's (Debian llvm-22). Override with
/// SAFELINK_EBPF_TOOLCHAIN.
const DEFAULT_EBPF_TOOLCHAIN: &str = "nightly-2026-05-15";

/// `SAFELINK_GIT_COMMIT` (`git rev-parse --short=12 HEAD`, or the variable of that name when
/// set, e.g. by a package build outside git) and `SAFELINK_BASE_MODEL_VERSION` (the
/// `BASE_MODEL_VERSION` of the recipe) for `safelink --version`.
fn version_env() {
    println!("cargo:rerun-if-env-changed=SAFELINK_GIT_COMMIT");
    let commit = std::env::var("SAFELINK_GIT_COMMIT").ok().or_else(|| {
        let out = std::process::Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    });
    println!(
        "cargo:rustc-env=SAFELINK_GIT_COMMIT={}",
        commit.unwrap_or_else(|| "unknown".into())
    );
    // A new commit changes HEAD (detached) or the branch it names.
    if let Ok(head) = std::fs::read_to_string("../.git/HEAD") {
        println!("cargo:rerun-if-changed=../.git/HEAD");
        if let Some(r) = head.strip_prefix("ref: ") {
            println!("cargo:rerun-if-changed=../.git/{}", r.trim());
        }
    }
    let recipe = std::fs::read_to_string("src/ann/recipe.rs").unwrap_or_default();
    let model = recipe
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("pub const BASE_MODEL_VERSION: &str = \"")?
                .strip_suffix("\";")
        })
        .unwrap_or("unknown");
    println!("cargo:rerun-if-changed=src/ann/recipe.rs");
    println!("cargo:rustc-env=SAFELINK_BASE_MODEL_VERSION={model}");
}

fn main() -> anyhow::Result<()> {
    version_env();
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
