//! Where things are on a host: the install dir, the drop folder, the store.

use std::path::{Path, PathBuf};

/// The paths of one installation.
#[derive(Debug, Clone)]
pub struct Layout {
    /// `$EMQX_ROOT_DIR`, the install dir.
    pub root: PathBuf,
    /// `$EMQX_STATE_DIR`.
    pub state_dir: PathBuf,
}

impl Layout {
    /// The drop folder operators put packages into.
    pub fn drop_dir(&self) -> PathBuf {
        self.root.join("releases")
    }

    /// The release store: state file, lock and unpacked trees.
    pub fn store_dir(&self) -> PathBuf {
        self.state_dir.join("releases")
    }

    /// A package path as the transcripts print it: relative to the root.
    pub fn shown_package(&self, package: &Path) -> String {
        match package.strip_prefix(&self.root) {
            Ok(rel) => rel.display().to_string(),
            Err(_) => package.display().to_string(),
        }
    }
}
