//! The helper's side of a session with a running broker's handoff socket:
//! hello with peer checks, the listeners (each proved a listening TCP
//! socket), the schemas and the commit, which drains or (protocol 2)
//! moves the connections to the new broker.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{
    getsockname, getsockopt, sockopt, AddressFamily, SockType, SockaddrLike, SockaddrStorage,
};
use nix::unistd::Uid;

use crate::error::NotListening;
use crate::{negotiate, Channel, Message, SessionError};

/// A session past the hello.
#[derive(Debug)]
pub struct Session {
    /// The channel.
    pub channel: Channel,
    /// The broker's pid, from its hello.
    pub pid: u32,
    /// The broker's release version, from its hello.
    pub version: String,
    /// The protocol both sides speak.
    pub protocol: u32,
}

/// What the old broker said to a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Committed {
    /// It stopped accepting and drains this many connections.
    Draining(u64),
    /// It moved its connections to the new broker, and exits.
    Moved {
        moved: u64,
        /// Connections it could not export: they drain.
        drained: u64,
        /// Why live ones could not be exported.
        drained_why: Option<String>,
        /// From its freeze to its go.
        pause: Duration,
        /// Of `moved`, the connections the new broker closed because its
        /// policy no longer lets their login in.
        closed_by_policy: u64,
    },
}

impl Session {
    /// Connects and exchanges hellos within `timeout` in all; `Ok(None)`
    /// when nothing listens there.
    /// The peer must be root or `uid` (the service user, when it exists),
    /// and the pid its hello claims must be the one holding the socket
    /// (SO_PEERCRED). `version` is the helper's own, told in its hello.
    pub fn open(
        path: &Path,
        uid: Option<Uid>,
        timeout: Duration,
        version: &str,
    ) -> Result<Option<Session>, SessionError> {
        let at = || path.to_path_buf();
        let deadline = std::time::Instant::now() + timeout;
        let channel = match Channel::connect_within(path, timeout) {
            Ok(c) => c,
            Err(Errno::ENOENT) | Err(Errno::ECONNREFUSED) => return Ok(None),
            Err(Errno::ELOOP) => return Err(SessionError::SymbolicLink(at())),
            Err(Errno::ENOTSOCK) => return Err(SessionError::NotASocket(at())),
            Err(Errno::ETIMEDOUT) => {
                return Err(SessionError::NotAccepting {
                    path: at(),
                    waited: timeout,
                })
            }
            Err(errno) => return Err(SessionError::Connect { path: at(), errno }),
        };
        let peer = channel
            .peer()
            .map_err(|errno| SessionError::PeerCredentials { path: at(), errno })?;
        if peer.uid() != 0 && Some(peer.uid()) != uid.map(|u| u.as_raw()) {
            return Err(SessionError::ForeignPeer {
                path: at(),
                uid: peer.uid(),
            });
        }
        // The hello, both ways, within what the connect left of `timeout`.
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let _ = channel.set_timeout(left.max(Duration::from_millis(1)));
        channel.send(&Message::hello(version), &[])?;
        match channel.recv()? {
            (
                Message::Hello {
                    protocol,
                    min_protocol,
                    version,
                    pid,
                },
                _,
            ) => {
                let Some(spoken) = negotiate(min_protocol, protocol) else {
                    return Err(SessionError::NoCommonProtocol {
                        min: min_protocol,
                        max: protocol,
                    });
                };
                if i64::from(pid) != i64::from(peer.pid()) {
                    return Err(SessionError::PidMismatch {
                        path: at(),
                        claimed: pid,
                        holder: peer.pid(),
                    });
                }
                // Each later request of the session gets `timeout` again.
                let _ = channel.set_timeout(timeout);
                Ok(Some(Session {
                    channel,
                    pid,
                    version,
                    protocol: spoken,
                }))
            }
            (Message::Error { reason }, _) => Err(SessionError::Refused(reason)),
            (other, _) => Err(SessionError::Unexpected {
                asked: "hello",
                answer: format!("{other:?}"),
            }),
        }
    }

    /// Receives the listeners by name.
    pub fn take_listeners(&self) -> Result<Vec<(String, OwnedFd)>, SessionError> {
        self.channel.send(&Message::GetListeners, &[])?;
        match self.channel.recv()? {
            (Message::Listeners { names }, fds) => {
                if names.len() != fds.len() {
                    return Err(SessionError::ListenerCount {
                        names: names.len(),
                        fds: fds.len(),
                    });
                }
                if names.is_empty() {
                    return Err(SessionError::NoListeners);
                }
                for (name, fd) in names.iter().zip(&fds) {
                    listening_tcp(fd).map_err(|why| SessionError::NotAListener {
                        name: name.clone(),
                        why,
                    })?;
                }
                Ok(names.into_iter().zip(fds).collect())
            }
            (Message::Error { reason }, _) => Err(SessionError::Refused(reason)),
            (other, _) => Err(SessionError::Unexpected {
                asked: "get_listeners",
                answer: format!("{other:?}"),
            }),
        }
    }

    /// The state schemas the broker exports and imports (none below
    /// protocol 2), and how long a move away from it may take.
    pub fn schemas(&self) -> Result<(crate::broker::Schemas, Duration), SessionError> {
        if self.protocol < 2 {
            return Ok((crate::broker::Schemas::default(), Duration::ZERO));
        }
        self.channel.send(&Message::GetSchemas, &[])?;
        match self.channel.recv()? {
            (
                Message::Schemas {
                    exports,
                    imports,
                    move_bound_ms,
                },
                _,
            ) => Ok((
                crate::broker::Schemas { exports, imports },
                // A day at most: a bound past that is a broken broker.
                Duration::from_millis(move_bound_ms.min(86_400_000)),
            )),
            (Message::Error { reason }, _) => Err(SessionError::Refused(reason)),
            (other, _) => Err(SessionError::Unexpected {
                asked: "get_schemas",
                answer: other.kind().to_string(),
            }),
        }
    }

    /// Tells the broker to stop accepting and drain; returns its live connections.
    pub fn commit(&self) -> Result<Committed, CommitError> {
        self.channel
            .send(&Message::Commit, &[])
            .map_err(|e| CommitError::Unsent(e.to_string()))?;
        self.committed("commit")
    }

    /// Tells the broker to move its connections to the broker at the
    /// other end of `channel` in `schema` (protocol 2), waiting at most
    /// `bound` for the outcome.
    pub fn commit_move(
        &self,
        channel: crate::Channel,
        schema: &str,
        bound: Duration,
    ) -> Result<Committed, CommitError> {
        let message = Message::CommitMove {
            schema: schema.to_string(),
        };
        self.channel
            .send(&message, &[channel.as_fd()])
            .map_err(|e| CommitError::Unsent(e.to_string()))?;
        // The old broker has its copy: ours must not keep the channel open.
        drop(channel);
        let _ = self.channel.set_timeout(bound);
        self.committed("commit_move")
    }

    fn committed(&self, asked: &str) -> Result<Committed, CommitError> {
        // Injected: sent, and the answer lost (the broker may act on it).
        crate::faults::step("helper::commit_sent")
            .map_err(|e| CommitError::Unanswered(e.to_string()))?;
        let answer = self.channel.recv();
        crate::faults::step("helper::answered")
            .map_err(|e| CommitError::Unanswered(e.to_string()))?;
        match answer {
            Ok((Message::Committed { connections }, _)) => Ok(Committed::Draining(connections)),
            Ok((
                Message::Moved {
                    moved,
                    drained,
                    drained_why,
                    pause_us,
                    closed_by_policy,
                },
                _,
            )) => Ok(Committed::Moved {
                moved,
                drained,
                drained_why,
                pause: Duration::from_micros(pause_us),
                closed_by_policy,
            }),
            Ok((Message::Error { reason }, _)) => Err(CommitError::Refused(format!(
                "the broker refused the commit: {reason}"
            ))),
            Ok((other, _)) => Err(CommitError::Unanswered(format!(
                "the broker answered {} to {asked}",
                other.kind()
            ))),
            Err(e) => Err(CommitError::Unanswered(e.to_string())),
        }
    }
}

/// Why a commit did not come back as `Committed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitError {
    /// The commit never left: the old broker did not get it.
    Unsent(String),
    /// The old broker said no: it did not commit.
    Refused(String),
    /// Sent, but no usable answer: the old broker may well be draining.
    Unanswered(String),
}

/// Whether `fd` is a listening TCP socket (what a broker may hand over);
/// anything else is refused before it reaches the new broker or systemd.
fn listening_tcp(fd: &OwnedFd) -> Result<(), NotListening> {
    let accepting = getsockopt(fd, sockopt::AcceptConn).map_err(NotListening::NotASocket)?;
    let kind = getsockopt(fd, sockopt::SockType).map_err(NotListening::Unreadable)?;
    let addr: SockaddrStorage =
        getsockname(fd.as_fd().as_raw_fd()).map_err(NotListening::Unreadable)?;
    let inet = matches!(
        addr.family(),
        Some(AddressFamily::Inet | AddressFamily::Inet6)
    );
    if !accepting || kind != SockType::Stream || !inet {
        return Err(NotListening::Other);
    }
    Ok(())
}
