//! `[ann]`: whether the classifier runs, which model file, and the detector settings.
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[ann]`: the neural flow classifier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnnSection {
    /// On by default. With the continuous learner (also on by default) the live sensor starts
    /// the ANN in a baseline phase (`[learning] baseline_s`): it scores every flow but raises
    /// no ANN alert until a model trained on this host's own traffic passes the local
    /// false-positive check. `safelink analyze` runs the ANN only with `--ann`.
    pub enabled: bool,
    /// ONNX model file. Unset: the shipped `base.onnx`, looked for by [`crate::shipped`]
    /// (`./models`, beside the binary, `<prefix>/share/safelink`, `/usr/local/share/safelink`,
    /// `/usr/share/safelink`, the source tree it was built from).
    pub model: Option<PathBuf>,
    #[serde(flatten)]
    pub detector: super::AnnConfig,
}

/// The shipped model's file name, looked for by [`crate::shipped::find`].
pub const SHIPPED_MODEL: &str = "base.onnx";

impl Default for AnnSection {
    fn default() -> Self {
        AnnSection {
            enabled: true,
            model: None,
            detector: super::AnnConfig::default(),
        }
    }
}

impl AnnSection {
    /// The model file to load: the configured one, else the shipped [`SHIPPED_MODEL`].
    pub fn model_path(&self) -> Option<PathBuf> {
        self.model
            .clone()
            .or_else(|| crate::shipped::find(SHIPPED_MODEL))
    }
}
