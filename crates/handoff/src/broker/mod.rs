//! The broker side of a switch (public API): inherit or bind listeners,
//! serve the handoff socket, report readiness, and on commit stop
//! accepting, then move the connections to the new broker (protocol 2)
//! or drain them, and return.
//!
//! A broker implements [`Service`] and calls [`run`]; see the reference
//! broker (`crates/refbroker`) for a complete one.
//!
//! Modules: `listeners` (inherit or bind), `server` (the handoff socket),
//! `accept` (stoppable accept loops), `lease` (the helper's lease on a
//! broker it starts), `mover` (both sides of a move), `run` (the whole
//! life of a broker), `stop` (the stop pipe).

mod accept;
mod lease;
mod listeners;
pub mod mover;
mod run;
mod server;
mod stop;

use std::net::TcpStream;

pub use listeners::{store_listeners, take_listeners, Listener};
pub use run::{run, Drained, Options, DEFAULT_MOVE_BOUND};
pub use server::{About, HandoffServer, ServerEvent};

/// What the library needs from a broker.
///
/// The last six methods are protocol 2 (moving established sessions to
/// the next release); their defaults say "cannot move", so a broker that
/// implements nothing drains as before.
pub trait Service: Send + Sync + 'static {
    /// Serves one accepted connection (on its own thread or otherwise);
    /// must not block for long.
    fn serve(&self, listener: &str, stream: TcpStream);
    /// Live connections.
    fn connections(&self) -> usize;
    /// Closes every connection gracefully (end of the drain).
    fn close_all(&self);
    /// The state schemas this broker exports and imports.
    fn schemas(&self) -> Schemas {
        Schemas::default()
    }
    /// Stops every connection at a packet boundary and exports the whole
    /// state, every byte and fd left as it was; `None` when it cannot.
    fn freeze(&self) -> Option<Export> {
        None
    }
    /// Resumes after a freeze as if nothing happened (the move failed).
    fn thaw(&self) {}
    /// The exported connections belong to the importer now: close our
    /// copies with close() (never shutdown()), fire no will; how many.
    fn go(&self) -> usize {
        0
    }
    /// Takes over another broker's state (a schema of `schemas().imports`)
    /// without sending a byte; how many connections it took. They stay
    /// frozen until [`Service::thaw`], which the caller sends only after
    /// the exporter's go: one socket never has two brokers serving it.
    fn import(&self, state: crate::transfer::Transfer) -> Result<usize, String> {
        Err(format!("this broker imports no state ({})", state.schema))
    }
    /// Drops an import that will not go (the exporter thawed): closes our
    /// copies with close(), keeps nothing of it, fires no will.
    fn discard(&self) {}
}

/// The state schemas a broker can export and import (e.g. `refbroker/1`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schemas {
    pub exports: Vec<String>,
    pub imports: Vec<String>,
}

/// A frozen broker's state in its own schema, ready for
/// [`crate::transfer::send`].
#[derive(Debug, Default)]
pub struct Export {
    pub schema: String,
    /// Broker-wide state.
    pub shared: Vec<u8>,
    /// Each connection's socket (a duplicate) and state.
    pub conns: Vec<(std::os::fd::OwnedFd, Vec<u8>)>,
    /// Connections not exported (they drain as before).
    pub left: usize,
}

impl Export {
    /// Sends it over the brokers' direct channel.
    pub fn send(&self, ch: &crate::Channel) -> Result<(), crate::ChannelError> {
        use std::os::fd::AsFd;
        let conns: Vec<(std::os::fd::BorrowedFd<'_>, &[u8])> = self
            .conns
            .iter()
            .map(|(fd, s)| (fd.as_fd(), &s[..]))
            .collect();
        crate::transfer::send(ch, &self.schema, &self.shared, &conns)
    }
}

