//! The live model: [`ModelHandle`], an `ArcSwap` of [`AnnModel`]. Scoring takes the current
//! model with one atomic load and keeps it for the whole batch; installing a model is one
//! atomic store. A swap never blocks or drops an inference in flight: a batch that started on
//! the old model finishes on it, the next batch sees the new one.
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;

use super::model::{AnnModel, ModelError, ModelInfo, load_file, load_file_capped};

/// Shared, cheaply cloneable handle on the live model.
#[derive(Clone)]
pub struct ModelHandle {
    current: Arc<ArcSwap<AnnModel>>,
    next_generation: Arc<AtomicU64>,
}

impl std::fmt::Debug for ModelHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ModelHandle")
            .field(&*self.current())
            .finish()
    }
}

impl ModelHandle {
    /// A handle serving `model` (generation 1).
    pub fn new(mut model: AnnModel) -> Self {
        model.generation = 1;
        ModelHandle {
            current: Arc::new(ArcSwap::from_pointee(model)),
            next_generation: Arc::new(AtomicU64::new(2)),
        }
    }

    /// Loads and validates `path`, then serves it.
    pub fn open(path: &Path) -> Result<Self, ModelError> {
        Ok(Self::new(load_file(path)?))
    }

    /// The model serving now (one atomic load plus a reference count).
    pub fn current(&self) -> Arc<AnnModel> {
        self.current.load_full()
    }

    /// Generation of the model serving now (1 for the first, +1 per install).
    pub fn generation(&self) -> u64 {
        self.current.load().generation
    }

    /// Serves `model` from now on; returns its generation.
    pub fn install(&self, mut model: AnnModel) -> u64 {
        let g = self.next_generation.fetch_add(1, Ordering::SeqCst);
        model.generation = g;
        self.current.store(Arc::new(model));
        g
    }

    /// Validates `path` and, if it is accepted, serves it. On error the current model keeps
    /// serving. Returns the new model's info and generation.
    pub fn load_and_install(&self, path: &Path) -> Result<(ModelInfo, u64), ModelError> {
        self.load_and_install_capped(path, super::model::DEFAULT_MAX_MODEL_BYTES)
    }

    /// [`Self::load_and_install`] for a file of at most `max_bytes`.
    pub fn load_and_install_capped(
        &self,
        path: &Path,
        max_bytes: u64,
    ) -> Result<(ModelInfo, u64), ModelError> {
        let m = load_file_capped(path, max_bytes)?;
        let info = m.info.clone();
        Ok((info, self.install(m)))
    }
}
