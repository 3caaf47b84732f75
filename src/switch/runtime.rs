//! The runtime folder (`/run/emqx`), which the service user owns: every
//! access goes through one folder fd, never follows a link, never blocks,
//! and reads at most a few bytes. Root may run these, so nothing here
//! trusts what it finds: a name may be swapped for a link, a FIFO, a device
//! or a huge file at any moment.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{openat, renameat, OFlag};
use nix::sys::stat::{fstat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

/// The most a runtime record may hold; anything longer is not ours.
pub const MAX_RECORD: usize = 512;

/// An open runtime folder.
#[derive(Debug)]
pub struct RuntimeDir {
    fd: OwnedFd,
    path: PathBuf,
}

impl RuntimeDir {
    /// Opens `path` as a folder, refusing a symbolic link in its place.
    pub fn open(path: &Path) -> io::Result<RuntimeDir> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY,
            Mode::empty(),
        )
        .map_err(io::Error::from)?;
        Ok(RuntimeDir {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The folder fd, for `*at` calls.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The path of `name` in the folder, for messages and for peers that
    /// need a path (the broker connects by path).
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Reads the small regular file `name`: `Ok(None)` when there is none;
    /// a link, FIFO, device, folder, or more than [`MAX_RECORD`] bytes is an
    /// error that names what was found, never its content.
    pub fn read_record(&self, name: &str) -> io::Result<Option<String>> {
        let fd = match openat(
            self.fd(),
            name,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(nix::errno::Errno::ENOENT) => return Ok(None),
            Err(nix::errno::Errno::ELOOP) => {
                return Err(io::Error::other(format!("{name} is a symbolic link")))
            }
            Err(e) => return Err(io::Error::from(e)),
        };
        let st = fstat(&fd).map_err(io::Error::from)?;
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
            return Err(io::Error::other(format!("{name} is not a regular file")));
        }
        let mut bytes = Vec::with_capacity(64);
        std::fs::File::from(fd)
            .take(MAX_RECORD as u64 + 1)
            .read_to_end(&mut bytes)?;
        if bytes.len() > MAX_RECORD {
            return Err(io::Error::other(format!(
                "{name} is longer than {MAX_RECORD} bytes"
            )));
        }
        String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| io::Error::other(format!("{name} is not text")))
    }

    /// Replaces `name` with `bytes`: a new temp file with an unguessable
    /// name (`O_CREAT|O_EXCL`: never an existing file, link or FIFO),
    /// fsync, rename, fsync of the folder.
    pub fn write_record(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let (tmp, fd) = self.create_temp(name)?;
        let result = (|| {
            // Readable by the service user whatever root's umask.
            nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(0o644))
                .map_err(io::Error::from)?;
            let mut file = std::fs::File::from(fd);
            file.write_all(bytes)?;
            file.sync_all()?;
            renameat(self.fd(), tmp.as_str(), self.fd(), name).map_err(io::Error::from)?;
            nix::unistd::fsync(self.fd()).map_err(io::Error::from)
        })();
        if result.is_err() {
            let _ = unlinkat(self.fd(), tmp.as_str(), UnlinkatFlags::NoRemoveDir);
        }
        result
    }

    fn create_temp(&self, name: &str) -> io::Result<(String, OwnedFd)> {
        for _ in 0..16 {
            let tmp = format!(".{name}.{}", unguessable());
            match openat(
                self.fd(),
                tmp.as_str(),
                OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o644),
            ) {
                Ok(fd) => return Ok((tmp, fd)),
                Err(nix::errno::Errno::EEXIST) => continue,
                Err(e) => return Err(io::Error::from(e)),
            }
        }
        Err(io::Error::other(format!(
            "could not create a temp file for {name} in {}",
            self.path.display()
        )))
    }

    /// Renames `from` to `to` inside the folder (a link is moved, never
    /// followed).
    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        renameat(self.fd(), from, self.fd(), to).map_err(io::Error::from)
    }

    /// Removes the entry `name` (a link is removed, never followed).
    pub fn remove(&self, name: &str) {
        let _ = unlinkat(self.fd(), name, UnlinkatFlags::NoRemoveDir);
    }
}

/// 16 hex digits nobody can predict (std's hasher keys come from the
/// kernel's random source).
pub fn unguessable() -> String {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(std::process::id() as u64);
    format!("{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_refuse_links_fifos_devices_and_floods() {
        let dir = tempfile::tempdir().unwrap();
        let rt = RuntimeDir::open(dir.path()).unwrap();
        assert_eq!(rt.read_record("none").unwrap(), None);
        rt.write_record("rec", b"12 34 5.0.1\n").unwrap();
        assert_eq!(rt.read_record("rec").unwrap().unwrap(), "12 34 5.0.1\n");
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero")).unwrap();
        assert!(rt.read_record("zero").is_err());
        nix::unistd::mkfifo(&dir.path().join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
        assert!(rt.read_record("fifo").is_err());
        std::fs::write(dir.path().join("big"), vec![b'1'; MAX_RECORD + 1]).unwrap();
        assert!(rt.read_record("big").is_err());
        // Writing over a link replaces the link, never its target.
        let target = dir.path().join("target");
        std::fs::write(&target, b"keep").unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join("rec")).unwrap_err();
        std::fs::remove_file(dir.path().join("rec")).unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join("rec")).unwrap();
        rt.write_record("rec", b"new").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        assert_eq!(rt.read_record("rec").unwrap().unwrap(), "new");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(names.is_empty(), "temp files left: {names:?}");
    }

    #[test]
    fn a_symlinked_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(dir.path(), dir.path().join("link")).unwrap();
        assert!(RuntimeDir::open(&dir.path().join("link")).is_err());
    }
}
