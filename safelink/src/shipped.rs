//! Where the files SafeLink ships beside its binary (the base model `base.onnx`, its golden
//! set `golden.jsonl`, its rehearsed attack rows `attack_rows.jsonl` and its benign rows
//! `benign/flows.csv.gz`) are found, whichever way the sensor was started: from the source tree
//! (`cargo xtask run`, `cargo run`), installed by `cargo xtask install` or the Debian package,
//! or a copied binary run from any directory. One list, used for every shipped file.
use std::path::PathBuf;

/// The source tree's `models/` directory, compiled in (a development build finds its model
/// from any working directory).
pub const SOURCE_MODELS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../models");

/// The directories searched for a shipped file, in order:
/// 1. `./models` (the working directory is a source tree);
/// 2. the binary's own directory, then `<binary>/../share/safelink` (so
///    `/usr/local/bin/safelink` finds `/usr/local/share/safelink`, `/usr/bin/safelink`
///    finds `/usr/share/safelink`, and a binary copied with its model next to it works);
/// 3. `/usr/local/share/safelink` (`cargo xtask install`), `/usr/share/safelink` (the
///    Debian package), `/usr/share/safelink/models`;
/// 4. the source tree this binary was built from ([`SOURCE_MODELS_DIR`]).
pub fn search_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from("models")];
    if let Ok(exe) = std::env::current_exe()
        && let Some(bin) = exe.parent()
    {
        dirs.push(bin.to_path_buf());
        if let Some(prefix) = bin.parent() {
            dirs.push(prefix.join("share/safelink"));
        }
    }
    dirs.extend(
        [
            "/usr/local/share/safelink",
            "/usr/share/safelink",
            "/usr/share/safelink/models",
            SOURCE_MODELS_DIR,
        ]
        .map(PathBuf::from),
    );
    dirs
}

/// Every place `name` is looked for, in order.
pub fn candidates(name: &str) -> Vec<PathBuf> {
    search_dirs().into_iter().map(|d| d.join(name)).collect()
}

/// The first existing `name` of [`candidates`].
pub fn find(name: &str) -> Option<PathBuf> {
    candidates(name).into_iter().find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The compiled-in source tree is on the list and holds both shipped files, so a
    /// development build finds them from any working directory (`tests/ann.rs` runs
    /// `analyze --ann` from a temporary directory).
    #[test]
    fn the_source_tree_is_searched() {
        let c = candidates("base.onnx");
        assert_eq!(c[0], PathBuf::from("models/base.onnx"));
        assert!(c.contains(&PathBuf::from(SOURCE_MODELS_DIR).join("base.onnx")));
        assert!(PathBuf::from(SOURCE_MODELS_DIR).join("base.onnx").is_file());
        assert!(
            PathBuf::from(SOURCE_MODELS_DIR)
                .join("golden.jsonl")
                .is_file()
        );
        assert!(find("no-such-file.onnx").is_none());
    }
}
