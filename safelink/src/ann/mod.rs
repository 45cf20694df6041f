//! ANN flow classifier: one documented feature vector per finished flow ([`features`]), a
//! small MLP trained with candle ([`train`], [`recipe`]), exported to ONNX ([`export`]),
//! scored with tract ([`model`], [`batch`]) behind an atomic hot swap ([`swap`]), and turned
//! into alerts by a detector with the same shape as the rule engine ([`detector`]), each
//! naming the attack family its flow resembles ([`family`]).
//!
//! Typical use:
//! ```no_run
//! use safelink::ann::{AnnConfig, AnnDetector, ModelHandle};
//! let handle = ModelHandle::open("models/base.onnx".as_ref())?;
//! let mut det = AnnDetector::new(handle.clone(), AnnConfig::default());
//! // for each record r: det.observe_into(&r, &mut events);  at the end: det.finish()
//! # Ok::<(), safelink::ann::ModelError>(())
//! ```
pub mod batch;
pub mod bench;
pub mod card;
pub mod config;
pub mod dataset;
pub mod detector;
pub mod eval;
pub mod export;
pub mod family;
pub mod features;
pub mod gate;
pub mod metrics;
pub mod model;
pub mod recipe;
pub mod rows;
pub mod swap;
pub mod train;

pub use batch::{BatchScorer, ScoredBatch};
pub use detector::{AnnConfig, AnnDetector, AnnStats, GroupBy, ScoreTap};
pub use family::{FamilyIndex, Resemblance};
pub use features::{FEATURE_VECTOR_VERSION, FEATURES, N_FEATURES};
pub use gate::AlertGate;
pub use model::{AnnModel, ModelError, ModelInfo, load_file};
pub use swap::ModelHandle;

/// Where the shipped base model lives, relative to the workspace root.
pub const DEFAULT_MODEL_PATH: &str = "models/base.onnx";
