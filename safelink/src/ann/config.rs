//! `[ann]`: whether the classifier runs, which model file, which labelled attack rows name
//! the family an alert resembles, and the detector settings.
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::family::FamilyIndex;

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
    /// Labelled attack rows (`golden.jsonl` format) an ANN alert's flow is compared with to
    /// name the family it resembles ([`super::family`]). Unset: the shipped
    /// `attack_rows.jsonl`, looked for like the model.
    pub families: Option<PathBuf>,
    /// Nearest rows that vote on the family; 0: no `resembles` on ANN alerts.
    pub family_k: usize,
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
            families: None,
            family_k: super::family::DEFAULT_FAMILY_K,
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

    /// The family index ANN alerts name a family from: the configured rows, else the shipped
    /// [`super::recipe::REHEARSAL_ATTACK_ROWS`]. `None` (and a warning, unless `family_k` is
    /// 0) when there are none or they cannot be read: alerts then carry no `resembles`.
    pub fn family_index(&self) -> Option<Arc<FamilyIndex>> {
        if self.family_k == 0 {
            return None;
        }
        let Some(path) = self
            .families
            .clone()
            .or_else(|| crate::shipped::find(super::recipe::REHEARSAL_ATTACK_ROWS))
        else {
            tracing::warn!(
                "no labelled attack rows found ({}): ANN alerts name no family",
                super::recipe::REHEARSAL_ATTACK_ROWS
            );
            return None;
        };
        match FamilyIndex::load(&path, self.family_k) {
            Ok(i) => {
                tracing::debug!(rows = i.len(), k = i.k(), path = %path.display(), "family index");
                Some(Arc::new(i))
            }
            Err(e) => {
                tracing::warn!("{e:#}: ANN alerts name no family");
                None
            }
        }
    }
}
