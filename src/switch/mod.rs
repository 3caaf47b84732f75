//! Moving a running broker to another release: the one switch step that the
//! release operations call. The listener handover itself is issue #3; this
//! build detects a running broker and refuses to pretend it switched it.

use std::io;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
use semver::Version;

use crate::Error;

/// The name of a running broker's handoff socket in the runtime dir.
pub const HANDOFF_SOCKET: &str = "handoff.sock";

/// A broker found running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningBroker {
    /// Its handoff socket.
    pub socket: PathBuf,
}

/// Finds and switches the running broker; a trait so that release logic can
/// be tested without a system.
pub trait Switcher {
    /// The running broker, if any.
    fn probe(&self) -> Result<Option<RunningBroker>, Error>;
    /// Moves `broker` to the release unpacked in `tree`. On error the old
    /// broker must still be serving.
    fn switch(&self, broker: &RunningBroker, version: &Version, tree: &Path) -> Result<(), Error>;
}

/// The handoff-socket switcher.
#[derive(Debug, Clone)]
pub struct Handoff {
    runtime_dir: PathBuf,
}

impl Handoff {
    /// Looks for the broker's socket in `runtime_dir`.
    pub fn new(runtime_dir: PathBuf) -> Self {
        Handoff { runtime_dir }
    }
}

impl Switcher for Handoff {
    fn probe(&self) -> Result<Option<RunningBroker>, Error> {
        let path = self.runtime_dir.join(HANDOFF_SOCKET);
        match std::fs::symlink_metadata(&path) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("checking {}", path.display()), e)),
        }
        let fd = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| Error::io("creating a unix socket", e.into()))?;
        let addr = UnixAddr::new(&path)
            .map_err(|e| Error::io(format!("addressing {}", path.display()), e.into()))?;
        match connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr) {
            Ok(()) => Ok(Some(RunningBroker { socket: path })),
            // A socket file nobody listens on: left by a broker that died.
            Err(Errno::ECONNREFUSED) | Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(Error::io(
                format!("connecting to {}", path.display()),
                e.into(),
            )),
        }
    }

    fn switch(&self, broker: &RunningBroker, version: &Version, _tree: &Path) -> Result<(), Error> {
        Err(Error::Switch {
            version: version.to_string(),
            reason: format!(
                "a broker is running (handoff socket {}) and this build cannot hand its listeners over yet; nothing was changed",
                broker.socket.display()
            ),
        })
    }
}
