//! Why a message did not go or come: a typed error, so callers match on
//! the kind (a closed peer ends a session quietly), never on its text.

use std::fmt;

use nix::errno::Errno;

use crate::MAX_MESSAGE;

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
