//! EVE that Suricata's tooling accepts: alerts of real captures, written by the real sink
//! (`safelink analyze --ann --store DIR --eve-log FILE`, as `run --eve-log` does) and by the
//! API's export body, each line validated with Python's `jsonschema` against Suricata's own
//! schema rules (`tests/data/suricata-eve-schema-subset.json`: the top level allows only
//! Suricata's property names, requires `event_type` and `timestamp`, and the definitions of
//! every field SafeLink writes, `timestamp`'s pattern and the `alert` object among them, are
//! Suricata's, verbatim). Debian's `python3-jsonschema` (setup.sh --test).
use std::path::{Path, PathBuf};
use std::process::Command;

use safelink::store::{AlertFilter, Store};
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every line of `lines` against the schema, in one Python process; panics naming the first
/// invalid line and the validator's reason.
fn validate(lines: &str) {
    let schema = root().join("tests/data/suricata-eve-schema-subset.json");
    let script = r#"
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
v = jsonschema.Draft7Validator(schema)
n = 0
for i, line in enumerate(sys.stdin):
    ev = json.loads(line)
    errs = sorted(v.iter_errors(ev), key=lambda e: list(e.path))
    if errs:
        print(f"line {i + 1}: {errs[0].message} at {list(errs[0].path)}")
        sys.exit(1)
    n += 1
print(n)
"#;
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .arg(&schema)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("/usr/bin/python3 (setup.sh --test installs python3-jsonschema)");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "EVE not valid under Suricata's schema: {text}"
    );
    assert_eq!(text.trim(), lines.lines().count().to_string());
}

#[test]
fn eve_from_real_captures_is_valid_under_suricatas_schema() {
    let tmp = tempfile::tempdir().unwrap();
    let eve_file = tmp.path().join("eve.json");
    let pcaps = root().join("tests/pcaps");
    let out = Command::new(env!("CARGO_BIN_EXE_safelink"))
        .args(["analyze", "--ann", "--model"])
        .arg(root().join("models/base.onnx"))
        .arg("--store")
        .arg(tmp.path())
        .arg("--eve-log")
        .arg(&eve_file)
        .args(
            [
                "portscan__syn-scan-29ports.pcap",
                "sshbrute__password-guessing-11conns.pcap",
                "arpspoof__arpspoof-bidirectional-mitm.pcap",
                "synflood__spoofed-syn-ecn-cwr.pcapng",
            ]
            .map(|f| pcaps.join(f)),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = std::fs::read_to_string(&eve_file).unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let stored = store
        .query(&AlertFilter::default(), 10_000, None)
        .unwrap()
        .alerts;
    // One EVE line per stored alert, each naming its stored id.
    assert_eq!(file.lines().count(), stored.len());
    assert!(stored.len() >= 5, "{} alerts", stored.len());
    let mut ids: Vec<u64> = Vec::new();
    let mut kinds = std::collections::BTreeSet::new();
    for line in file.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let md = &v["alert"]["metadata"];
        let id: u64 = md["safelink_id"][0].as_str().unwrap().parse().unwrap();
        let a = store.get(id).unwrap().unwrap();
        assert_eq!(v["alert"]["category"], a.kind.as_str());
        assert_eq!(md["source"][0], a.source.as_str());
        // A flow id exactly where there is a flow (ARP alerts have none).
        assert_eq!(
            v.get("flow_id").is_some(),
            a.community_id.is_some(),
            "{line}"
        );
        assert!(
            v["timestamp"].as_str().unwrap().ends_with("+0000"),
            "{line}"
        );
        kinds.insert(a.kind.as_str());
        ids.push(id);
    }
    ids.sort_unstable();
    assert_eq!(ids, (1..=stored.len() as u64).collect::<Vec<_>>());
    for k in [
        "port_scan",
        "ssh_brute_force",
        "arp_spoof",
        "syn_flood",
        "anomalous_flow",
    ] {
        assert!(kinds.contains(k), "no {k} alert in {kinds:?}");
    }
    validate(&file);
    // The API's export body of the same store.
    let body = String::from_utf8(safelink::api::to_eve_lines(&stored)).unwrap();
    assert_eq!(body.lines().count(), stored.len());
    validate(&body);
}

/// The schema subset is strict: an event with the old top-level `safelink` object, or a `Z`
/// timestamp, is refused (the validator is not a rubber stamp).
#[test]
fn the_schema_refuses_what_suricata_refuses() {
    let ok = r#"{"timestamp":"2024-05-01T12:05:00.000000+0000","event_type":"alert","alert":{"action":"allowed","gid":1,"signature_id":5100004,"rev":1,"signature":"s","category":"arp_spoof","severity":1,"metadata":{"kind":["arp_spoof"]}}}"#;
    validate(&format!("{ok}\n"));
    for bad in [
        ok.replace("+0000", "Z"),
        ok.replace(r#""event_type""#, r#""safelink":{},"event_type""#),
        ok.replace(r#""gid":1"#, r#""gid":1,"kind":"x""#),
    ] {
        let r = std::panic::catch_unwind(|| validate(&format!("{bad}\n")));
        assert!(r.is_err(), "accepted: {bad}");
    }
}
