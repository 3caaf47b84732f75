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

use crate::transfer::TransferError;

pub use listeners::{store_listeners, take_listeners, Listener};
pub use run::{run, Drained, Options, DEFAULT_MOVE_BOUND, MAX_MOVE_BOUND};
pub use server::{About, HandoffServer, ServerEvent};

/// What the library needs from a broker.
///
/// The last seven methods are protocol 2 (moving established sessions to
/// the next release); their defaults say "cannot move", so a broker that
/// implements nothing drains as before.
pub trait Service: Send + Sync + 'static {
    /// Serves one accepted connection (on its own thread or otherwise);
    /// must not block for long. Called by the library's accept threads,
    /// unless the broker accepts itself ([`Service::accept`]).
    fn serve(&self, listener: &str, stream: TcpStream);
    /// Accepts on `listeners` itself (polled by its own event loop: no
    /// thread per listener) until [`Service::stop_accepting`]; giving them
    /// back declines, and the library's accept threads call
    /// [`Service::serve`] instead. The sockets are non-blocking.
    fn accept(&self, listeners: Vec<Listener>) -> Result<(), Vec<Listener>> {
        Err(listeners)
    }
    /// Called once, before ready, in a broker started to take over
    /// another's connections: it may prepare what restoring them costs
    /// (the old broker still serves meanwhile, so this is outside the
    /// pause). `listeners` are the ones it will serve.
    fn prepare_import(&self, listeners: &[Listener]) {
        let _ = listeners;
    }
    /// Stops accepting on the listeners [`Service::accept`] took before it
    /// returns; the sockets stay open in the other processes that hold
    /// them (never shut down).
    fn stop_accepting(&self) {}
    /// Live connections.
    fn connections(&self) -> usize;
    /// Closes every connection gracefully (end of the drain).
    fn close_all(&self);
    /// The state schemas this broker exports and imports.
    fn schemas(&self) -> Schemas {
        Schemas::default()
    }
    /// Stops every connection at a packet boundary and sends the whole
    /// state, in `schema` (one of `schemas().exports`, chosen by the
    /// helper), over `ch` with a [`crate::transfer::Sender`]: broker-wide
    /// state first, then each connection's socket (its own fd: the kernel
    /// gives the receiver a copy) with its state; every byte and fd stays
    /// as it was; all of it before `deadline`, or it fails. On
    /// [`ExportError::Failed`] it stays frozen until [`Service::thaw`].
    fn export(
        &self,
        ch: &crate::Channel,
        schema: &str,
        deadline: std::time::Instant,
    ) -> Result<Exported, ExportError> {
        let _ = (ch, schema, deadline);
        Err(ExportError::Cannot)
    }
    /// Resumes after a freeze as if nothing happened (the move failed).
    fn thaw(&self) {}
    /// The exported connections belong to the importer now: close our
    /// copies with close() (never shutdown()), fire no will; how many.
    fn go(&self) -> usize {
        0
    }
    /// Takes over another broker's state (a schema of `schemas().imports`)
    /// as it comes, batch by batch, without sending a byte; how many
    /// connections it took. They stay frozen until [`Service::thaw`],
    /// which the caller sends only after the exporter's go: one socket
    /// never has two brokers serving it. On an error nothing is kept.
    /// Every connection that comes is a connected TCP socket, each one
    /// once: the receiver refuses any other fd (a listener, a unix or
    /// UDP socket, a file) and the same socket twice.
    fn import(&self, state: &mut crate::transfer::Receiver<'_>) -> Result<usize, TransferError> {
        Err(TransferError::Refused(format!(
            "this broker imports no state ({})",
            state.schema
        )))
    }
    /// Of the connections the last import took, how many it closes as
    /// soon as it serves them: its policy refuses their login (a file
    /// changed since they connected).
    fn closed_by_policy(&self) -> usize {
        0
    }
    /// Drops an import that will not go (the exporter thawed): closes our
    /// copies with close(), keeps nothing of it, fires no will.
    fn discard(&self) {}
}

/// What [`Service::export`] sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exported {
    /// Connections sent.
    pub conns: usize,
    /// Connections not exported (closing ones, or ones the schema
    /// cannot carry): they drain here.
    pub left: usize,
    /// Why live connections were left, when some were (closing ones
    /// need no reason).
    pub left_why: Option<String>,
}

/// Why [`Service::export`] sent no whole state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportError {
    /// The broker cannot freeze or export; nothing was sent, nothing frozen.
    Cannot,
    /// Frozen, and the state did not go out whole (why).
    Failed(String),
}

/// The state schemas a broker can export and import (e.g. `refbroker/1`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schemas {
    pub exports: Vec<String>,
    pub imports: Vec<String>,
}
