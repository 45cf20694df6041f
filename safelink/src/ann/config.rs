//! `[ann]`: whether the classifier runs, which model file, and the detector settings.
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[ann]`: the neural flow classifier.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnnSection {
    /// Off by default: the shipped base model was trained on public captures with few benign
    /// flows and flags ordinary SSH logins in the lab (models/README.md). Turn it on once it
    /// has been retrained on your own traffic.
    pub enabled: bool,
    /// ONNX model file. Unset: `models/base.onnx` (source tree, `cargo xtask run`), then
    /// `/usr/local/share/safelink/base.onnx` (`cargo xtask install`), then
    /// `/usr/share/safelink/base.onnx` (the Debian package).
    pub model: Option<PathBuf>,
    #[serde(flatten)]
    pub detector: super::AnnConfig,
}

/// Where the model is looked for when `[ann] model` is unset.
pub const MODEL_SEARCH_PATH: &[&str] = &[
    "models/base.onnx",
    "/usr/local/share/safelink/base.onnx",
    "/usr/share/safelink/base.onnx",
];

impl AnnSection {
    /// The model file to load: the configured one, else the first of [`MODEL_SEARCH_PATH`]
    /// that exists.
    pub fn model_path(&self) -> Option<PathBuf> {
        self.model.clone().or_else(|| {
            MODEL_SEARCH_PATH
                .iter()
                .map(PathBuf::from)
                .find(|p| p.exists())
        })
    }
}
