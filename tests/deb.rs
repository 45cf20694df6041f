//! The Debian package (`cargo xtask deb`) on this host, as root: `dpkg -i`, the installed
//! `safelink --version` and `config print` (the packaged configuration loads), a shared capture
//! analysed with the installed binary and model, the man page and completions in place, the
//! unit installed but not enabled; then `dpkg --purge` and nothing of it left. `cargo xtask
//! test` builds the package and passes its path in `SAFELINK_DEB` (CI runs as root).
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn the_package_installs_runs_and_purges_clean() {
    let Some(deb) = std::env::var_os("SAFELINK_DEB").map(PathBuf::from) else {
        eprintln!(
            "SKIP the_package_installs_runs_and_purges_clean: SAFELINK_DEB not set (cargo xtask test sets it as root)"
        );
        return;
    };
    // SAFETY: no arguments.
    assert_eq!(unsafe { libc::geteuid() }, 0, "dpkg -i needs root");
    for p in ["/var/lib/safelink", "/etc/safelink", "/usr/bin/safelink"] {
        assert!(
            !Path::new(p).exists(),
            "{p} exists already: this test installs and purges the package, which would remove it"
        );
    }
    // What the package holds, from the package itself.
    let listing = text(&run(Command::new("dpkg-deb").arg("-c").arg(&deb)));
    let files: Vec<String> = listing
        .lines()
        .filter(|l| !l.starts_with('d'))
        .filter_map(|l| l.split_whitespace().last())
        .map(|p| p.trim_start_matches('.').to_owned())
        .collect();
    for want in [
        "/usr/bin/safelink",
        "/lib/systemd/system/safelink.service",
        "/usr/share/safelink/base.onnx",
        "/usr/share/safelink/golden.jsonl",
        "/usr/share/safelink/attack_rows.jsonl",
        "/usr/share/safelink/benign/flows.csv.gz",
        "/etc/safelink/safelink.toml",
        "/usr/share/man/man1/safelink.1.gz",
        "/usr/share/man/man1/safelink-run.1.gz",
        "/usr/share/bash-completion/completions/safelink",
        "/usr/share/zsh/vendor-completions/_safelink",
        "/usr/share/fish/vendor_completions.d/safelink.fish",
        "/usr/share/doc/safelink/README.md",
        "/usr/share/doc/safelink/copyright",
    ] {
        assert!(
            files.iter().any(|f| f == want),
            "{want} not in the package:\n{listing}"
        );
    }
    let conffiles = text(&run(Command::new("dpkg-deb")
        .args(["-I"])
        .arg(&deb)
        .arg("conffiles")));
    assert_eq!(conffiles.trim(), "/etc/safelink/safelink.toml");

    run(Command::new("dpkg").arg("-i").arg(&deb));
    let cwd = tempfile::tempdir().unwrap();
    let bin = "/usr/bin/safelink";
    let v = text(&run(Command::new(bin).arg("--version")));
    assert!(
        v.starts_with(&format!("safelink {} (commit ", env!("CARGO_PKG_VERSION")))
            && v.contains(", base model base-1)"),
        "{v}"
    );
    // From a directory without ./safelink.toml: the packaged /etc/safelink/safelink.toml.
    let conf = run(Command::new(bin)
        .args(["config", "print"])
        .current_dir(cwd.path()));
    assert!(
        String::from_utf8_lossy(&conf.stderr).contains("/etc/safelink/safelink.toml"),
        "config print did not load the packaged file"
    );
    assert!(text(&conf).contains("[sensor]"));
    // The installed model, found by the search path (no models/ in this directory).
    let pcap = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/pcaps/portscan__syn-scan-29ports.pcap");
    let alerts = text(&run(Command::new(bin)
        .args(["analyze", "--ann"])
        .arg(&pcap)
        .current_dir(cwd.path())));
    assert!(alerts.contains("\"kind\":\"port_scan\""), "{alerts}");
    assert!(alerts.contains("\"source\":\"ann\""), "{alerts}");
    // Installed, not enabled: the operator enables the sensor.
    if Path::new("/run/systemd/system").is_dir() {
        let st = Command::new("systemctl")
            .args(["is-enabled", "safelink.service"])
            .output()
            .unwrap();
        assert_ne!(text(&st).trim(), "enabled");
    }
    assert!(Path::new("/var/lib/safelink").is_dir());

    run(Command::new("dpkg").args(["--purge", "safelink"]));
    let left: Vec<&String> = files.iter().filter(|f| Path::new(f).exists()).collect();
    assert!(left.is_empty(), "left after purge: {left:?}");
    for d in [
        "/etc/safelink",
        "/var/lib/safelink",
        "/usr/share/safelink",
        "/usr/share/doc/safelink",
    ] {
        assert!(!Path::new(d).exists(), "{d} left after purge");
    }
    let st = Command::new("dpkg")
        .args(["-s", "safelink"])
        .output()
        .unwrap();
    assert!(!st.status.success(), "dpkg still knows the package");
}
