//! `cargo xtask eval DIR...` (`safelink model eval-captures`): every capture of each
//! directory's `MANIFEST.tsv` replayed once through the real pipeline (rule automata and the
//! ANN at its alert threshold, batched as live), scored three ways — rules only, ANN only,
//! both — at two levels:
//!
//! - **captures**: an attack capture is detected by the rules when a rule alert of the
//!   manifest class's kind names the attacker (`src_ip`/`src_mac`; for `victim X`, `dest_ip`
//!   is X), by the ANN when an ANN alert has the attacker (or victim) at either end; a benign
//!   capture counts every alert raised on it as false;
//! - **flows** (labelled as in `ann::dataset`: every flow of a benign capture is benign, a
//!   flow of an attack capture with the named address at either end is an attack, the rest
//!   left out): the ANN's score; the rules' 1 when an endpoint is the source of a rule alert
//!   of that capture, else 0; both: the larger. Flow recall and false-positive rate at the
//!   ANN threshold (rules: flagged or not), ROC-AUC (Mann-Whitney, ties half);
//! - **families**: the families the capture's ANN alerts say their flows resemble
//!   (`resembles`, [`crate::ann::family`]), counted per capture (the confusion of the family
//!   label against the manifest class);
//! - **shapes**: the benign flows and those flagged, per [`FlowShape`] — where the false
//!   positives come from: a lone unanswered datagram or probe carries little evidence by
//!   itself (an answer captured without its query looks like reflection, a lone SYN like one
//!   probe of a scan), a two-way session carries much.
use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::alert::{Alert, AlertSource};
use crate::ann::ModelHandle;
use crate::ann::dataset::{ManifestEntry, read_manifest};
use crate::config::Config;
use crate::pipeline::{Pipeline, Stages};
use crate::record::FlowRecord;
use crate::replay::replay_file;

/// The rule kind an attack class of the manifests must raise.
pub fn expected_kind(class: &str) -> Option<&'static str> {
    Some(match class {
        "portscan" => "port_scan",
        "sweep" => "host_sweep",
        "arpscan" => "arp_scan",
        "arpspoof" => "arp_spoof",
        "sshbrute" => "ssh_brute_force",
        "loginbrute" => "login_brute_force",
        "synflood" => "syn_flood",
        "udpflood" => "udp_flood",
        "icmpflood" => "icmp_flood",
        "amplification" => "amplification",
        _ => return None,
    })
}

/// Which detectors a row of the table counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Rules,
    Ann,
    Both,
}

pub const MODES: [Mode; 3] = [Mode::Rules, Mode::Ann, Mode::Both];

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Rules => "rules only",
            Mode::Ann => "ANN only",
            Mode::Both => "rules + ANN",
        }
    }
}

/// One capture's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct CaptureResult {
    pub dir: String,
    pub file: String,
    pub class: String,
    /// Attack captures: detected by rules, by the ANN.
    pub rules_detected: bool,
    pub ann_detected: bool,
    /// Alerts raised, by source.
    pub rule_alerts: u64,
    pub ann_alerts: u64,
    pub flows: u64,
    /// ANN alerts per family they resemble (`-`: no `resembles`).
    pub ann_resembles: BTreeMap<String, u64>,
}

/// One row of the table.
#[derive(Clone, Debug, Serialize)]
pub struct ModeResult {
    pub mode: Mode,
    pub attack_captures: u64,
    pub attack_captures_detected: u64,
    pub benign_captures: u64,
    /// Benign captures with at least one alert, and all the alerts raised on them.
    pub benign_captures_alerting: u64,
    pub benign_false_alerts: u64,
    pub false_alerts_per_benign_capture: f64,
    pub attack_flows: u64,
    pub attack_flows_flagged: u64,
    pub benign_flows: u64,
    pub benign_flows_flagged: u64,
    pub flow_recall: f64,
    pub flow_fpr: f64,
    pub roc_auc: Option<f64>,
    /// The benign flows and those flagged, per shape (every shape, in [`SHAPES`] order).
    pub benign_by_shape: Vec<ShapeCount>,
}

/// Benign flows of one shape, and how many of them a mode flagged.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ShapeCount {
    pub shape: FlowShape,
    pub flows: u64,
    pub flagged: u64,
}

/// The whole evaluation.
#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    pub dirs: Vec<String>,
    pub model: String,
    pub threshold: f32,
    pub modes: Vec<ModeResult>,
    pub captures: Vec<CaptureResult>,
}

/// What a flow looks like from the packets it holds, for the false-positive breakdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowShape {
    /// One UDP (or other non-TCP, non-ICMP) packet and nothing back: a query without its
    /// answer, or an answer captured without its query.
    LoneDatagram,
    /// One TCP or ICMP packet and nothing back: a SYN, a stray segment, an echo request.
    LoneProbe,
    /// Several packets one way and nothing back.
    OneWay,
    /// Packets both ways.
    TwoWay,
}

pub const SHAPES: [FlowShape; 4] = [
    FlowShape::LoneDatagram,
    FlowShape::LoneProbe,
    FlowShape::OneWay,
    FlowShape::TwoWay,
];

impl FlowShape {
    pub fn of(f: &FlowRecord) -> Self {
        use crate::detect::dfa::classify::{ICMP, ICMPV6, TCP};
        match (f.fwd.packets, f.rev.packets) {
            (_, r) if r > 0 => FlowShape::TwoWay,
            (1, _) if matches!(f.proto, TCP | ICMP | ICMPV6) => FlowShape::LoneProbe,
            (1, _) => FlowShape::LoneDatagram,
            _ => FlowShape::OneWay,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FlowShape::LoneDatagram => "lone datagram, no answer (UDP, other)",
            FlowShape::LoneProbe => "lone probe, no answer (TCP, ICMP)",
            FlowShape::OneWay => "several packets one way",
            FlowShape::TwoWay => "two-way",
        }
    }
}

/// A labelled flow: (attack?, ANN score, flagged by a rule alert?, shape).
type FlowPoint = (bool, f32, bool, FlowShape);

/// A scored flow as the tap saw it: (manifest label, score, source, destination, shape).
type Scored = (Option<f32>, f32, IpAddr, IpAddr, FlowShape);

fn names_attacker(a: &Alert, attacker: &str) -> bool {
    let named = |text: &str| -> Vec<String> {
        text.split(|c: char| !(c.is_ascii_hexdigit() || c == '.' || c == ':'))
            .filter(|t| {
                t.parse::<IpAddr>().is_ok() || (t.len() == 17 && t.matches(':').count() == 5)
            })
            .map(str::to_owned)
            .collect()
    };
    if let Some(rest) = attacker.split("victim").nth(1) {
        return named(rest)
            .first()
            .is_some_and(|v| a.dest_ip.map(|i| i.to_string()).as_deref() == Some(v.as_str()));
    }
    named(attacker).iter().any(|n| {
        a.src_ip.map(|i| i.to_string()).as_deref() == Some(n.as_str())
            || a.src_mac.as_deref().map(str::to_lowercase).as_deref() == Some(n.as_str())
    })
}

/// Replays one capture; returns its result and its labelled flows.
fn one(
    cfg: &Config,
    model: &ModelHandle,
    dir: &Path,
    e: &ManifestEntry,
) -> Result<(CaptureResult, Vec<FlowPoint>)> {
    let scored: Arc<Mutex<Vec<Scored>>> = Arc::default();
    let tap = scored.clone();
    let entry = e.clone();
    let mut p = Pipeline::new(
        cfg,
        Stages {
            dfa: true,
            model: Some(model.clone()),
            keep_alerts: true,
            lossless: true,
            score_tap: Some(Box::new(move |f, _, s, _| {
                tap.lock().expect("tap").push((
                    entry.label(f),
                    s,
                    f.src_ip,
                    f.dst_ip,
                    FlowShape::of(f),
                ));
            })),
            ..Stages::default()
        },
    )?;
    let path = dir.join(&e.file);
    replay_file(&path, &cfg.flows.timeouts(), |_, _| {}, |r| p.feed(&r))
        .with_context(|| format!("replaying {}", path.display()))?;
    let report = p.finish();
    let (rules, ann): (Vec<&Alert>, Vec<&Alert>) = report
        .alerts
        .iter()
        .partition(|a| a.source == AlertSource::Dfa);
    let want = expected_kind(&e.class);
    let rules_detected = want.is_some_and(|k| {
        rules
            .iter()
            .any(|a| a.kind.as_str() == k && names_attacker(a, &e.attacker))
    });
    let ann_detected = !e.benign()
        && ann.iter().any(|a| {
            [a.src_ip, a.dest_ip]
                .iter()
                .flatten()
                .any(|ip| e.ips.contains(ip))
                || names_attacker(a, &e.attacker)
        });
    let flagged: HashSet<IpAddr> = rules.iter().filter_map(|a| a.src_ip).collect();
    let mut ann_resembles = BTreeMap::new();
    for a in &ann {
        let f = a.resembles.map_or("-", |r| r.family.as_str());
        *ann_resembles.entry(f.to_owned()).or_default() += 1;
    }
    let flows = scored.lock().expect("tap");
    let points = flows
        .iter()
        .filter_map(|&(l, s, a, b, shape)| {
            l.map(|l| {
                (
                    l > 0.5,
                    s,
                    flagged.contains(&a) || flagged.contains(&b),
                    shape,
                )
            })
        })
        .collect();
    Ok((
        CaptureResult {
            dir: dir.display().to_string(),
            file: e.file.clone(),
            class: e.class.clone(),
            rules_detected,
            ann_detected,
            rule_alerts: rules.len() as u64,
            ann_alerts: ann.len() as u64,
            flows: flows.len() as u64,
            ann_resembles,
        },
        points,
    ))
}

/// ROC-AUC of `scores` for `labels` (Mann-Whitney U with average ranks); `None` without both
/// classes.
pub fn roc_auc(points: &[(bool, f64)]) -> Option<f64> {
    let pos = points.iter().filter(|p| p.0).count();
    let neg = points.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    let mut v: Vec<&(bool, f64)> = points.iter().collect();
    v.sort_by(|a, b| a.1.total_cmp(&b.1));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1].1 == v[i].1 {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += v[i..=j].iter().filter(|p| p.0).count() as f64 * avg;
        i = j + 1;
    }
    let u = rank_sum - (pos * (pos + 1)) as f64 / 2.0;
    Some(u / (pos as f64 * neg as f64))
}

fn mode_result(
    mode: Mode,
    threshold: f32,
    caps: &[CaptureResult],
    flows: &[FlowPoint],
) -> ModeResult {
    let detected = |c: &CaptureResult| match mode {
        Mode::Rules => c.rules_detected,
        Mode::Ann => c.ann_detected,
        Mode::Both => c.rules_detected || c.ann_detected,
    };
    let alerts = |c: &CaptureResult| match mode {
        Mode::Rules => c.rule_alerts,
        Mode::Ann => c.ann_alerts,
        Mode::Both => c.rule_alerts + c.ann_alerts,
    };
    let score = |&(_, s, r, _): &FlowPoint| -> f64 {
        match mode {
            Mode::Rules => f64::from(u8::from(r)),
            Mode::Ann => f64::from(s),
            Mode::Both => f64::from(s).max(f64::from(u8::from(r))),
        }
    };
    let flagged = |p: &FlowPoint| score(p) >= f64::from(threshold);
    let attack: Vec<&CaptureResult> = caps.iter().filter(|c| c.class != "benign").collect();
    let benign: Vec<&CaptureResult> = caps.iter().filter(|c| c.class == "benign").collect();
    let false_alerts: u64 = benign.iter().map(|c| alerts(c)).sum();
    let (af, bf): (Vec<&FlowPoint>, Vec<&FlowPoint>) = flows.iter().partition(|p| p.0);
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let afl = af.iter().filter(|p| flagged(p)).count();
    let bfl = bf.iter().filter(|p| flagged(p)).count();
    let pts: Vec<(bool, f64)> = flows.iter().map(|p| (p.0, score(p))).collect();
    ModeResult {
        mode,
        attack_captures: attack.len() as u64,
        attack_captures_detected: attack.iter().filter(|c| detected(c)).count() as u64,
        benign_captures: benign.len() as u64,
        benign_captures_alerting: benign.iter().filter(|c| alerts(c) > 0).count() as u64,
        benign_false_alerts: false_alerts,
        false_alerts_per_benign_capture: ratio(false_alerts as usize, benign.len()),
        attack_flows: af.len() as u64,
        attack_flows_flagged: afl as u64,
        benign_flows: bf.len() as u64,
        benign_flows_flagged: bfl as u64,
        flow_recall: ratio(afl, af.len()),
        flow_fpr: ratio(bfl, bf.len()),
        roc_auc: roc_auc(&pts),
        benign_by_shape: SHAPES
            .iter()
            .map(|&shape| {
                let of: Vec<&&FlowPoint> = bf.iter().filter(|p| p.3 == shape).collect();
                ShapeCount {
                    shape,
                    flows: of.len() as u64,
                    flagged: of.iter().filter(|p| flagged(p)).count() as u64,
                }
            })
            .collect(),
    }
}

/// Evaluates every capture of every directory with `model` and the detectors of `cfg`
/// (`[dfa]`, `[ann]` threshold and grouping, `[flows]`).
pub fn evaluate(cfg: &Config, model_path: &Path, dirs: &[PathBuf]) -> Result<EvalReport> {
    let model = ModelHandle::open(model_path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", model_path.display()))?;
    let mut cfg = cfg.clone();
    cfg.ann.enabled = true;
    let mut caps = Vec::new();
    let mut flows = Vec::new();
    for d in dirs {
        for e in read_manifest(d)? {
            let (c, f) = one(&cfg, &model, d, &e)?;
            caps.push(c);
            flows.extend(f);
        }
    }
    let t = cfg.ann.detector.threshold;
    Ok(EvalReport {
        dirs: dirs.iter().map(|d| d.display().to_string()).collect(),
        model: model_path.display().to_string(),
        threshold: t,
        modes: MODES
            .iter()
            .map(|&m| mode_result(m, t, &caps, &flows))
            .collect(),
        captures: caps,
    })
}

impl EvalReport {
    /// The two tables (captures, flows) as Markdown, then the captures the ANN or the rules
    /// got wrong.
    pub fn markdown(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Evaluation of {} with model {} (ANN threshold {})\n",
            self.dirs.join(", "),
            self.model,
            self.threshold
        );
        let _ = writeln!(
            s,
            "| detectors | attack captures detected | benign captures with an alert | false alerts per benign capture |"
        );
        let _ = writeln!(s, "|---|---|---|---|");
        for m in &self.modes {
            let _ = writeln!(
                s,
                "| {} | {}/{} | {}/{} | {:.2} ({} alerts) |",
                m.mode.as_str(),
                m.attack_captures_detected,
                m.attack_captures,
                m.benign_captures_alerting,
                m.benign_captures,
                m.false_alerts_per_benign_capture,
                m.benign_false_alerts
            );
        }
        let _ = writeln!(
            s,
            "\n| detectors | attack flows flagged (recall) | benign flows flagged (FPR) | ROC-AUC |"
        );
        let _ = writeln!(s, "|---|---|---|---|");
        for m in &self.modes {
            let _ = writeln!(
                s,
                "| {} | {}/{} ({:.1} %) | {}/{} ({:.2} %) | {} |",
                m.mode.as_str(),
                m.attack_flows_flagged,
                m.attack_flows,
                m.flow_recall * 100.0,
                m.benign_flows_flagged,
                m.benign_flows,
                m.flow_fpr * 100.0,
                m.roc_auc.map_or("—".into(), |a| format!("{a:.4}"))
            );
        }
        let _ = writeln!(
            s,
            "\n| benign flows by shape | flows | {} |",
            self.modes
                .iter()
                .map(|m| format!("flagged, {}", m.mode.as_str()))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        let _ = writeln!(s, "|---|---|{}", "---|".repeat(self.modes.len()));
        for (i, shape) in SHAPES.iter().enumerate() {
            let n = self.modes.first().map_or(0, |m| m.benign_by_shape[i].flows);
            let cells: Vec<String> = self
                .modes
                .iter()
                .map(|m| {
                    let k = m.benign_by_shape[i].flagged;
                    let pct = if n == 0 {
                        0.0
                    } else {
                        100.0 * k as f64 / n as f64
                    };
                    format!("{k} ({pct:.2} %)")
                })
                .collect();
            let _ = writeln!(s, "| {} | {n} | {} |", shape.as_str(), cells.join(" | "));
        }
        let _ = writeln!(
            s,
            "\n| capture | class | rules | ANN | rule alerts | ANN alerts | ANN alerts resemble | flows |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
        for c in &self.captures {
            let mark = |hit: bool, n: u64| {
                if c.class == "benign" {
                    if n == 0 { "clean" } else { "FALSE ALERT" }
                } else if hit {
                    "detected"
                } else {
                    "missed"
                }
            };
            let like: Vec<String> = c
                .ann_resembles
                .iter()
                .map(|(f, n)| format!("{f} {n}"))
                .collect();
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                c.file,
                c.class,
                mark(c.rules_detected, c.rule_alerts),
                mark(c.ann_detected, c.ann_alerts),
                c.rule_alerts,
                c.ann_alerts,
                if like.is_empty() {
                    "—".to_string()
                } else {
                    like.join(", ")
                },
                c.flows
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_by_ranks() {
        let p = |v: &[(bool, f64)]| roc_auc(v);
        assert_eq!(p(&[(true, 0.9), (false, 0.1)]), Some(1.0));
        assert_eq!(p(&[(true, 0.1), (false, 0.9)]), Some(0.0));
        assert_eq!(p(&[(true, 0.5), (false, 0.5)]), Some(0.5));
        // Binary rule flags: recall 1/2, FPR 0 -> (1 + 0.5) / 2... = 0.75.
        assert_eq!(
            p(&[(true, 1.0), (true, 0.0), (false, 0.0), (false, 0.0)]),
            Some(0.75)
        );
        assert_eq!(p(&[(true, 1.0)]), None);
    }

    #[test]
    fn shapes_of_flows() {
        use crate::detect::dfa::testutil::{flow, session};
        let lone = |proto| FlowShape::of(&flow("192.0.2.1", 53, "192.0.2.2", 40000, proto, 1));
        assert_eq!(lone(17), FlowShape::LoneDatagram);
        assert_eq!(lone(47), FlowShape::LoneDatagram);
        assert_eq!(lone(6), FlowShape::LoneProbe);
        assert_eq!(lone(1), FlowShape::LoneProbe);
        assert_eq!(lone(58), FlowShape::LoneProbe);
        let mut stream = flow("192.0.2.1", 5004, "192.0.2.2", 5004, 17, 1);
        stream.fwd.packets = 40;
        assert_eq!(FlowShape::of(&stream), FlowShape::OneWay);
        let s = session("192.0.2.1", 40000, "192.0.2.2", 22, 1, 4, 3300);
        assert_eq!(FlowShape::of(&s), FlowShape::TwoWay);
    }

    #[test]
    fn benign_flagged_per_shape() {
        use FlowShape::*;
        let flows = [
            (false, 0.95, false, LoneDatagram),
            (false, 0.20, false, LoneDatagram),
            (false, 0.91, true, TwoWay),
            (false, 0.10, true, TwoWay),
            (false, 0.10, false, TwoWay),
            // Attack flows are not in the benign breakdown.
            (true, 0.99, true, LoneProbe),
        ];
        let count = |m: Mode| -> Vec<(FlowShape, u64, u64)> {
            mode_result(m, 0.9, &[], &flows)
                .benign_by_shape
                .iter()
                .map(|c| (c.shape, c.flows, c.flagged))
                .collect()
        };
        assert_eq!(
            count(Mode::Ann),
            vec![
                (LoneDatagram, 2, 1),
                (LoneProbe, 0, 0),
                (OneWay, 0, 0),
                (TwoWay, 3, 1)
            ]
        );
        assert_eq!(
            count(Mode::Rules),
            vec![
                (LoneDatagram, 2, 0),
                (LoneProbe, 0, 0),
                (OneWay, 0, 0),
                (TwoWay, 3, 2)
            ]
        );
        assert_eq!(count(Mode::Both)[3], (TwoWay, 3, 2));
        assert_eq!(count(Mode::Both)[0], (LoneDatagram, 2, 1));
    }
}
