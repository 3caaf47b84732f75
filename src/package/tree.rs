//! The extracted tree: which folder is the release, and does it prove its version.

use std::fs;
use std::path::{Path, PathBuf};

use semver::Version;

use super::extract::Links;
use super::guard::symlink_target_ok;
use crate::error::PackageProblem;

/// Finds the release root in `staging`: the staging folder itself for a
/// flat tree (it has `releases/`), or its only folder (EMQX zips hold one
/// `emqx/`). Checks the links against that root and that the tree holds
/// `releases/VERSION/`.
pub fn release_root(
    staging: &Path,
    version: &Version,
    links: &Links,
) -> Result<PathBuf, PackageProblem> {
    let names = list(staging);
    if names.is_empty() {
        return Err(PackageProblem::Empty);
    }
    let (root, prefix) = if is_real_dir(&staging.join("releases")) {
        (staging.to_path_buf(), PathBuf::new())
    } else if names.len() == 1 && is_real_dir(&staging.join(&names[0])) {
        (staging.join(&names[0]), PathBuf::from(&names[0]))
    } else {
        return Err(PackageProblem::Layout { names });
    };
    for (link, target) in links {
        let inside = link.strip_prefix(&prefix).unwrap_or(link);
        if !symlink_target_ok(inside, target) {
            return Err(PackageProblem::SymlinkEscape {
                path: link.display().to_string(),
                target: target.display().to_string(),
            });
        }
    }
    let wanted = version.to_string();
    if !is_real_dir(&root.join("releases").join(&wanted)) {
        let found: Vec<String> = list(&root.join("releases"))
            .into_iter()
            .filter(|n| Version::parse(n).is_ok())
            .collect();
        return Err(PackageProblem::WrongVersion {
            wanted,
            found: match found.len() {
                0 => "no releases/VSN folder".to_string(),
                1 => format!("release {}", found[0]),
                _ => format!("releases {}", found.join(", ")),
            },
        });
    }
    Ok(root)
}

fn is_real_dir(path: &Path) -> bool {
    fs::symlink_metadata(path)
        .map(|m| m.is_dir())
        .unwrap_or(false)
}

fn list(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}
