//! The optional `<package>.sha256` file beside a package.

use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::PackageProblem;

/// Checks the package against `<package>.sha256` when that file exists.
/// The file holds the hex sum, optionally followed by a file name
/// (the output of `sha256sum`).
pub fn verify_checksum(package: &Path) -> Result<(), ChecksumError> {
    let mut sum_path = package.as_os_str().to_owned();
    sum_path.push(".sha256");
    let sum_path = std::path::PathBuf::from(sum_path);
    let shown = sum_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let read = super::locate::open_regular(&sum_path).and_then(|f| {
        let mut text = String::new();
        f.take(4096).read_to_string(&mut text).map(|_| text)
    });
    let text = match read {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            return Err(ChecksumError::Problem(PackageProblem::ChecksumFormat(
                shown,
            )))
        }
        Err(e) => return Err(ChecksumError::Io(e)),
    };
    let expected = text
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    if expected.len() != 64 || !expected.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ChecksumError::Problem(PackageProblem::ChecksumFormat(
            shown,
        )));
    }
    let actual = sha256_file(package).map_err(ChecksumError::Io)?;
    if actual != expected {
        return Err(ChecksumError::Problem(PackageProblem::Checksum {
            file: shown,
            expected,
            actual,
        }));
    }
    Ok(())
}

/// Why a checksum could not be confirmed.
#[derive(Debug)]
pub enum ChecksumError {
    /// The sum is wrong or unreadable.
    Problem(PackageProblem),
    /// The files could not be read.
    Io(io::Error),
}

fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = super::locate::open_regular(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}
