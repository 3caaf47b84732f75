//! A broker process named by a record the service user could have written
//! (`broker.pid`, `draining.pid`): proved to be a broker of this store
//! before anyone signals or waits for it, and then held by a pidfd, so a
//! reused pid is never hit and every wait is bounded.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::unistd::Uid;

/// A process start time (clock ticks since boot, `/proc/PID/stat` field 22):
/// with the pid, it names one process for the life of the system.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command, which may hold spaces and ')', start at 3.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// A live process whose executable lies inside `tree` (a release tree):
/// the running broker, one still draining, or an orphan of a killed
/// switch. Read from `/proc`, not from any record the service user writes.
pub fn running_from(tree: &Path) -> Option<u32> {
    let tree = std::fs::canonicalize(tree).ok()?;
    let me = std::process::id();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let exe = std::fs::read_link(e.path().join("exe")).ok()?;
        (pid != me && exe.starts_with(&tree) && emqx_handoff::alive(pid)).then_some(pid)
    })
}

/// What a recorded broker must be.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// The service user: the broker runs as it, every uid.
    pub uid: Uid,
    /// The release store, when the broker's executable must lie inside it
    /// (before a signal; a wrapper script must `exec` the broker).
    pub store: Option<&'a Path>,
}

/// A process proved to be a broker, held by a pidfd.
#[derive(Debug)]
pub struct Broker {
    pid: u32,
    pidfd: OwnedFd,
}

/// Why a pid is not taken for a broker of this store.
#[derive(Debug, thiserror::Error)]
pub enum NotBroker {
    /// 0, 1 or this process.
    #[error("pid {0} cannot be a broker")]
    Impossible(u32),
    /// It could not be pinned or read (no such process, /proc refused).
    #[error("pid {pid}: {source}")]
    Unreadable {
        /// The pid.
        pid: u32,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// Another process than the recorded one has the pid now.
    #[error("pid {0} is not the recorded broker (it started at another time: the pid was reused)")]
    Reused(u32),
    /// It runs as another user.
    #[error("pid {pid} does not run as the service user (uid {uid})")]
    OtherUser {
        /// The pid.
        pid: u32,
        /// The service user's uid.
        uid: Uid,
    },
    /// Its executable could not be read.
    #[error("pid {pid}: reading its executable: {source}")]
    Executable {
        /// The pid.
        pid: u32,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// It runs something outside the release store.
    #[error("pid {pid} runs {}, not a release of {}", exe.display(), store.display())]
    Outside {
        /// The pid.
        pid: u32,
        /// What it runs.
        exe: std::path::PathBuf,
        /// The store.
        store: std::path::PathBuf,
    },
    /// It exited while it was checked.
    #[error("pid {0} exited")]
    Exited(u32),
}

/// Checks that `pid` (started at `start`, when recorded) is a broker of
/// this store running as the service user, and pins it with a pidfd.
/// The error says why not, in a line for the operator.
pub fn verify(pid: u32, start: Option<u64>, expect: Expect<'_>) -> Result<Broker, NotBroker> {
    if pid <= 1 || pid == std::process::id() {
        return Err(NotBroker::Impossible(pid));
    }
    let unreadable = |source| NotBroker::Unreadable { pid, source };
    let pidfd = emqx_handoff::pidfd_open(pid).map_err(unreadable)?;
    if let Some(recorded) = start {
        if start_time(pid) != Some(recorded) {
            return Err(NotBroker::Reused(pid));
        }
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(unreadable)?;
    let uids: Vec<u32> = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .map(|l| {
            l.split_whitespace()
                .filter_map(|u| u.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    if uids.len() != 4 || uids.iter().any(|u| *u != expect.uid.as_raw()) {
        return Err(NotBroker::OtherUser {
            pid,
            uid: expect.uid,
        });
    }
    if let Some(store) = expect.store {
        let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
            .map_err(|source| NotBroker::Executable { pid, source })?;
        let store = std::fs::canonicalize(store).unwrap_or_else(|_| store.into());
        if !exe.starts_with(&store) {
            return Err(NotBroker::Outside { pid, exe, store });
        }
    }
    let broker = Broker { pid, pidfd };
    // The checks read /proc/PID: they were about the pinned process only
    // if it still runs now.
    if !broker.alive() {
        return Err(NotBroker::Exited(pid));
    }
    Ok(broker)
}

impl Broker {
    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether it still runs.
    pub fn alive(&self) -> bool {
        !self.exited_within(Duration::ZERO)
    }

    /// Sends `signal` to this process (never to whatever has its pid now).
    pub fn signal(&self, signal: Signal) -> std::io::Result<()> {
        // SAFETY: pidfd_send_signal with a pidfd we own, a valid signal
        // number, a null siginfo and no flags; no memory is passed.
        let r = unsafe {
            nix::libc::syscall(
                nix::libc::SYS_pidfd_send_signal,
                self.pidfd.as_raw_fd(),
                signal as nix::libc::c_int,
                std::ptr::null::<nix::libc::siginfo_t>(),
                0,
            )
        };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits at most `timeout` for it to exit; whether it did.
    pub fn exited_within(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ms = left.as_millis().min(1000) as u16;
            let mut fds = [PollFd::new(self.pidfd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(n) if n > 0 => return true,
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => return false,
                Ok(_) => {}
            }
            if Instant::now() >= deadline {
                return false;
            }
        }
    }

    /// SIGTERM, then SIGKILL after `grace`; `Err` when it still runs after
    /// `grace + kill_wait`.
    pub fn stop(&self, grace: Duration, kill_wait: Duration) -> Result<(), StopError> {
        self.signal(Signal::SIGTERM)
            .map_err(|source| StopError::Signal {
                pid: self.pid,
                source,
            })?;
        if self.exited_within(grace) {
            return Ok(());
        }
        let _ = self.signal(Signal::SIGKILL);
        if self.exited_within(kill_wait) {
            return Ok(());
        }
        Err(StopError::StillRuns {
            pid: self.pid,
            waited: kill_wait,
        })
    }
}

/// Why a broker could not be stopped.
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    /// SIGTERM could not be sent.
    #[error("stopping pid {pid}: {source}")]
    Signal {
        /// The pid.
        pid: u32,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// It outlived SIGKILL's wait.
    #[error("pid {pid} still runs {:.0} s after SIGKILL", waited.as_secs_f64())]
    StillRuns {
        /// The pid.
        pid: u32,
        /// How long it was waited for after SIGKILL.
        waited: Duration,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_that_is_not_a_broker_is_refused_and_left_alone() {
        let mut sleep = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = sleep.id();
        let start = start_time(pid);
        assert!(start.is_some());
        let me = Uid::effective();
        let store = tempfile::tempdir().unwrap();
        let expect = Expect {
            uid: me,
            store: Some(store.path()),
        };
        let e = verify(pid, start, expect).unwrap_err();
        assert!(matches!(e, NotBroker::Outside { .. }), "{e}");
        let e = verify(pid, start.map(|s| s + 1), expect).unwrap_err();
        assert!(matches!(e, NotBroker::Reused(p) if p == pid), "{e}");
        let other = Expect {
            uid: Uid::from_raw(me.as_raw() + 1),
            store: None,
        };
        assert!(matches!(
            verify(pid, start, other),
            Err(NotBroker::OtherUser { .. })
        ));
        assert!(matches!(
            verify(1, None, expect),
            Err(NotBroker::Impossible(1))
        ));
        // Everything under / is "in the store": the checks pass, and the
        // pinned process can be stopped within the bound.
        let anything = Expect {
            uid: me,
            store: Some(Path::new("/")),
        };
        let b = verify(pid, start, anything).unwrap();
        assert!(b.alive());
        b.stop(Duration::from_secs(5), Duration::from_secs(5))
            .unwrap();
        sleep.wait().unwrap();
    }
}
