//! Pure checks on archive entries: paths, link targets, modes, size bounds.

use std::path::{Component, Path, PathBuf};

use crate::config::Limits;
use crate::error::PackageProblem;

/// Expanded bytes past which the compression ratio is enforced.
pub const RATIO_GRACE_BYTES: u64 = 8 << 20;

/// Turns an archive entry name into a relative path, refusing absolute
/// paths, `..`, NUL bytes and empty names. `./` components are dropped.
pub fn entry_path(name: &str) -> Result<PathBuf, PackageProblem> {
    if name.contains('\0') {
        return Err(PackageProblem::BadName(name.replace('\0', "\\0")));
    }
    let too_long = name.len() > 4095 || name.split('/').any(|part| part.len() > 255);
    if too_long {
        return Err(PackageProblem::NameTooLong(name.chars().take(40).collect()));
    }
    let mut out = PathBuf::new();
    for component in Path::new(name).components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err(PackageProblem::ParentDir(name.to_string())),
            Component::RootDir | Component::Prefix(_) => {
                return Err(PackageProblem::AbsolutePath(name.to_string()))
            }
        }
    }
    if out.as_os_str().is_empty() {
        return Err(PackageProblem::BadName(name.to_string()));
    }
    Ok(out)
}

/// Whether `name` is the archive's root itself (`./`, `.`): a folder entry
/// that `tar czf pkg.tar.gz -C dir .` writes first, and that is skipped.
pub fn is_root_name(name: &str) -> bool {
    !name.is_empty() && Path::new(name).components().all(|c| c == Component::CurDir)
}

/// Whether a symlink at `link` (relative to the tree root) pointing to
/// `target` stays inside the tree. Accepted targets are relative, climb with
/// `..` only at their start and no higher than the link's folder depth, then
/// descend: as every folder on the link's own path is a real folder (writes
/// through links are refused), such a target resolves inside the tree.
pub fn symlink_target_ok(link: &Path, target: &Path) -> bool {
    let depth = link
        .parent()
        .map(|p| {
            p.components()
                .filter(|c| matches!(c, Component::Normal(_)))
                .count()
        })
        .unwrap_or(0);
    let mut ups = 0usize;
    let mut descended = false;
    for component in target.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir if !descended => ups += 1,
            Component::Normal(_) => descended = true,
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    !target.as_os_str().is_empty() && ups <= depth
}

/// Refuses setuid and setgid files.
pub fn check_mode(path: &Path, mode: u32) -> Result<(), PackageProblem> {
    if mode & 0o6000 != 0 {
        return Err(PackageProblem::SetId {
            path: path.display().to_string(),
            mode,
        });
    }
    Ok(())
}

/// The permission bits written for a file: the archive's, without write
/// access for group and others, never setuid/setgid/sticky.
pub fn file_mode(mode: Option<u32>) -> u32 {
    match mode {
        Some(m) => (m & 0o755) | 0o600,
        None => 0o644,
    }
}

/// Counts entries and expanded bytes against the configured bounds.
#[derive(Debug)]
pub struct Budget {
    limits: Limits,
    entries: u64,
    expanded: u64,
}

impl Budget {
    /// A budget with nothing spent.
    pub fn new(limits: Limits) -> Self {
        Budget {
            limits,
            entries: 0,
            expanded: 0,
        }
    }

    /// The bounds of this budget.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Spends one entry.
    pub fn entry(&mut self) -> Result<(), PackageProblem> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(PackageProblem::TooManyEntries {
                limit: self.limits.max_entries,
            });
        }
        Ok(())
    }

    /// Spends `n` expanded bytes, `compressed` being the compressed bytes
    /// read so far.
    pub fn bytes(&mut self, n: u64, compressed: u64) -> Result<(), PackageProblem> {
        self.expanded = self.expanded.saturating_add(n);
        if self.expanded > self.limits.max_unpacked_bytes {
            return Err(PackageProblem::TooLarge {
                limit: self.limits.max_unpacked_bytes,
            });
        }
        if self.expanded > RATIO_GRACE_BYTES
            && self.expanded / compressed.max(1) > self.limits.max_ratio
        {
            return Err(PackageProblem::Ratio {
                limit: self.limits.max_ratio,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn entry_names() {
        assert_eq!(
            entry_path("emqx/bin/emqx").unwrap(),
            PathBuf::from("emqx/bin/emqx")
        );
        assert_eq!(
            entry_path("./emqx/./bin/").unwrap(),
            PathBuf::from("emqx/bin")
        );
        assert!(matches!(
            entry_path("/etc/passwd"),
            Err(PackageProblem::AbsolutePath(_))
        ));
        assert!(matches!(
            entry_path("a/../../x"),
            Err(PackageProblem::ParentDir(_))
        ));
        assert!(matches!(
            entry_path("a/.."),
            Err(PackageProblem::ParentDir(_))
        ));
        assert!(matches!(entry_path("./"), Err(PackageProblem::BadName(_))));
        assert!(is_root_name("./") && is_root_name(".") && is_root_name("././"));
        assert!(!is_root_name("") && !is_root_name("./a") && !is_root_name("/"));
        assert!(matches!(
            entry_path("a\0b"),
            Err(PackageProblem::BadName(_))
        ));
    }

    #[test]
    fn symlink_targets() {
        let ok = |l: &str, t: &str| symlink_target_ok(Path::new(l), Path::new(t));
        assert!(ok("bin/emqx", "../lib/emqx"));
        assert!(ok("bin/emqx", "emqx-5.0.1"));
        assert!(ok("a/b/c", "../../x/y"));
        assert!(!ok("a/b/c", "../../../x"));
        assert!(!ok("top", "../x"));
        assert!(!ok("bin/x", "/etc/passwd"));
        assert!(!ok("bin/x", "lib/../../.."));
        assert!(!ok("bin/x", ""));
    }

    #[test]
    fn budget_bounds() {
        let limits = Limits {
            max_unpacked_bytes: 100 << 20,
            max_ratio: 10,
            max_entries: 2,
        };
        let mut b = Budget::new(limits);
        assert!(b.entry().is_ok() && b.entry().is_ok());
        assert!(matches!(
            b.entry(),
            Err(PackageProblem::TooManyEntries { .. })
        ));
        let mut b = Budget::new(limits);
        assert!(
            b.bytes(RATIO_GRACE_BYTES, 1).is_ok(),
            "ratio waits for the grace"
        );
        assert!(matches!(b.bytes(1, 1), Err(PackageProblem::Ratio { .. })));
        let mut b = Budget::new(limits);
        assert!(matches!(
            b.bytes(101 << 20, 100 << 20),
            Err(PackageProblem::TooLarge { .. })
        ));
    }

    proptest! {
        #[test]
        fn accepted_paths_are_relative_and_plain(name in "[a-z./]{0,20}") {
            if let Ok(p) = entry_path(&name) {
                prop_assert!(p.is_relative());
                prop_assert!(p.components().all(|c| matches!(c, Component::Normal(_))));
            }
        }

        #[test]
        fn accepted_links_resolve_inside(
            link in proptest::collection::vec("[a-c]", 1..5),
            target in proptest::collection::vec(prop_oneof!["\\.\\.", "[a-c]", "\\."], 1..6),
        ) {
            let link = link.join("/");
            let target_text = target.join("/");
            if symlink_target_ok(Path::new(&link), Path::new(&target_text)) {
                // Resolve lexically from the link's folder; it must never climb above the root.
                let mut depth = link.split('/').count() as i64 - 1;
                for part in &target {
                    match part.as_str() {
                        ".." => depth -= 1,
                        "." => {}
                        _ => depth += 1,
                    }
                    prop_assert!(depth >= 0);
                }
            }
        }
    }
}
