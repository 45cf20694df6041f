//! The held-out captures of the fleet proofs: every capture of the three flow-based attack
//! families (SSH brute force, port scan, SYN flood) and every benign capture of the labelled
//! capture directories (`tests/pcaps`, `tests/pcaps/extra`, `models/lab`) that the fleet
//! tests do not replay into a sensor, one directory per class (symbolic links and the
//! manifest rows), scored with `safelink model eval-captures --json` (the `analyze` pipeline:
//! rule automata and the ANN at its alert threshold).
//!
//! The set is fixed by this rule, not chosen by result. `models/lab` was never training data
//! of the shipped base model; the other directories' captures were (the base model's training
//! set), so their figures measure what the fleet model kept, the lab's what it generalises.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The flow-based families of the fleet proof (the ARP captures make no flows).
pub const FAMILIES: [&str; 3] = ["sshbrute", "portscan", "synflood"];

/// Every capture a fleet test replays into a sensor: never held out.
pub const REPLAYED: &[&str] = &[
    "sshbrute__hydra-1task.pcap",
    "portscan__nmap-syn-scan-1000ports.pcapng",
    "arpspoof__arpspoof-bidirectional-mitm.pcap",
    "synflood__spoofed-syn-ecn-cwr.pcapng",
    "benign__dns-lookups.pcapng",
    "benign__ssh-session.pcap",
    "benign__telnet-session.pcap",
    "benign__web-browsing-espn.pcapng",
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The held-out directories, one per class (the three families and `benign`).
pub struct HeldOut {
    _dir: tempfile::TempDir,
    pub by_class: BTreeMap<String, PathBuf>,
}

impl HeldOut {
    /// Builds the directories: every row of the source manifests whose class is one of the
    /// families or benign and whose file is not in `replayed`.
    pub fn build(replayed: &[&str]) -> HeldOut {
        let dir = tempfile::tempdir().unwrap();
        let mut by_class = BTreeMap::new();
        let root = workspace();
        for src in [
            root.join("tests/pcaps"),
            root.join("tests/pcaps/extra"),
            root.join("models/lab"),
        ] {
            let text = std::fs::read_to_string(src.join("MANIFEST.tsv")).unwrap();
            let mut lines = text.lines();
            let head: Vec<&str> = lines.next().unwrap().split('\t').collect();
            let col = |n: &str| head.iter().position(|h| *h == n).unwrap();
            let (cf, cc, ca) = (col("file"), col("class"), col("attacker_ip_or_mac"));
            for l in lines.filter(|l| !l.trim().is_empty()) {
                let c: Vec<&str> = l.split('\t').collect();
                let (file, class) = (c[cf], c[cc]);
                if !(FAMILIES.contains(&class) || class == "benign") || replayed.contains(&file) {
                    continue;
                }
                let d = dir.path().join(class);
                if !d.exists() {
                    std::fs::create_dir(&d).unwrap();
                    std::fs::write(d.join("MANIFEST.tsv"), "file\tclass\tattacker_ip_or_mac\n")
                        .unwrap();
                    by_class.insert(class.to_string(), d.clone());
                }
                std::os::unix::fs::symlink(src.join(file), d.join(file)).unwrap();
                let mut m = std::fs::read_to_string(d.join("MANIFEST.tsv")).unwrap();
                m.push_str(&format!("{file}\t{class}\t{}\n", c[ca]));
                std::fs::write(d.join("MANIFEST.tsv"), m).unwrap();
            }
        }
        for f in FAMILIES.iter().chain(&["benign"]) {
            assert!(by_class.contains_key(*f), "no held-out {f} capture");
        }
        HeldOut {
            _dir: dir,
            by_class,
        }
    }

    /// Scores every held-out class with `model`.
    pub fn eval(&self, model: &Path) -> BTreeMap<String, ClassEval> {
        self.by_class
            .iter()
            .map(|(c, d)| (c.clone(), eval_dir(d, model)))
            .collect()
    }
}

/// One capture's outcome with the ANN alone.
#[derive(Clone, Debug)]
pub struct CaptureEval {
    pub file: String,
    /// An ANN alert names the attacker (or the flood's victim).
    pub ann_detected: bool,
    pub ann_alerts: u64,
}

/// One class's outcome with the ANN alone (flows labelled by the manifest).
#[derive(Clone, Debug)]
pub struct ClassEval {
    pub captures: Vec<CaptureEval>,
    pub attack_flows: u64,
    pub attack_flagged: u64,
    pub benign_flows: u64,
    pub benign_flagged: u64,
}

impl ClassEval {
    /// Flow recall at the alert threshold (attack classes).
    pub fn recall(&self) -> f64 {
        self.attack_flagged as f64 / self.attack_flows.max(1) as f64
    }

    /// Flow false-positive rate at the alert threshold (the benign class).
    pub fn fpr(&self) -> f64 {
        self.benign_flagged as f64 / self.benign_flows.max(1) as f64
    }

    /// Captures with an ANN alert naming the attacker.
    pub fn detected(&self) -> usize {
        self.captures.iter().filter(|c| c.ann_detected).count()
    }

    /// One line per capture and a total, for the test's output.
    pub fn describe(&self, class: &str) -> String {
        let mut s = if class == "benign" {
            format!(
                "{class}: flows flagged {}/{} (FPR {:.4}); captures with an ANN alert {}/{}",
                self.benign_flagged,
                self.benign_flows,
                self.fpr(),
                self.captures.iter().filter(|c| c.ann_alerts > 0).count(),
                self.captures.len()
            )
        } else {
            format!(
                "{class}: flow recall {}/{} = {:.4}; captures detected {}/{}",
                self.attack_flagged,
                self.attack_flows,
                self.recall(),
                self.detected(),
                self.captures.len()
            )
        };
        for c in &self.captures {
            s.push_str(&format!(
                "\n    {} ann_detected={} ann_alerts={}",
                c.file, c.ann_detected, c.ann_alerts
            ));
        }
        s
    }
}

/// `safelink model eval-captures DIR --model MODEL --json`, ANN-only figures.
pub fn eval_dir(dir: &Path, model: &Path) -> ClassEval {
    let out = Command::new(env!("CARGO_BIN_EXE_safelink"))
        .args(["model", "eval-captures"])
        .arg(dir)
        .arg("--model")
        .arg(model)
        .arg("--json")
        .current_dir(workspace())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "eval-captures {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ann = v["modes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mode"] == "ann")
        .unwrap()
        .clone();
    let n = |k: &str| ann[k].as_u64().unwrap();
    ClassEval {
        captures: v["captures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| CaptureEval {
                file: c["file"].as_str().unwrap().to_string(),
                ann_detected: c["ann_detected"].as_bool().unwrap(),
                ann_alerts: c["ann_alerts"].as_u64().unwrap(),
            })
            .collect(),
        attack_flows: n("attack_flows"),
        attack_flagged: n("attack_flows_flagged"),
        benign_flows: n("benign_flows"),
        benign_flagged: n("benign_flows_flagged"),
    }
}
