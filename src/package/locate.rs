//! Finding the one package of a version in the drop folder.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use semver::Version;

use crate::error::PackageProblem;
use crate::Error;

/// The archive format of a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Format {
    /// `.zip`
    Zip,
    /// `.tar.gz`
    TarGz,
}

/// A package file found for a version.
#[derive(Debug, Clone)]
pub struct PackageFile {
    /// Its path.
    pub path: PathBuf,
    /// Its archive format.
    pub format: Format,
}

/// Whether `name` is a package of `version`: `emqx-V.zip`, `emqx-V.tar.gz`, or
/// `emqx-V-<platform>.zip|.tar.gz`. `5.0.1` never matches `emqx-5.0.10.zip`.
pub fn matches_version(name: &str, version: &str) -> Option<Format> {
    let (stem, format) = if let Some(stem) = name.strip_suffix(".zip") {
        (stem, Format::Zip)
    } else if let Some(stem) = name.strip_suffix(".tar.gz") {
        (stem, Format::TarGz)
    } else {
        return None;
    };
    let rest = stem.strip_prefix("emqx-")?.strip_prefix(version)?;
    if rest.is_empty() {
        return Some(format);
    }
    let platform = rest.strip_prefix('-')?;
    (!platform.is_empty()).then_some(format)
}

/// Opens a package (or its `.sha256`) for reading: a link in its place is
/// refused (`ELOOP`), a FIFO cannot block, anything but a regular file is
/// an error.
pub fn open_regular(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    Ok(file)
}

/// Finds exactly one package of `version` in `dir`.
pub fn locate(dir: &Path, version: &Version) -> Result<PackageFile, Error> {
    let wanted = version.to_string();
    let context = || format!("finding the package of {wanted}");
    let not_found = || Error::Package {
        context: context(),
        problem: PackageProblem::NotFound {
            version: wanted.clone(),
            dir: dir.to_path_buf(),
        },
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(not_found()),
        Err(e) => return Err(Error::io(format!("reading {}", dir.display()), e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(format) = matches_version(name, &wanted) {
            // Regular files only: a link is never followed, a FIFO never
            // opened (it would block).
            let regular = entry.file_type().is_ok_and(|t| t.is_file());
            if !regular {
                return Err(Error::Package {
                    context: context(),
                    problem: PackageProblem::NotRegular(format!("releases/{name}")),
                });
            }
            found.push((name.to_string(), format));
        }
    }
    found.sort();
    match found.len() {
        0 => Err(not_found()),
        1 => {
            let (name, format) = found.remove(0);
            Ok(PackageFile {
                path: dir.join(name),
                format,
            })
        }
        _ => Err(Error::Package {
            context: context(),
            problem: PackageProblem::Ambiguous {
                version: wanted.clone(),
                names: found.into_iter().map(|(n, _)| n).collect(),
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_one_version_only() {
        assert_eq!(
            matches_version("emqx-5.0.1.zip", "5.0.1"),
            Some(Format::Zip)
        );
        assert_eq!(
            matches_version("emqx-5.0.1.tar.gz", "5.0.1"),
            Some(Format::TarGz)
        );
        assert_eq!(
            matches_version("emqx-5.0.1-otp24.2.1-ubuntu20.04-amd64.zip", "5.0.1"),
            Some(Format::Zip)
        );
        assert_eq!(matches_version("emqx-5.0.10.zip", "5.0.1"), None);
        assert_eq!(
            matches_version("emqx-5.0.10-el8-amd64.tar.gz", "5.0.1"),
            None
        );
        assert_eq!(matches_version("emqx-5.0.1-.zip", "5.0.1"), None);
        assert_eq!(matches_version("emqx-5.0.1.zip.sha256", "5.0.1"), None);
        assert_eq!(matches_version("emqx-5.0.1.tgz", "5.0.1"), None);
        assert_eq!(matches_version("emqx-enterprise-5.0.1.zip", "5.0.1"), None);
        assert_eq!(matches_version("emqx-5.0.1", "5.0.1"), None);
    }
}
