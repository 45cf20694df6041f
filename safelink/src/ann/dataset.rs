//! Labelled flows from the shipped captures (`tests/pcaps` + `MANIFEST.tsv`) and the fixed
//! held-out ("golden") split.
//!
//! Labelling rules:
//! - a `benign` capture: every flow is benign (0);
//! - an attack capture: a flow with the manifest's attacker (or, for spoofed floods and
//!   reflection, victim) address at either end is an attack (1);
//! - any other flow of an attack capture (background traffic) is left out: it is neither
//!   known benign nor known attack;
//! - an attack capture whose manifest names no IP address (ARP spoofing: a MAC only) gives no
//!   labelled flows.
//!
//! Split: a flow is golden (held out) when the FNV-1a hash of `file|src|sport|dst|dport|proto|
//! first_ns` is 0 mod [`GOLDEN_MODULUS`], so the split never depends on file order or on the
//! other flows.
use std::io::{BufRead as _, Write as _};
use std::net::IpAddr;
use std::path::Path;

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};

use super::features::{N_FEATURES, extract};
use crate::config::FlowTimeouts;
use crate::context::ContextTracker;
use crate::record::{FlowRecord, Record};
use crate::replay::replay_file;

/// One flow in [`GOLDEN_MODULUS`] is held out.
pub const GOLDEN_MODULUS: u64 = 5;

/// One line of `MANIFEST.tsv`.
#[derive(Clone, Debug)]
pub struct ManifestEntry {
    pub file: String,
    pub class: String,
    /// Addresses named in the `attacker_ip_or_mac` column.
    pub ips: Vec<IpAddr>,
    /// That column as written (lower case): IPs and MACs, or `victim X` for spoofed and
    /// reflected floods.
    pub attacker: String,
}

impl ManifestEntry {
    pub fn benign(&self) -> bool {
        self.class == "benign"
    }

    /// 1.0 attack, 0.0 benign, `None` = left out (see the module doc).
    pub fn label(&self, f: &FlowRecord) -> Option<f32> {
        if self.benign() {
            Some(0.0)
        } else if self.ips.contains(&f.src_ip) || self.ips.contains(&f.dst_ip) {
            Some(1.0)
        } else {
            None
        }
    }
}

/// Every IP address in a free-text manifest field.
fn ips_in(field: &str) -> Vec<IpAddr> {
    field
        .split(|c: char| !(c.is_ascii_hexdigit() || c == '.' || c == ':'))
        .filter_map(|t| t.trim_matches(|c| c == '.' || c == ':').parse().ok())
        .collect()
}

/// Reads `dir/MANIFEST.tsv`.
pub fn read_manifest(dir: &Path) -> Result<Vec<ManifestEntry>> {
    let p = dir.join("MANIFEST.tsv");
    let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().unwrap_or_default().split('\t').collect();
    let col = |name: &str| {
        head.iter()
            .position(|h| *h == name)
            .with_context(|| format!("{}: no `{name}` column", p.display()))
    };
    let (cf, cc, ca) = (col("file")?, col("class")?, col("attacker_ip_or_mac")?);
    let mut out = Vec::new();
    for l in lines.filter(|l| !l.trim().is_empty()) {
        let c: Vec<&str> = l.split('\t').collect();
        if c.len() <= cf.max(cc).max(ca) {
            bail!("{}: short line {l:?}", p.display());
        }
        out.push(ManifestEntry {
            file: c[cf].to_string(),
            class: c[cc].to_string(),
            ips: ips_in(c[ca]),
            attacker: c[ca].trim().to_lowercase(),
        });
    }
    Ok(out)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Whether a flow belongs to the held-out set.
pub fn is_golden(file: &str, f: &FlowRecord) -> bool {
    let key = format!(
        "{file}|{}|{}|{}|{}|{}|{}",
        f.src_ip, f.src_port, f.dst_ip, f.dst_port, f.proto, f.first_ns
    );
    fnv1a(key.as_bytes()).is_multiple_of(GOLDEN_MODULUS)
}

/// A labelled flow (also one line of `golden.jsonl`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub file: String,
    pub class: String,
    /// 1.0 attack, 0.0 benign.
    pub label: f32,
    pub golden: bool,
    pub src_ip: IpAddr,
    pub src_port: u16,
    pub dst_ip: IpAddr,
    pub dst_port: u16,
    pub proto: u8,
    pub first_ns: u64,
    /// The raw feature vector (feature vector version in the model card / metadata).
    pub features: Vec<f32>,
}

/// Flow counts of one capture.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CaptureCount {
    pub file: String,
    pub class: String,
    pub flows: u64,
    pub attack: u64,
    pub benign: u64,
    /// Flows left out (background of an attack capture).
    pub unlabelled: u64,
    pub golden: u64,
}

/// Replays one capture and returns its flow records, with their host context (as the
/// pipeline annotates them).
pub fn flows_of(path: &Path) -> Result<Vec<FlowRecord>> {
    let mut flows = Vec::new();
    let mut context = ContextTracker::new();
    replay_file(
        path,
        &FlowTimeouts::default(),
        |_, _| {},
        |r| {
            if let Record::Flow(f) = context.annotate(&r).into_owned() {
                flows.push(f);
            }
        },
    )
    .with_context(|| format!("replaying {}", path.display()))?;
    Ok(flows)
}

/// Labelled samples of every capture in the manifest, in manifest order, and per-capture counts.
pub fn collect(dir: &Path) -> Result<(Vec<Sample>, Vec<CaptureCount>)> {
    let mut samples = Vec::new();
    let mut counts = Vec::new();
    for e in read_manifest(dir)? {
        let flows = flows_of(&dir.join(&e.file))?;
        let mut c = CaptureCount {
            file: e.file.clone(),
            class: e.class.clone(),
            flows: flows.len() as u64,
            ..Default::default()
        };
        for f in &flows {
            let Some(label) = e.label(f) else {
                c.unlabelled += 1;
                continue;
            };
            let golden = is_golden(&e.file, f);
            if label > 0.5 {
                c.attack += 1;
            } else {
                c.benign += 1;
            }
            c.golden += u64::from(golden);
            samples.push(Sample {
                file: e.file.clone(),
                class: e.class.clone(),
                label,
                golden,
                src_ip: f.src_ip,
                src_port: f.src_port,
                dst_ip: f.dst_ip,
                dst_port: f.dst_port,
                proto: f.proto,
                first_ns: f.first_ns,
                features: extract(f).to_vec(),
            });
        }
        counts.push(c);
    }
    Ok((samples, counts))
}

/// Writes samples as JSON lines (atomically).
pub fn write_jsonl(path: &Path, samples: &[&Sample]) -> Result<()> {
    let mut buf = Vec::new();
    for s in samples {
        serde_json::to_writer(&mut buf, s)?;
        buf.write_all(b"\n")?;
    }
    super::export::write_atomic(path, &buf).with_context(|| format!("writing {}", path.display()))
}

/// Reads a `golden.jsonl` written by [`write_jsonl`].
pub fn read_jsonl(path: &Path) -> Result<Vec<Sample>> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut out = Vec::new();
    for (i, l) in std::io::BufReader::new(f).lines().enumerate() {
        let l = l?;
        if l.trim().is_empty() {
            continue;
        }
        let s: Sample = serde_json::from_str(&l)
            .with_context(|| format!("{}:{}: not a sample", path.display(), i + 1))?;
        if s.features.len() != N_FEATURES {
            bail!(
                "{}:{}: {} features, expected {N_FEATURES}",
                path.display(),
                i + 1,
                s.features.len()
            );
        }
        out.push(s);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_addresses() {
        let v = |s: &str| ips_in(s).iter().map(|i| i.to_string()).collect::<Vec<_>>();
        assert_eq!(v("172.16.0.8"), ["172.16.0.8"]);
        assert_eq!(v("00:0c:29:20:a8:7f (10.0.0.128)"), ["10.0.0.128"]);
        assert_eq!(
            v("spoofed (~9700 sources); victim 10.10.10.10"),
            ["10.10.10.10"]
        );
        assert_eq!(
            v("208.104.95.10 (NTP server answering monlist)"),
            ["208.104.95.10"]
        );
        assert!(v("00:e0:4d:3c:25:7b").is_empty());
        assert!(v("n/a").is_empty());
        assert_eq!(v("victim 2001:db8::1."), ["2001:db8::1"]);
    }
}
