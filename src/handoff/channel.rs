//! One end of a handoff connection: whole messages with optional fds.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::Duration;

use nix::sys::socket::{
    connect, getsockopt, recvmsg, sendmsg, setsockopt, socket, sockopt, AddressFamily,
    ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, UnixAddr, UnixCredentials,
};
use nix::sys::time::TimeVal;

use super::{Message, MAX_MESSAGE};

/// The most fds one message may carry.
pub const MAX_FDS: usize = 32;

/// A connected SOCK_SEQPACKET socket speaking the handoff protocol.
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

impl Channel {
    /// Wraps an accepted connection.
    pub fn new(fd: OwnedFd) -> Channel {
        Channel { fd }
    }

    /// Connects to a broker's handoff socket.
    pub fn connect(path: &Path) -> nix::Result<Channel> {
        let fd = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        let addr = UnixAddr::new(path)?;
        connect(fd.as_raw_fd(), &addr)?;
        Ok(Channel { fd })
    }

    /// Bounds every later send and receive.
    pub fn set_timeout(&self, timeout: Duration) -> nix::Result<()> {
        let tv = TimeVal::new(timeout.as_secs() as _, timeout.subsec_micros() as _);
        setsockopt(&self.fd, sockopt::ReceiveTimeout, &tv)?;
        setsockopt(&self.fd, sockopt::SendTimeout, &tv)
    }

    /// The peer's pid, uid and gid (SO_PEERCRED).
    pub fn peer(&self) -> nix::Result<UnixCredentials> {
        getsockopt(&self.fd, sockopt::PeerCredentials)
    }

    /// Sends one message, with `fds` attached.
    pub fn send(&self, message: &Message, fds: &[BorrowedFd<'_>]) -> Result<(), String> {
        let bytes = message.encode();
        let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        let cmsgs = [ControlMessage::ScmRights(&raw)];
        let cmsgs: &[ControlMessage] = if raw.is_empty() { &[] } else { &cmsgs };
        let iov = [IoSlice::new(&bytes)];
        sendmsg::<()>(
            self.fd.as_raw_fd(),
            &iov,
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .map_err(|e| format!("sending {}: {e}", kind(message)))?;
        Ok(())
    }

    /// Receives one message and the fds it carries, close-on-exec.
    /// A message or control data that did not fit is an error.
    pub fn recv(&self) -> Result<(Message, Vec<OwnedFd>), String> {
        let mut buf = vec![0u8; MAX_MESSAGE];
        let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            self.fd.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| match e {
            nix::errno::Errno::EAGAIN => "timed out waiting for the peer".to_string(),
            e => format!("receiving: {e}"),
        })?;
        let bytes = msg.bytes;
        let truncated = msg.flags.contains(MsgFlags::MSG_TRUNC);
        let mut fds = Vec::new();
        let cmsgs = msg.cmsgs();
        let ctrunc = cmsgs.is_err();
        if let Ok(cmsgs) = cmsgs {
            for cmsg in cmsgs {
                if let ControlMessageOwned::ScmRights(received) = cmsg {
                    for raw in received {
                        // SAFETY: the kernel has just installed `raw` in our
                        // fd table for this message; nothing else owns it.
                        fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
                    }
                }
            }
        }
        if ctrunc {
            return Err("control data truncated (too many fds)".into());
        }
        if truncated {
            return Err(format!("message larger than {MAX_MESSAGE} bytes"));
        }
        if bytes == 0 {
            return Err("the peer closed the connection".into());
        }
        let message = Message::decode(&buf[..bytes])?;
        Ok((message, fds))
    }

    /// The socket.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn kind(message: &Message) -> &'static str {
    match message {
        Message::Hello { .. } => "hello",
        Message::GetListeners => "get_listeners",
        Message::Listeners { .. } => "listeners",
        Message::Commit => "commit",
        Message::Committed { .. } => "committed",
        Message::Error { .. } => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::socketpair;

    fn pair() -> (Channel, Channel) {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        (Channel::new(a), Channel::new(b))
    }

    #[test]
    fn messages_carry_fds_close_on_exec() {
        let (a, b) = pair();
        let file = std::fs::File::open("/dev/null").unwrap();
        a.send(
            &Message::Listeners {
                names: vec!["x".into()],
            },
            &[file.as_fd()],
        )
        .unwrap();
        let (m, fds) = b.recv().unwrap();
        assert_eq!(
            m,
            Message::Listeners {
                names: vec!["x".into()]
            }
        );
        assert_eq!(fds.len(), 1);
        let flags = nix::fcntl::fcntl(&fds[0], nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert!(flags & nix::libc::FD_CLOEXEC != 0);
    }

    #[test]
    fn too_many_fds_is_an_error_and_leaks_nothing() {
        let (a, b) = pair();
        let files: Vec<_> = (0..MAX_FDS + 8)
            .map(|_| std::fs::File::open("/dev/null").unwrap())
            .collect();
        let fds: Vec<_> = files.iter().map(|f| f.as_fd()).collect();
        a.send(&Message::GetListeners, &fds).unwrap();
        assert!(b.recv().unwrap_err().contains("truncated"));
    }

    #[test]
    fn garbage_and_timeouts_are_errors() {
        let (a, b) = pair();
        nix::unistd::write(a.as_fd(), b"garbage").unwrap();
        assert!(b.recv().unwrap_err().contains("undecodable"));
        b.set_timeout(Duration::from_millis(20)).unwrap();
        assert!(b.recv().unwrap_err().contains("timed out"));
        drop(a);
        assert!(b.recv().unwrap_err().contains("closed"));
    }
}
