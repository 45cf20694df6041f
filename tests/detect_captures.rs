//! The rule automata against real captures: `safelink analyze` (the real binary) on every
//! capture of `tests/pcaps/MANIFEST.tsv` (a copy of the shared evaluation set, provenance in
//! `tests/pcaps/README.md`) and of `tests/pcaps/extra/MANIFEST.tsv` (more public captures from
//! the same repositories, provenance in `tests/pcaps/extra/README.md`) and of
//! `tests/pcaps/recorded/MANIFEST.tsv` (attacks recorded by this project between namespaces,
//! see its README). Every attack capture must yield exactly one alert of the right kind
//! naming the attacker (`src_ip`/`src_mac`), or for spoofed/reflected floods the victim
//! (`dest_ip`); every benign capture must yield no alert at all. Captures that cannot be got
//! right are listed in [`KNOWN_MISSES`] with the reason (and in `safelink/src/detect/README.md`);
//! the test checks that the list is still true, so it never hides a capture silently.
use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_safelink");

/// Captures the automata do not get right, with the reason. Empty: all pass.
const KNOWN_MISSES: &[(&str, &str)] = &[];

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/pcaps")
}

struct Row {
    file: String,
    class: String,
    attacker: String,
}

fn manifest(dir: &Path) -> Vec<Row> {
    let text = std::fs::read_to_string(dir.join("MANIFEST.tsv"))
        .unwrap_or_else(|e| panic!("{}/MANIFEST.tsv: {e}", dir.display()));
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().expect("header").split('\t').collect();
    let col = |name: &str| {
        head.iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("column {name}"))
    };
    let (f, c, a) = (col("file"), col("class"), col("attacker_ip_or_mac"));
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Vec<&str> = l.split('\t').collect();
            Row {
                file: v[f].to_owned(),
                class: v[c].trim().to_owned(),
                attacker: v[a].trim().to_lowercase(),
            }
        })
        .collect()
}

fn expected_kind(class: &str) -> Option<&'static str> {
    match class {
        "portscan" => Some("port_scan"),
        "sweep" => Some("host_sweep"),
        "arpscan" => Some("arp_scan"),
        "arpspoof" => Some("arp_spoof"),
        "sshbrute" => Some("ssh_brute_force"),
        "loginbrute" => Some("login_brute_force"),
        "synflood" => Some("syn_flood"),
        "udpflood" => Some("udp_flood"),
        "icmpflood" => Some("icmp_flood"),
        "amplification" => Some("amplification"),
        "benign" => None,
        other => panic!("unknown class {other} in the manifest"),
    }
}

fn analyze(args: &[&str], file: &Path) -> (bool, String, String) {
    let out = Command::new(BIN)
        .arg("analyze")
        .args(args)
        .arg(file)
        .env("SAFELINK_LOG", "warn")
        .output()
        .expect("run safelink");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn alerts(file: &Path) -> Vec<Value> {
    let (ok, stdout, stderr) = analyze(&[], file);
    assert!(ok, "{}: analyze failed: {stderr}", file.display());
    stdout
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {l}", file.display()))
        })
        .collect()
}

/// Addresses named in the manifest's attacker column (IPs and MACs).
fn named(attacker: &str) -> Vec<String> {
    attacker
        .split(|c: char| !(c.is_ascii_hexdigit() || c == '.' || c == ':'))
        .filter(|t| t.parse::<IpAddr>().is_ok() || (t.len() == 17 && t.matches(':').count() == 5))
        .map(str::to_owned)
        .collect()
}

/// The scorer's rule: "victim X" → dest_ip is X; otherwise src_ip or src_mac is named.
fn names_attacker(alert: &Value, attacker: &str) -> bool {
    let s = |k: &str| alert[k].as_str().map(str::to_lowercase);
    if let Some(rest) = attacker.split("victim").nth(1) {
        let victim = named(rest);
        return victim
            .first()
            .is_some_and(|v| s("dest_ip").as_deref() == Some(v.as_str()));
    }
    named(attacker).iter().any(|n| {
        s("src_ip").as_deref() == Some(n.as_str()) || s("src_mac").as_deref() == Some(n.as_str())
    })
}

/// The alert contract holds for every alert printed.
fn check_contract(file: &str, all: &[Value]) {
    for (i, a) in all.iter().enumerate() {
        assert_eq!(
            a["id"].as_u64(),
            Some(i as u64 + 1),
            "{file}: ids run 1..n: {a}"
        );
        assert_eq!(a["source"], "dfa", "{file}: {a}");
        assert_eq!(a["confidence"].as_f64(), Some(1.0), "{file}: {a}");
        for k in ["timestamp", "first_seen", "last_seen"] {
            let t = a[k]
                .as_str()
                .unwrap_or_else(|| panic!("{file}: {k} missing: {a}"));
            assert!(
                t.len() == 27 && t.ends_with('Z') && t.as_bytes()[10] == b'T',
                "{file}: {k} not RFC 3339 UTC: {t}"
            );
        }
        assert!(
            a["first_seen"].as_str() <= a["last_seen"].as_str(),
            "{file}: {a}"
        );
        assert!(a["count"].as_u64().is_some_and(|c| c >= 1), "{file}: {a}");
        assert!(
            !a["description"].as_str().unwrap_or("").is_empty(),
            "{file}: {a}"
        );
        for k in [
            "severity",
            "kind",
            "src_ip",
            "src_port",
            "dest_ip",
            "dest_port",
            "proto",
            "src_mac",
            "community_id",
            "features",
        ] {
            assert!(a.get(k).is_some(), "{file}: field {k} missing: {a}");
        }
        if a["proto"] == "arp" {
            assert!(a["community_id"].is_null(), "{file}: {a}");
        } else {
            let cid = a["community_id"]
                .as_str()
                .unwrap_or_else(|| panic!("{file}: community_id: {a}"));
            assert!(cid.starts_with("1:") && cid.len() == 30, "{file}: {cid}");
            assert_eq!(
                a["features"].as_array().map(Vec::len),
                Some(safelink::ann::N_FEATURES),
                "{file}: {a}"
            );
            // Every host-context count includes the flow itself, also in the row of an alert
            // a flow start raised.
            for i in safelink::ann::features::CONTEXT_FEATURES {
                assert!(
                    a["features"][i].as_f64().is_some_and(|c| c >= 1.0),
                    "{file}: context feature {i} below 1: {a}"
                );
            }
        }
    }
}

#[test]
fn every_capture_of_the_shared_manifest() {
    check_manifest(&dir(), 29);
}

#[test]
fn every_capture_of_the_extra_manifest() {
    check_manifest(&dir().join("extra"), 12);
}

#[test]
fn every_capture_recorded_here() {
    check_manifest(&dir().join("recorded"), 3);
}

fn check_manifest(dir: &Path, at_least: usize) {
    let rows = manifest(dir);
    assert!(
        rows.len() >= at_least,
        "{} lists {} captures",
        dir.display(),
        rows.len()
    );
    let mut failures = Vec::new();
    let mut misses_seen = Vec::new();
    for r in &rows {
        let path = dir.join(&r.file);
        let all = alerts(&path);
        check_contract(&r.file, &all);
        let verdict: Result<(), String> = match expected_kind(&r.class) {
            None if all.is_empty() => Ok(()),
            None => Err(format!("false positive: {all:?}")),
            Some(kind) => {
                let hits: Vec<&Value> = all
                    .iter()
                    .filter(|a| a["kind"] == kind && names_attacker(a, &r.attacker))
                    .collect();
                match hits.len() {
                    1 => Ok(()),
                    0 => Err(format!("no {kind} alert naming {}: {all:?}", r.attacker)),
                    n => Err(format!("{n} {kind} alerts for one incident: {hits:?}")),
                }
            }
        };
        let listed = KNOWN_MISSES.iter().find(|(f, _)| *f == r.file);
        match (verdict, listed) {
            (Ok(()), None) => eprintln!("ok    {}", r.file),
            (Ok(()), Some(_)) => failures.push(format!(
                "{}: passes now; remove it from KNOWN_MISSES and the README",
                r.file
            )),
            (Err(e), Some((_, why))) => {
                eprintln!("KNOWN {}: {why} ({e})", r.file);
                misses_seen.push(r.file.clone());
            }
            (Err(e), None) => failures.push(format!("{}: {e}", r.file)),
        }
    }
    for (f, _) in KNOWN_MISSES {
        assert!(
            rows.iter().any(|r| r.file == *f),
            "KNOWN_MISSES names {f}, which the manifest does not list"
        );
    }
    assert!(
        failures.is_empty(),
        "{} captures wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn known_misses_are_documented_in_the_readme() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/detect/README.md"))
            .expect("safelink/src/detect/README.md");
    for (f, _) in KNOWN_MISSES {
        assert!(readme.contains(f), "README does not explain {f}");
    }
}

#[test]
fn table_format_and_flows_mode() {
    let syn = dir().join("portscan__syn-scan-29ports.pcap");
    let (ok, out, err) = analyze(&["--format", "table"], &syn);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("KIND"),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("port_scan") && l.contains("10.100.25.14")),
        "{out}"
    );
    let (ok, out, _) = analyze(
        &["--format", "table"],
        &dir().join("benign__dns-lookups.pcapng"),
    );
    assert!(ok);
    assert!(out.contains("(no alerts)"), "{out}");
    // --flows keeps printing flow records only.
    let (ok, out, _) = analyze(&["--flows"], &syn);
    assert!(ok);
    let recs: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recs.len(), 29);
    assert!(recs.iter().all(|r| r["type"] == "flow"));
    // --no-dfa: nothing printed.
    let (ok, out, _) = analyze(&["--no-dfa"], &syn);
    assert!(ok && out.is_empty(), "{out}");
}

#[test]
fn ids_continue_across_files_and_errors_are_clear() {
    let out = Command::new(BIN)
        .arg("analyze")
        .arg(dir().join("portscan__syn-scan-29ports.pcap"))
        .arg(dir().join("arpscan__arp-request-sweep-24.pcap"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let ids: Vec<u64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>());
    assert!(ids.len() >= 2);
    let (ok, out, err) = analyze(&[], Path::new("/nonexistent/capture.pcap"));
    assert!(!ok && out.is_empty());
    assert!(err.contains("/nonexistent/capture.pcap"), "{err}");
    let bad = std::env::temp_dir().join(format!("safelink-detect-cfg-{}.toml", std::process::id()));
    std::fs::write(&bad, "[dfa.port_scan]\nports = 0\n").unwrap();
    let (ok, _, err) = analyze(
        &["--config", bad.to_str().unwrap()],
        &dir().join("portscan__syn-scan-29ports.pcap"),
    );
    std::fs::remove_file(&bad).ok();
    assert!(!ok && err.contains("port_scan.ports"), "{err}");
}

#[test]
fn bench_detect_reports_rate_and_rss() {
    let (ok, out, err) = analyze(
        &["--bench-detect", "--bench-secs", "0.2"],
        &dir().join("portscan__nmap-syn-scan-1000ports.pcapng"),
    );
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert!(v["records_per_sec"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["peak_rss_kib"].as_u64().unwrap() > 0, "{v}");
    assert!(v["records"].as_u64().unwrap() > 1000, "{v}");
}
