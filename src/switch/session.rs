//! The helper's session with the running broker's handoff socket.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

use crate::handoff::{negotiate, Channel, Message};

/// A session past the hello.
#[derive(Debug)]
pub struct Session {
    /// The channel.
    pub channel: Channel,
    /// The broker's pid, from its hello.
    pub pid: u32,
    /// The broker's release version, from its hello.
    pub version: String,
}

impl Session {
    /// Connects and exchanges hellos; `Ok(None)` when nothing listens there.
    pub fn open(path: &Path, timeout: Duration) -> Result<Option<Session>, String> {
        let channel = match Channel::connect(path) {
            Ok(c) => c,
            Err(nix::errno::Errno::ENOENT) | Err(nix::errno::Errno::ECONNREFUSED) => {
                return Ok(None)
            }
            Err(e) => return Err(format!("connecting to {}: {e}", path.display())),
        };
        channel
            .set_timeout(timeout)
            .map_err(|e| format!("handoff socket: {e}"))?;
        channel.send(&Message::hello(env!("CARGO_PKG_VERSION")), &[])?;
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
                if negotiate(min_protocol, protocol).is_none() {
                    return Err(format!(
                        "the broker speaks handoff protocol {min_protocol}..{protocol}, this helper {}..{}",
                        crate::handoff::MIN_PROTOCOL,
                        crate::handoff::PROTOCOL
                    ));
                }
                Ok(Some(Session {
                    channel,
                    pid,
                    version,
                }))
            }
            (Message::Error { reason }, _) => Err(format!("the broker refused: {reason}")),
            (other, _) => Err(format!("the broker answered {other:?} to hello")),
        }
    }

    /// Receives the listeners by name.
    pub fn take_listeners(&self) -> Result<Vec<(String, OwnedFd)>, String> {
        self.channel.send(&Message::GetListeners, &[])?;
        match self.channel.recv()? {
            (Message::Listeners { names }, fds) => {
                if names.len() != fds.len() {
                    return Err(format!(
                        "{} listener names came with {} fds",
                        names.len(),
                        fds.len()
                    ));
                }
                if names.is_empty() {
                    return Err("the broker has no listeners".into());
                }
                Ok(names.into_iter().zip(fds).collect())
            }
            (Message::Error { reason }, _) => Err(format!("the broker refused: {reason}")),
            (other, _) => Err(format!("the broker answered {other:?} to get_listeners")),
        }
    }

    /// Tells the broker to stop accepting and drain; returns its live connections.
    pub fn commit(&self) -> Result<u64, CommitError> {
        self.channel
            .send(&Message::Commit, &[])
            .map_err(CommitError::Unsent)?;
        match self.channel.recv() {
            Ok((Message::Committed { connections }, _)) => Ok(connections),
            Ok((Message::Error { reason }, _)) => Err(CommitError::Refused(format!(
                "the broker refused the commit: {reason}"
            ))),
            Ok((other, _)) => Err(CommitError::Unanswered(format!(
                "the broker answered {other:?} to commit"
            ))),
            Err(e) => Err(CommitError::Unanswered(e)),
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
