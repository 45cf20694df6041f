//! The shipped benign feature rows (`models/benign/flows.csv.gz`): they are this build's
//! feature rows, they match their manifest capture by capture, and `safelink analyze
//! --features` prints rows the recipe reads back bit for bit.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use safelink::ann::dataset::flows_of;
use safelink::ann::features::extract;
use safelink::ann::recipe::benign_rows;
use safelink::ann::rows::FeatureRow;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn shipped_rows_match_their_manifest() {
    let (samples, count) = benign_rows(&root().join("models/benign/flows.csv.gz")).unwrap();
    let manifest = std::fs::read_to_string(root().join("models/benign/MANIFEST.tsv")).unwrap();
    let mut lines = manifest.lines();
    let head: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let col = |n: &str| head.iter().position(|h| *h == n).unwrap();
    let (cc, cf, c6) = (col("capture"), col("flows"), col("ipv6_flows"));
    let mut want: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for l in lines {
        let c: Vec<&str> = l.split('\t').collect();
        want.insert(
            format!("benign#{}", c[cc]),
            (c[cf].parse().unwrap(), c[c6].parse().unwrap()),
        );
    }
    let mut got: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for s in &samples {
        let e = got.entry(s.file.clone()).or_default();
        e.0 += 1;
        e.1 += u64::from(s.src_ip.is_ipv6());
        assert_eq!(s.label, 0.0);
        assert!(s.features.iter().all(|v| v.is_finite() && *v >= 0.0));
    }
    assert_eq!(got, want, "flows and IPv6 flows per capture");
    assert_eq!(want.len(), 2433);
    assert_eq!(count.flows, 72_494);
    assert_eq!(count.benign, 72_494);
    assert_eq!(
        count.golden,
        samples.iter().filter(|s| s.golden).count() as u64
    );
    assert_eq!(count.golden, 14_516);
}

#[test]
fn analyze_features_prints_the_rows_the_recipe_reads() {
    let pcap = root().join("tests/pcaps/benign__http-ipv6.pcap");
    let out = Command::new(env!("CARGO_BIN_EXE_safelink"))
        .args(["analyze", "--no-dfa", "--features"])
        .arg(&pcap)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next().unwrap(), FeatureRow::csv_header());
    let rows: Vec<FeatureRow> = lines
        .map(|l| FeatureRow::from_fields(&l.split(',').collect::<Vec<_>>()).unwrap())
        .collect();
    let flows = flows_of(&pcap).unwrap();
    assert_eq!(rows.len(), 15);
    assert_eq!(rows.len(), flows.len());
    for (r, f) in rows.iter().zip(&flows) {
        assert_eq!(r.ip_version, 6);
        assert_eq!(
            (r.proto, r.src_port, r.dst_port),
            (f.proto, f.src_port, f.dst_port)
        );
        let want = extract(f);
        for (a, b) in r.features.iter().zip(want.iter()) {
            assert_eq!(a.to_bits(), b.to_bits());
        }
    }
}
