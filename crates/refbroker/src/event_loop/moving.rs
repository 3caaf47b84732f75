//! Freeze, export, import, go, discard and thaw on the event loop: the
//! connection side of moving established sessions (protocol 2). A frozen
//! loop reads, writes and times nothing, so each connection stops at a
//! packet boundary with its unparsed input and unsent output in hand; the
//! export sends each connection's own socket (lent by its transport) with
//! that state and the transport's kind, a batch at a time. Go closes our
//! copies with close() only (never shutdown(): the connection lives on in
//! the importer). Thaw resumes as if nothing happened; discard drops an
//! import that will not go.

use std::fmt;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use emqx_handoff::broker::{ExportError, Exported};
use emqx_handoff::transfer::{Sender, MAX_BATCH_FDS};
use emqx_handoff::Channel;
use mio::{Interest, Token};
use serde::{Deserialize, Serialize};

use super::Loop;
use crate::conns::{Carried, Conn};
use crate::snapshot::{ClientState, ImportError, SharedState, SCHEMA};
use crate::transport::{self, Kind};

/// One connection's state on the loop, with its broker-side state;
/// decoded strictly (see [`crate::snapshot`]).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConnState {
    pub client: ClientState,
    /// Bytes read and not yet a whole packet.
    pub inbuf: Vec<u8>,
    /// Bytes queued and not yet written.
    pub out: Vec<u8>,
    /// Its CONNECT came (and with it the keep-alive, in seconds).
    pub connected: bool,
    pub keep_alive: u16,
    /// Milliseconds since its last packet: keep-alive continues from it.
    pub idle_ms: u64,
    /// What it runs over; left out for plain TCP (as `refbroker/1`
    /// always was).
    #[serde(default, skip_serializing_if = "Kind::is_tcp")]
    pub transport: Kind,
}

/// What [`ConnState`] serializes from, borrowed from the live connection
/// (no copy of its buffers before it is encoded).
#[derive(Serialize)]
struct ConnStateRef<'a> {
    client: &'a ClientState,
    inbuf: &'a [u8],
    out: &'a [u8],
    connected: bool,
    keep_alive: u16,
    idle_ms: u64,
    #[serde(skip_serializing_if = "Kind::is_tcp")]
    transport: Kind,
}

/// A connection on its way in: the socket and its state.
#[derive(Debug)]
pub struct MovedConn {
    pub fd: OwnedFd,
    pub state: ConnState,
}

impl MovedConn {
    /// Decodes one received connection of [`SCHEMA`].
    pub fn decode(fd: OwnedFd, bytes: &[u8]) -> Result<MovedConn, ImportError> {
        let state = serde_json::from_slice(bytes)
            .map_err(|e| ImportError::Invalid(format!("undecodable {SCHEMA} connection: {e}")))?;
        Ok(MovedConn { fd, state })
    }
}

/// Decodes the broker-wide state of [`SCHEMA`].
pub fn decode_shared(bytes: &[u8]) -> Result<SharedState, ImportError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ImportError::Invalid(format!("undecodable {SCHEMA} state: {e}")))
}

fn failed(e: impl fmt::Display) -> ExportError {
    ExportError::Failed(e.to_string())
}

impl Loop {
    /// Freezes the loop and sends everything over `ch`: the broker-wide
    /// state, then each live connection's own socket (the receiver gets
    /// a copy: no duplicate is held here) with its state, encoded a
    /// batch at a time, all before `deadline`. Stays frozen, whatever
    /// happens, until the thaw or the go.
    pub(super) fn export(
        &mut self,
        ch: &Channel,
        deadline: Instant,
    ) -> Result<Exported, ExportError> {
        if self.frozen.is_some() {
            return Err(ExportError::Failed("already frozen".into()));
        }
        let now = Instant::now();
        let mut tokens: Vec<usize> = self.conns.map.keys().copied().collect();
        tokens.sort_unstable();
        let mut moving = Vec::with_capacity(tokens.len());
        let mut left = 0;
        for t in tokens {
            let live = self.conns.map.get(&t).is_some_and(|c| !c.closing());
            match (live, self.broker.export_client(t)) {
                (true, Some(client)) => moving.push((t, client)),
                _ => left += 1,
            }
        }
        self.frozen = Some((moving.iter().map(|(t, _)| *t).collect(), now));
        let shared = serde_json::to_vec(&self.broker.export_shared()).map_err(failed)?;
        let mut tx = Sender::begin(ch, SCHEMA, &shared, moving.len()).map_err(failed)?;
        for chunk in moving.chunks(MAX_BATCH_FDS) {
            // Each packet may wait only for what is left of the deadline.
            let rest = deadline.saturating_duration_since(Instant::now());
            if rest.is_zero() || ch.set_timeout(rest).is_err() {
                return Err(failed("the deadline passed"));
            }
            let mut states = Vec::with_capacity(chunk.len());
            let mut fds = Vec::with_capacity(chunk.len());
            for (t, client) in chunk {
                let Some(c) = self.conns.map.get(t) else {
                    return Err(failed("a frozen connection went away"));
                };
                let state = ConnStateRef {
                    client,
                    inbuf: &c.inbuf,
                    out: c.out.pending(),
                    connected: c.connected,
                    keep_alive: c.keep_alive,
                    idle_ms: now.duration_since(c.last_read).as_millis() as u64,
                    transport: c.transport.kind(),
                };
                states.push(serde_json::to_vec(&state).map_err(failed)?);
                fds.push(c.transport.fd());
            }
            let items: Vec<(BorrowedFd<'_>, &[u8])> =
                fds.into_iter().zip(states.iter().map(|s| &s[..])).collect();
            tx.batch(&items).map_err(failed)?;
        }
        tx.end().map_err(failed)?;
        Ok(Exported {
            conns: moving.len(),
            left,
        })
    }

    /// Carries on: every connection is read and flushed again, held
    /// connections are served, its clocks (CONNECT deadline, keep-alive,
    /// close wait) moved on by the time frozen, deferred close-alls done.
    pub(super) fn thaw(&mut self) {
        let Some((_, since)) = self.frozen.take() else {
            return;
        };
        self.imported.clear();
        self.import_error = None;
        let paused = since.elapsed();
        for c in self.conns.map.values_mut() {
            c.opened += paused;
            c.last_read += paused;
            if let Some(t) = c.closing_since.as_mut() {
                *t += paused;
            }
        }
        for (listener, stream) in std::mem::take(&mut self.held) {
            self.serve(&listener, stream);
        }
        let all: Vec<usize> = self.conns.map.keys().copied().collect();
        for t in all {
            self.again.push(t);
            self.conns.dirty.push(t);
        }
        for reply in std::mem::take(&mut self.deferred) {
            self.commands_close_all(reply);
        }
    }

    /// The moved connections are the importer's now: our copies are
    /// closed, their sessions forgotten (no will). Then the loop thaws
    /// for what is left (closing connections, connections held).
    pub(super) fn go(&mut self) -> usize {
        let Some((moved, _)) = self.frozen.as_ref() else {
            return 0;
        };
        let moved = moved.clone();
        for t in &moved {
            if let Some(mut c) = self.conns.map.remove(t) {
                let _ = self.poll.registry().deregister(c.transport.source());
                // Dropping closes our descriptor; the socket lives on.
            }
            self.broker.release_client(*t);
        }
        self.thaw();
        moved.len()
    }

    /// Begins taking over another broker's state: the broker-wide part
    /// first; the loop stays frozen (the imported connections are served
    /// from the thaw, which comes after the exporter's go: two brokers
    /// never serve one socket).
    pub(super) fn import_shared(&mut self, shared: SharedState) {
        if self.frozen.is_none() {
            self.frozen = Some((Vec::new(), Instant::now()));
        }
        if self.import_error.is_none() {
            self.import_error = self.broker.import_shared(&shared).err();
        }
    }

    /// Takes over a batch of connections, each on a new token, nothing
    /// sent; after an error the rest are dropped (our descriptors only).
    pub(super) fn import_batch(&mut self, conns: Vec<MovedConn>) {
        let now = Instant::now();
        for m in conns {
            if self.import_error.is_some() {
                return;
            }
            match self.adopt(m, now) {
                Ok(t) => self.imported.push(t),
                Err(e) => self.import_error = Some(e),
            }
        }
    }

    /// The import is whole: how many connections it took, or its first
    /// error, after which every connection imported is dropped again
    /// (the exporter still has its own) and the loop carries on; the
    /// shared state stays, as an importer that failed is not used.
    pub(super) fn import_end(&mut self) -> Result<usize, ImportError> {
        match self.import_error.take() {
            Some(e) => {
                self.discard();
                Err(e)
            }
            None => Ok(self.imported.len()),
        }
    }

    /// Drops every connection imported (our descriptors only: the
    /// exporter, thawed, serves them) and carries on.
    pub(super) fn discard(&mut self) {
        let imported = std::mem::take(&mut self.imported);
        self.unadopt(&imported);
        self.thaw();
    }

    /// Drops imported connections again (our descriptors only).
    pub(super) fn unadopt(&mut self, tokens: &[usize]) {
        for t in tokens {
            if let Some(mut c) = self.conns.map.remove(t) {
                let _ = self.poll.registry().deregister(c.transport.source());
            }
            self.broker.release_client(*t);
        }
    }

    fn adopt(&mut self, m: MovedConn, now: Instant) -> Result<usize, ImportError> {
        let invalid = |e: std::io::Error| ImportError::Invalid(format!("a moved socket: {e}"));
        let s = m.state;
        let mut transport = transport::adopt(s.transport, m.fd).map_err(invalid)?;
        let t = self.next;
        self.next += 1;
        self.poll
            .registry()
            .register(transport.source(), Token(t), Interest::READABLE)
            .map_err(invalid)?;
        if let Err(e) = self.broker.import_client(t, &s.client) {
            let _ = self.poll.registry().deregister(transport.source());
            return Err(e);
        }
        let carried = Carried {
            inbuf: s.inbuf,
            out: s.out,
            connected: s.connected,
            keep_alive: s.keep_alive,
            idle: Duration::from_millis(s.idle_ms),
        };
        let conn = Conn::new(transport, now, carried);
        self.conns.map.insert(t, Box::new(conn));
        Ok(t)
    }
}
