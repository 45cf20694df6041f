//! Loading and validating a model file with tract: [`AnnModel`] (a runnable plan plus what
//! the file says about itself, [`ModelInfo`]) and [`Scorer`], the per-thread scoring state.
//!
//! A file is accepted only if it is a regular file within the size cap ([`read_capped`]),
//! decodes as ONNX, carries this sensor's `feature_layout_version` and
//! `feature_vector_version` (and, when present, the same `feature_names`), uses only the
//! allowed operators on values computed from its input with bounded tensor sizes (so
//! probing and scoring cannot allocate without bound), takes `[N, N_FEATURES]` floats,
//! gives one score per row, and gives finite scores in `[0, 1]` on a set of probe rows.
//! Everything else is a [`ModelError`] that names the problem.
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

    /// The metadata that makes a model loadable by this build: its version, this build's
    /// feature layout and vector versions, and the feature names.
    pub fn for_this_build(model_version: &str) -> Vec<(String, String)> {
        vec![
            (MODEL_VERSION.into(), model_version.into()),
            (
                FEATURE_LAYOUT_VERSION.into(),
                safelink_common::FEATURE_LAYOUT_VERSION.to_string(),
            ),
            (
                FEATURE_VECTOR_VERSION.into(),
                super::FEATURE_VECTOR_VERSION.to_string(),
            ),
            (FEATURE_NAMES.into(), super::names_csv()),
        ]
    }
}

/// Why a model file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read model file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a regular file")]
    NotAFile { path: String },
    #[error("{path} is larger than the {limit}-byte limit for model files")]
    TooLarge { path: String, limit: u64 },
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
    /// The graph uses an operator, a constant computation or tensor sizes this sensor does
    /// not run (they could allocate without bound while probing or scoring).
    #[error("{0}: graph refused: {1}")]
    Graph(String, String),
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

/// Largest model file read unless configured otherwise (`[api] max_model_bytes`), bytes.
/// The shipped models are a few kilobytes.
pub const DEFAULT_MAX_MODEL_BYTES: u64 = 64 * 1024 * 1024;

/// Reads and validates a model file of at most [`DEFAULT_MAX_MODEL_BYTES`].
pub fn load_file(path: &Path) -> Result<AnnModel, ModelError> {
    load_file_capped(path, DEFAULT_MAX_MODEL_BYTES)
}

/// Reads and validates a model file of at most `max_bytes`.
pub fn load_file_capped(path: &Path, max_bytes: u64) -> Result<AnnModel, ModelError> {
    let bytes = read_capped(path, max_bytes)?;
    load_bytes(&bytes, &path.display().to_string())
}

/// The bytes of regular file `path`, refused when larger than `max_bytes` (by its metadata,
/// and while reading, so a file that grows or lies about its size is refused too). Opened
/// non-blocking, so a FIFO or a device never blocks the caller.
pub fn read_capped(path: &Path, max_bytes: u64) -> Result<Vec<u8>, ModelError> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let name = || path.display().to_string();
    let read_err = |source| ModelError::Read {
        path: name(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(ModelError::NotAFile { path: name() });
    }
    let too_large = || ModelError::TooLarge {
        path: name(),
        limit: max_bytes,
    };
    if meta.len() > max_bytes {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_large());
    }
    Ok(bytes)
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

    check_graph(graph).map_err(|e| ModelError::Graph(o(), e))?;

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
        if let Some(PlanRefused(why)) = e.downcast_ref::<PlanRefused>() {
            return ModelError::Graph(o(), why.clone());
        }
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

/// ONNX operators a model may use: the exporter's (`Add`, `Log`, `Sub`, `Div`, `Gemm`,
/// `Relu`, `Sigmoid`) and other element-wise and dense-layer operators. No operator that
/// creates tensors from values (`ConstantOfShape`, `Expand` from data, `Range`...), holds a
/// subgraph (`Loop`, `Scan`, `If`) or a tensor attribute (`Constant`).
const ALLOWED_OPS: &[&str] = &[
    "Abs",
    "Add",
    "Clip",
    "Div",
    "Exp",
    "Flatten",
    "Gemm",
    "Identity",
    "LeakyRelu",
    "Log",
    "MatMul",
    "Max",
    "Min",
    "Mul",
    "Neg",
    "Relu",
    "Reshape",
    "Sigmoid",
    "Softmax",
    "Sqrt",
    "Sub",
    "Tanh",
];
/// Most nodes in a graph (the exporter writes about ten).
const MAX_NODES: usize = 1024;
/// Most elements of one initializer (256 MiB of f32; the file size cap binds first).
const MAX_INITIALIZER_ELEMENTS: u64 = 1 << 26;
/// Most elements per input row of any intermediate tensor (256 KiB of f32 per flow).
const MAX_ELEMENTS_PER_ROW: i64 = 1 << 16;
/// Most elements of any intermediate tensor for a one-row batch.
const MAX_ELEMENTS: i64 = 1 << 26;

/// Checks on the protobuf, before tract sees it (tract folds constant subgraphs while
/// loading, so a graph that computes a huge tensor from constants alone would allocate it
/// then): allowed operators only, every node computes from the input, initializers hold
/// exactly the data their shape declares, and nothing is stored outside the file.
fn check_graph(graph: &pb::GraphProto) -> Result<(), String> {
    if graph.node.len() > MAX_NODES {
        return Err(format!(
            "{} nodes, at most {MAX_NODES} are accepted",
            graph.node.len()
        ));
    }
    if !graph.sparse_initializer.is_empty() {
        return Err("sparse initializers are not accepted".into());
    }
    for t in &graph.initializer {
        check_initializer(t)?;
    }
    let initializers: std::collections::HashSet<&str> =
        graph.initializer.iter().map(|t| t.name.as_str()).collect();
    // Values computed from the graph input (ONNX lists nodes in topological order).
    let mut from_input: std::collections::HashSet<&str> = graph
        .input
        .iter()
        .map(|i| i.name.as_str())
        .filter(|n| !initializers.contains(n))
        .collect();
    for node in &graph.node {
        let name = if node.name.is_empty() {
            node.output.first().map(String::as_str).unwrap_or("?")
        } else {
            node.name.as_str()
        };
        if !(node.domain.is_empty() || node.domain == "ai.onnx") {
            return Err(format!(
                "node {name:?} uses operator domain {:?}",
                node.domain
            ));
        }
        if !ALLOWED_OPS.contains(&node.op_type.as_str()) {
            return Err(format!(
                "node {name:?} uses operator {:?}; accepted operators: {}",
                node.op_type,
                ALLOWED_OPS.join(", ")
            ));
        }
        if !node.input.iter().any(|i| from_input.contains(i.as_str())) {
            return Err(format!(
                "node {name:?} ({}) computes from constants only",
                node.op_type
            ));
        }
        from_input.extend(node.output.iter().map(String::as_str));
    }
    Ok(())
}

/// An initializer's declared size is bounded and matches the data it holds.
fn check_initializer(t: &pb::TensorProto) -> Result<(), String> {
    use pb::tensor_proto::DataType as D;
    let n = &t.name;
    if !t.external_data.is_empty() || t.data_location == Some(1) {
        return Err(format!("initializer {n:?} refers to external data"));
    }
    let mut count: u64 = 1;
    for &d in &t.dims {
        count = u64::try_from(d)
            .ok()
            .and_then(|d| count.checked_mul(d))
            .filter(|&c| c <= MAX_INITIALIZER_ELEMENTS)
            .ok_or_else(|| format!("initializer {n:?} has dimensions {:?}", t.dims))?;
    }
    let width = match D::try_from(t.data_type) {
        Ok(D::Float | D::Int32 | D::Uint32) => 4,
        Ok(D::Double | D::Int64 | D::Uint64) => 8,
        Ok(D::Int8 | D::Uint8 | D::Bool) => 1,
        Ok(D::Int16 | D::Uint16 | D::Float16 | D::Bfloat16) => 2,
        _ => return Err(format!("initializer {n:?} has data type {}", t.data_type)),
    };
    let held = if t.raw_data.is_empty() {
        (t.float_data.len()
            + t.int32_data.len()
            + t.int64_data.len()
            + t.double_data.len()
            + t.uint64_data.len()
            + t.string_data.len()) as u64
    } else {
        t.raw_data.len() as u64 / width
    };
    if held != count {
        return Err(format!(
            "initializer {n:?} declares {count} elements and holds {held}"
        ));
    }
    Ok(())
}

/// A model tract could type but this sensor does not run (see [`check_sizes`]).
#[derive(Debug)]
struct PlanRefused(String);

impl std::fmt::Display for PlanRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PlanRefused {}

/// Every tensor of the typed graph has a size known from the batch size `n` alone, growing
/// at most linearly with it, with at most [`MAX_ELEMENTS_PER_ROW`] elements per row and
/// [`MAX_ELEMENTS`] for one row: scoring memory is bounded by the batch size.
fn check_sizes(typed: &TypedModel, n: &Symbol) -> Result<(), PlanRefused> {
    let at = |v: &TDim, rows: i64| v.eval(&SymbolValues::default().with(n, rows)).to_i64();
    for node in typed.nodes() {
        for (slot, out) in node.outputs.iter().enumerate() {
            let volume = out.fact.shape.volume();
            let refuse = |why: String| {
                PlanRefused(format!(
                    "tensor {}#{slot} (shape {:?}) {why}",
                    node.name, out.fact.shape
                ))
            };
            let (Ok(one), Ok(two)) = (at(&volume, 1), at(&volume, 2)) else {
                return Err(refuse(
                    "has a size that depends on more than the batch size".into(),
                ));
            };
            let per_row = two - one;
            if one > MAX_ELEMENTS || per_row > MAX_ELEMENTS_PER_ROW || two > 2 * one {
                return Err(refuse(format!(
                    "is too large: {per_row} elements per row (at most \
                     {MAX_ELEMENTS_PER_ROW}), {one} for one row (at most {MAX_ELEMENTS})"
                )));
            }
        }
    }
    Ok(())
}

/// tract: parse, pin the input to `[N, N_FEATURES]` f32, type, bound the tensor sizes
/// ([`check_sizes`], a [`PlanRefused`] error), check the output, optimise.
fn build_plan(proto: &pb::ModelProto) -> TractResult<Arc<TypedRunnableModel>> {
    let model = tract_onnx::onnx().model_for_proto_model(proto)?;
    let n = model.symbols.sym("N");
    let model = model.with_input_fact(0, f32::fact([n.to_dim(), N_FEATURES.to_dim()]).into())?;
    let typed = model.into_typed()?;
    check_sizes(&typed, &n)?;
    let mut typed = typed.into_decluttered()?;
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
    // Code generation only: `into_optimized` would declutter the decluttered model a second
    // time (about 5 % of a fleet sensor's verify-and-swap CPU, measured).
    typed.optimize()?;
    typed.into_runnable()
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
