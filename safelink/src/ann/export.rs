//! ONNX export: a small writer over the protobuf types tract-onnx re-exports
//! (`tract_onnx::pb`), and the atomic file write (temp name, fsync, rename, fsync of the
//! directory) every model file goes through.
//!
//! The graph: `features [N, F]` → `Add 1` → `Log` (log1p) → `Sub mean` → `Div std` →
//! `Gemm` layers with `Relu` or `LeakyRelu` between them ([`Activation`]) → `Sigmoid` →
//! `score [N, 1]`. Weights are stored as candle's `Linear`
//! stores them (`[out, in]`), taken by `Gemm` with `transB = 1`. Opset 13, IR version 8.
use std::io::Write as _;
use std::path::Path;

use prost::Message as _;
use tract_onnx::pb;
use tract_onnx::pb::tensor_shape_proto::{Dimension, dimension::Value as DimValue};

/// ONNX opset the exporter writes.
pub const OPSET: i64 = 13;
/// Name of the graph's input and output.
pub const INPUT_NAME: &str = "features";
pub const OUTPUT_NAME: &str = "score";
/// Initializers holding the normalisation (in log1p space).
pub const NORM_MEAN: &str = "norm_mean";
pub const NORM_STD: &str = "norm_std";

/// One dense layer in candle's layout: `weight` is `[out, in]` row-major, `bias` is `[out]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Dense {
    pub out_dim: usize,
    pub in_dim: usize,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

/// The activation after each hidden layer: a fact of the model file, so that the learner
/// continues training a model with the activation it was trained with.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    Relu,
    /// `max(x, alpha·x)`: a unit whose input is negative for every flow still passes a
    /// gradient, so a later cycle can move flows the base model put on a plateau.
    LeakyRelu {
        alpha: f32,
    },
}

impl Activation {
    /// ONNX's default `alpha` of `LeakyRelu`, used when a node leaves it out.
    pub const ONNX_DEFAULT_ALPHA: f32 = 0.01;
}

/// What goes into a model file.
#[derive(Clone, Debug)]
pub struct ExportSpec {
    pub n_features: usize,
    /// Mean and standard deviation of `log1p(features)` over the training set.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    /// Hidden layers ([`Self::activation`] after each) and the output layer (one logit), in
    /// order.
    pub layers: Vec<Dense>,
    pub activation: Activation,
    /// `metadata_props` (versions, feature names, metrics...).
    pub metadata: Vec<(String, String)>,
}

fn init_f32(name: &str, dims: &[usize], data: &[f32]) -> pb::TensorProto {
    assert_eq!(dims.iter().product::<usize>(), data.len(), "{name}");
    pb::TensorProto {
        name: name.into(),
        dims: dims.iter().map(|d| *d as i64).collect(),
        data_type: pb::tensor_proto::DataType::Float as i32,
        raw_data: data.iter().flat_map(|f| f.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], output: &str, attrs: Vec<pb::AttributeProto>) -> pb::NodeProto {
    pb::NodeProto {
        op_type: op.into(),
        name: format!("{op}_{output}"),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute: attrs,
        ..Default::default()
    }
}

fn attr_float(name: &str, v: f32) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Float as i32,
        f: v,
        ..Default::default()
    }
}

fn attr_int(name: &str, v: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Int as i32,
        i: v,
        ..Default::default()
    }
}

/// Float tensor `[N, inner]` with a symbolic batch dimension `N`.
fn value_info(name: &str, inner: usize) -> pb::ValueInfoProto {
    let dims = vec![
        Dimension {
            value: Some(DimValue::DimParam("N".into())),
            ..Default::default()
        },
        Dimension {
            value: Some(DimValue::DimValue(inner as i64)),
            ..Default::default()
        },
    ];
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: pb::tensor_proto::DataType::Float as i32,
                shape: Some(pb::TensorShapeProto { dim: dims }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The ONNX model of `s`.
pub fn build_model(s: &ExportSpec) -> pb::ModelProto {
    let mut initializer = vec![
        init_f32("one", &[1], &[1.0]),
        init_f32(NORM_MEAN, &[s.n_features], &s.mean),
        init_f32(NORM_STD, &[s.n_features], &s.std),
    ];
    let mut nodes = vec![
        node("Add", &[INPUT_NAME, "one"], "x_plus_1", vec![]),
        node("Log", &["x_plus_1"], "x_log1p", vec![]),
        node("Sub", &["x_log1p", NORM_MEAN], "x_centered", vec![]),
        node("Div", &["x_centered", NORM_STD], "x_norm", vec![]),
    ];
    let mut prev = "x_norm".to_string();
    let last = s.layers.len().saturating_sub(1);
    for (i, l) in s.layers.iter().enumerate() {
        let (w, b) = (format!("l{}.weight", i + 1), format!("l{}.bias", i + 1));
        initializer.push(init_f32(&w, &[l.out_dim, l.in_dim], &l.weight));
        initializer.push(init_f32(&b, &[l.out_dim], &l.bias));
        let out = if i == last {
            "logit".to_string()
        } else {
            format!("h{}", i + 1)
        };
        nodes.push(node(
            "Gemm",
            &[&prev, &w, &b],
            &out,
            vec![attr_int("transB", 1)],
        ));
        prev = if i == last {
            out
        } else {
            let r = format!("{out}_relu");
            nodes.push(match s.activation {
                Activation::Relu => node("Relu", &[&out], &r, vec![]),
                Activation::LeakyRelu { alpha } => {
                    node("LeakyRelu", &[&out], &r, vec![attr_float("alpha", alpha)])
                }
            });
            r
        };
    }
    nodes.push(node("Sigmoid", &[&prev], OUTPUT_NAME, vec![]));
    let graph = pb::GraphProto {
        name: "safelink_flow_mlp".into(),
        node: nodes,
        initializer,
        input: vec![value_info(INPUT_NAME, s.n_features)],
        output: vec![value_info(OUTPUT_NAME, 1)],
        ..Default::default()
    };
    pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "safelink".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        model_version: 1,
        graph: Some(graph),
        metadata_props: s
            .metadata
            .iter()
            .map(|(k, v)| pb::StringStringEntryProto {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
        ..Default::default()
    }
}

/// Writes `bytes` to `path` atomically: a temp file in the same directory, fsync, rename over
/// `path`, fsync of the directory. Readers see the old file or the new one, never a mix (and a
/// reader that memory-mapped the old file keeps its inode).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other(format!("{}: not a file path", path.display())))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return res;
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()
}

/// Encodes `s` and writes it atomically to `path`; returns the file size.
pub fn export(path: &Path, s: &ExportSpec) -> std::io::Result<usize> {
    let bytes = build_model(s).encode_to_vec();
    write_atomic(path, &bytes)?;
    Ok(bytes.len())
}

/// Reads back the weights of a model this exporter wrote (the continuous learner continues
/// training from them): normalisation, `l{i}.weight`/`l{i}.bias` in order, and the metadata.
/// A file with another graph shape is an error naming what is missing.
pub fn read_spec(bytes: &[u8]) -> Result<ExportSpec, SpecError> {
    read_spec_text(bytes).map_err(SpecError)
}

/// Why [`read_spec`] cannot continue training from a model file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct SpecError(pub String);

fn read_spec_text(bytes: &[u8]) -> Result<ExportSpec, String> {
    let proto = pb::ModelProto::decode(bytes).map_err(|e| format!("not an ONNX model: {e}"))?;
    let graph = proto.graph.as_ref().ok_or("the model has no graph")?;
    let get = |name: &str| -> Result<(Vec<usize>, Vec<f32>), String> {
        let t = graph
            .initializer
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| format!("no initializer `{name}` (not a SafeLink MLP export)"))?;
        if t.data_type != pb::tensor_proto::DataType::Float as i32 {
            return Err(format!("initializer `{name}` is not float"));
        }
        let data: Vec<f32> = if t.raw_data.is_empty() {
            t.float_data.clone()
        } else {
            t.raw_data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        };
        let dims: Vec<usize> = t.dims.iter().map(|d| *d as usize).collect();
        if dims.iter().product::<usize>() != data.len() {
            return Err(format!(
                "initializer `{name}`: dims {dims:?} but {} values",
                data.len()
            ));
        }
        Ok((dims, data))
    };
    let (_, mean) = get(NORM_MEAN)?;
    let (_, std) = get(NORM_STD)?;
    let mut layers = Vec::new();
    for i in 1.. {
        let w = format!("l{i}.weight");
        if !graph.initializer.iter().any(|t| t.name == w) {
            break;
        }
        let (wd, weight) = get(&w)?;
        let (_, bias) = get(&format!("l{i}.bias"))?;
        let [out_dim, in_dim] = wd[..] else {
            return Err(format!("`{w}` is not 2-D"));
        };
        if bias.len() != out_dim {
            return Err(format!(
                "`l{i}.bias` has {} values, expected {out_dim}",
                bias.len()
            ));
        }
        layers.push(Dense {
            out_dim,
            in_dim,
            weight,
            bias,
        });
    }
    if layers.is_empty() {
        return Err("no `l1.weight` layer (not a SafeLink MLP export)".into());
    }
    let acts: Vec<Activation> = graph
        .node
        .iter()
        .filter_map(|n| match n.op_type.as_str() {
            "Relu" => Some(Activation::Relu),
            "LeakyRelu" => Some(Activation::LeakyRelu {
                alpha: n
                    .attribute
                    .iter()
                    .find(|a| a.name == "alpha")
                    .map_or(Activation::ONNX_DEFAULT_ALPHA, |a| a.f),
            }),
            _ => None,
        })
        .collect();
    let activation = match acts.first() {
        Some(a) if acts.iter().all(|b| b == a) => *a,
        Some(_) => return Err("hidden layers with different activations".into()),
        None if layers.len() == 1 => Activation::Relu,
        None => return Err("hidden layers without a Relu or LeakyRelu node".into()),
    };
    Ok(ExportSpec {
        n_features: mean.len(),
        mean,
        std,
        layers,
        activation,
        metadata: proto
            .metadata_props
            .iter()
            .map(|p| (p.key.clone(), p.value.clone()))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.onnx");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn read_spec_round_trips() {
        let spec = ExportSpec {
            n_features: 2,
            mean: vec![0.5, 1.5],
            std: vec![1.0, 2.0],
            layers: vec![
                Dense {
                    out_dim: 3,
                    in_dim: 2,
                    weight: vec![1., 2., 3., 4., 5., 6.],
                    bias: vec![0.1, 0.2, 0.3],
                },
                Dense {
                    out_dim: 1,
                    in_dim: 3,
                    weight: vec![7., 8., 9.],
                    bias: vec![-1.],
                },
            ],
            activation: Activation::LeakyRelu { alpha: 0.05 },
            metadata: vec![("model_version".into(), "t".into())],
        };
        let bytes = build_model(&spec).encode_to_vec();
        let back = read_spec(&bytes).unwrap();
        assert_eq!(back.layers, spec.layers);
        assert_eq!((&back.mean, &back.std), (&spec.mean, &spec.std));
        assert_eq!(back.metadata, spec.metadata);
        assert_eq!(back.activation, Activation::LeakyRelu { alpha: 0.05 });
        let relu = ExportSpec {
            activation: Activation::Relu,
            ..spec
        };
        let back = read_spec(&build_model(&relu).encode_to_vec()).unwrap();
        assert_eq!(back.activation, Activation::Relu);
        assert!(
            read_spec(b"garbage")
                .unwrap_err()
                .to_string()
                .contains("not an ONNX model")
        );
    }
}
