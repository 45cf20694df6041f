//! Which attack family an ANN alert's flow resembles: k nearest neighbours among labelled
//! attack rows (the shipped `attack_rows.jsonl`, the base model's rehearsed attack training
//! rows, or `[ann] families`).
//!
//! A row's family is the rule alert kind of its capture's manifest class
//! ([`crate::eval::expected_kind`], the one class → kind list), so the families are named as
//! the automata name them (`port_scan`, `ssh_brute_force`, ...). Distances are Euclidean in
//! the graph's own input space (`log1p` of the raw features), each feature divided by its
//! standard deviation over the index rows: the space does not depend on the model serving,
//! so a hot swap or a learning cycle never changes the answer for a flow. The family is the
//! one with the most weight among the `k` nearest rows, each weighing the inverse of its
//! distance (a tie goes to the one whose rows are nearer in sum), its `probability` the share
//! of the `k` rows' weight it holds. An alert carries it as
//! `"resembles": {"family": ..., "probability": ...}`; with no index, no field.
//!
//! Cost: one pass over the index (about 1,000 rows × 32 features) per classified flow, only
//! for flows that raise or improve an ANN alert.
use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};

use super::dataset::{Sample, read_jsonl};
use super::features::N_FEATURES;
use crate::alert::AlertKind;

/// Neighbours consulted unless `[ann] family_k` says otherwise.
pub const DEFAULT_FAMILY_K: usize = 15;

/// Added to a neighbour's distance (in standard deviations) before its vote is weighed by
/// the inverse: a tenth of a feature's spread, so that an exact duplicate's vote stays finite
/// and outweighs, but does not silence, neighbours about as near.
const VOTE_SOFTENING: f64 = 0.1;

/// What an ANN alert's flow resembles.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Resemblance {
    /// A rule alert kind (`port_scan`, ...).
    pub family: AlertKind,
    /// Share of the `k` nearest labelled rows' votes (each weighing the inverse of its
    /// distance) that are `family`'s (0 < p ≤ 1).
    pub probability: f64,
}

/// Labelled attack rows, normalised, ready for nearest-neighbour votes.
#[derive(Clone, Debug)]
pub struct FamilyIndex {
    k: usize,
    mean: [f32; N_FEATURES],
    /// 1 / standard deviation (1 where a feature is constant over the rows).
    inv_std: [f32; N_FEATURES],
    rows: Vec<[f32; N_FEATURES]>,
    families: Vec<AlertKind>,
}

fn log1p_row(x: &[f32]) -> [f32; N_FEATURES] {
    let mut r = [0f32; N_FEATURES];
    for (o, v) in r.iter_mut().zip(x) {
        *o = v.max(0.0).ln_1p();
    }
    r
}

impl FamilyIndex {
    /// The index of `samples` (rows whose class names no rule kind, e.g. `benign`, are left
    /// out), voting with `k` neighbours.
    pub fn from_samples<'a>(
        samples: impl IntoIterator<Item = &'a Sample>,
        k: usize,
    ) -> Result<Self> {
        if k == 0 {
            bail!("family_k must be at least 1");
        }
        let mut rows = Vec::new();
        let mut families = Vec::new();
        for s in samples {
            let Some(kind) = crate::eval::expected_kind(&s.class).and_then(AlertKind::from_name)
            else {
                continue;
            };
            if s.features.len() != N_FEATURES || s.features.iter().any(|v| !v.is_finite()) {
                bail!("{}: a row without {N_FEATURES} finite features", s.file);
            }
            rows.push(log1p_row(&s.features));
            families.push(kind);
        }
        if rows.is_empty() {
            bail!("no row of an attack family");
        }
        let n = rows.len() as f64;
        let mut mean = [0f32; N_FEATURES];
        let mut inv_std = [1f32; N_FEATURES];
        for j in 0..N_FEATURES {
            let m = rows.iter().map(|r| f64::from(r[j])).sum::<f64>() / n;
            let var = rows
                .iter()
                .map(|r| (f64::from(r[j]) - m).powi(2))
                .sum::<f64>()
                / n;
            mean[j] = m as f32;
            if var.sqrt() > 1e-6 {
                inv_std[j] = (1.0 / var.sqrt()) as f32;
            }
        }
        let mut index = FamilyIndex {
            k,
            mean,
            inv_std,
            rows,
            families,
        };
        let mut rows = std::mem::take(&mut index.rows);
        rows.iter_mut().for_each(|r| index.standardise(r));
        index.rows = rows;
        Ok(index)
    }

    /// The index of a `golden.jsonl`-format file ([`read_jsonl`]).
    pub fn load(path: &Path, k: usize) -> Result<Self> {
        let samples = read_jsonl(path)?;
        Self::from_samples(&samples, k).with_context(|| format!("{}", path.display()))
    }

    /// Rows in the index.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn k(&self) -> usize {
        self.k
    }

    /// Rows per family, in [`AlertKind`] order.
    pub fn counts(&self) -> Vec<(AlertKind, usize)> {
        let mut c: Vec<(AlertKind, usize)> = Vec::new();
        for f in &self.families {
            match c.iter_mut().find(|(k, _)| k == f) {
                Some((_, n)) => *n += 1,
                None => c.push((*f, 1)),
            }
        }
        c.sort();
        c
    }

    /// A `log1p` row in the index's units.
    fn standardise(&self, r: &mut [f32; N_FEATURES]) {
        for ((v, m), s) in r.iter_mut().zip(&self.mean).zip(&self.inv_std) {
            *v = (*v - m) * s;
        }
    }

    /// The family the raw feature row `x` resembles.
    pub fn classify(&self, x: &[f32; N_FEATURES]) -> Resemblance {
        let mut q = log1p_row(x);
        self.standardise(&mut q);
        let k = self.k.min(self.rows.len());
        // The k nearest so far, nearest first: (squared distance, row index).
        let mut best: Vec<(f32, usize)> = Vec::with_capacity(k + 1);
        for (i, r) in self.rows.iter().enumerate() {
            let d: f32 = r.iter().zip(&q).map(|(a, b)| (a - b) * (a - b)).sum();
            if best.len() == k && d >= best[k - 1].0 {
                continue;
            }
            let at = best.partition_point(|&(e, _)| e <= d);
            best.insert(at, (d, i));
            best.truncate(k);
        }
        // (family, summed weight, summed distance), in the order first met. A row's vote
        // weighs 1 / (its distance + VOTE_SOFTENING): a few rows very near the flow outvote
        // more rows of another family further away (a family with few rows of some shape,
        // e.g. the four one-flow ping floods among 132 ICMP flood rows, is otherwise outvoted
        // by whatever is numerous around it).
        let mut votes: Vec<(AlertKind, f64, f32)> = Vec::new();
        let mut total = 0.0;
        for &(d, i) in &best {
            let f = self.families[i];
            let d = d.sqrt();
            let w = 1.0 / (f64::from(d) + VOTE_SOFTENING);
            total += w;
            match votes.iter_mut().find(|v| v.0 == f) {
                Some(v) => {
                    v.1 += w;
                    v.2 += d;
                }
                None => votes.push((f, w, d)),
            }
        }
        let (family, weight, _) = votes
            .into_iter()
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.2.total_cmp(&a.2)))
            .expect("a non-empty index");
        Resemblance {
            family,
            probability: weight / total,
        }
    }
}

/// The families named for the held-out attack rows of one capture.
#[derive(Clone, Debug, Serialize)]
pub struct CaptureConfusion {
    pub file: String,
    pub class: String,
    /// The rule kind of `class` (none for a class without one).
    pub expected: Option<&'static str>,
    /// Rows classified.
    pub rows: usize,
    /// Other capture files of the same family in the index (0: with its own rows left out,
    /// nothing of its family remains, so it cannot be named right).
    pub other_captures: usize,
    /// Rows per family named, with the whole index.
    pub named: BTreeMap<&'static str, usize>,
    /// Rows per family named with the capture's own rows left out of the index (how a
    /// capture of a recording the index has never seen fares).
    pub named_without_own: BTreeMap<&'static str, usize>,
}

impl CaptureConfusion {
    /// Rows named as `expected`: (whole index, own rows left out).
    pub fn right(&self) -> (usize, usize) {
        let of = |m: &BTreeMap<&str, usize>| self.expected.and_then(|e| m.get(e)).copied();
        (
            of(&self.named).unwrap_or(0),
            of(&self.named_without_own).unwrap_or(0),
        )
    }
}

/// Per capture of `eval`'s attack rows (in order of first appearance), the families an
/// index of `index_rows` with `k` neighbours names, with and without the capture's own rows.
pub fn confusion(
    index_rows: &[Sample],
    eval: &[Sample],
    k: usize,
) -> Result<Vec<CaptureConfusion>> {
    let whole = FamilyIndex::from_samples(index_rows, k)?;
    let mut files: Vec<(&str, &str)> = Vec::new();
    for s in eval.iter().filter(|s| s.label > 0.5) {
        if !files.iter().any(|(f, _)| *f == s.file) {
            files.push((&s.file, &s.class));
        }
    }
    let mut out = Vec::new();
    for (file, class) in files {
        let own_out = FamilyIndex::from_samples(index_rows.iter().filter(|s| s.file != file), k)?;
        let mut c = CaptureConfusion {
            file: file.to_owned(),
            class: class.to_owned(),
            expected: crate::eval::expected_kind(class),
            rows: 0,
            other_captures: {
                let mut others: Vec<&str> = index_rows
                    .iter()
                    .filter(|s| s.class == class && s.file != file)
                    .map(|s| s.file.as_str())
                    .collect();
                others.sort_unstable();
                others.dedup();
                others.len()
            },
            named: BTreeMap::new(),
            named_without_own: BTreeMap::new(),
        };
        for s in eval.iter().filter(|s| s.label > 0.5 && s.file == file) {
            let x: &[f32; N_FEATURES] = s
                .features
                .as_slice()
                .try_into()
                .with_context(|| format!("{file}: a row without {N_FEATURES} features"))?;
            c.rows += 1;
            *c.named
                .entry(whole.classify(x).family.as_str())
                .or_default() += 1;
            *c.named_without_own
                .entry(own_out.classify(x).family.as_str())
                .or_default() += 1;
        }
        out.push(c);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ann::features::extract;
    use crate::ann::features::tests::sample_flow;

    fn sample(class: &str, features: [f32; N_FEATURES]) -> Sample {
        let f = sample_flow();
        Sample {
            file: format!("{class}__x.pcap"),
            class: class.into(),
            label: 1.0,
            golden: false,
            src_ip: f.src_ip,
            src_port: f.src_port,
            dst_ip: f.dst_ip,
            dst_port: f.dst_port,
            proto: f.proto,
            first_ns: 0,
            features: features.to_vec(),
        }
    }

    /// Three port-scan rows near the query (one feature a little off), two SSH rows far from
    /// it (eight features off by a million), one benign row on it (left out).
    #[test]
    fn votes_of_the_nearest_rows() {
        let x = extract(&sample_flow());
        let near = |d: f32| {
            let mut r = x;
            r[0] += d;
            r
        };
        let far = |d: f32| {
            let mut r = x;
            for v in &mut r[8..16] {
                *v += 1e6 + d;
            }
            r
        };
        let rows = [
            sample("portscan", near(1.0)),
            sample("portscan", near(2.0)),
            sample("sshbrute", far(0.0)),
            sample("portscan", near(3.0)),
            sample("sshbrute", far(5.0)),
            sample("benign", x),
        ];
        let port_scan = AlertKind::from_name("port_scan").unwrap();
        let ssh = AlertKind::from_name("ssh_brute_force").unwrap();
        let idx = FamilyIndex::from_samples(&rows, 3).unwrap();
        assert_eq!(idx.len(), 5);
        assert_eq!(idx.counts(), vec![(port_scan, 3), (ssh, 2)]);
        // Every one of the 3 nearest is a port scan's.
        assert_eq!(
            idx.classify(&x),
            Resemblance {
                family: port_scan,
                probability: 1.0
            }
        );
        // Two SSH rows near, one port scan far: the near ones hold more than their count's
        // share of the votes.
        let r = idx.classify(&far(1.0));
        assert_eq!(r.family, ssh);
        assert!(r.probability > 2.0 / 3.0 && r.probability < 1.0, "{r:?}");
        let idx = FamilyIndex::from_samples(&rows, 5).unwrap();
        let r = idx.classify(&x);
        assert_eq!(r.family, port_scan);
        assert!(r.probability > 0.6 && r.probability < 1.0, "{r:?}");
        // k above the row count: every row votes, and the two SSH rows near the flow outvote
        // the three port scans far from it (a plain count would say port_scan, 0.6).
        let idx = FamilyIndex::from_samples(&rows, 10).unwrap();
        let r = idx.classify(&far(1.0));
        assert_eq!(r.family, ssh);
        assert!(r.probability > 0.9, "{r:?}");
        assert!(FamilyIndex::from_samples(&rows[5..], 3).is_err());
        assert!(FamilyIndex::from_samples(&rows, 0).is_err());
    }
}
