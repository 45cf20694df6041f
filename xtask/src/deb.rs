//! `cargo xtask deb`: `target/debian/safelink_<version>_amd64.deb`, built with `dpkg-deb` from
//! a staged tree: the binary, the systemd unit (installed disabled: the operator enables it),
//! the base model and golden set, the default configuration as a conffile, the man pages, the
//! bash/zsh/fish completions, the README and guides, `/var/lib/safelink`. The unit runs as root
//! with only the XDP capabilities (see the unit), so no system user is created.
use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::{build, root, run};

const CONTROL: &str = "Package: safelink
Version: {version}
Section: net
Priority: optional
Architecture: amd64
Maintainer: SafeLink developers <safelink@example.org>
Depends: libc6 (>= 2.36)
Recommends: bpftool
Homepage: https://github.com/safelink/safelink
Description: network intrusion detection sensor (XDP flow features, rules and ANN)
 SafeLink extracts per-flow features in the kernel with an XDP program and detects
 port scans, host sweeps, brute force, ARP spoofing, floods and amplification with
 rule automata and a neural flow classifier; alerts are stored locally and served by
 an HTTP API and dashboard, and exported as Suricata EVE JSON.
";

const POSTINST: &str = "#!/bin/sh
set -e
if [ \"$1\" = configure ]; then
    install -d -m 0700 /var/lib/safelink
    if [ -d /run/systemd/system ]; then systemctl daemon-reload >/dev/null 2>&1 || true; fi
fi
";

const PRERM: &str = "#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ \"$1\" = remove ]; then
    systemctl stop safelink.service >/dev/null 2>&1 || true
fi
";

const POSTRM: &str = "#!/bin/sh
set -e
if [ \"$1\" = purge ]; then
    rm -rf /var/lib/safelink
fi
if [ -d /run/systemd/system ]; then systemctl daemon-reload >/dev/null 2>&1 || true; fi
";

fn write(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn copy(from: &Path, to: &Path, mode: u32) -> anyhow::Result<()> {
    if let Some(d) = to.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::copy(from, to).with_context(|| format!("copying {}", from.display()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Builds the package; returns its path.
pub fn deb() -> anyhow::Result<PathBuf> {
    let bin = build()?;
    let version = env!("CARGO_PKG_VERSION");
    let out_dir = root().join("target/debian");
    let stage = out_dir.join(format!("safelink_{version}_amd64"));
    let _ = std::fs::remove_dir_all(&stage);
    std::fs::create_dir_all(&stage)?;
    let s = |p: &str| stage.join(p);

    copy(&bin, &s("usr/bin/safelink"), 0o755)?;
    run(Command::new("strip")
        .arg("--strip-unneeded")
        .arg(s("usr/bin/safelink")))?;
    let unit = std::fs::read_to_string(root().join("deploy/safelink.service"))?
        .replace("/usr/local/bin/safelink", "/usr/bin/safelink")
        .replace(
            "file:///usr/local/share/doc/safelink/README.md",
            "file:///usr/share/doc/safelink/README.md",
        )
        .replace(
            "# SafeLink sensor. Install with `cargo xtask install` (copies the binary to\n# /usr/local/bin/safelink and this unit to /etc/systemd/system/), then:",
            "# SafeLink sensor (Debian package: installed disabled). Then:",
        );
    write(&s("lib/systemd/system/safelink.service"), &unit, 0o644)?;
    for f in [
        "base.onnx",
        "golden.jsonl",
        "attack_rows.jsonl",
        "benign/flows.csv.gz",
    ] {
        copy(
            &root().join("models").join(f),
            &s(&format!("usr/share/safelink/{f}")),
            0o644,
        )?;
    }
    // The default configuration, as `config print` writes it (the packaged file must load).
    let conf = Command::new(&bin)
        .args(["config", "print", "--config", "/dev/null"])
        .output()?;
    if !conf.status.success() {
        bail!("config print: {}", String::from_utf8_lossy(&conf.stderr));
    }
    write(
        &s("etc/safelink/safelink.toml"),
        &String::from_utf8(conf.stdout)?,
        0o644,
    )?;
    // Man pages (gzip -9n) and completions, from the clap definitions.
    let man = s("usr/share/man/man1");
    run(Command::new(&bin)
        .args(["generate", "man", "--out"])
        .arg(&man))?;
    for entry in std::fs::read_dir(&man)? {
        run(Command::new("gzip").args(["-9n"]).arg(entry?.path()))?;
    }
    let tmp = out_dir.join("completions");
    for (shell, file, to) in [
        (
            "bash",
            "safelink.bash",
            "usr/share/bash-completion/completions/safelink",
        ),
        (
            "zsh",
            "_safelink",
            "usr/share/zsh/vendor-completions/_safelink",
        ),
        (
            "fish",
            "safelink.fish",
            "usr/share/fish/vendor_completions.d/safelink.fish",
        ),
    ] {
        run(Command::new(&bin)
            .args(["generate", shell, "--out"])
            .arg(&tmp))?;
        copy(&tmp.join(file), &s(to), 0o644)?;
    }
    let doc = s("usr/share/doc/safelink");
    copy(&root().join("README.md"), &doc.join("README.md"), 0o644)?;
    for entry in std::fs::read_dir(root().join("docs"))? {
        let p = entry?.path();
        copy(&p, &doc.join(p.file_name().expect("a file")), 0o644)?;
    }
    copy(
        &root().join("deploy/grafana/safelink.json"),
        &s("usr/share/safelink/grafana/safelink.json"),
        0o644,
    )?;
    write(
        &doc.join("copyright"),
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
         Upstream-Name: safelink\n\nFiles: *\nLicense: MIT or Apache-2.0\n",
        0o644,
    )?;
    std::fs::create_dir_all(s("var/lib/safelink"))?;
    std::fs::set_permissions(
        s("var/lib/safelink"),
        std::fs::Permissions::from_mode(0o700),
    )?;

    let installed_kib: u64 = walk_size(&stage)? / 1024;
    write(
        &s("DEBIAN/control"),
        &format!(
            "{}Installed-Size: {installed_kib}\n",
            CONTROL.replace("{version}", version)
        ),
        0o644,
    )?;
    write(
        &s("DEBIAN/conffiles"),
        "/etc/safelink/safelink.toml\n",
        0o644,
    )?;
    write(&s("DEBIAN/postinst"), POSTINST, 0o755)?;
    write(&s("DEBIAN/prerm"), PRERM, 0o755)?;
    write(&s("DEBIAN/postrm"), POSTRM, 0o755)?;
    let deb = out_dir.join(format!("safelink_{version}_amd64.deb"));
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zxz", "--build"])
        .arg(&stage)
        .arg(&deb))?;
    println!("{}", deb.display());
    Ok(deb)
}

fn walk_size(dir: &Path) -> anyhow::Result<u64> {
    let mut n = 0;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let m = e.metadata()?;
        n += if m.is_dir() {
            walk_size(&e.path())?
        } else {
            m.len()
        };
    }
    Ok(n)
}
