//! The private notify socket a new broker reports `READY=1` to. The runtime
//! dir is the service user's, so the socket lives in a folder of its own
//! inside it, made and owned by this process (mode 0711): nobody else can
//! swap the socket for a link, and it is bound and chowned through that
//! folder's fd.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fchmod, fstat, mkdirat, Mode};
use nix::unistd::{fchownat, unlinkat, UnlinkatFlags};

use super::runtime::{unguessable, RuntimeDir};
use crate::privs::ServiceUser;

/// A switch's notify socket, removed with its folder on drop.
pub struct Notify {
    /// The socket.
    pub socket: UnixDatagram,
    runtime: RuntimeDir,
    folder: String,
    dir: OwnedFd,
}

const NOTIFY_NAME: &str = "notify.sock";

impl Notify {
    /// Makes the folder and binds the socket, writable by the service user.
    pub fn bind(runtime: RuntimeDir, user: &ServiceUser) -> std::io::Result<Notify> {
        let (folder, dir) = make_private_dir(&runtime, "notify")?;
        // Bound through /proc/self/fd: the folder we made, whatever its
        // name in the runtime dir points to by now.
        let at = format!("/proc/self/fd/{}/{NOTIFY_NAME}", dir.as_raw_fd());
        let socket = match UnixDatagram::bind(&at) {
            Ok(s) => s,
            Err(e) => {
                let _ = unlinkat(runtime.fd(), folder.as_str(), UnlinkatFlags::RemoveDir);
                return Err(e);
            }
        };
        let notify = Notify {
            socket,
            runtime,
            folder,
            dir,
        };
        if nix::unistd::Uid::effective().is_root() {
            fchownat(
                notify.dir.as_fd(),
                NOTIFY_NAME,
                Some(user.uid),
                Some(user.gid),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )?;
        }
        Ok(notify)
    }

    /// The path the broker sends to.
    pub fn path(&self) -> PathBuf {
        self.runtime.join(&self.folder).join(NOTIFY_NAME)
    }
}

impl Drop for Notify {
    fn drop(&mut self) {
        let _ = unlinkat(self.dir.as_fd(), NOTIFY_NAME, UnlinkatFlags::NoRemoveDir);
        let _ = unlinkat(
            self.runtime.fd(),
            self.folder.as_str(),
            UnlinkatFlags::RemoveDir,
        );
    }
}

/// Makes `PREFIX.RANDOM` in the runtime dir, owned by this process, mode
/// 0711, and opens it; refuses it if what was opened is not that folder.
fn make_private_dir(runtime: &RuntimeDir, prefix: &str) -> std::io::Result<(String, OwnedFd)> {
    let me = nix::unistd::Uid::effective();
    for _ in 0..16 {
        let name = format!("{prefix}.{}", unguessable());
        match mkdirat(runtime.fd(), name.as_str(), Mode::from_bits_truncate(0o711)) {
            Ok(()) => {}
            Err(nix::errno::Errno::EEXIST) => continue,
            Err(e) => return Err(e.into()),
        }
        let dir = openat(
            runtime.fd(),
            name.as_str(),
            OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let st = fstat(&dir)?;
        if st.st_uid != me.as_raw() || st.st_mode & 0o022 != 0 {
            return Err(std::io::Error::other(format!(
                "{} was replaced while it was made",
                runtime.join(&name).display()
            )));
        }
        // The umask (027 on hardened hosts) must not keep the broker out.
        fchmod(&dir, Mode::from_bits_truncate(0o711))?;
        return Ok((name, dir));
    }
    Err(std::io::Error::other("could not make a private folder"))
}
