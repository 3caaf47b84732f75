//! One end of a handoff connection: whole messages with optional fds.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, open, FcntlArg, OFlag};
use nix::sys::socket::{
    connect, getsockopt, recvmsg, sendmsg, setsockopt, socket, sockopt, AddressFamily,
    ControlMessage, MsgFlags, SockFlag, SockType, UnixAddr, UnixCredentials,
};
use nix::sys::stat::{fstat, Mode, SFlag};
use nix::sys::time::TimeVal;

use crate::{ChannelError, Message, MAX_MESSAGE};

/// How long a connect may wait for a broker that does not accept.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

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

    /// Two connected ends (SOCK_SEQPACKET, close-on-exec): the direct
    /// channel between two brokers of protocol 2. Each send and receive is
    /// bounded by [`CONNECT_TIMEOUT`] until [`Channel::set_timeout`].
    pub fn pair() -> nix::Result<(Channel, Channel)> {
        let (a, b) = nix::sys::socket::socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        let (a, b) = (Channel::new(a), Channel::new(b));
        a.set_timeout(CONNECT_TIMEOUT)?;
        b.set_timeout(CONNECT_TIMEOUT)?;
        Ok((a, b))
    }

    /// Connects to a broker's handoff socket within [`CONNECT_TIMEOUT`].
    pub fn connect(path: &Path) -> nix::Result<Channel> {
        Channel::connect_within(path, CONNECT_TIMEOUT)
    }

    /// Connects to the socket at `path`, which lies in a folder the service
    /// user owns: a link there is refused (`ELOOP`), never followed; so is
    /// anything but a socket (`ENOTSOCK`); a broker that does not accept
    /// (full backlog) gives `ETIMEDOUT` after `timeout`, never a hang.
    pub fn connect_within(path: &Path, timeout: Duration) -> nix::Result<Channel> {
        let target = open(
            path,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        // O_PATH|O_NOFOLLOW opens a link itself: refuse it, never follow.
        let kind = SFlag::from_bits_truncate(fstat(&target)?.st_mode) & SFlag::S_IFMT;
        if kind == SFlag::S_IFLNK {
            return Err(nix::errno::Errno::ELOOP);
        }
        if kind != SFlag::S_IFSOCK {
            return Err(nix::errno::Errno::ENOTSOCK);
        }
        let fd = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )?;
        // The socket we opened, whatever the name points to by now.
        let addr = UnixAddr::new(format!("/proc/self/fd/{}", target.as_raw_fd()).as_str())?;
        let deadline = Instant::now() + timeout;
        loop {
            match connect(fd.as_raw_fd(), &addr) {
                Ok(()) => break,
                // A unix socket's connect fails with EAGAIN while the
                // listener's backlog is full: retry until the deadline.
                Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR)
                    if Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(nix::errno::Errno::EAGAIN) => return Err(nix::errno::Errno::ETIMEDOUT),
                Err(e) => return Err(e),
            }
        }
        let flags = OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL)?);
        fcntl(&fd, FcntlArg::F_SETFL(flags & !OFlag::O_NONBLOCK))?;
        let channel = Channel { fd };
        channel.set_timeout(timeout)?;
        Ok(channel)
    }

    /// Another handle on the same socket (sharing its timeouts).
    pub fn try_clone(&self) -> std::io::Result<Channel> {
        Ok(Channel {
            fd: self.fd.try_clone()?,
        })
    }

    /// Bounds every later send and receive.
    pub fn set_timeout(&self, timeout: Duration) -> nix::Result<()> {
        // A zero timeval is no timeout at all: a bound under 1 us is 1 us.
        let timeout = timeout.max(Duration::from_micros(1));
        let tv = TimeVal::new(timeout.as_secs() as _, timeout.subsec_micros() as _);
        setsockopt(&self.fd, sockopt::ReceiveTimeout, &tv)?;
        setsockopt(&self.fd, sockopt::SendTimeout, &tv)
    }

    /// The peer's pid, uid and gid (SO_PEERCRED).
    pub fn peer(&self) -> nix::Result<UnixCredentials> {
        getsockopt(&self.fd, sockopt::PeerCredentials)
    }

    /// Sends one message, with `fds` attached.
    pub fn send(&self, message: &Message, fds: &[BorrowedFd<'_>]) -> Result<(), ChannelError> {
        self.send_frame(&message.encode(), fds)
            .map_err(|errno| ChannelError::Send {
                kind: message.kind(),
                errno,
            })
    }

    /// Sends one packet of raw bytes with `fds` attached.
    pub fn send_frame(&self, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> nix::Result<()> {
        let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        let cmsgs = [ControlMessage::ScmRights(&raw)];
        let cmsgs: &[ControlMessage] = if raw.is_empty() { &[] } else { &cmsgs };
        let iov = [IoSlice::new(bytes)];
        sendmsg::<()>(
            self.fd.as_raw_fd(),
            &iov,
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        )?;
        Ok(())
    }

    /// Receives one message and the fds it carries, close-on-exec.
    /// A message or control data that did not fit is an error.
    pub fn recv(&self) -> Result<(Message, Vec<OwnedFd>), ChannelError> {
        let (bytes, fds) = self.recv_frame(MAX_MESSAGE, MAX_FDS)?;
        Ok((Message::decode(&bytes)?, fds))
    }

    /// Receives one packet of at most `max_bytes` with at most `max_fds`
    /// fds (close-on-exec). More of either is an error, and every fd that
    /// came is closed; so is an empty packet (the peer closed).
    pub fn recv_frame(
        &self,
        max_bytes: usize,
        max_fds: usize,
    ) -> Result<(Vec<u8>, Vec<OwnedFd>), ChannelError> {
        let mut buf = vec![0u8; max_bytes];
        // Room for the most fds a sender can attach (SCM_MAX_FD), whatever
        // we accept: a truncated control message would leave the fds the
        // kernel installed unowned. More than `max_fds` are closed below.
        let mut space = vec![0u8; nix::sys::socket::cmsg_space::<[RawFd; 253]>()];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            self.fd.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| match e {
            nix::errno::Errno::EAGAIN => ChannelError::TimedOut,
            e => ChannelError::Recv(e),
        })?;
        let bytes = msg.bytes;
        let truncated = msg.flags.contains(MsgFlags::MSG_TRUNC);
        let ctrunc = msg.flags.contains(MsgFlags::MSG_CTRUNC);
        // Walked from the buffer, not through nix (which refuses to list
        // a truncated control message): an EMFILE midway through a batch
        // truncates it after the kernel installed the first fds, and
        // those are ours to close.
        let fds = rights(&space);
        if ctrunc || fds.len() > max_fds {
            return Err(ChannelError::FdsTruncated);
        }
        if truncated {
            return Err(ChannelError::TooLarge);
        }
        if bytes == 0 {
            return Err(ChannelError::Closed);
        }
        buf.truncate(bytes);
        Ok((buf, fds))
    }

    /// The socket.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The fds of the SCM_RIGHTS messages in a control buffer the kernel
/// filled (zeroed before, so an unused rest reads as a zero length),
/// owned from now on: every one the kernel installed, even in a control
/// message it truncated.
fn rights(space: &[u8]) -> Vec<OwnedFd> {
    const WORD: usize = std::mem::size_of::<usize>();
    // CMSG_LEN(0): the header, aligned to a word.
    let header = std::mem::size_of::<nix::libc::cmsghdr>().div_ceil(WORD) * WORD;
    let mut fds = Vec::new();
    let mut at = 0;
    while let Some(head) = space.get(at..at + header) {
        let word = |i: usize| head.get(i..i + 4).and_then(|b| b.try_into().ok());
        let len = head
            .get(..WORD)
            .and_then(|b| b.try_into().ok())
            .map_or(0, usize::from_ne_bytes);
        let (Some(level), Some(kind)) = (word(WORD), word(WORD + 4)) else {
            break;
        };
        if len < header || at + len > space.len() {
            break;
        }
        if i32::from_ne_bytes(level) == nix::libc::SOL_SOCKET
            && i32::from_ne_bytes(kind) == nix::libc::SCM_RIGHTS
        {
            for raw in space[at + header..at + len].chunks_exact(4) {
                let raw = RawFd::from_ne_bytes([raw[0], raw[1], raw[2], raw[3]]);
                // SAFETY: the kernel has just installed `raw` in our fd
                // table for this message; nothing else owns it.
                fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
            }
        }
        // CMSG_ALIGN: the next header starts at a word boundary.
        at += len.div_ceil(WORD) * WORD;
    }
    fds
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Open fds of this process.
    fn open_fds() -> usize {
        std::fs::read_dir("/proc/self/fd").unwrap().count()
    }

    /// Set in the child process of the EMFILE test.
    const EMFILE_CHILD: &str = "EMQX_HANDOFF_EMFILE_CHILD";

    /// The EMFILE case runs in a child process of its own: its lowered fd
    /// limit must not reach the other tests' threads.
    #[test]
    fn fds_installed_before_an_emfile_are_closed_not_leaked() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "channel::tests::emfile_child",
                "--test-threads=1",
            ])
            .env(EMFILE_CHILD, "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && text.contains("1 passed"), "{text}");
    }

    /// Receives 20 fds with room for 5 under the limit: the kernel
    /// installs 5 and truncates; all 5 must be closed with the error.
    #[test]
    fn emfile_child() {
        if std::env::var_os(EMFILE_CHILD).is_none() {
            return;
        }
        let (a, b) = pair();
        let files: Vec<std::fs::File> = (0..20)
            .map(|_| std::fs::File::open("/dev/null").unwrap())
            .collect();
        let fds: Vec<BorrowedFd<'_>> = files.iter().map(|f| f.as_fd()).collect();
        a.send_frame(b"x", &fds).unwrap();
        // Fill the gaps below the highest open fd, so that the limit
        // below leaves exactly 5 numbers free.
        let mut fillers = Vec::new();
        let highest = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .max()
            .unwrap();
        loop {
            let f = std::fs::File::open("/dev/null").unwrap();
            if f.as_raw_fd() > highest {
                break;
            }
            fillers.push(f);
        }
        let before = open_fds();
        let (_, hard) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
        nix::sys::resource::setrlimit(
            nix::sys::resource::Resource::RLIMIT_NOFILE,
            highest as u64 + 6,
            hard,
        )
        .unwrap();
        let got = b.recv_frame(16, 32);
        assert_eq!(got.err(), Some(ChannelError::FdsTruncated));
        assert_eq!(open_fds(), before, "fds leaked");
    }

    fn pair() -> (Channel, Channel) {
        Channel::pair().unwrap()
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
        assert_eq!(b.recv().unwrap_err(), ChannelError::FdsTruncated);
    }

    #[test]
    fn connect_refuses_links_and_non_sockets_and_is_bounded() {
        use nix::sys::socket::{bind, listen, Backlog};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let server = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        bind(server.as_raw_fd(), &UnixAddr::new(&path).unwrap()).unwrap();
        listen(&server, Backlog::new(0).unwrap()).unwrap();
        let link = dir.path().join("link.sock");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert_eq!(
            Channel::connect_within(&link, Duration::from_millis(100)).unwrap_err(),
            nix::errno::Errno::ELOOP
        );
        let plain = dir.path().join("plain");
        std::fs::write(&plain, b"").unwrap();
        assert_eq!(
            Channel::connect_within(&plain, Duration::from_millis(100)).unwrap_err(),
            nix::errno::Errno::ENOTSOCK
        );
        // Nobody accepts: the backlog fills, then connect times out.
        let started = Instant::now();
        let mut kept = Vec::new();
        let err = loop {
            match Channel::connect_within(&path, Duration::from_millis(200)) {
                Ok(c) => kept.push(c),
                Err(e) => break e,
            }
            assert!(kept.len() < 64, "the backlog never filled");
        };
        assert_eq!(err, nix::errno::Errno::ETIMEDOUT);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn garbage_and_timeouts_are_errors() {
        let (a, b) = pair();
        nix::unistd::write(a.as_fd(), b"garbage").unwrap();
        assert!(matches!(
            b.recv().unwrap_err(),
            ChannelError::Undecodable(_)
        ));
        b.set_timeout(Duration::from_millis(20)).unwrap();
        assert_eq!(b.recv().unwrap_err(), ChannelError::TimedOut);
        drop(a);
        assert_eq!(b.recv().unwrap_err(), ChannelError::Closed);
    }
}
