//! Where the workspace's binaries and the checkout are, from any test of
//! any member: `CARGO_BIN_EXE_*` only works inside one package, so the
//! binaries are found beside the test executable (`target/<profile>/`),
//! built by one `cargo build --workspace --bins` (scripts/test does it;
//! `cargo test --workspace` builds them too).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The checkout (the workspace root).
pub fn repo() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors().nth(2).unwrap_or(here).to_path_buf()
}

/// The folder of the workspace's binaries: the parent of the test
/// executable's `deps/`.
pub fn dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
    let mut dir = exe.parent().unwrap_or(Path::new(".")).to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// The binary `name` of the workspace (`emqx-relup`, `emqx-refbroker`,
/// `emqx-load`); panics, saying how to build it, when it is missing.
pub fn bin(name: &str) -> PathBuf {
    let path = dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: run 'cargo build --workspace --bins' first (scripts/test does)",
        path.display()
    );
    path
}

/// Whether every folder above `path` lets any user through (o+x): a
/// checkout in `/root` (0700) does not.
fn reachable_by_anyone(path: &Path) -> bool {
    path.ancestors()
        .skip(1)
        .all(|dir| std::fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
}

/// `bin(name)`, or when another uid could not reach it, a hard link (else
/// a copy) of it in `into`, which must be reachable itself: what a test
/// runs as another user.
pub fn for_any_user(name: &str, into: &Path) -> PathBuf {
    let original = bin(name);
    if reachable_by_anyone(&original) {
        return original;
    }
    let target = into.join(name);
    if !target.exists() && std::fs::hard_link(&original, &target).is_err() {
        std::fs::copy(&original, &target)
            .unwrap_or_else(|e| panic!("copying {}: {e}", original.display()));
    }
    target
}
