//! `safelink run --eve-log FILE` (`[store] eve_log`): every new alert appended to an EVE file
//! as Suricata appends to `eve.json`, one JSON line each ([`crate::alert::eve`]), in the stored
//! (privacy) form. SIGHUP reopens the file, so logrotate can move it away and signal the
//! daemon (`postrotate systemctl kill -s HUP safelink`), as with Suricata.
use std::{
    fs::{File, OpenOptions},
    io::Write as _,
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use tracing::{error, info};

use crate::alert::{Alert, eve};

/// The open EVE file.
pub struct EveLog {
    path: PathBuf,
    file: File,
    reopen: Arc<AtomicBool>,
    buf: Vec<u8>,
}

fn open(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

impl EveLog {
    /// Opens (creates) `path` for appending.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        Ok(Self {
            file: open(path)?,
            path: path.to_owned(),
            reopen: Arc::default(),
            buf: Vec::new(),
        })
    }

    /// Set it (from a SIGHUP handler) and the next write reopens the file.
    pub fn reopen_flag(&self) -> Arc<AtomicBool> {
        self.reopen.clone()
    }

    /// Appends the EVE line of `a`. A failed write is logged; the next one tries again.
    pub fn write(&mut self, a: &Alert) {
        if self.reopen.swap(false, Ordering::SeqCst) {
            match open(&self.path) {
                Ok(f) => {
                    self.file = f;
                    info!(path = %self.path.display(), "EVE log reopened");
                }
                Err(e) => {
                    error!(path = %self.path.display(), error = %e, "reopening the EVE log failed")
                }
            }
        }
        self.buf.clear();
        eve::write_line(a, &mut self.buf);
        if let Err(e) = self.file.write_all(&self.buf) {
            error!(path = %self.path.display(), error = %e, "writing the EVE log failed");
        }
    }
}
