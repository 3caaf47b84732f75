//! Moving established connections between two brokers (protocol 2), both
//! sides, over the direct channel the helper made: the old broker
//! freezes, sends its state ([`crate::transfer`]) and waits for
//! `imported`; then it says `go` and closes its copies. Before `go`
//! any failure thaws the old broker as it was.
//!
//! The new broker's rules, from what reaches it on the channel:
//! - it closes with nothing on it: the switch drains instead; accept;
//! - it closes in the middle of a state: the old broker died, and its
//!   connections with it; accept;
//! - a state it cannot take (a bound, a schema, a broken stream): say
//!   why, then fail ([`Imported::Refused`]): the old broker thaws, and an
//!   importer that failed is not used;
//! - `go`: serve what was imported;
//! - `error` after `imported`: the old broker thawed; fail as above;
//! - it closes after `imported` without a word: the old broker died (its
//!   copies of the sockets are gone with it), so serve what was imported.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::{ExportError, Exported, Service};
use crate::transfer::{Bounds, Receiver, TransferError};
use crate::{Channel, ChannelError, Message};

/// How long a new broker waits for the old one's state before it gives
/// up on a move and accepts (the helper commits after its settle time).
pub const OFFER_WAIT: Duration = Duration::from_secs(600);
/// How long a new broker waits for `go` after saying `imported` (the old
/// broker says it at once).
pub const GO_WAIT: Duration = Duration::from_secs(30);
/// Each packet of a state in flight, once it has begun.
const FRAME_WAIT: Duration = Duration::from_secs(10);

/// A move done, as the old broker reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moved {
    /// Connections the new broker took over.
    pub moved: usize,
    /// Connections that were not exported: they drain here.
    pub left: usize,
    /// From the freeze to the go.
    pub pause: Duration,
}

/// Why the old broker did not move its connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoveFailed {
    /// It cannot freeze or export: it drains them instead.
    NoExport,
    /// It froze, and the move failed before `go`: thawed, serving on.
    Thawed(String),
}

/// The old broker's side: freezes `service`, sends its state, and on
/// `imported` says `go`, all within `bound`.
pub fn export(ch: &Channel, service: &dyn Service, bound: Duration) -> Result<Moved, MoveFailed> {
    let began = Instant::now();
    let deadline = began + bound;
    let fail = |why: String| {
        let _ = ch.set_timeout(Duration::from_millis(200));
        let _ = ch.send(
            &Message::Error {
                reason: why.clone(),
            },
            &[],
        );
        service.thaw();
        Err(MoveFailed::Thawed(why))
    };
    let _ = ch.set_timeout(bound);
    let Exported {
        conns: expected,
        left,
    } = match service.export(ch) {
        Ok(e) => e,
        Err(ExportError::Cannot) => return Err(MoveFailed::NoExport),
        Err(ExportError::Failed(e)) => {
            // The importer may have said why it stopped reading.
            let _ = ch.set_timeout(Duration::from_millis(200));
            return fail(match recv_past_reset(ch) {
                Ok(Message::Error { reason }) => format!("the new broker refused: {reason}"),
                _ => format!("sending the state: {e}"),
            });
        }
    };
    let rest = deadline.saturating_duration_since(Instant::now());
    if rest.is_zero() || ch.set_timeout(rest).is_err() {
        return fail(format!("no import within {:.0} s", bound.as_secs_f64()));
    }
    match recv_past_reset(ch) {
        Ok(Message::Imported { connections }) if connections == expected as u64 => {}
        Ok(Message::Imported { connections }) => {
            return fail(format!(
                "the new broker imported {connections} of {expected} connections"
            ))
        }
        Ok(Message::Error { reason }) => return fail(format!("the new broker refused: {reason}")),
        Ok(other) => return fail(format!("the new broker answered {}", other.kind())),
        Err(ChannelError::TimedOut) => {
            return fail(format!("no import within {:.0} s", bound.as_secs_f64()))
        }
        Err(e) => return fail(format!("the new broker: {e}")),
    }
    // The importer may serve from now on; this broker, frozen, never
    // touches those sockets again: it only closes its copies.
    let _ = ch.set_timeout(Duration::from_secs(1));
    let told = ch.send(&Message::Go, &[]);
    let pause = began.elapsed();
    let moved = service.go();
    if let Err(e) = told {
        // The importer died after importing: those connections are gone
        // with it, as in any crash of the new broker.
        eprintln!("handoff: telling the new broker go: {e}");
    }
    Ok(Moved {
        moved: moved.max(expected),
        left,
        pause,
    })
}

/// What the new broker's side came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Imported {
    /// No state came: the switch drains; accept as usual.
    Nothing,
    /// The connections are ours and served: how many, and whether the
    /// old broker said go (else it died after our `imported`).
    Serving { connections: usize, go: bool },
    /// The old broker died in the middle of its state, and its
    /// connections with it: accept as a broker that starts.
    OldGone,
    /// Nothing imported is kept; the old broker serves on.
    Refused(String),
}

/// The new broker's side: waits for the old one's state, imports it
/// within `bounds`, and serves it once the old broker says go.
pub fn import(ch: &Channel, service: &dyn Service, bounds: &Bounds) -> Imported {
    match wait_readable(ch, OFFER_WAIT) {
        Ok(true) => {}
        Ok(false) => {
            return Imported::Refused(format!("no state came within {} s", OFFER_WAIT.as_secs()))
        }
        Err(e) => return Imported::Refused(format!("waiting for the state: {e}")),
    }
    let _ = ch.set_timeout(FRAME_WAIT);
    let refuse = |why: String| {
        let _ = ch.send(
            &Message::Error {
                reason: why.clone(),
            },
            &[],
        );
        drain(ch);
        Imported::Refused(why)
    };
    let mut state = match Receiver::begin(ch, bounds) {
        Ok(s) => s,
        // Closed before a header: the helper chose to drain, or the old
        // broker could not export.
        Err(TransferError::Channel(ChannelError::Closed)) => return Imported::Nothing,
        // The old broker died in the middle: its sockets died with it.
        Err(TransferError::Cut) => return Imported::OldGone,
        Err(e) => return refuse(format!("receiving the state: {e}")),
    };
    let connections = match service.import(&mut state) {
        Ok(n) => n,
        Err(TransferError::Cut) => return Imported::OldGone,
        Err(e) => return refuse(format!("importing: {e}")),
    };
    if let Err(e) = ch.send(
        &Message::Imported {
            connections: connections as u64,
        },
        &[],
    ) {
        service.discard();
        return Imported::Refused(format!("answering the old broker: {e}"));
    }
    let _ = ch.set_timeout(GO_WAIT);
    match ch.recv() {
        Ok((Message::Go, _)) => {
            service.thaw();
            Imported::Serving {
                connections,
                go: true,
            }
        }
        // The old broker is gone, and its copies with it.
        Err(ChannelError::Closed) => {
            service.thaw();
            Imported::Serving {
                connections,
                go: false,
            }
        }
        Ok((Message::Error { reason }, _)) => {
            service.discard();
            Imported::Refused(format!("the old broker gave up: {reason}"))
        }
        Ok((other, _)) => {
            service.discard();
            Imported::Refused(format!(
                "the old broker said {} instead of go",
                other.kind()
            ))
        }
        Err(e) => {
            service.discard();
            Imported::Refused(format!("waiting for go: {e}"))
        }
    }
}

/// Grows this process's fd table at once to hold `count` more fds (a new
/// broker calls it at its start, with its import bound, outside the
/// pause). Grown
/// a doubling at a time as they arrive, each growth of a threaded
/// process's table waits for an RCU grace period: measured here, that
/// was most of a 5,000-session move (63 of 73 ms). Best effort: past the
/// fd limit it leaves the table as it is.
pub fn make_room(ch: &Channel, count: usize) {
    let Ok(count) = RawFd::try_from(count) else {
        return;
    };
    let at = count
        .saturating_add(ch.as_fd().as_raw_fd())
        .saturating_add(64);
    if let Ok(raw) = nix::fcntl::fcntl(ch.as_fd(), nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(at)) {
        // SAFETY: fcntl has just made `raw`, a duplicate nothing else
        // knows of; it is closed here at once.
        drop(unsafe { OwnedFd::from_raw_fd(raw) });
    }
}

/// Reads what the old broker still sends until it closes (a few seconds
/// at most): closing on unread data would reset the channel, and the old
/// broker would read the reset instead of our reason.
fn drain(ch: &Channel) {
    let _ = ch.set_timeout(Duration::from_secs(1));
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until && ch.recv_frame(crate::transfer::CHUNK + 1, 253).is_ok() {}
}

/// The next message, read again once after a reset: a peer that closed
/// on unread data resets the channel, yet what it sent before is queued.
fn recv_past_reset(ch: &Channel) -> Result<Message, ChannelError> {
    match ch.recv() {
        Err(ChannelError::Recv(nix::errno::Errno::ECONNRESET)) => ch.recv().map(|(m, _)| m),
        other => other.map(|(m, _)| m),
    }
}

/// Waits until `ch` has a packet or its end; `Ok(false)` on timeout.
fn wait_readable(ch: &Channel, timeout: Duration) -> nix::Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        let rest = deadline.saturating_duration_since(Instant::now());
        let ms = u16::try_from(rest.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(ch.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) if rest.is_zero() => return Ok(false),
            Ok(0) => {}
            Ok(_) => return Ok(true),
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
}
