//! The handoff protocol between a running broker and the helper: versioned
//! JSON messages over a unix SOCK_SEQPACKET socket, listeners as fds.
//!
//! A session: both sides say `hello` (protocol range, release version, pid);
//! the helper asks `get_listeners` and receives them by name with
//! SCM_RIGHTS; once the new broker is ready the helper says `commit`, the
//! broker answers `committed`, stops accepting, drains and exits. A helper
//! that closes the connection without `commit` leaves the broker serving.

mod channel;
mod message;

pub use channel::{Channel, MAX_FDS};
pub use message::{negotiate, Message, MAX_MESSAGE, MIN_PROTOCOL, PROTOCOL};
