//! Moving established connections between two brokers (protocol 2), both
//! sides, over the direct channel the helper made: the old broker
//! freezes, sends its state ([`crate::transfer`]) and waits for
//! `imported`; then it says `go`, and on the new broker's `going` closes
//! its copies. Before `going` any failure thaws the old broker as it was.
//!
//! The new broker's rules, from what reaches it on the channel:
//! - it closes with nothing on it: the switch drains instead; accept
//!   once the helper confirmed the lease;
//! - it says it drains (the old broker took the commit and cannot
//!   export): accept, whatever becomes of the helper;
//! - a state it cannot take (a bound, a schema, a broken stream): say
//!   why, then fail ([`Imported::Refused`]): the old broker thaws, and an
//!   importer that failed is not used;
//! - `go`: say `going` (a failure to say it: discard, fail), then serve
//!   what was imported;
//! - `error` after `imported`, or no `go` within [`GO_WAIT`] (the channel
//!   is then shut, so none can come late): the old broker thaws; fail;
//! - it closes after `imported` without a word, or in the middle of the
//!   state: when the old broker is dead (its copies of the sockets are
//!   gone with it), serve what was imported (or accept afresh); when it
//!   still runs, fail.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::{ExportError, Exported, Service};
use crate::transfer::{Bounds, Receiver, TransferError};
use crate::{Channel, ChannelError, Message, Pinned};

/// How long a new broker waits for the old one's state before it gives
/// up on a move and accepts (the helper commits after its settle time).
pub const OFFER_WAIT: Duration = Duration::from_secs(600);
/// How long a new broker waits for `go` after saying `imported` (the old
/// broker says it at once).
pub const GO_WAIT: Duration = Duration::from_secs(30);
/// Each packet of a state in flight, once it has begun.
const FRAME_WAIT: Duration = Duration::from_secs(10);

/// A move done, as the old broker reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    /// Connections the new broker took over.
    pub moved: usize,
    /// Connections that were not exported: they drain here.
    pub left: usize,
    /// Why live ones were not exported.
    pub left_why: Option<String>,
    /// From the freeze to the go.
    pub pause: Duration,
    /// Of `moved`, the connections the new broker closes: its policy no
    /// longer lets their login in.
    pub closed_by_policy: usize,
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
pub fn export(
    ch: &Channel,
    service: &dyn Service,
    schema: &str,
    bound: Duration,
) -> Result<Moved, MoveFailed> {
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
        left_why,
    } = match service.export(ch, schema, deadline) {
        Ok(e) => e,
        Err(ExportError::Cannot) => {
            // Drain instead, once the new broker said it serves (then it
            // does whatever becomes of the helper); without its word it
            // may be gone with its helper: serve on.
            crate::transfer::send_drains(ch);
            return match wait_going(ch) {
                Ok(()) => Err(MoveFailed::NoExport),
                Err(why) => fail(format!("cannot export, and {why}")),
            };
        }
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
    let closed_by_policy = match recv_past_reset(ch) {
        Ok(Message::Imported {
            connections,
            closed_by_policy,
        }) if connections == expected as u64 && closed_by_policy <= connections => {
            closed_by_policy as usize
        }
        Ok(Message::Imported { connections, .. }) => {
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
    };
    if let Err(e) = crate::faults::step("old::before_go") {
        return fail(e.to_string());
    }
    // The importer may serve from now on; this broker, frozen, never
    // touches those sockets again: it only closes its copies.
    let _ = ch.set_timeout(Duration::from_secs(1));
    if let Err(e) = ch.send(&Message::Go, &[]) {
        // Not delivered (a seqpacket send is whole or nothing): the new
        // broker never serves them, ours are the only copies left.
        return fail(format!("telling the new broker go: {e}"));
    }
    // Delivered is not taken: a new broker that died before it read the
    // go (or gave up on it) never says going, and ours are the only
    // copies of the sockets it never touched.
    if let Err(why) = wait_going(ch) {
        return fail(why.to_string());
    }
    let pause = began.elapsed();
    // Kill or delay only: past going nothing may fail.
    let _ = crate::faults::step("old::after_go");
    service.go();
    Ok(Moved {
        moved: expected,
        left,
        left_why,
        pause,
        closed_by_policy,
    })
}

/// Waits for the new broker's `going` after our go, at most
/// [`GOING_WAIT`]; past that the channel is shut, so that no going can
/// come late, and one already queued is still read.
fn wait_going(ch: &Channel) -> Result<(), NoGoing> {
    let _ = ch.set_timeout(GOING_WAIT);
    let answer = match recv_past_reset(ch) {
        Err(ChannelError::TimedOut) => {
            let _ = nix::sys::socket::shutdown(
                ch.as_fd().as_raw_fd(),
                nix::sys::socket::Shutdown::Both,
            );
            let _ = ch.set_timeout(Duration::from_millis(100));
            recv_past_reset(ch).map_err(|_| ChannelError::TimedOut)
        }
        other => other,
    };
    match answer {
        Ok(Message::Going) => Ok(()),
        Ok(other) => Err(NoGoing::Answered(other.kind())),
        Err(ChannelError::TimedOut) => Err(NoGoing::TimedOut),
        Err(e) => Err(NoGoing::Channel(e)),
    }
}

/// Why the new broker did not take the go.
#[derive(Debug)]
enum NoGoing {
    /// It answered something else.
    Answered(&'static str),
    /// Nothing came within [`GOING_WAIT`].
    TimedOut,
    /// The channel failed.
    Channel(ChannelError),
}

impl std::fmt::Display for NoGoing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoGoing::Answered(kind) => write!(f, "the new broker answered {kind} to go"),
            NoGoing::TimedOut => write!(
                f,
                "the new broker did not take the go within {} s",
                GOING_WAIT.as_secs()
            ),
            NoGoing::Channel(e) => write!(f, "the new broker did not take the go: {e}"),
        }
    }
}

/// How long the old broker waits for `going` after its go (the new
/// broker says it at once).
const GOING_WAIT: Duration = Duration::from_secs(2);

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
    /// The old broker took the commit and drains its connections (it could
    /// not export them): accept as after a drain's commit.
    OldDrains,
    /// Nothing imported is kept; the old broker serves on.
    Refused(String),
}

/// The new broker's side: waits for the old one's state, imports it
/// within `bounds`, and serves it once the old broker (`old`, as the
/// helper named it) says go.
pub fn import(
    ch: &Channel,
    service: &dyn Service,
    bounds: &Bounds,
    old: Option<&Pinned>,
) -> Imported {
    let connections = match take_state(ch, service, bounds, old) {
        Ok(n) => n,
        Err(outcome) => return outcome,
    };
    if let Err(e) = ch.send(
        &Message::Imported {
            connections: connections as u64,
            closed_by_policy: service.closed_by_policy() as u64,
        },
        &[],
    ) {
        service.discard();
        return Imported::Refused(format!("answering the old broker: {e}"));
    }
    on_go(ch, service, old, wait_go(ch), connections)
}

/// Waits for the old broker's state and imports it: how many connections
/// it holds, or the outcome already decided (nothing came, the old broker
/// drains or died, the state was refused).
fn take_state(
    ch: &Channel,
    service: &dyn Service,
    bounds: &Bounds,
    old: Option<&Pinned>,
) -> Result<usize, Imported> {
    match wait_readable(ch, OFFER_WAIT) {
        Ok(true) => {}
        Ok(false) => {
            return Err(Imported::Refused(format!(
                "no state came within {} s",
                OFFER_WAIT.as_secs()
            )))
        }
        Err(e) => return Err(Imported::Refused(format!("waiting for the state: {e}"))),
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
        Err(TransferError::Channel(ChannelError::Closed)) => return Err(Imported::Nothing),
        // The old broker took the commit and would drain: say going (it
        // drains only then), and no second broker is left for the lease
        // to guard against.
        Err(TransferError::Drains) => {
            let _ = ch.set_timeout(Duration::from_secs(1));
            super::lease::take_go();
            return Err(match ch.send(&Message::Going, &[]) {
                Err(e) if !gone(old) => {
                    Imported::Refused(format!("answering the old broker's drain: {e}"))
                }
                _ => Imported::OldDrains,
            });
        }
        // The old broker died in the middle: its sockets died with it.
        Err(TransferError::Cut) if gone(old) => return Err(old_gone()),
        Err(e) => return Err(refuse(format!("receiving the state: {e}"))),
    };
    match service.import(&mut state) {
        Ok(n) => Ok(n),
        Err(TransferError::Cut) if gone(old) => Err(old_gone()),
        Err(e) => Err(refuse(format!("importing: {e}"))),
    }
}

/// The old broker's word after our `imported`, within [`GO_WAIT`]; past
/// it the channel is shut, so that no go can come any more, and what
/// came before that is still taken.
fn wait_go(ch: &Channel) -> Result<Message, ChannelError> {
    let _ = ch.set_timeout(GO_WAIT);
    // Injected: as if no go came in time.
    let waited = match crate::faults::step("new::reported") {
        Ok(()) => recv_retrying(ch),
        Err(_) => Err(ChannelError::TimedOut),
    };
    match waited {
        Err(ChannelError::TimedOut) => {
            let _ = nix::sys::socket::shutdown(
                ch.as_fd().as_raw_fd(),
                nix::sys::socket::Shutdown::Both,
            );
            let _ = ch.set_timeout(Duration::from_millis(100));
            recv_retrying(ch).map_err(|_| ChannelError::TimedOut)
        }
        other => other,
    }
}

/// Serves the imported connections on the old broker's go (or its death),
/// else drops them: the old broker serves on.
fn on_go(
    ch: &Channel,
    service: &dyn Service,
    old: Option<&Pinned>,
    answer: Result<Message, ChannelError>,
    connections: usize,
) -> Imported {
    let refused = |why: String| {
        service.discard();
        Imported::Refused(why)
    };
    match answer {
        Ok(Message::Go) => {
            // The old broker closes its copies only on this: before it,
            // never touch a socket (it thaws without our going).
            let _ = ch.set_timeout(Duration::from_secs(1));
            super::lease::take_go();
            // Unsaid to an old broker that died meanwhile: its copies
            // died with it, serve.
            if let Err(e) = ch.send(&Message::Going, &[]) {
                if !gone(old) {
                    return refused(format!("answering go: {e}"));
                }
            }
            // Kill or delay only: the connections are this broker's now.
            let _ = crate::faults::step("new::after_go");
            service.thaw();
            Imported::Serving {
                connections,
                go: true,
            }
        }
        // The old broker is gone, and its copies with it: no second
        // broker is left, the lease is moot.
        Err(ChannelError::Closed) if gone(old) => {
            super::lease::take_go();
            service.thaw();
            Imported::Serving {
                connections,
                go: false,
            }
        }
        Err(ChannelError::Closed) => {
            refused("the old broker closed our channel without go and still runs".into())
        }
        Ok(Message::Error { reason }) => refused(format!("the old broker gave up: {reason}")),
        Ok(other) => refused(format!(
            "the old broker said {} instead of go",
            other.kind()
        )),
        Err(e) => refused(format!("waiting for go: {e}")),
    }
}

/// The old broker died in the middle of its state: no second broker is
/// left, so the lease is moot; accept afresh.
fn old_gone() -> Imported {
    super::lease::take_go();
    Imported::OldGone
}

/// How long a new broker waits for an old broker that closed their
/// channel to be gone, before it takes it for alive.
const DEATH_WAIT: Duration = Duration::from_secs(2);

/// Whether the old broker is gone (so are its copies of the sockets):
/// waits at most [`DEATH_WAIT`] for it to finish dying. No pid (not
/// started by a helper): taken for gone, as its closing said.
fn gone(old: Option<&Pinned>) -> bool {
    let Some(old) = old else {
        return true;
    };
    let until = Instant::now() + DEATH_WAIT;
    while old.alive() {
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// The next message, again after an interrupted wait.
fn recv_retrying(ch: &Channel) -> Result<Message, ChannelError> {
    loop {
        match ch.recv() {
            Err(ChannelError::Recv(nix::errno::Errno::EINTR)) => continue,
            other => return other.map(|(m, _)| m),
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
    // Never a table of more than a million entries (8 MiB), whatever the
    // limit says.
    let Ok(count) = RawFd::try_from(count.min(1 << 20)) else {
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
    match recv_retrying(ch) {
        Err(ChannelError::Recv(nix::errno::Errno::ECONNRESET)) => recv_retrying(ch),
        other => other,
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

#[cfg(test)]
#[path = "mover_tests.rs"]
mod tests;
