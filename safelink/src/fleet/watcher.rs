//! The sensor's incoming side: one KV watch on this sensor's channel (`stable` or `canary`
//! in the models bucket), the signed bundle inline in the value. Each value is checked by the
//! [`Verifier`] (which loads and probes the model from the bundle's bytes, as a local
//! `POST /model/load` does from a file); an accepted model is written to the models
//! directory (temp file, fsync, rename) and that loaded model is swapped in with
//! [`ModelHandle::install`], under the file's name. A refused one is logged, counted by
//! reason and shown, and the current model keeps serving.
//!
//! The highest accepted version and the model serving are kept in
//! `<data_dir>/fleet/state.json`, so a restart serves the same model and never accepts an
//! older version (no silent downgrade).
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tracing::{info, warn};

use super::manifest::{Bundle, Refusal, Verifier};
use super::status::{FleetHandle, FleetModel, LastRefusal, metric};
use super::{Channel, FleetError};
use crate::ann::ModelHandle;
use crate::ann::export::write_atomic;
use crate::learn::models::now_rfc3339;

/// What survives a restart.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WatchState {
    pub highest_version: Option<u64>,
    pub model: Option<FleetModel>,
    /// The model file in the models directory.
    pub file: Option<String>,
}

/// Applies bundles to the live model.
pub struct Watcher {
    verifier: Verifier,
    channel: Channel,
    handle: ModelHandle,
    fleet: FleetHandle,
    model_dir: PathBuf,
    state_path: PathBuf,
    max_model_bytes: u64,
    state: WatchState,
}

impl Watcher {
    /// Loads the saved state and, if a fleet model was serving, serves it again.
    pub fn open(
        verifier: Verifier,
        channel: Channel,
        handle: ModelHandle,
        fleet: FleetHandle,
        fleet_dir: &Path,
        model_dir: &Path,
        max_model_bytes: u64,
    ) -> Result<Watcher, FleetError> {
        std::fs::create_dir_all(model_dir)
            .map_err(|e| FleetError::Io(model_dir.display().to_string(), e))?;
        let state_path = fleet_dir.join("state.json");
        let state: WatchState = match std::fs::read(&state_path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| FleetError::Invalid(format!("{}: {e}", state_path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => WatchState::default(),
            Err(e) => return Err(FleetError::Io(state_path.display().to_string(), e)),
        };
        let w = Watcher {
            verifier,
            channel,
            handle,
            fleet,
            model_dir: model_dir.into(),
            state_path,
            max_model_bytes,
            state,
        };
        if let (Some(m), Some(file)) = (&w.state.model, &w.state.file) {
            match w
                .handle
                .load_and_install_capped(&w.model_dir.join(file), w.max_model_bytes)
            {
                Ok(_) => info!(
                    version = m.version,
                    sha256 = m.sha256,
                    "serving the fleet model again"
                ),
                Err(e) => {
                    warn!(error = %e, file, "the saved fleet model was refused; serving the local model")
                }
            }
        }
        let st = w.state.clone();
        w.fleet.update(|s| {
            s.highest_version = st.highest_version;
            s.model = st.model;
        });
        Ok(w)
    }

    pub fn state(&self) -> &WatchState {
        &self.state
    }

    /// Checks one KV value and applies it. Ok(None): the value is what already serves.
    pub fn offer(&mut self, raw: &[u8]) -> Result<Option<u64>, Refusal> {
        // The current value again (a watch restarted): nothing to do, nothing refused.
        if let (Ok(b), Some(cur)) = (Bundle::from_bytes(raw), &self.state.model)
            && let Ok(m) = b.unverified_manifest()
            && m.version == cur.version
            && m.sha256 == cur.sha256
        {
            return Ok(None);
        }
        let r = self
            .verifier
            .verify(raw, self.state.highest_version, OffsetDateTime::now_utc())
            .and_then(|v| self.install(v));
        match r {
            Ok(v) => Ok(Some(v)),
            Err(refusal) => {
                let version = Bundle::from_bytes(raw)
                    .ok()
                    .and_then(|b| b.unverified_manifest().ok())
                    .map(|m| m.version);
                warn!(version = ?version, code = refusal.code(), reason = %refusal, "fleet model refused; the current model keeps serving");
                metrics::counter!(metric::REFUSED, "reason" => refusal.code()).increment(1);
                self.fleet.update(|s| {
                    *s.refused.entry(refusal.code().into()).or_default() += 1;
                    s.last_refusal = Some(LastRefusal {
                        version,
                        code: refusal.code().into(),
                        reason: refusal.to_string(),
                        at: now_rfc3339(),
                    });
                });
                Err(refusal)
            }
        }
    }

    fn install(&mut self, v: super::manifest::Verified) -> Result<u64, Refusal> {
        let version = v.manifest.version;
        let file = format!("fleet-v{version}.onnx");
        let path = self.model_dir.join(&file);
        if v.bytes.len() as u64 > self.max_model_bytes {
            return Err(Refusal::ModelRefused(
                crate::ann::ModelError::TooLarge {
                    path: file,
                    limit: self.max_model_bytes,
                }
                .to_string(),
            ));
        }
        write_atomic(&path, &v.bytes)
            .map_err(|e| Refusal::ModelRefused(format!("writing {file}: {e}")))?;
        // The model the verifier loaded from these very bytes (validated, probed) serves as
        // the file's: no second load.
        let mut model = v.model;
        model.info.source = path.display().to_string();
        self.handle.install(model);
        let model = FleetModel {
            version,
            sha256: v.manifest.sha256.clone(),
            origin: format!("fleet:{}", self.channel.as_str()),
            accepted_at: now_rfc3339(),
        };
        let old_file = self.state.file.replace(file.clone());
        self.state.highest_version = Some(version);
        self.state.model = Some(model.clone());
        let saved = serde_json::to_vec_pretty(&self.state).expect("state serialises");
        if let Err(e) = write_atomic(&self.state_path, &saved) {
            warn!(error = %e, "fleet: could not save the accepted version");
        }
        if let Some(old) = old_file.filter(|o| *o != file) {
            let _ = std::fs::remove_file(self.model_dir.join(old));
        }
        metrics::counter!(metric::ACCEPTED).increment(1);
        self.fleet.update(|s| {
            s.accepted += 1;
            s.highest_version = Some(version);
            s.model = Some(model);
        });
        info!(
            version,
            sha256 = v.manifest.sha256,
            channel = self.channel.as_str(),
            "fleet model verified and swapped in"
        );
        Ok(version)
    }

    /// Watches the channel's key until `stop`, re-watching after any error.
    pub async fn run(
        mut self,
        models: async_nats::jetstream::kv::Store,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let key = self.channel.as_str();
        loop {
            if *stop.borrow() {
                return;
            }
            match models.watch_with_history(key).await {
                Ok(mut w) => loop {
                    tokio::select! {
                        e = w.next() => match e {
                            Some(Ok(entry)) => {
                                if entry.operation == async_nats::jetstream::kv::Operation::Put {
                                    let _ = self.offer(&entry.value);
                                }
                            }
                            Some(Err(e)) => { warn!(error = %e, "fleet: model watch error"); break; }
                            None => break,
                        },
                        _ = stop.changed() => return,
                    }
                },
                Err(e) => tracing::debug!(error = %e, "fleet: model watch not started"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed() => return,
            }
        }
    }
}
