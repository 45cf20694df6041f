//! Model files of the learner in `<data_dir>/models`: `model_v<N>.onnx` per version,
//! `backups/model_v<N>_<utc>.onnx` taken before each cycle, SHA-256 of every file, and the
//! start-up check ([`open_registry`]) that decides which model serves: the store's current
//! version if its file is intact, else the newest intact version, else the base model.
//! Files the store does not name (a crash between the model write and the commit) and temp
//! files are removed, so a half-written model is never loaded.
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::LearnError;
use super::history::{LearningState, Outcome, VersionRecord};
use crate::ann::export::write_atomic;
use crate::ann::{AnnModel, ModelHandle, load_file};
use crate::store::{Store, format_rfc3339};

/// `<data_dir>/models`.
#[derive(Clone, Debug)]
pub struct ModelDir {
    root: PathBuf,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn now_rfc3339() -> String {
    format_rfc3339(time::OffsetDateTime::now_utc())
}

impl ModelDir {
    pub fn new(data_dir: &Path) -> std::io::Result<Self> {
        let root = data_dir.join("models");
        std::fs::create_dir_all(root.join("backups"))?;
        Ok(ModelDir { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.root.join(file)
    }

    pub fn version_file(v: u64) -> String {
        format!("model_v{v}.onnx")
    }

    /// Reads a version's file and checks its hash; `Err` says what is wrong.
    pub fn verified_bytes(&self, v: &VersionRecord) -> Result<Vec<u8>, String> {
        let p = self.path(&v.file);
        let bytes = std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        let h = sha256_hex(&bytes);
        if h != v.sha256 {
            return Err(format!(
                "{}: SHA-256 {h} does not match the recorded {}",
                p.display(),
                v.sha256
            ));
        }
        Ok(bytes)
    }

    /// Loads a version's file after checking its hash.
    pub fn load(&self, v: &VersionRecord) -> Result<AnnModel, String> {
        let bytes = self.verified_bytes(v)?;
        crate::ann::model::load_bytes(&bytes, &self.path(&v.file).display().to_string())
            .map_err(|e| e.to_string())
    }

    /// Copies the serving model's file to `backups/`; returns the path relative to the root.
    pub fn backup(&self, v: &VersionRecord) -> Result<String, LearnError> {
        let bytes = self.verified_bytes(v).map_err(LearnError::Model)?;
        let stamp = time::OffsetDateTime::now_utc();
        let rel = format!(
            "backups/model_v{}_{:04}{:02}{:02}T{:02}{:02}{:02}{:03}Z.onnx",
            v.version,
            stamp.year(),
            u8::from(stamp.month()),
            stamp.day(),
            stamp.hour(),
            stamp.minute(),
            stamp.second(),
            stamp.millisecond()
        );
        write_atomic(&self.path(&rel), &bytes).map_err(|e| LearnError::Io(rel.clone(), e))?;
        Ok(rel)
    }

    /// Keeps the newest `keep` backups (by modification time) and removes the rest, and any
    /// temp file an interrupted backup left. Returns how many files went.
    pub fn prune_backups(&self, keep: usize) -> usize {
        let Ok(rd) = std::fs::read_dir(self.root.join("backups")) else {
            return 0;
        };
        let mut files: Vec<(std::time::SystemTime, PathBuf, bool)> = rd
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let tmp = name.starts_with('.') && name.contains(".tmp");
                let t = e.metadata().and_then(|m| m.modified()).ok()?;
                Some((t, e.path(), tmp))
            })
            .collect();
        files.sort_by_key(|f| std::cmp::Reverse(f.0));
        let mut removed = 0;
        let mut kept = 0;
        for (_, path, tmp) in files {
            if !tmp && kept < keep {
                kept += 1;
                continue;
            }
            if std::fs::remove_file(&path).is_ok() {
                removed += 1;
            }
        }
        removed
    }

    /// Removes model files no version names, and temp files of interrupted writes.
    pub fn remove_orphans(&self, known: &HashSet<String>) -> Vec<String> {
        let mut removed = Vec::new();
        let Ok(rd) = std::fs::read_dir(&self.root) else {
            return removed;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let orphan =
                (name.starts_with("model_v") && name.ends_with(".onnx") && !known.contains(&name))
                    || (name.starts_with(".model_v") && name.contains(".tmp"));
            if orphan && std::fs::remove_file(e.path()).is_ok() {
                removed.push(name);
            }
        }
        removed
    }
}

/// Opens the learner's model registry: fixes cycles interrupted by a crash, registers the base
/// model as version 1 on first use, removes orphan files, and returns a handle serving the
/// current version (see the module doc for the fall-backs) with the learner state.
pub fn open_registry(
    store: &Store,
    dir: &ModelDir,
    base_model: Option<&Path>,
) -> Result<(ModelHandle, LearningState), LearnError> {
    for mut c in store.running_cycles()? {
        warn!(
            cycle = c.id,
            "training cycle was interrupted (crash or kill); marking it failed"
        );
        c.outcome = Outcome::Failed;
        c.reason = Some("interrupted: the daemon stopped during the cycle".into());
        store.put_cycle(&c)?;
    }
    let mut state = store.learning_state()?;
    let mut versions = store.versions()?;
    if versions.is_empty() {
        let base = base_model.ok_or_else(|| {
            LearnError::Model("no model versions yet and no base model to start from".into())
        })?;
        let bytes =
            std::fs::read(base).map_err(|e| LearnError::Io(base.display().to_string(), e))?;
        load_file(base).map_err(|e| LearnError::Model(e.to_string()))?;
        let file = ModelDir::version_file(1);
        write_atomic(&dir.path(&file), &bytes).map_err(|e| LearnError::Io(file.clone(), e))?;
        let v = VersionRecord {
            version: 1,
            parent: None,
            created: now_rfc3339(),
            file,
            sha256: sha256_hex(&bytes),
            samples: 0,
            label_sources: BTreeMap::new(),
            metrics: None,
            origin: "base".into(),
            cycle: None,
        };
        state.current_version = Some(1);
        store.put_version(&v, &state)?;
        info!(base = %base.display(), "registered the base model as version 1");
        versions.push(v);
    }
    let known: HashSet<String> = versions.iter().map(|v| v.file.clone()).collect();
    for f in dir.remove_orphans(&known) {
        warn!(
            file = f,
            "removed a model file the store does not name (interrupted write)"
        );
    }
    // The current version, else the newest version whose file is intact.
    let mut order: Vec<&VersionRecord> = versions.iter().rev().collect();
    if let Some(cur) = state.current_version
        && let Some(pos) = order.iter().position(|v| v.version == cur)
    {
        let v = order.remove(pos);
        order.insert(0, v);
    }
    for v in order {
        match dir.load(v) {
            Ok(m) => {
                if state.current_version != Some(v.version) {
                    warn!(
                        version = v.version,
                        previous = ?state.current_version,
                        "the current model could not be loaded; serving this version instead"
                    );
                    state.current_version = Some(v.version);
                    store.put_learning_state(&state)?;
                }
                return Ok((ModelHandle::new(m), state));
            }
            Err(e) => warn!(version = v.version, error = %e, "model version refused"),
        }
    }
    Err(LearnError::Model(
        "no model version could be loaded (every file is missing or damaged)".into(),
    ))
}
