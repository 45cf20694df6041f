//! Learning curves of the learner's profiles (`docs/learning.md`, "How fast does it learn?").
//!
//! For each attack family with captures of more than one tool in `tests/pcaps`, a base model
//! is trained the shipped way (`train_base` with the recipe's benign weight and members: the
//! shared captures and the benign feature rows of `models/benign`) but without any capture of
//! that family. A learner on that base then runs
//! three cycles, each fed a third of the remaining captures (round-robin by file name) through
//! the real automata and ANN auto-labelling: under the `seed` profile, the `default` profile
//! without rehearsal, and the `default` profile as shipped. After every cycle, with the ANN alone at its
//! alert threshold:
//! - recall: flows of the family's held-out capture (the last of the family in the manifest,
//!   never ingested) that alert;
//! - FPR: held-out benign flows that alert (the benign half of the base model's golden set,
//!   which holds a fifth of every benign-row capture, plus five benign captures never ingested);
//! - golden: accuracy on the base model's golden set at score 0.5, against the base's.
//!
//! The target for the `default` profile: within 3 cycles, recall ≥ 90 %, FPR ≤ 0.1 %
//! and golden within 2 points. Every figure is printed (`-- --nocapture`) for the docs. For SSH
//! brute force (held out: a password-guessing capture; trained on hydra and ncrack) the
//! `default` profile as shipped (`[learning] rehearsal = 1.0`: benign rows, a quarter of them
//! the ones nearest to the cycle's attack samples, and a quarter as many of the base's own
//! attack rows, a third of those of the cycle's families; two shrunk copies of each attack
//! sample; history replayed family by family) is guarded to meet that target by cycle 2,
//! to keep the family at cycle 3 (recall >= 90 %), and to hold the benign FPR within 0.1 % at
//! every cycle, golden within 2 points. The two other
//! families are measured, not asserted: the held-out port scan is a UDP scan (masscan) while
//! every port scan trained on is TCP, and the base model without any sweep already flags the
//! held-out sweep (it resembles the SYN scans), so there is nothing new to learn.
use std::path::{Path, PathBuf};

use safelink::ann::AnnConfig;
use safelink::ann::eval::evaluate;
use safelink::ann::recipe::{RecipeArgs, train_base};
use safelink::ann::train::TrainConfig;
use safelink::learn::ingest::ingest;
use safelink::learn::{Golden, Learner, LearningSection, Outcome, Profile, load_golden};
use safelink::store::Store;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn pcaps() -> PathBuf {
    root().join("tests/pcaps")
}

/// Never ingested: the benign captures of the held-out benign figure.
const HELD_OUT_BENIGN: [&str; 5] = [
    "benign__quic-youtube",
    "benign__http-ipv6",
    "benign__netflix-streaming",
    "benign__telnet-session",
    "benign__dns-over-tls",
];

/// (file, class) of the manifest, in its order.
fn manifest() -> Vec<(String, String)> {
    std::fs::read_to_string(pcaps().join("MANIFEST.tsv"))
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut it = l.split('\t');
            Some((it.next()?.to_string(), it.next()?.to_string()))
        })
        .collect()
}

/// One point of a curve.
#[derive(Clone, Copy, Debug)]
struct Point {
    recall: (u64, u64),
    fpr: (u64, u64),
    golden: f64,
}

fn pct((n, k): (u64, u64)) -> f64 {
    100.0 * k as f64 / n.max(1) as f64
}

/// Accuracy at 0.5 and (benign rows, benign rows at or above `threshold`) of the golden set.
fn golden_figures(
    model: &safelink::ann::AnnModel,
    g: &Golden,
    threshold: f32,
) -> (f64, (u64, u64)) {
    let scores = model.score(&g.x).unwrap();
    let mut right = 0u64;
    let mut benign = (0u64, 0u64);
    for (&s, &y) in scores.iter().zip(&g.y) {
        if (s >= 0.5) == (y > 0.5) {
            right += 1;
        }
        if y < 0.5 {
            benign.0 += 1;
            benign.1 += u64::from(s >= threshold);
        }
    }
    (right as f64 / g.y.len().max(1) as f64, benign)
}

fn measure(l: &Learner, g: &Golden, held_out_attack: &str) -> Point {
    let cfg = AnnConfig::default();
    let h = l.handle();
    let e = evaluate(&pcaps(), &h, &cfg).unwrap();
    let mut recall = (0, 0);
    let mut fpr = (0, 0);
    for c in &e.captures {
        if c.file == held_out_attack {
            recall = (recall.0 + c.attack, recall.1 + c.attack_alerting);
        }
        if HELD_OUT_BENIGN.iter().any(|b| c.file.starts_with(b)) {
            fpr = (fpr.0 + c.benign, fpr.1 + c.benign_alerting);
        }
    }
    let (golden, rows) = golden_figures(&h.current(), g, cfg.threshold);

    Point {
        recall,
        fpr: (fpr.0 + rows.0, fpr.1 + rows.1),
        golden,
    }
}

/// The curve of `profile` on a base model that never saw `class`: the base's point, then one
/// point per cycle.
fn curve(
    dir: &Path,
    base: &Path,
    golden: &Golden,
    class: &str,
    held_out: &str,
    profile: Profile,
    rehearsal: f64,
) -> Vec<Point> {
    // The base's own attack rows, as train_base wrote them next to it (the shipped ones hold
    // the family this base never saw).
    let params = LearningSection {
        profile,
        rehearsal,
        rehearsal_attack_rows: Some(base.with_file_name("attack_rows.jsonl")),
        ..LearningSection::default()
    }
    .params()
    .unwrap();
    let store = Store::open(dir.join("store")).unwrap();
    let l = Learner::open(store, dir, params, Some(golden.clone()), Some(base), true).unwrap();
    let mut points = vec![measure(&l, golden, held_out)];
    let files: Vec<PathBuf> = manifest()
        .into_iter()
        .filter(|(f, _)| f != held_out && !HELD_OUT_BENIGN.iter().any(|b| f.starts_with(b)))
        .map(|(f, _)| pcaps().join(f))
        .collect();
    let mut sorted = files.clone();
    sorted.sort();
    for cycle in 0..3 {
        let part: Vec<&Path> = sorted
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 3 == cycle)
            .map(|(_, p)| p.as_path())
            .collect();
        let sum = ingest(
            &part,
            &safelink::config::Config::default(),
            &safelink::privacy::Policy::default(),
            &l.handle(),
            l.params(),
            l.store(),
        )
        .unwrap();
        let rep = l.run_cycle_here("manual").unwrap();
        eprintln!(
            "{class} {} cycle {}: {} files, collect {}, outcome {:?} {}",
            profile.as_str(),
            cycle + 1,
            part.len(),
            serde_json::to_string(&sum.collect).unwrap(),
            rep.record.outcome,
            rep.record.reason.as_deref().unwrap_or(""),
        );
        assert_ne!(
            rep.record.outcome,
            Outcome::Failed,
            "{:?}",
            rep.record.reason
        );
        // Every cycle is validated against the base model's golden accuracy too (the first
        // point), and nothing more than the margin below it is deployed.
        let m = rep.record.metrics.clone().unwrap();
        assert_eq!(
            m.golden_accuracy_base,
            Some(points[0].golden),
            "cycle {cycle}"
        );
        if rep.record.outcome == Outcome::Deployed {
            assert!(
                m.golden_accuracy.unwrap() >= points[0].golden - l.params().golden_margin,
                "cycle {cycle}: {m:?}"
            );
        }
        points.push(measure(&l, golden, held_out));
    }
    points
}

#[test]
fn default_profile_learns_a_new_family_within_three_cycles() {
    let families: Vec<(String, String)> = {
        let m = manifest();
        let mut out = Vec::new();
        for class in ["sshbrute", "portscan", "sweep"] {
            let of: Vec<&(String, String)> = m.iter().filter(|(_, c)| c == class).collect();
            assert!(of.len() >= 2, "{class}: {of:?}");
            out.push((class.to_string(), of.last().unwrap().0.clone()));
        }
        out
    };
    let shipped = LearningSection::default().rehearsal;
    let mut report = String::new();
    let mut misses = Vec::new();
    // SSH brute force's curves under the default profile: (without rehearsal, as shipped).
    let mut ssh: (Vec<Point>, Vec<Point>) = (Vec::new(), Vec::new());
    for (class, held_out) in &families {
        let tmp = tempfile::tempdir().unwrap();
        // The shared captures without the family, the benign rows as shipped.
        let without = tmp.path().join("pcaps");
        std::fs::create_dir_all(&without).unwrap();
        let manifest_text = std::fs::read_to_string(pcaps().join("MANIFEST.tsv")).unwrap();
        let kept: Vec<&str> = manifest_text
            .lines()
            .filter(|l| l.split('\t').nth(1) != Some(class.as_str()))
            .collect();
        std::fs::write(without.join("MANIFEST.tsv"), kept.join("\n") + "\n").unwrap();
        for l in kept.iter().skip(1) {
            let f = l.split('\t').next().unwrap();
            std::os::unix::fs::symlink(pcaps().join(f), without.join(f)).unwrap();
        }
        let base = tmp.path().join("model/base.onnx");
        train_base(&RecipeArgs {
            pcaps: vec![without],
            benign_rows: vec![root().join("models/benign/flows.csv.gz")],
            eval_pcaps: vec![],
            out: base.clone(),
            train: TrainConfig {
                benign_weight: safelink::ann::recipe::BASE_BENIGN_WEIGHT,
                members: safelink::ann::recipe::BASE_MEMBERS,
                ..TrainConfig::default()
            },
            benign_load_copies: safelink::ann::recipe::BASE_BENIGN_LOAD_COPIES,
            command: "test".into(),
        })
        .unwrap();
        let golden = load_golden(&tmp.path().join("model/golden.jsonl")).unwrap();
        for (profile, rehearsal) in [
            (Profile::Seed, 0.0),
            (Profile::Default, 0.0),
            (Profile::Default, shipped),
        ] {
            let name = if rehearsal == shipped {
                format!("{} (rehearsal {rehearsal})", profile.as_str())
            } else {
                format!("{} without rehearsal", profile.as_str())
            };
            let dir = tmp.path().join(format!("{}-{rehearsal}", profile.as_str()));
            let pts = curve(&dir, &base, &golden, class, held_out, profile, rehearsal);
            for (i, p) in pts.iter().enumerate() {
                let line = format!(
                    "| {class} | `{name}` | {} | {}/{} ({:.1} %) | {}/{} ({:.3} %) | {:.4} ({:+.2} pt) |\n",
                    if i == 0 {
                        "base".to_string()
                    } else {
                        i.to_string()
                    },
                    p.recall.1,
                    p.recall.0,
                    pct(p.recall),
                    p.fpr.1,
                    p.fpr.0,
                    pct(p.fpr),
                    p.golden,
                    100.0 * (p.golden - pts[0].golden),
                );
                eprint!("{line}");
                report.push_str(&line);
            }
            assert!(
                pts[0].recall.0 >= 10,
                "{class}: held-out flows {:?}",
                pts[0].recall
            );
            if profile == Profile::Default {
                let met = pts[1..].iter().any(|p| {
                    pct(p.recall) >= 90.0
                        && pct(p.fpr) <= 0.1
                        && 100.0 * (pts[0].golden - p.golden) <= 2.0
                });
                if !met {
                    misses.push(format!("{class} ({name})"));
                }
                if class == "sshbrute" {
                    if rehearsal == shipped {
                        ssh.1 = pts.clone();
                    } else {
                        ssh.0 = pts.clone();
                    }
                }
            }
        }
    }
    eprintln!(
        "LEARNING CURVES\n| family | profile | cycle | held-out recall | held-out benign FPR | golden |\n|---|---|---|---|---|---|\n{report}"
    );
    eprintln!("target missed on: {misses:?}");
    // What the shipped default achieves on SSH brute force, guarded: the target
    // (recall >= 90 %, FPR <= 0.1 %, golden within 2 points) by cycle 2; afterwards the family
    // is kept (cycle 3: 11 of 11 flows measured with the history replayed family by family, 4
    // of 11 with a proportional draw), and at every cycle the benign FPR stays within the
    // target. Learning the family costs the benign side a little: with the 72,494-row benign
    // set and the shipped recipe's base, 5 of 14,641 held-out benign flows flagged at base, 11
    // at cycles 2 and 3 (0.075 %). (Without rehearsal the ReLU base does not learn the
    // family at all, 0 of 11 at every cycle, so its FPR stays the base's: no bound to compare
    // with.)
    let (without, shipped_pts) = ssh;
    assert_eq!((without.len(), shipped_pts.len()), (4, 4));
    let target = |p: &Point| {
        pct(p.recall) >= 90.0
            && pct(p.fpr) <= 0.1
            && 100.0 * (shipped_pts[0].golden - p.golden) <= 2.0
    };
    assert!(
        shipped_pts[1..3].iter().any(target),
        "the shipped default did not meet the target on SSH brute force by cycle 2: {shipped_pts:?}"
    );
    assert!(
        pct(shipped_pts[3].recall) >= 90.0,
        "the shipped default forgot SSH brute force at cycle 3: {shipped_pts:?}"
    );
    for c in 1..4 {
        let (w, s) = (&without[c], &shipped_pts[c]);
        assert!(
            pct(s.fpr) <= 0.1,
            "cycle {c}: FPR {:.3} % with rehearsal ({:.3} % without), base {:.3} %",
            pct(s.fpr),
            pct(w.fpr),
            pct(shipped_pts[0].fpr)
        );
        assert!(
            100.0 * (shipped_pts[0].golden - s.golden) <= 2.0,
            "cycle {c}: golden {} from {}",
            s.golden,
            shipped_pts[0].golden
        );
    }
}
