//! The switch helper's lease on a broker it starts (`EMQX_RELUP_LEASE_FD`):
//! if the helper dies before it confirms (right before a drain's commit)
//! or before the old broker's go (a move), the broker exits, so a helper
//! killed mid-switch never leaves a second broker on the listeners.

use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Condvar, Mutex};

use crate::env::{LEASE_ENV, NOTIFY_SOCKET, OLD_PID_ENV, SYSTEMD_NOTIFY_ENV};
use crate::{Notifier, Pinned};

/// Takes the lease fd named by the environment (and clears the variable);
/// a thread watches it and exits the process if the helper goes away
/// without confirming. No variable: nothing to watch. Returns the broker
/// the switch replaces, as the helper named it, pinned by a pidfd now, at
/// this broker's start: the old one serves the whole switch long, unless
/// it crashes meanwhile.
pub fn watch_from_env() -> std::io::Result<Option<Pinned>> {
    // Only a pipe is a lease: anything else is a wrong number, left alone.
    let fd = take_fd(LEASE_ENV, "a pipe", |fd| {
        nix::sys::stat::fstat(fd).map(|st| st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFIFO)
    })?;
    let Some(fd) = fd else {
        return Ok(None);
    };
    let old: Option<Pinned> = std::env::var(OLD_PID_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Pinned::new);
    std::env::remove_var(OLD_PID_ENV);
    let pinned = old.clone();
    *standing() = Standing::Unconfirmed;
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
        let mut s = standing();
        if confirmed || *s == Standing::Moot {
            if *s == Standing::Unconfirmed {
                *s = Standing::Confirmed;
            }
            DECIDED.notify_all();
            return;
        }
        // Held until the exit: a go taken meanwhile cannot say going.
        let _held = s;
        eprintln!("the switch helper went away before confirming this broker; exiting");
        hand_back(pinned.as_ref());
        std::process::exit(1);
    });
    Ok(old)
}

/// Where this broker's lease stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    /// Not started by a helper, or confirmed by it.
    Confirmed,
    /// Held by a helper that has not confirmed yet.
    Unconfirmed,
    /// A move's go came, or the old broker died: no second broker is
    /// left for a broken lease to guard against.
    Moot,
}

static STANDING: Mutex<Standing> = Mutex::new(Standing::Confirmed);
static DECIDED: Condvar = Condvar::new();

fn standing() -> std::sync::MutexGuard<'static, Standing> {
    STANDING.lock().unwrap_or_else(|e| e.into_inner())
}

/// A move's go came: from now on this broker stays whatever happens to
/// the helper (the old broker closes its copies on our `going`). Blocks
/// for good when the lease broke first: its thread holds the lock while
/// the process exits, so no going is said.
pub(super) fn take_go() {
    *standing() = Standing::Moot;
    DECIDED.notify_all();
}

/// Waits until the helper confirmed the lease (a drain: it confirms
/// before it closes the brokers' channel), at most `bound`; a broken
/// lease exits the process meanwhile, so a broker never accepts beside
/// an old one that was not told to drain.
pub(super) fn wait_confirmed(bound: std::time::Duration) {
    let s = standing();
    let _ = DECIDED.wait_timeout_while(s, bound, |s| *s == Standing::Unconfirmed);
}

/// Takes the fd the helper placed for this process at the number in
/// `name` (and clears the variable), close-on-exec from now on; `is`
/// says whether it is `what` it must be. A wrong number or kind is an
/// error, and that fd is left alone. No variable: `None`.
pub(super) fn take_fd(
    name: &str,
    what: &str,
    is: impl Fn(BorrowedFd<'_>) -> nix::Result<bool>,
) -> std::io::Result<Option<OwnedFd>> {
    let Some(value) = std::env::var_os(name) else {
        return Ok(None);
    };
    std::env::remove_var(name);
    let raw: RawFd = value
        .to_str()
        .and_then(|s| s.parse().ok())
        .filter(|n| *n >= 3)
        .ok_or_else(|| std::io::Error::other(format!("{name}={value:?} is not an fd")))?;
    // SAFETY: `is` only reads metadata of the raw number (fstat,
    // getsockopt); an fd that is not open fails with EBADF.
    let kind = is(unsafe { BorrowedFd::borrow_raw(raw) });
    match kind {
        Ok(true) => {}
        Ok(false) => return Err(std::io::Error::other(format!("{name}={raw} is not {what}"))),
        Err(e) => return Err(std::io::Error::other(format!("{name}={raw}: {e}"))),
    }
    // SAFETY: the helper placed this fd at `raw` for this process alone
    // (as LISTEN_FDS does for listeners); nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    nix::fcntl::fcntl(
        fd.as_fd(),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )?;
    Ok(Some(fd))
}

/// Before a broker a switch started exits without serving: systemd may
/// already track it as the main process, so that goes back to the old
/// broker (`old`), still serving, or Restart= would stop the unit. Only
/// while the pinned process runs: never to another that got its pid.
pub fn hand_back(old: Option<&Pinned>) {
    if let (Some(addr), Some(old)) = (systemd_notify_addr(), old) {
        hand_back_at(&addr, old);
    }
}

/// [`hand_back`] to the notify socket at `addr`.
fn hand_back_at(addr: &str, old: &Pinned) {
    if old.alive() {
        if let Ok(n) = Notifier::at(addr) {
            let _ = n.main_pid(old.pid());
            let _ = n.barrier(std::time::Duration::from_secs(5));
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    /// A notify socket and what came to it within 300 ms.
    fn manager() -> (tempfile::TempDir, String, UnixDatagram) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(std::time::Duration::from_millis(300)))
            .unwrap();
        (dir, path.display().to_string(), socket)
    }

    #[test]
    fn the_main_process_goes_back_only_to_the_pinned_old_broker() {
        let (_dir, addr, socket) = manager();
        let mut buf = [0u8; 256];
        // Alive: MAINPID= goes (the barrier then waits for a manager that
        // never answers; its bound is 5 s, so it runs on a thread).
        let mut old = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pinned = Pinned::new(old.id());
        let p = pinned.clone();
        let a = addr.clone();
        let told = std::thread::spawn(move || hand_back_at(&a, &p));
        let n = socket.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], format!("MAINPID={}", old.id()).as_bytes());
        // Exited, and its pid given to another process: nothing goes.
        old.kill().unwrap();
        old.wait().unwrap();
        let _ = told.join();
        while socket.recv(&mut buf).is_ok() {}
        let mut other = crate::process::tests::reuse(pinned.pid());
        assert!(crate::alive(pinned.pid()));
        hand_back_at(&addr, &pinned);
        assert!(socket.recv(&mut buf).is_err(), "MAINPID= went to pid reuse");
        let _ = other.kill();
        let _ = other.wait();
    }
}
