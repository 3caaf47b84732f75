//! Why a message did not go or come: a typed error, so callers match on
//! the kind (a closed peer ends a session quietly), never on its text.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use nix::errno::Errno;

use crate::{MAX_MESSAGE, MIN_PROTOCOL, PROTOCOL};

/// A failure of one send or receive on a [`crate::Channel`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelError {
    /// The peer closed the connection (a zero-length read).
    Closed,
    /// Nothing came within the channel's timeout.
    TimedOut,
    /// More fds came than one message may carry; all were closed.
    FdsTruncated,
    /// A message did not fit.
    TooLarge,
    /// Bytes that are no message of this protocol.
    Undecodable(String),
    /// Sending failed.
    Send {
        /// The message's kind (`hello`, `commit`...).
        kind: &'static str,
        /// The system's error.
        errno: Errno,
    },
    /// Receiving failed.
    Recv(Errno),
}

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelError::Closed => f.write_str("the peer closed the connection"),
            ChannelError::TimedOut => f.write_str("timed out waiting for the peer"),
            ChannelError::FdsTruncated => f.write_str("control data truncated (too many fds)"),
            ChannelError::TooLarge => write!(f, "message larger than {MAX_MESSAGE} bytes"),
            ChannelError::Undecodable(why) => write!(f, "undecodable message ({why})"),
            ChannelError::Send { kind, errno } => write!(f, "sending {kind}: {errno}"),
            ChannelError::Recv(errno) => write!(f, "receiving: {errno}"),
        }
    }
}

impl std::error::Error for ChannelError {}

/// Why the helper's session with a broker's handoff socket failed: the
/// socket, its peer, or what the broker said. `Display` is the line the
/// helper prints after what it was doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionError {
    /// The path is a symbolic link.
    SymbolicLink(PathBuf),
    /// The path is no socket.
    NotASocket(PathBuf),
    /// Connecting did not complete within the wait.
    NotAccepting {
        /// The socket.
        path: PathBuf,
        /// How long the helper waited.
        waited: Duration,
    },
    /// Connecting failed otherwise.
    Connect {
        /// The socket.
        path: PathBuf,
        /// The system's error.
        errno: Errno,
    },
    /// SO_PEERCRED could not be read.
    PeerCredentials {
        /// The socket.
        path: PathBuf,
        /// The system's error.
        errno: Errno,
    },
    /// The socket is held by neither root nor the service user.
    ForeignPeer {
        /// The socket.
        path: PathBuf,
        /// The holder's uid.
        uid: u32,
    },
    /// A message did not go or come.
    Channel(ChannelError),
    /// No protocol both sides speak.
    NoCommonProtocol {
        /// The lowest the broker speaks.
        min: u32,
        /// The highest the broker speaks.
        max: u32,
    },
    /// The hello claims another pid than the one holding the socket.
    PidMismatch {
        /// The socket.
        path: PathBuf,
        /// The pid the hello claims.
        claimed: u32,
        /// The pid SO_PEERCRED names.
        holder: i32,
    },
    /// The broker answered with an error.
    Refused(String),
    /// The broker answered something else than the request's answer.
    Unexpected {
        /// What was asked (`hello`, `get_listeners`, `get_schemas`).
        asked: &'static str,
        /// What came (the message, as debug text, or its kind).
        answer: String,
    },
    /// The listener names and fds do not pair up.
    ListenerCount {
        /// How many names.
        names: usize,
        /// How many fds.
        fds: usize,
    },
    /// The broker has no listeners to hand over.
    NoListeners,
    /// A listener fd is not a listening TCP socket.
    NotAListener {
        /// The listener's name.
        name: String,
        /// What is wrong with it.
        why: NotListening,
    },
}

/// Why an fd handed over as a listener is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotListening {
    /// It is no socket.
    NotASocket(Errno),
    /// Its type or address could not be read.
    Unreadable(Errno),
    /// A socket, but not a listening TCP one.
    Other,
}

impl fmt::Display for NotListening {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotListening::NotASocket(e) => write!(f, "not a socket ({e})"),
            NotListening::Unreadable(e) => e.fmt(f),
            NotListening::Other => f.write_str("not a listening TCP socket"),
        }
    }
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::SymbolicLink(p) => write!(
                f,
                "{} is a symbolic link, not a broker's socket",
                p.display()
            ),
            SessionError::NotASocket(p) => write!(f, "{} is not a socket", p.display()),
            SessionError::NotAccepting { path, waited } => write!(
                f,
                "the broker at {} does not accept connections (waited {:.0} s)",
                path.display(),
                waited.as_secs_f64()
            ),
            SessionError::Connect { path, errno } => {
                write!(f, "connecting to {}: {errno}", path.display())
            }
            SessionError::PeerCredentials { path, errno } => write!(
                f,
                "{}: reading the peer's credentials: {errno}",
                path.display()
            ),
            SessionError::ForeignPeer { path, uid } => write!(
                f,
                "{} is held by uid {uid}, neither root nor the service user",
                path.display()
            ),
            SessionError::Channel(e) => e.fmt(f),
            SessionError::NoCommonProtocol { min, max } => write!(
                f,
                "the broker speaks handoff protocol {min}..{max}, this helper {MIN_PROTOCOL}..{PROTOCOL}"
            ),
            SessionError::PidMismatch {
                path,
                claimed,
                holder,
            } => write!(
                f,
                "the broker at {} says it is pid {claimed}, but pid {holder} holds the socket",
                path.display()
            ),
            SessionError::Refused(reason) => write!(f, "the broker refused: {reason}"),
            SessionError::Unexpected { asked, answer } => {
                write!(f, "the broker answered {answer} to {asked}")
            }
            SessionError::ListenerCount { names, fds } => {
                write!(f, "{names} listener names came with {fds} fds")
            }
            SessionError::NoListeners => f.write_str("the broker has no listeners"),
            SessionError::NotAListener { name, why } => write!(f, "listener {name}: {why}"),
        }
    }
}

impl std::error::Error for SessionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SessionError::Channel(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ChannelError> for SessionError {
    fn from(e: ChannelError) -> Self {
        SessionError::Channel(e)
    }
}
