//! The daemon's stages and their health: which long-running parts of the sensor (ring
//! reader, sweeper, detection thread with its ANN and alert sink, API, retention) are running,
//! and which one stopped and why. A stage that stops on its own is a failure: `GET /status`
//! shows it (`health: degraded`) and the daemon then shuts down in order and exits non-zero,
//! naming the stage, so systemd's `Restart=on-failure` restarts it.
//!
//! `SAFELINK_FAULT_STAGE=<stage>` (a test hook, never set in production) makes that stage
//! stop with an error one second after start, so the tests can prove the above.
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use serde::Serialize;

/// A stage that stopped on its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DegradedStage {
    pub stage: String,
    pub reason: String,
}

/// Shared between the supervisor (writes) and `GET /status` (reads).
#[derive(Clone, Debug, Default)]
pub struct StageBoard(Arc<Mutex<Vec<DegradedStage>>>);

impl StageBoard {
    pub fn failed(&self, stage: &str, reason: impl Into<String>) {
        self.0.lock().expect("stage board").push(DegradedStage {
            stage: stage.to_owned(),
            reason: reason.into(),
        });
    }

    pub fn degraded(&self) -> Vec<DegradedStage> {
        self.0.lock().expect("stage board").clone()
    }
}

/// The env var naming a stage to fail on purpose (tests).
pub const FAULT_ENV: &str = "SAFELINK_FAULT_STAGE";

/// Whether the fault hook names `stage`.
pub fn fault_injected(stage: &str) -> bool {
    std::env::var(FAULT_ENV).is_ok_and(|s| s == stage)
}

/// Resolves one second after start when the fault hook names `stage`, never otherwise.
pub async fn injected_fault(stage: &'static str) -> anyhow::Result<()> {
    if fault_injected(stage) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        anyhow::bail!("fault injected by {FAULT_ENV}");
    }
    std::future::pending().await
}

/// Spawns `stage` on the runtime; the fault hook can end it (see the module documentation).
pub fn spawn(
    stage: &'static str,
    fut: impl std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
) -> (&'static str, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let h = tokio::spawn(async move {
        tokio::select! {
            r = fut => r,
            r = injected_fault(stage) => r,
        }
    });
    (stage, h)
}
