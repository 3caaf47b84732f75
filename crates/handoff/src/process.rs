//! Whether a process named by a peer still runs.

/// Whether `pid` runs (a zombie or a dead pid does not).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// A process pinned by a pidfd: its pid may name another process once it
/// exits, its pidfd never does. What a broker or the helper signals, or
/// hands systemd's main process back to, is pinned first.
#[derive(Debug, Clone)]
pub struct Pinned {
    pid: u32,
    pin: Pin,
}

/// What pinning found.
#[derive(Debug, Clone)]
enum Pin {
    /// The process, by its pidfd.
    Fd(std::sync::Arc<std::os::fd::OwnedFd>),
    /// No such process when it was to be pinned: gone for good.
    Gone,
    /// The pidfd could not be had (EMFILE, a seccomp or LSM refusal):
    /// asked by pid, as unpinned code would; never taken for gone.
    ByPid,
}

impl Pinned {
    /// Pins `pid` now; a pid that does not run is pinned as gone.
    pub fn new(pid: u32) -> Pinned {
        let pin = match pidfd(pid) {
            Ok(fd) => Pin::Fd(std::sync::Arc::new(fd)),
            Err(nix::errno::Errno::ESRCH) => Pin::Gone,
            Err(_) => Pin::ByPid,
        };
        Pinned { pid, pin }
    }

    /// `pid`, known to be gone already (it names another process now).
    pub fn gone(pid: u32) -> Pinned {
        Pinned {
            pid,
            pin: Pin::Gone,
        }
    }

    /// The pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the pinned process still runs (never another one that got
    /// its pid since).
    pub fn alive(&self) -> bool {
        let fd = match &self.pin {
            Pin::Fd(fd) => fd,
            Pin::Gone => return false,
            Pin::ByPid => return alive(self.pid),
        };
        let mut fds = [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(&**fd),
            nix::poll::PollFlags::POLLIN,
        )];
        // Readable once the process has exited.
        let exited = !matches!(nix::poll::poll(&mut fds, 0u8), Ok(0));
        !exited && alive(self.pid)
    }
}

/// A pidfd of `pid` (close-on-exec): `pidfd_open(2)`, which nix lacks.
pub fn pidfd_open(pid: u32) -> std::io::Result<std::os::fd::OwnedFd> {
    pidfd(pid).map_err(|e| match e {
        nix::errno::Errno::ESRCH => std::io::Error::other("no such process"),
        e => e.into(),
    })
}

fn pidfd(pid: u32) -> nix::Result<std::os::fd::OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1;
    // no memory is passed.
    let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid as nix::libc::pid_t, 0) };
    if fd < 0 {
        return Err(nix::errno::Errno::last());
    }
    // SAFETY: the kernel returned a new fd that nothing else owns; pidfds
    // are close-on-exec.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd as nix::libc::c_int) })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Makes the next process this one forks get `pid` (root's
    /// `ns_last_pid`), as a reused pid would.
    pub(crate) fn reuse(pid: u32) -> std::process::Child {
        for _ in 0..20 {
            std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string())
                .expect("writing ns_last_pid (the tests run as root)");
            let c = std::process::Command::new("sleep")
                .arg("30")
                .spawn()
                .unwrap();
            if c.id() == pid {
                return c;
            }
            let mut c = c;
            let _ = c.kill();
            let _ = c.wait();
        }
        panic!("pid {pid} could not be reused");
    }

    #[test]
    fn a_pinned_process_that_exited_is_gone_even_when_its_pid_runs_again() {
        let mut first = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pinned = Pinned::new(first.id());
        assert!(pinned.alive());
        first.kill().unwrap();
        first.wait().unwrap();
        assert!(!pinned.alive());
        let mut second = reuse(pinned.pid());
        // The pid runs again, as another process: the pin says gone.
        assert!(alive(pinned.pid()));
        assert!(!pinned.alive());
        let _ = second.kill();
        let _ = second.wait();
    }
}
