//! The release store under `$EMQX_STATE_DIR/releases/`: the `RELEASES` state
//! file, the lock, and the unpacked release trees.
//!
//! Crash rules: a tree is renamed into place before the state lists it, and a
//! release leaves the state before its tree is deleted, so a kill at any point
//! leaves either an unlisted tree or a staging folder, both removed by
//! [`Store::repair`] under the lock. The state never lists a partial release.

mod atomic;
mod format;
mod lock;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use semver::Version;

use crate::release::Releases;
use crate::Error;

pub use atomic::{fsync_dir, is_temp_name, write_atomic};
pub use format::FormatError;
pub use lock::StoreLock;

/// The name of the state file.
pub const STATE_FILE: &str = "RELEASES";
const LOCK_FILE: &str = ".lock";
const STAGING_PREFIX: &str = ".staging-";
const TRASH_PREFIX: &str = ".trash-";

/// The release store of one host.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// What [`Store::repair`] cleaned up after an interrupted run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repair {
    /// A staging or trash folder, or a state temp file, of a killed run.
    Leftover(String),
    /// A complete tree the state does not list (killed before recording it).
    Unlisted(Version),
}

impl Store {
    /// The store in `dir` (`$EMQX_STATE_DIR/releases`).
    pub fn new(dir: PathBuf) -> Self {
        Store { dir }
    }

    /// The store folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The state file.
    pub fn state_path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// The unpacked tree of a release.
    pub fn tree(&self, version: &Version) -> PathBuf {
        self.dir.join(version.to_string())
    }

    /// Reads the state; no file means no release.
    pub fn load(&self) -> Result<Releases, Error> {
        let path = self.state_path();
        match read_nofollow(&path) {
            Ok(bytes) => format::decode(&bytes).map_err(|problem| Error::State {
                path,
                problem: problem.into(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Releases::default()),
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }

    /// Whether this process may change the store (root, or the owner; not
    /// the service user of a sandboxed unit): its folder, or the nearest
    /// existing parent, is writable.
    pub fn writable(&self) -> bool {
        let mut dir = self.dir.as_path();
        loop {
            if dir.exists() {
                return nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK).is_ok();
            }
            match dir.parent() {
                Some(p) => dir = p,
                None => return false,
            }
        }
    }

    /// Takes the exclusive lock, creating the store folder if needed, waiting
    /// at most `timeout` for another holder.
    pub fn lock(&self, timeout: std::time::Duration) -> Result<StoreLock, Error> {
        create_dir_all(&self.dir)?;
        StoreLock::acquire(&self.dir.join(LOCK_FILE), timeout)
    }

    /// Writes the state atomically.
    pub fn save(&self, _lock: &StoreLock, releases: &Releases) -> Result<(), Error> {
        let path = self.state_path();
        write_atomic(&path, format::encode(releases).as_bytes())
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))
    }

    /// The state as stored (what [`Store::save`] writes).
    pub fn encode(releases: &Releases) -> String {
        format::encode(releases)
    }

    /// A stored state document.
    pub fn decode(&self, text: &str) -> Result<Releases, Error> {
        format::decode(text.as_bytes()).map_err(|problem| Error::State {
            path: self.state_path(),
            problem: problem.into(),
        })
    }

    /// Reads the store file `name`; `None` when there is none.
    pub fn read_file(&self, name: &str) -> Result<Option<Vec<u8>>, Error> {
        let path = self.dir.join(name);
        match read_nofollow(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }

    /// Replaces the store file `name` atomically.
    pub fn write_file(&self, _lock: &StoreLock, name: &str, bytes: &[u8]) -> Result<(), Error> {
        let path = self.dir.join(name);
        write_atomic(&path, bytes).map_err(|e| Error::io(format!("writing {}", path.display()), e))
    }

    /// Removes the store file `name`, durably.
    pub fn remove_file(&self, _lock: &StoreLock, name: &str) -> Result<(), Error> {
        let path = self.dir.join(name);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(format!("removing {}", path.display()), e)),
        }
        fsync_dir(&self.dir).map_err(|e| Error::io(format!("syncing {}", self.dir.display()), e))
    }

    /// A fresh, private staging folder for unpacking `version`.
    pub fn staging(&self, _lock: &StoreLock, version: &Version) -> Result<PathBuf, Error> {
        let path = self
            .dir
            .join(format!("{STAGING_PREFIX}{version}-{}", std::process::id()));
        remove_tree(&path)?;
        let mut builder = fs::DirBuilder::new();
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(&path)
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        Ok(path)
    }

    /// Moves a complete, synced tree into place as `version`.
    pub fn commit_tree(
        &self,
        _lock: &StoreLock,
        from: &Path,
        version: &Version,
    ) -> Result<(), Error> {
        let to = self.tree(version);
        fs::rename(from, &to)
            .map_err(|e| Error::io(format!("moving {} to {}", from.display(), to.display()), e))?;
        fsync_dir(&self.dir).map_err(|e| Error::io(format!("syncing {}", self.dir.display()), e))
    }

    /// Deletes the tree of a release the state no longer lists: renamed away
    /// first, so that no half-deleted tree ever carries a version's name.
    pub fn delete_tree(&self, _lock: &StoreLock, version: &Version) -> Result<(), Error> {
        let tree = self.tree(version);
        let trash = self
            .dir
            .join(format!("{TRASH_PREFIX}{version}-{}", std::process::id()));
        match fs::rename(&tree, &trash) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(format!("removing {}", tree.display()), e)),
        }
        fsync_dir(&self.dir)
            .map_err(|e| Error::io(format!("syncing {}", self.dir.display()), e))?;
        remove_tree(&trash)
    }

    /// Removes what an interrupted run left: staging and trash folders, temp
    /// files of the state, and trees the state does not list. Other files
    /// are left alone.
    pub fn repair(&self, lock: &StoreLock, releases: &Releases) -> Result<Vec<Repair>, Error> {
        let mut done = Vec::new();
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(done),
            Err(e) => return Err(Error::io(format!("reading {}", self.dir.display()), e)),
        };
        for entry in entries {
            let entry =
                entry.map_err(|e| Error::io(format!("reading {}", self.dir.display()), e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            if !is_dir {
                if is_temp_name(&name) {
                    fs::remove_file(entry.path()).map_err(|e| {
                        Error::io(format!("removing {}", entry.path().display()), e)
                    })?;
                    done.push(Repair::Leftover(name));
                }
                continue;
            }
            if name.starts_with(STAGING_PREFIX) || name.starts_with(TRASH_PREFIX) {
                remove_tree(&entry.path())?;
                done.push(Repair::Leftover(name));
            } else if let Ok(version) = Version::parse(&name) {
                if releases.get(&version).is_none() {
                    self.delete_tree(lock, &version)?;
                    done.push(Repair::Unlisted(version));
                }
            }
        }
        Ok(done)
    }
}

/// Reads a file of the store, refusing to follow a symlink (ELOOP).
fn read_nofollow(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn create_dir_all(dir: &Path) -> Result<(), Error> {
    fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))
}

/// Removes a folder and all it holds, never following a symlink; absent is fine.
pub fn remove_tree(path: &Path) -> Result<(), Error> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("removing {}", path.display()), e)),
    }
}
