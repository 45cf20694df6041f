//! Training with candle (CPU): the MLP ([`Mlp`], raw features → log1p → standardise → dense
//! layers with a (leaky) ReLU between them → one logit), seeded initialisation (SplitMix64,
//! so a run is reproducible), numerically stable weighted BCE on logits, AdamW, seeded
//! shuffling. Run it with `RAYON_NUM_THREADS=1` (set by [`single_thread`]): one thread is
//! faster for these tiny matrices and keeps the arithmetic order fixed.
use anyhow::{Context as _, Result, ensure};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Linear, Module as _, Optimizer as _, ParamsAdamW};

use super::export::{Activation, Dense};
use super::features::N_FEATURES;

/// SplitMix64: tiny deterministic PRNG.
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

/// Makes candle's CPU kernels single-threaded unless the caller chose otherwise. Call before
/// any training thread exists (candle reads the variable on every matmul).
pub fn single_thread() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // SAFETY: called from the CLI's main thread before training starts any thread.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", "1") };
    }
}

/// Labelled, weighted training rows.
#[derive(Clone, Debug, Default)]
pub struct Dataset {
    /// Raw feature vectors, row-major, `len = n * N_FEATURES`.
    pub x: Vec<f32>,
    /// 1.0 = attack, 0.0 = benign.
    pub y: Vec<f32>,
    /// Sample weights (mean 1 over the set).
    pub w: Vec<f32>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.y.len()
    }

    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }
}

/// Mean and standard deviation of `log1p(x)` per feature (std 1 for constant features).
pub fn norm_stats(x: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let n = (x.len() / N_FEATURES).max(1) as f64;
    let mut mean = [0f64; N_FEATURES];
    let mut sq = [0f64; N_FEATURES];
    for row in x.chunks_exact(N_FEATURES) {
        for j in 0..N_FEATURES {
            let v = f64::from(row[j]).ln_1p();
            mean[j] += v;
            sq[j] += v * v;
        }
    }
    let mut m = Vec::with_capacity(N_FEATURES);
    let mut s = Vec::with_capacity(N_FEATURES);
    for j in 0..N_FEATURES {
        let mu = mean[j] / n;
        let sd = (sq[j] / n - mu * mu).max(0.0).sqrt();
        m.push(mu as f32);
        s.push(if sd < 1e-3 { 1.0 } else { sd as f32 });
    }
    (m, s)
}

/// The classifier: raw features in, one logit out.
pub struct Mlp {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    mean_t: Tensor,
    std_t: Tensor,
    /// (weight `[out, in]`, bias `[out]`) per layer.
    params: Vec<(Var, Var)>,
    layers: Vec<Linear>,
    activation: Activation,
}

impl Mlp {
    /// Fresh model with `hidden` layers of `activation`, He-uniform weights drawn from `seed`.
    pub fn init(
        mean: Vec<f32>,
        std: Vec<f32>,
        hidden: &[usize],
        activation: Activation,
        seed: u64,
    ) -> Result<Self> {
        let mut rng = Rng(seed);
        let mut dims = vec![N_FEATURES];
        dims.extend_from_slice(hidden);
        dims.push(1);
        let layers = dims
            .windows(2)
            .map(|d| {
                let (i, o) = (d[0], d[1]);
                let wb = (6.0 / i as f64).sqrt();
                let bb = 1.0 / (i as f64).sqrt();
                Dense {
                    out_dim: o,
                    in_dim: i,
                    weight: (0..o * i)
                        .map(|_| ((rng.uniform() * 2.0 - 1.0) * wb) as f32)
                        .collect(),
                    bias: (0..o)
                        .map(|_| ((rng.uniform() * 2.0 - 1.0) * bb) as f32)
                        .collect(),
                }
            })
            .collect::<Vec<_>>();
        Self::from_dense(mean, std, &layers, activation)
    }

    /// Model with the given weights and activation (e.g. to continue training an exported
    /// model).
    pub fn from_dense(
        mean: Vec<f32>,
        std: Vec<f32>,
        layers: &[Dense],
        activation: Activation,
    ) -> Result<Self> {
        ensure!(mean.len() == N_FEATURES && std.len() == N_FEATURES);
        let dev = Device::Cpu;
        let mut params = Vec::new();
        let mut lin = Vec::new();
        for l in layers {
            let w = Var::from_tensor(&Tensor::from_slice(&l.weight, (l.out_dim, l.in_dim), &dev)?)?;
            let b = Var::from_tensor(&Tensor::from_slice(&l.bias, l.out_dim, &dev)?)?;
            lin.push(Linear::new(
                w.as_tensor().clone(),
                Some(b.as_tensor().clone()),
            ));
            params.push((w, b));
        }
        Ok(Mlp {
            mean_t: Tensor::from_slice(&mean, (1, N_FEATURES), &dev)?,
            std_t: Tensor::from_slice(&std, (1, N_FEATURES), &dev)?,
            mean,
            std,
            params,
            layers: lin,
            activation,
        })
    }

    pub fn activation(&self) -> Activation {
        self.activation
    }

    fn vars(&self) -> Vec<Var> {
        self.params
            .iter()
            .flat_map(|(w, b)| [w.clone(), b.clone()])
            .collect()
    }

    /// Logits `[n, 1]` of raw features `[n, N_FEATURES]`.
    pub fn logits(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut h = (x + 1.0)?
            .log()?
            .broadcast_sub(&self.mean_t)?
            .broadcast_div(&self.std_t)?;
        let last = self.layers.len() - 1;
        for (i, l) in self.layers.iter().enumerate() {
            h = l.forward(&h)?;
            if i < last {
                h = match self.activation {
                    Activation::Relu => h.relu()?,
                    Activation::LeakyRelu { alpha } => {
                        candle_nn::ops::leaky_relu(&h, f64::from(alpha))?
                    }
                };
            }
        }
        Ok(h)
    }

    /// Scores (sigmoid of the logits) of row-major raw features.
    pub fn scores(&self, x: &[f32]) -> Result<Vec<f32>> {
        let n = x.len() / N_FEATURES;
        let xt = Tensor::from_slice(x, (n, N_FEATURES), &Device::Cpu)?;
        let s = candle_nn::ops::sigmoid(&self.logits(&xt)?)?;
        Ok(s.flatten_all()?.to_vec1()?)
    }

    /// Current weights, for export.
    pub fn to_dense(&self) -> Result<Vec<Dense>> {
        self.params
            .iter()
            .map(|(w, b)| {
                let (o, i) = w.as_tensor().dims2()?;
                Ok(Dense {
                    out_dim: o,
                    in_dim: i,
                    weight: w.as_tensor().flatten_all()?.to_vec1()?,
                    bias: b.as_tensor().to_vec1()?,
                })
            })
            .collect()
    }
}

/// One model whose logit is the mean of the `members`' logits: each member's hidden layers
/// side by side (the first layer's units stacked, every later hidden layer block-diagonal, so
/// a member's units see only its own), and an output layer of each member's output weights
/// divided by their number, with the mean of their biases. The members must have the same
/// layer sizes. A plain MLP again: the model file, tract and the learner take it as any other.
///
/// Why: the base model's results on flows unlike its training rows move with its seed.
/// Measured (`models/benign/README.md`, "Seeds"): with members, the golden and held-out
/// figures spread less; a family learned from few near-identical flows still does (the unseen
/// lab hydra capture). The base recipe merges [`super::recipe::BASE_MEMBERS`].
pub fn merge_members(members: &[Vec<Dense>]) -> Result<Vec<Dense>> {
    let k = members.len();
    ensure!(k > 0, "no members to merge");
    let depth = members[0].len();
    ensure!(
        depth >= 2
            && members.iter().all(|m| {
                m.len() == depth
                    && m.iter()
                        .zip(&members[0])
                        .all(|(a, b)| (a.out_dim, a.in_dim) == (b.out_dim, b.in_dim))
            }),
        "members differ in their layers"
    );
    let mut out = Vec::with_capacity(depth);
    for l in 0..depth {
        let (o, i) = (members[0][l].out_dim, members[0][l].in_dim);
        if l + 1 == depth {
            // Output: [1, k·i], the mean of the members' logits.
            ensure!(o == 1, "the output layer has {o} units");
            let kf = k as f32;
            out.push(Dense {
                out_dim: 1,
                in_dim: k * i,
                weight: members
                    .iter()
                    .flat_map(|m| m[l].weight.iter().map(move |w| w / kf))
                    .collect(),
                bias: vec![members.iter().map(|m| m[l].bias[0]).sum::<f32>() / kf],
            });
        } else if l == 0 {
            // First hidden layer: all members read the same input.
            out.push(Dense {
                out_dim: k * o,
                in_dim: i,
                weight: members.iter().flat_map(|m| m[l].weight.clone()).collect(),
                bias: members.iter().flat_map(|m| m[l].bias.clone()).collect(),
            });
        } else {
            // Later hidden layers: block-diagonal, [k·o, k·i] row-major.
            let mut weight = vec![0.0; k * o * k * i];
            for (j, m) in members.iter().enumerate() {
                for r in 0..o {
                    let row = (j * o + r) * k * i + j * i;
                    weight[row..row + i].copy_from_slice(&m[l].weight[r * i..(r + 1) * i]);
                }
            }
            out.push(Dense {
                out_dim: k * o,
                in_dim: k * i,
                weight,
                bias: members.iter().flat_map(|m| m[l].bias.clone()).collect(),
            });
        }
    }
    Ok(out)
}

/// Weighted, numerically stable BCE on logits: `max(x,0) − x·y + log(1 + exp(−|x|))`.
fn weighted_bce(logits: &Tensor, y: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    let a = logits.relu()?;
    let b = (logits * y)?;
    let c = logits.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?;
    let l = ((a - b)? + c)?;
    (l * w)?.sum_all()? / f64::from(w.sum_all()?.to_scalar::<f32>()?.max(1e-12))
}

/// The base model's hidden activation (the shipped model is ReLU). The learner continues a
/// model with the activation its file records, so a base trained with LeakyReLU
/// ([`Activation::LeakyRelu`]) stays one. Why it is a choice (measured on an experimental
/// 71,054-row benign set that is not in the repository): with ReLU every hidden unit the
/// held-out SSH brute-force flows reached was off for them (all 11 scored 0.7850204 after a
/// cycle), so no cycle lifted them; with LeakyReLU (slope 0.01) the learner learned the family
/// at cycle 2.
pub const HIDDEN_ACTIVATION: Activation = Activation::Relu;

/// Training settings.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TrainConfig {
    pub hidden: Vec<usize>,
    /// Activation of the hidden layers of a fresh model (a model trained further keeps its
    /// own).
    pub activation: Activation,
    pub epochs: usize,
    pub batch: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub seed: u64,
    /// Total weight of the benign class relative to the attack class (> 1 makes false
    /// positives costlier than misses).
    pub benign_weight: f64,
    /// Targets become `y·(1−ε) + ε/2`: a model that is never certain stays trainable by the
    /// continuous learner's small steps (its logits stay within about ±ln(2/ε)).
    #[serde(default)]
    pub label_smoothing: f64,
    /// Share of wall time the trainer may compute (1.0 = flat out). Below 1 it sleeps after
    /// each batch so that a background cycle leaves the CPU caches and memory bandwidth to
    /// detection most of the time.
    pub max_duty: f64,
    /// Models trained from seeds `seed`, `seed + 1`, ... and merged into one whose logit is
    /// the mean of theirs ([`merge_members`]); 1: a single model. Only a fresh model (the base
    /// recipe) has members; a learning cycle trains the merged model as one.
    pub members: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            hidden: vec![64, 32],
            activation: HIDDEN_ACTIVATION,
            epochs: 150,
            batch: 64,
            lr: 2e-3,
            weight_decay: 1e-4,
            seed: 0x5AFE_11AC,
            benign_weight: 1.0,
            label_smoothing: 0.02,
            max_duty: 1.0,
            members: 1,
        }
    }
}

/// Loss of one epoch.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EpochReport {
    pub epoch: usize,
    pub loss: f64,
}

/// Mini-batch AdamW over `data` for `cfg.epochs` epochs (shuffled by `cfg.seed`).
pub fn train(m: &Mlp, data: &Dataset, cfg: &TrainConfig) -> Result<Vec<EpochReport>> {
    train_until(m, data, cfg, || false)
}

/// [`train`], checking `stop` after every batch: when it returns true, training ends and the
/// epochs completed so far are returned (the caller decides what a partial run means).
pub fn train_until(
    m: &Mlp,
    data: &Dataset,
    cfg: &TrainConfig,
    stop: impl Fn() -> bool,
) -> Result<Vec<EpochReport>> {
    ensure!(!data.is_empty(), "no training rows");
    let dev = Device::Cpu;
    let mut opt = AdamW::new(
        m.vars(),
        ParamsAdamW {
            lr: cfg.lr,
            weight_decay: cfg.weight_decay,
            ..Default::default()
        },
    )
    .context("optimizer")?;
    let eps = cfg.label_smoothing as f32;
    let n = data.len();
    let mut idx: Vec<usize> = (0..n).collect();
    let mut rng = Rng(cfg.seed ^ 0xD1CE);
    let mut reports = Vec::with_capacity(cfg.epochs);
    let (mut xb, mut yb, mut wb) = (Vec::new(), Vec::new(), Vec::new());
    for epoch in 1..=cfg.epochs {
        rng.shuffle(&mut idx);
        let mut loss_sum = 0f64;
        for chunk in idx.chunks(cfg.batch) {
            let t_batch = std::time::Instant::now();
            xb.clear();
            yb.clear();
            wb.clear();
            for &i in chunk {
                xb.extend_from_slice(&data.x[i * N_FEATURES..(i + 1) * N_FEATURES]);
                yb.push(data.y[i] * (1.0 - eps) + eps / 2.0);
                wb.push(data.w[i]);
            }
            let b = chunk.len();
            let xt = Tensor::from_slice(&xb, (b, N_FEATURES), &dev)?;
            let yt = Tensor::from_slice(&yb, (b, 1), &dev)?;
            let wt = Tensor::from_slice(&wb, (b, 1), &dev)?;
            let loss = weighted_bce(&m.logits(&xt)?, &yt, &wt)?;
            opt.backward_step(&loss)?;
            if cfg.max_duty > 0.0 && cfg.max_duty < 1.0 {
                std::thread::sleep(t_batch.elapsed().mul_f64(1.0 / cfg.max_duty - 1.0));
            }
            if stop() {
                return Ok(reports);
            }
            loss_sum += f64::from(loss.to_dtype(DType::F32)?.to_scalar::<f32>()?) * b as f64;
        }
        reports.push(EpochReport {
            epoch,
            loss: loss_sum / n as f64,
        });
    }
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits(m: &Mlp, x: &[f32]) -> Vec<f32> {
        let n = x.len() / N_FEATURES;
        let t = Tensor::from_slice(x, (n, N_FEATURES), &Device::Cpu).unwrap();
        m.logits(&t)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    #[test]
    fn merged_members_score_the_mean_of_their_logits() {
        let (mean, std) = (vec![0.5; N_FEATURES], vec![2.0; N_FEATURES]);
        let act = Activation::LeakyRelu { alpha: 0.1 };
        let members: Vec<Mlp> = (0..3)
            .map(|k| Mlp::init(mean.clone(), std.clone(), &[8, 4], act, 7 + k).unwrap())
            .collect();
        let dense: Vec<Vec<Dense>> = members.iter().map(|m| m.to_dense().unwrap()).collect();
        let merged = merge_members(&dense).unwrap();
        assert_eq!(
            merged
                .iter()
                .map(|d| (d.out_dim, d.in_dim))
                .collect::<Vec<_>>(),
            [(24, N_FEATURES), (12, 24), (1, 12)]
        );
        // Block-diagonal: member 1's second-layer units read only member 1's first-layer units.
        let w = &merged[1].weight;
        assert!(
            (0..24)
                .filter(|c| !(8..16).contains(c))
                .all(|c| w[4 * 24 + c] == 0.0)
        );
        let m = Mlp::from_dense(mean, std, &merged, act).unwrap();
        let mut rng = Rng(3);
        let x: Vec<f32> = (0..20 * N_FEATURES)
            .map(|_| (rng.uniform() * 1000.0) as f32)
            .collect();
        let got = logits(&m, &x);
        let each: Vec<Vec<f32>> = members.iter().map(|m| logits(m, &x)).collect();
        for (i, g) in got.iter().enumerate() {
            let want = each.iter().map(|e| e[i]).sum::<f32>() / 3.0;
            assert!((g - want).abs() < 1e-4, "row {i}: {g} vs {want}");
        }
        // One member is itself; members of other shapes are refused.
        assert_eq!(merge_members(&dense[..1]).unwrap(), dense[0]);
        let other = Mlp::init(
            vec![0.0; N_FEATURES],
            vec![1.0; N_FEATURES],
            &[8, 5],
            act,
            1,
        )
        .unwrap()
        .to_dense()
        .unwrap();
        assert!(merge_members(&[dense[0].clone(), other]).is_err());
        assert!(merge_members(&[]).is_err());
    }
}
