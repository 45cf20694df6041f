//! `safelink model …`: inspect and validate ANN model files (`info`, `validate`), and the
//! hidden recipe, evaluation and benchmark commands (`train-base`, `eval`, `bench`) that
//! `cargo xtask train-base` / `cargo xtask bench ann` call.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use safelink::ann::{self, AnnConfig, ModelHandle, recipe, train::TrainConfig};

#[derive(Debug, Args)]
pub struct ModelArgs {
    #[command(subcommand)]
    cmd: ModelCmd,
}

#[derive(Debug, Subcommand)]
enum ModelCmd {
    /// Print a model file's input/output shapes, opset, versions and metadata as JSON.
    Info {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Check that this sensor can serve a model file (versions, input width, finite scores).
    Validate {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Train the base model from the shipped captures (writes the model, golden.jsonl,
    /// metrics.json and README.md next to it).
    #[command(hide = true)]
    TrainBase {
        /// Capture directories with a MANIFEST.tsv (repeat the flag; the first is the shared
        /// evaluation set). Default: the public captures and the lab training recordings
        /// (`models/lab/train`, never the evaluation captures of `models/lab`).
        #[arg(long, default_values = ["tests/pcaps", recipe::DEFAULT_LAB_TRAIN])]
        pcaps: Vec<PathBuf>,
        /// Benign feature-row files (gzip CSV from `models/benign/build.py`; repeat the flag).
        #[arg(long, default_values = [recipe::DEFAULT_BENIGN_ROWS])]
        benign_rows: Vec<PathBuf>,
        /// Capture directories only evaluated, never trained on (repeat the flag).
        #[arg(long, default_values = ["models/lab"])]
        eval_pcaps: Vec<PathBuf>,
        #[arg(long, default_value = ann::DEFAULT_MODEL_PATH)]
        out: PathBuf,
        #[arg(long)]
        epochs: Option<usize>,
        #[arg(long)]
        seed: Option<u64>,
        /// Benign class weight relative to attack [default: recipe::BASE_BENIGN_WEIGHT, 4].
        #[arg(long)]
        benign_weight: Option<f64>,
        /// Label smoothing ε (targets ε/2 and 1−ε/2).
        #[arg(long)]
        label_smoothing: Option<f64>,
        /// Models trained from seeds SEED, SEED+1, ... and merged into one whose score is the
        /// mean of their logits (an ensemble as one MLP) [default: recipe::BASE_MEMBERS, 3].
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
        members: Option<u16>,
        /// Also train on a busier copy of each benign row (load counts grown, capped at the
        /// busiest benign row's; `recipe::grown_load`). `false` gives the earlier recipe,
        /// whose models read a modest load as an attack's.
        #[arg(long, value_name = "BOOL", default_value_t = recipe::BASE_BENIGN_LOAD_COPIES,
              action = clap::ArgAction::Set)]
        benign_load_copies: bool,
    },
    /// ANN alone on labelled captures (DFA off): per-capture counts as JSON.
    #[command(hide = true)]
    Eval {
        #[arg(long, default_value = ann::DEFAULT_MODEL_PATH)]
        model: PathBuf,
        #[arg(long, default_value = "tests/pcaps")]
        pcaps: PathBuf,
        #[arg(long, default_value_t = 0.9)]
        threshold: f32,
    },
    /// Rules only, ANN only and both on labelled capture directories (each with a
    /// MANIFEST.tsv): capture-level and flow-level tables (`cargo xtask eval`).
    #[command(hide = true)]
    EvalCaptures {
        /// Capture directories with a MANIFEST.tsv.
        #[arg(required = true, value_name = "DIR")]
        dirs: Vec<PathBuf>,
        /// ANN model [default: the shipped base.onnx].
        #[arg(long)]
        model: Option<PathBuf>,
        /// Configuration file (`[dfa]`, `[ann]` threshold and grouping, `[flows]`);
        /// default: the built-in defaults.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print the whole report as JSON instead of the tables.
        #[arg(long)]
        json: bool,
    },
    /// The family labels (`resembles`) on the held-out attack rows of a golden set, per
    /// capture: with the whole index of labelled attack rows, and with the capture's own rows
    /// left out of it.
    #[command(hide = true)]
    Families {
        /// Labelled attack rows of the index.
        #[arg(long, default_value = "models/attack_rows.jsonl")]
        rows: PathBuf,
        /// Rows classified (their attack rows).
        #[arg(long, default_value = "models/golden.jsonl")]
        golden: PathBuf,
        /// Neighbours that vote.
        #[arg(long, default_value_t = ann::family::DEFAULT_FAMILY_K)]
        k: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Scoring throughput and latency: whole path vs bare tract, batch 1/64/1024.
    #[command(hide = true)]
    Bench {
        #[arg(long, default_value = ann::DEFAULT_MODEL_PATH)]
        model: PathBuf,
        /// Captures whose flow records are scored.
        #[arg(long, default_value = "tests/pcaps")]
        pcaps: PathBuf,
        /// Seconds per row.
        #[arg(long, default_value_t = 2.0)]
        secs: f64,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub fn model(a: ModelArgs) -> anyhow::Result<ExitCode> {
    match a.cmd {
        ModelCmd::Info { file } => {
            let m = ann::load_file(&file)?;
            println!("{}", serde_json::to_string_pretty(&m.info)?);
        }
        ModelCmd::EvalCaptures {
            dirs,
            model,
            config,
            json,
        } => {
            let cfg = safelink::config::Config::load(Some(
                config.as_deref().unwrap_or("/dev/null".as_ref()),
            ))?
            .0;
            let model = model
                .or_else(|| cfg.ann.model_path())
                .context("no ANN model found: pass --model FILE")?;
            let r = safelink::eval::evaluate(&cfg, &model, &dirs)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{}", r.markdown());
            }
        }
        ModelCmd::Families {
            rows,
            golden,
            k,
            json,
        } => {
            let index = ann::dataset::read_jsonl(&rows)?;
            let eval = ann::dataset::read_jsonl(&golden)?;
            let c = ann::family::confusion(&index, &eval, k)?;
            // The cost of one classification (the detector's, per alerting flow).
            let idx = ann::FamilyIndex::from_samples(&index, k)?;
            let rows: Vec<[f32; ann::N_FEATURES]> = eval
                .iter()
                .filter(|s| s.label > 0.5)
                .filter_map(|s| s.features.as_slice().try_into().ok())
                .collect();
            let t0 = std::time::Instant::now();
            for x in &rows {
                std::hint::black_box(idx.classify(x));
            }
            let per_row_us = t0.elapsed().as_secs_f64() * 1e6 / rows.len().max(1) as f64;
            if json {
                let v = serde_json::json!({
                    "index_rows": idx.len(),
                    "k": k,
                    "classify_us": per_row_us,
                    "captures": c,
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print!("{}", families_table(&c, k));
                println!(
                    "\n{} rows classified against an index of {} rows: {per_row_us:.1} µs each",
                    rows.len(),
                    idx.len()
                );
            }
        }
        ModelCmd::Validate { file } => {
            let m = ann::load_file(&file)?;
            let i = &m.info;
            println!(
                "{}: OK: model_version {:?}, input {} {:?}, output {} {:?}, opset {}, \
                 feature_layout_version {}, feature_vector_version {}",
                file.display(),
                i.model_version,
                i.input.name,
                i.input.shape,
                i.output.name,
                i.output.shape,
                i.opset
                    .iter()
                    .map(|o| format!("{}{}", o.domain, o.version))
                    .collect::<Vec<_>>()
                    .join(","),
                i.feature_layout_version,
                i.feature_vector_version
            );
        }
        ModelCmd::TrainBase {
            pcaps,
            benign_rows,
            eval_pcaps,
            out,
            epochs,
            seed,
            benign_weight,
            label_smoothing,
            members,
            benign_load_copies,
        } => {
            let mut train = TrainConfig {
                benign_weight: recipe::BASE_BENIGN_WEIGHT,
                members: recipe::BASE_MEMBERS,
                ..TrainConfig::default()
            };
            let mut command = String::from("safelink model train-base");
            for p in &pcaps {
                command.push_str(&format!(" --pcaps {}", p.display()));
            }
            for p in &benign_rows {
                command.push_str(&format!(" --benign-rows {}", p.display()));
            }
            for p in &eval_pcaps {
                command.push_str(&format!(" --eval-pcaps {}", p.display()));
            }
            command.push_str(&format!(" --out {}", out.display()));
            if let Some(e) = epochs {
                train.epochs = e;
                command.push_str(&format!(" --epochs {e}"));
            }
            if let Some(b) = benign_weight {
                train.benign_weight = b;
                command.push_str(&format!(" --benign-weight {b}"));
            }
            if let Some(e) = label_smoothing {
                train.label_smoothing = e;
                command.push_str(&format!(" --label-smoothing {e}"));
            }
            if let Some(s) = seed {
                train.seed = s;
                command.push_str(&format!(" --seed {s}"));
            }
            if let Some(m) = members {
                train.members = usize::from(m);
                command.push_str(&format!(" --members {m}"));
            }
            if benign_load_copies != recipe::BASE_BENIGN_LOAD_COPIES {
                command.push_str(&format!(" --benign-load-copies {benign_load_copies}"));
            }
            let r = recipe::train_base(&recipe::RecipeArgs {
                pcaps,
                benign_rows,
                eval_pcaps,
                out: out.clone(),
                train,
                benign_load_copies,
                command,
            })?;
            let e = &r.ann_alone[0].eval;
            println!(
                "{}: {} bytes, trained on {} flows in {:.1} s; golden ({} flows) at 0.90: \
                 accuracy {:.4} precision {:.4} recall {:.4} FPR {:.4} ROC-AUC {:.4}; \
                 ANN alone on the captures: flow recall {:.4}, benign flows alerting {}/{}, \
                 benign captures alerting {}/{}",
                out.display(),
                r.model_bytes,
                r.train_rows,
                r.train_secs,
                r.golden_rows,
                r.golden_at_threshold.accuracy,
                r.golden_at_threshold.precision,
                r.golden_at_threshold.recall,
                r.golden_at_threshold.false_positive_rate,
                r.golden_at_threshold.roc_auc,
                e.flow_recall,
                e.benign_flows_alerting,
                e.benign_flows,
                e.benign_captures_alerting,
                e.benign_captures
            );
        }
        ModelCmd::Eval {
            model,
            pcaps,
            threshold,
        } => {
            let cfg = AnnConfig {
                threshold,
                ..AnnConfig::default()
            };
            cfg.validate()?;
            let h = ModelHandle::open(&model)?;
            let e = ann::eval::evaluate(&pcaps, &h, &cfg)?;
            println!("{}", serde_json::to_string_pretty(&e)?);
        }
        ModelCmd::Bench {
            model,
            pcaps,
            secs,
            json,
        } => {
            let h = ModelHandle::open(&model)?;
            let mut flows = Vec::new();
            for e in ann::dataset::read_manifest(&pcaps)? {
                flows.extend(ann::dataset::flows_of(&pcaps.join(&e.file))?);
            }
            let rows =
                ann::bench::run(&h, &flows, &[1, 64, 1024], secs).context("benchmark failed")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "model {} ({}), {} flow records from {}, {secs} s per row, one thread",
                    model.display(),
                    h.current().info.model_version,
                    flows.len(),
                    pcaps.display()
                );
                println!(
                    "| batch | bare tract flows/s | p50 µs | p99 µs | whole path flows/s | p50 µs | p99 µs | whole/bare | cpu/wall |"
                );
                println!("|---|---|---|---|---|---|---|---|---|");
                for p in &rows {
                    println!(
                        "| {} | {:.0} | {:.1} | {:.1} | {:.0} | {:.1} | {:.1} | {:.1} % | {:.2} |",
                        p.bare.batch,
                        p.bare.flows_per_sec,
                        p.bare.p50_us,
                        p.bare.p99_us,
                        p.whole.flows_per_sec,
                        p.whole.p50_us,
                        p.whole.p99_us,
                        p.ratio * 100.0,
                        p.whole.cpu_per_wall
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The confusion of [`ann::family::confusion`] as a Markdown table.
fn families_table(c: &[ann::family::CaptureConfusion], k: usize) -> String {
    use std::fmt::Write as _;
    let named = |m: &std::collections::BTreeMap<&str, usize>| {
        let mut v: Vec<(&&str, &usize)> = m.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        v.iter()
            .map(|(f, n)| format!("{f} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut s = format!(
        "| capture | class → kind | rows | named (whole index, k = {k}) | other captures of the family | named (own rows left out) |\n|---|---|---|---|---|---|\n"
    );
    let pct = |a: usize, b: usize| 100.0 * a as f64 / b.max(1) as f64;
    let (mut rows, mut right, mut right_out, mut rows_other, mut right_other) = (0, 0, 0, 0, 0);
    for c in c {
        let (r, o) = c.right();
        rows += c.rows;
        right += r;
        right_out += o;
        if c.other_captures > 0 {
            rows_other += c.rows;
            right_other += o;
        }
        let _ = writeln!(
            s,
            "| {} | {} → {} | {} | {} | {} | {} |",
            c.file,
            c.class,
            c.expected.unwrap_or("—"),
            c.rows,
            named(&c.named),
            c.other_captures,
            named(&c.named_without_own)
        );
    }
    let _ = writeln!(
        s,
        "| all | | {rows} | right {right} ({:.1} %) | | right {right_out} ({:.1} %); where another capture of the family is indexed: {right_other}/{rows_other} ({:.1} %) |",
        pct(right, rows),
        pct(right_out, rows),
        pct(right_other, rows_other)
    );
    s
}
