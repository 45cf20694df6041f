//! [`AlertGate`]: whether the ANN may raise alerts right now. The continuous learner holds it
//! closed during the local baseline phase (the ANN scores every flow, for the learner, but
//! alerts on none) and opens it when a model passes the local false-positive check; the
//! detector reads it before each alert. One atomic flag, shared.
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Shared open/closed flag. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct AlertGate(Arc<AtomicBool>);

impl AlertGate {
    pub fn new(open: bool) -> Self {
        AlertGate(Arc::new(AtomicBool::new(open)))
    }

    pub fn is_open(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    pub fn set(&self, open: bool) {
        self.0.store(open, Ordering::SeqCst);
    }
}
