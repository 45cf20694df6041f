//! Loading and validating a model file with tract: [`AnnModel`] (a runnable plan plus what
//! the file says about itself, [`ModelInfo`]) and [`Scorer`], the per-thread scoring state.
//!
//! A file is accepted only if it decodes as ONNX, carries this sensor's
//! `feature_layout_version` and `feature_vector_version` (and, when present, the same
//! `feature_names`), takes `[N, N_FEATURES]` floats, gives one score per row, and gives
//! finite scores in `[0, 1]` on a set of probe rows. Everything else is a [`ModelError`]
//! that names the problem.
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use prost::Message as _;
use safelink_common::FEATURE_LAYOUT_VERSION;
use serde::Serialize;
use tract_onnx::pb;
use tract_onnx::prelude::*;

use super::export::{INPUT_NAME, NORM_MEAN};
use super::features::{FEATURE_VECTOR_VERSION, N_FEATURES, names_csv};

/// `metadata_props` keys a model carries.
pub mod meta {
    pub const MODEL_VERSION: &str = "model_version";
    pub const FEATURE_LAYOUT_VERSION: &str = "feature_layout_version";
    pub const FEATURE_VECTOR_VERSION: &str = "feature_vector_version";
    pub const N_FEATURES: &str = "n_features";
    pub const FEATURE_NAMES: &str = "feature_names";
    /// JSON object: held-out metrics written by the trainer.
    pub const METRICS: &str = "metrics";
    /// JSON object: training data summary written by the trainer.
    pub const TRAINING: &str = "training";
}

/// Why a model file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read model file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}: not an ONNX model (protobuf decoding failed: {1})")]
    Decode(String, String),
    #[error("{0}: {1}")]
    Invalid(String, String),
    #[error(
        "{origin}: model input width is {found}, this sensor produces {expected} features \
         (feature vector v{FEATURE_VECTOR_VERSION})"
    )]
    Width {
        origin: String,
        found: String,
        expected: usize,
    },
    #[error("{0}: version mismatch: {1}")]
    Version(String, String),
    #[error("{0}: tract refused the model: {1}")]
    Tract(String, String),
    #[error("{0}: non-finite model: {1}")]
    NonFinite(String, String),
}

/// Shape of a graph input or output, as declared in the file.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// Dimensions: numbers, or the symbol name (e.g. `"N"`) for symbolic ones.
    pub shape: Vec<String>,
}

/// An opset import.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Opset {
    /// Empty for the default ONNX domain.
    pub domain: String,
    pub version: i64,
}

/// What a model file says about itself (the answer of `safelink model info` and `GET /model`).
#[derive(Clone, Debug, Serialize)]
pub struct ModelInfo {
    /// File path, or a description of where the bytes came from.
    pub source: String,
    pub size_bytes: usize,
    pub ir_version: i64,
    pub opset: Vec<Opset>,
    pub producer: String,
    pub input: TensorInfo,
    pub output: TensorInfo,
    pub model_version: String,
    pub feature_layout_version: u32,
    pub feature_vector_version: u32,
    pub n_features: usize,
    /// Held-out metrics recorded by the trainer (`metrics` metadata), if any.
    pub metrics: Option<serde_json::Value>,
    /// All `metadata_props`, as written.
    pub metadata: BTreeMap<String, String>,
}

/// A validated, optimised model ready to score.
pub struct AnnModel {
    pub(crate) plan: Arc<TypedRunnableModel>,
    pub info: ModelInfo,
    /// Raw feature values at which a feature is "absent" for the occlusion explanation:
    /// `expm1(norm_mean)`, the training mean in the graph's log1p space (zeros if the file
    /// has no `norm_mean` initializer).
    pub baseline: [f32; N_FEATURES],
    /// Set when installed in a [`super::ModelHandle`] (0 before).
    pub generation: u64,
}

impl std::fmt::Debug for AnnModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnnModel")
            .field("model_version", &self.info.model_version)
            .field("source", &self.info.source)
            .field("generation", &self.generation)
            .finish()
    }
}

fn dims(v: &pb::ValueInfoProto) -> Vec<String> {
    use pb::tensor_shape_proto::dimension::Value;
    let Some(pb::type_proto::Value::TensorType(t)) =
        v.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Vec::new();
    };
    let Some(shape) = &t.shape else {
        return Vec::new();
    };
    shape
        .dim
        .iter()
        .map(|d| match &d.value {
            Some(Value::DimValue(n)) => n.to_string(),
            Some(Value::DimParam(p)) => p.clone(),
            None => "?".into(),
        })
        .collect()
}

fn f32_initializer(t: &pb::TensorProto) -> Option<Vec<f32>> {
    if t.data_type != pb::tensor_proto::DataType::Float as i32 {
        return None;
    }
    if !t.raw_data.is_empty() {
        return Some(
            t.raw_data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        );
    }
    Some(t.float_data.clone())
}

/// Probe rows: zeros, ones, typical and extreme raw values. Every score must be finite.
fn probe_rows(baseline: &[f32; N_FEATURES]) -> Vec<f32> {
    let mut x = Vec::with_capacity(6 * N_FEATURES);
    x.extend_from_slice(&[0.0; N_FEATURES]);
    x.extend_from_slice(&[1.0; N_FEATURES]);
    x.extend_from_slice(baseline);
    x.extend_from_slice(&[1e3; N_FEATURES]);
    x.extend_from_slice(&[1e9; N_FEATURES]);
    x.extend_from_slice(&[f32::MAX; N_FEATURES]);
    x
}

/// Reads and validates a model file.
pub fn load_file(path: &Path) -> Result<AnnModel, ModelError> {
    let bytes = std::fs::read(path).map_err(|source| ModelError::Read {
        path: path.display().to_string(),
        source,
    })?;
    load_bytes(&bytes, &path.display().to_string())
}

/// Validates a model from its bytes; `origin` names it in errors and in [`ModelInfo::source`].
pub fn load_bytes(bytes: &[u8], origin: &str) -> Result<AnnModel, ModelError> {
    let o = || origin.to_string();
    let proto =
        pb::ModelProto::decode(bytes).map_err(|e| ModelError::Decode(o(), e.to_string()))?;
    let graph = proto
        .graph
        .as_ref()
        .ok_or_else(|| ModelError::Invalid(o(), "the file has no graph".into()))?;
    let metadata: BTreeMap<String, String> = proto
        .metadata_props
        .iter()
        .map(|p| (p.key.clone(), p.value.clone()))
        .collect();

    // Versions first: a model for another feature layout is refused whatever its shape.
    let version = |key: &str, ours: u32| -> Result<u32, ModelError> {
        let v = metadata.get(key).ok_or_else(|| {
            ModelError::Version(o(), format!("no `{key}` metadata (this sensor has {ours})"))
        })?;
        match v.trim().parse::<u32>() {
            Ok(n) if n == ours => Ok(n),
            _ => Err(ModelError::Version(
                o(),
                format!("model has {key} {v:?}, this sensor has {ours}"),
            )),
        }
    };
    let feature_layout_version = version(meta::FEATURE_LAYOUT_VERSION, FEATURE_LAYOUT_VERSION)?;
    let feature_vector_version = version(meta::FEATURE_VECTOR_VERSION, FEATURE_VECTOR_VERSION)?;
    if let Some(names) = metadata.get(meta::FEATURE_NAMES)
        && *names != names_csv()
    {
        return Err(ModelError::Version(
            o(),
            format!(
                "model was trained on features [{names}], this sensor produces [{}]",
                names_csv()
            ),
        ));
    }

    let real_inputs: Vec<&pb::ValueInfoProto> = graph
        .input
        .iter()
        .filter(|i| !graph.initializer.iter().any(|t| t.name == i.name))
        .collect();
    let [input] = real_inputs.as_slice() else {
        return Err(ModelError::Invalid(
            o(),
            format!(
                "the graph must have exactly one input, it has {}",
                real_inputs.len()
            ),
        ));
    };
    let input_info = TensorInfo {
        name: input.name.clone(),
        shape: dims(input),
    };
    if input_info.shape.len() == 2
        && let Ok(w) = input_info.shape[1].parse::<usize>()
        && w != N_FEATURES
    {
        return Err(ModelError::Width {
            origin: o(),
            found: w.to_string(),
            expected: N_FEATURES,
        });
    }
    let output_info = graph
        .output
        .first()
        .map(|v| TensorInfo {
            name: v.name.clone(),
            shape: dims(v),
        })
        .ok_or_else(|| ModelError::Invalid(o(), "the graph has no output".into()))?;

    // Weights must be finite (tract's Relu turns NaN into 0, so the probe alone would let a
    // NaN hidden layer through).
    if let Some(t) = graph
        .initializer
        .iter()
        .find(|t| f32_initializer(t).is_some_and(|v| v.iter().any(|x| !x.is_finite())))
    {
        return Err(ModelError::NonFinite(
            o(),
            format!("initializer {:?} holds NaN or infinite values", t.name),
        ));
    }

    let mut baseline = [0f32; N_FEATURES];
    if let Some(m) = graph
        .initializer
        .iter()
        .find(|t| t.name == NORM_MEAN)
        .and_then(f32_initializer)
        && m.len() == N_FEATURES
    {
        for (b, m) in baseline.iter_mut().zip(m) {
            let v = m.exp_m1();
            *b = if v.is_finite() { v.max(0.0) } else { 0.0 };
        }
    }

    let plan = build_plan(&proto).map_err(|e| {
        let msg = format!("{e:#}");
        if msg.contains("Impossible to unify") || msg.contains("Clashing") {
            ModelError::Width {
                origin: o(),
                found: format!("not {N_FEATURES} ({msg})"),
                expected: N_FEATURES,
            }
        } else {
            ModelError::Tract(o(), msg)
        }
    })?;

    let model = AnnModel {
        plan,
        info: ModelInfo {
            source: o(),
            size_bytes: bytes.len(),
            ir_version: proto.ir_version,
            opset: proto
                .opset_import
                .iter()
                .map(|s| Opset {
                    domain: s.domain.clone(),
                    version: s.version,
                })
                .collect(),
            producer: format!("{} {}", proto.producer_name, proto.producer_version)
                .trim()
                .to_string(),
            input: input_info,
            output: output_info,
            model_version: metadata
                .get(meta::MODEL_VERSION)
                .cloned()
                .unwrap_or_default(),
            feature_layout_version,
            feature_vector_version,
            n_features: N_FEATURES,
            metrics: metadata
                .get(meta::METRICS)
                .and_then(|m| serde_json::from_str(m).ok()),
            metadata,
        },
        baseline,
        generation: 0,
    };

    // Probe: one score per row, finite, in [0, 1].
    let rows = probe_rows(&model.baseline);
    let scores = model
        .score(&rows)
        .map_err(|e| ModelError::Tract(o(), format!("probe run failed: {e:#}")))?;
    if scores.len() != rows.len() / N_FEATURES {
        return Err(ModelError::Invalid(
            o(),
            format!(
                "the model gives {} values for {} rows; one score per flow is expected",
                scores.len(),
                rows.len() / N_FEATURES
            ),
        ));
    }
    if let Some((i, s)) = scores
        .iter()
        .enumerate()
        .find(|(_, s)| !s.is_finite() || !(0.0..=1.0).contains(*s))
    {
        return Err(ModelError::NonFinite(
            o(),
            format!("it scores probe row {i} as {s} (scores must be finite, in [0, 1])"),
        ));
    }
    Ok(model)
}

/// tract: parse, pin the input to `[N, N_FEATURES]` f32, type, check the output, optimise.
fn build_plan(proto: &pb::ModelProto) -> TractResult<Arc<TypedRunnableModel>> {
    let model = tract_onnx::onnx().model_for_proto_model(proto)?;
    let n = model.symbols.sym("N");
    let model = model.with_input_fact(0, f32::fact([n.to_dim(), N_FEATURES.to_dim()]).into())?;
    let typed = model.into_typed()?.into_decluttered()?;
    let out = typed.output_fact(0)?;
    let per_row = match out.shape.len() {
        1 => true,
        2 => out.shape[1] == 1.to_dim(),
        _ => false,
    };
    if !per_row || out.datum_type != f32::datum_type() {
        anyhow::bail!(
            "output is {:?} {:?}, expected f32 [N, 1] (one score per flow)",
            out.datum_type,
            out.shape
        );
    }
    typed.into_optimized()?.into_runnable()
}

/// Builds a `[rows, N_FEATURES]` input tensor from row-major values.
pub fn input_tensor(x: &[f32]) -> TractResult<Tensor> {
    Tensor::from_shape(&[x.len() / N_FEATURES, N_FEATURES], x)
}

fn scores_of(out: &TVec<TValue>) -> TractResult<Vec<f32>> {
    let out = out
        .first()
        .ok_or_else(|| anyhow::anyhow!("the model returned no output"))?;
    Ok(out.to_plain_array_view::<f32>()?.iter().copied().collect())
}

impl AnnModel {
    /// Scores row-major raw feature vectors (`x.len()` a multiple of [`N_FEATURES`]). Spawns
    /// a fresh state: for hot loops use a [`Scorer`].
    pub fn score(&self, x: &[f32]) -> TractResult<Vec<f32>> {
        if x.is_empty() {
            return Ok(Vec::new());
        }
        let out = self.plan.run(tvec!(input_tensor(x)?.into_tvalue()))?;
        scores_of(&out)
    }

    /// Name of the file's input (for messages).
    pub fn input_name(&self) -> &str {
        if self.info.input.name.is_empty() {
            INPUT_NAME
        } else {
            &self.info.input.name
        }
    }
}

/// Per-thread scoring state for one model: reuses tract's state between batches.
pub struct Scorer {
    model: Arc<AnnModel>,
    state: TypedSimpleState,
}

impl Scorer {
    pub fn new(model: Arc<AnnModel>) -> TractResult<Self> {
        let state = model.plan.spawn()?;
        Ok(Scorer { model, state })
    }

    pub fn model(&self) -> &Arc<AnnModel> {
        &self.model
    }

    /// Scores an input tensor `[rows, N_FEATURES]`.
    pub fn run(&mut self, input: Tensor) -> TractResult<Vec<f32>> {
        let out = self.state.run(tvec!(input.into_tvalue()))?;
        scores_of(&out)
    }

    /// Runs a prepared input value (the bare-tract path of the benchmark).
    pub fn run_value(&mut self, input: &TValue) -> TractResult<TVec<TValue>> {
        self.state.run(tvec!(input.clone()))
    }
}
