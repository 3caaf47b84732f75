//! The switch helper's lease on a broker it starts (`EMQX_RELUP_LEASE_FD`):
//! if the helper dies before it confirms the commit, the broker exits, so a
//! helper killed mid-switch never leaves a second broker on the listeners.

use std::io::Read;
use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};

use crate::switch::LEASE_ENV;

/// Takes the lease fd named by the environment (and clears the variable);
/// a thread watches it and exits the process if the helper goes away
/// without confirming. No variable: nothing to watch.
pub fn watch_from_env() -> std::io::Result<()> {
    let Some(value) = std::env::var_os(LEASE_ENV) else {
        return Ok(());
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
    std::thread::spawn(move || {
        let mut pipe = std::fs::File::from(fd);
        let mut byte = [0u8; 1];
        match pipe.read(&mut byte) {
            Ok(1) if byte[0] == b'c' => {}
            _ => {
                eprintln!("the switch helper went away before committing this broker; exiting");
                std::process::exit(1);
            }
        }
    });
    Ok(())
}
