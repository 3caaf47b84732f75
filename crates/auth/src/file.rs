//! Reading an operator's file: a regular file (symbolic links followed),
//! at most [`MAX_FILE_SIZE`] bytes, opened without blocking when the path
//! names a FIFO or a device, and checked on the descriptor it is read from.

use std::fs::OpenOptions;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The largest password or ACL file read: 16 MiB (a 100,000-user password
/// file of `$7$` lines is about 12.5 MB).
pub const MAX_FILE_SIZE: u64 = 16 * 1024 * 1024;

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// It could not be opened (missing, not permitted, ...).
    #[error("{}: cannot open: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// It is a directory, FIFO, socket or device.
    #[error("{}: not a regular file", path.display())]
    NotRegular { path: PathBuf },
    /// It is larger than [`MAX_FILE_SIZE`].
    #[error("{}: larger than {limit} bytes", path.display())]
    TooLarge { path: PathBuf, limit: u64 },
    /// Reading it failed.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// `"PATH: "` for an error about a line of the file at `path`, nothing for
/// text that came from no file.
pub(crate) fn file_prefix(file: Option<&Path>) -> String {
    file.map(|f| format!("{}: ", f.display()))
        .unwrap_or_default()
}

/// The bytes of the regular file at `path`, at most `limit` of them.
pub(crate) fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, FileError> {
    let open = |source| FileError::Open {
        path: path.to_path_buf(),
        source,
    };
    let read = |source| FileError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(open)?;
    let meta = file.metadata().map_err(read)?;
    if !meta.file_type().is_file() {
        return Err(FileError::NotRegular {
            path: path.to_path_buf(),
        });
    }
    let too_large = || FileError::TooLarge {
        path: path.to_path_buf(),
        limit,
    };
    if meta.len() > limit {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(read)?;
    if bytes.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    //! Reading real files: symlinks, directories, devices, FIFOs, size.

    use super::*;

    #[test]
    fn reads_a_regular_file_and_follows_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"hello").unwrap();
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        assert_eq!(read_bounded(&f, 5).unwrap(), b"hello");
        assert_eq!(read_bounded(&link, 5).unwrap(), b"hello");
    }

    #[test]
    fn refuses_what_is_not_a_regular_file_or_too_large() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_bounded(dir.path(), 10).unwrap_err();
        assert!(matches!(err, FileError::NotRegular { .. }), "{err}");
        let err = read_bounded(Path::new("/dev/zero"), 10).unwrap_err();
        assert!(matches!(err, FileError::NotRegular { .. }), "{err}");
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.is_ok_and(|s| s.success()), "mkfifo (coreutils)");
        // Without O_NONBLOCK this open would wait for a writer forever.
        let err = read_bounded(&fifo, 10).unwrap_err();
        assert!(matches!(err, FileError::NotRegular { .. }), "{err}");
        let f = dir.path().join("big");
        std::fs::write(&f, b"0123456789").unwrap();
        let err = read_bounded(&f, 9).unwrap_err();
        assert!(matches!(err, FileError::TooLarge { limit: 9, .. }), "{err}");
        assert!(err.to_string().contains("larger than 9 bytes"), "{err}");
        let err = read_bounded(&dir.path().join("missing"), 9).unwrap_err();
        assert!(matches!(err, FileError::Open { .. }), "{err}");
    }
}
