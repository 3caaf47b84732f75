//! A stop signal for threads blocked on a socket: a pipe whose read end
//! becomes readable, once and for all, when stopped.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// Both ends of the stop pipe.
pub struct Stop {
    read: OwnedFd,
    write: OwnedFd,
}

/// What woke a waiting thread.
pub enum Wake {
    /// The socket is readable.
    Ready,
    /// Stop was called.
    Stopped,
}

impl Stop {
    /// A fresh, unstopped signal.
    pub fn new() -> std::io::Result<Stop> {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        Ok(Stop { read, write })
    }

    /// Wakes every waiter, now and later.
    pub fn stop(&self) {
        let _ = nix::unistd::write(&self.write, b"x");
    }

    /// Blocks until `fd` is readable or stop was called.
    pub fn wait(&self, fd: BorrowedFd<'_>) -> nix::Result<Wake> {
        loop {
            let mut fds = [
                PollFd::new(fd, PollFlags::POLLIN),
                PollFd::new(self.read.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e),
            }
            if fds[1].any().unwrap_or(false) {
                return Ok(Wake::Stopped);
            }
            return Ok(Wake::Ready);
        }
    }
}
