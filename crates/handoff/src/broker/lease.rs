//! The switch helper's lease on a broker it starts (`EMQX_RELUP_LEASE_FD`):
//! if the helper dies before it confirms (right before the commit), the
//! broker exits, so a helper killed mid-switch never leaves a second broker
//! on the listeners.

use std::io::Read;
use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};

use crate::env::{LEASE_ENV, NOTIFY_SOCKET, OLD_PID_ENV, SYSTEMD_NOTIFY_ENV};
use crate::{alive, Notifier};

/// Takes the lease fd named by the environment (and clears the variable);
/// a thread watches it and exits the process if the helper goes away
/// without confirming. No variable: nothing to watch. Returns the pid of
/// the broker the switch replaces, as the helper named it.
pub fn watch_from_env() -> std::io::Result<Option<u32>> {
    let Some(value) = std::env::var_os(LEASE_ENV) else {
        return Ok(None);
    };
    std::env::remove_var(LEASE_ENV);
    let raw: RawFd = value
        .to_str()
        .and_then(|s| s.parse().ok())
        .filter(|n| *n >= 3)
        .ok_or_else(|| std::io::Error::other(format!("{LEASE_ENV}={value:?} is not an fd")))?;
    // Only a pipe is a lease: anything else is a wrong number, left alone.
    // SAFETY: fstat on a raw number reads metadata only; an fd that is not
    // open fails with EBADF.
    let st = nix::sys::stat::fstat(unsafe { std::os::fd::BorrowedFd::borrow_raw(raw) })
        .map_err(|e| std::io::Error::other(format!("{LEASE_ENV}={raw}: {e}")))?;
    if st.st_mode & nix::libc::S_IFMT != nix::libc::S_IFIFO {
        return Err(std::io::Error::other(format!(
            "{LEASE_ENV}={raw} is not a pipe"
        )));
    }
    // SAFETY: the helper placed this pipe end at `raw` for this process
    // alone (as LISTEN_FDS does for listeners); nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    nix::fcntl::fcntl(
        fd.as_fd(),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )?;
    let old_pid: Option<u32> = std::env::var(OLD_PID_ENV).ok().and_then(|s| s.parse().ok());
    std::env::remove_var(OLD_PID_ENV);
    std::thread::spawn(move || {
        let mut pipe = std::fs::File::from(fd);
        let mut byte = [0u8; 1];
        let confirmed = loop {
            match pipe.read(&mut byte) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Ok(1) => break byte[0] == b'c',
                _ => break false,
            }
        };
        if !confirmed {
            eprintln!("the switch helper went away before confirming this broker; exiting");
            hand_back(old_pid);
            std::process::exit(1);
        }
    });
    Ok(old_pid)
}

/// Before a broker a switch started exits without serving: systemd may
/// already track it as the main process, so that goes back to the old
/// broker (`old_pid`), still serving, or Restart= would stop the unit.
pub fn hand_back(old_pid: Option<u32>) {
    if let (Some(addr), Some(pid)) = (systemd_notify_addr(), old_pid) {
        if alive(pid) {
            if let Ok(n) = Notifier::at(&addr) {
                let _ = n.main_pid(pid);
                let _ = n.barrier(std::time::Duration::from_secs(5));
            }
        }
    }
}

/// systemd's notify socket for messages about the unit (`MAINPID=`,
/// `FDSTORE=1`): `EMQX_RELUP_SYSTEMD_NOTIFY` in a broker a switch started
/// under systemd (its own `NOTIFY_SOCKET` is the helper's), else
/// `NOTIFY_SOCKET`.
pub fn systemd_notify_addr() -> Option<String> {
    std::env::var(SYSTEMD_NOTIFY_ENV)
        .or_else(|_| std::env::var(NOTIFY_SOCKET))
        .ok()
        .filter(|s| !s.is_empty())
}
