//! Model files of the learner in `<data_dir>/models`: `model_v<N>.onnx` per version,
//! `backups/model_v<N>_<utc>.onnx` taken before each cycle, SHA-256 of every file, and the
//! start-up check ([`open_registry`]) that decides which model serves: the store's current
//! version if its file is intact, else the newest intact version, else the base model (as a
//! new version, with the local baseline started again: what happens after an upgrade that
//! changed the feature vector, when every stored version is refused).
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

/// Copies the base model into the registry as `version` (origin `base`) and makes it the
/// current one, saving `state` with it.
fn register_base(
    store: &Store,
    dir: &ModelDir,
    base: &Path,
    version: u64,
    state: &mut LearningState,
) -> Result<(AnnModel, VersionRecord), LearnError> {
    let bytes = std::fs::read(base).map_err(|e| LearnError::Io(base.display().to_string(), e))?;
    let m = load_file(base).map_err(|e| LearnError::Model(e.to_string()))?;
    let file = ModelDir::version_file(version);
    write_atomic(&dir.path(&file), &bytes).map_err(|e| LearnError::Io(file.clone(), e))?;
    let v = VersionRecord {
        version,
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
    state.current_version = Some(version);
    store.put_version(&v, state)?;
    Ok((m, v))
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
        let (_, v) = register_base(store, dir, base, 1, &mut state)?;
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
    // No stored version loads: after an upgrade that changed the feature vector every one is
    // refused. Serve the base model as a new version and start the local baseline again (it
    // measured a model that is gone); the old versions stay in the history.
    if let Some(base) = base_model {
        let version = versions.iter().map(|v| v.version).max().unwrap_or(0) + 1;
        state.baseline = Default::default();
        let (m, _) = register_base(store, dir, base, version, &mut state)?;
        warn!(
            version,
            base = %base.display(),
            "no stored model version could be loaded; serving the base model as a new version and starting the local baseline again"
        );
        return Ok((ModelHandle::new(m), state));
    }
    Err(LearnError::Model(
        "no model version could be loaded (every file is missing or damaged)".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// After an upgrade that changed the feature vector every stored version is refused: the
    /// base model serves again, as a new version, and the local baseline starts again.
    #[test]
    fn when_no_stored_version_loads_the_base_model_serves_as_a_new_version() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path().join("store")).unwrap();
        let dir = ModelDir::new(tmp.path()).unwrap();
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/base.onnx");
        let (_, mut state) = open_registry(&store, &dir, Some(&base)).unwrap();
        assert_eq!(state.current_version, Some(1));
        // Version 1 becomes a file this sensor refuses, with its hash recorded (intact, but
        // not a model it can run), and the sensor had gone live.
        let v1 = store.versions().unwrap().remove(0);
        let foreign = b"a model of another feature vector".to_vec();
        std::fs::write(dir.path(&v1.file), &foreign).unwrap();
        let v1 = VersionRecord {
            sha256: sha256_hex(&foreign),
            ..v1
        };
        state.baseline.live_since = Some("2026-12-01T00:00:00Z".into());
        store.put_version(&v1, &state).unwrap();
        assert_eq!(
            store.learning_state().unwrap().baseline.phase(),
            super::super::baseline::Phase::Live
        );

        let (_, state) = open_registry(&store, &dir, Some(&base)).unwrap();
        assert_eq!(state.current_version, Some(2));
        assert_eq!(state.baseline, Default::default());
        assert_eq!(store.learning_state().unwrap(), state);
        let versions: Vec<(u64, String)> = store
            .versions()
            .unwrap()
            .into_iter()
            .map(|v| (v.version, v.origin))
            .collect();
        assert_eq!(versions, [(1, "base".into()), (2, "base".into())]);
        assert_eq!(
            std::fs::read(dir.path(&ModelDir::version_file(2))).unwrap(),
            std::fs::read(&base).unwrap()
        );

        // Without a base model to fall back on, the refusal is an error that says so.
        std::fs::write(dir.path(&ModelDir::version_file(2)), b"damaged").unwrap();
        let err = open_registry(&store, &dir, None).err().unwrap();
        assert!(
            err.to_string().contains("no model version could be loaded"),
            "{err}"
        );
    }
}
