//! Freeze, export, import, go and thaw on the event loop: the connection
//! side of moving established sessions (protocol 2, issue #12). A frozen
//! loop reads, writes and times nothing, so each connection stops at a
//! packet boundary with its unparsed input and unsent output in hand; the
//! export carries a duplicate of each socket with that state. Go closes
//! our copies with close() only (never shutdown(): the connection lives on
//! in the importer). Thaw resumes as if nothing happened.

use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use emqx_handoff::broker::Export;
use emqx_handoff::transfer::{self, Bounds, Transfer, TransferError};
use emqx_handoff::{Channel, ChannelError};
use mio::{Interest, Token};
use serde::{Deserialize, Serialize};

use super::Loop;
use crate::conns::Conn;
use crate::snapshot::{ClientState, ImportError, SharedState, SCHEMA};

/// One connection's state on the loop, with its broker-side state.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
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
}

/// A connection on its way: the socket and its state.
#[derive(Debug)]
pub struct MovedConn {
    pub fd: OwnedFd,
    pub state: ConnState,
}

/// A frozen broker's whole state.
#[derive(Debug, Default)]
pub struct Frozen {
    pub shared: SharedState,
    pub conns: Vec<MovedConn>,
    /// Connections not exported (closing, or their socket could not be
    /// duplicated): they stay with this broker and finish closing.
    pub left: usize,
}

/// Why a frozen state did not arrive.
#[derive(Debug)]
pub enum ReceiveError {
    Transfer(TransferError),
    /// Another broker's schema: this one cannot import it.
    Schema(String),
    /// The bytes are not a state of [`SCHEMA`].
    Decode(String),
}

impl fmt::Display for ReceiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReceiveError::Transfer(e) => write!(f, "{e}"),
            ReceiveError::Schema(s) => {
                write!(f, "cannot import {s} (this broker imports {SCHEMA})")
            }
            ReceiveError::Decode(e) => write!(f, "undecodable {SCHEMA} state: {e}"),
        }
    }
}

impl std::error::Error for ReceiveError {}

impl Frozen {
    /// In the library's form: JSON per part, schema [`SCHEMA`].
    pub fn into_export(self) -> Result<Export, serde_json::Error> {
        let shared = serde_json::to_vec(&self.shared)?;
        let conns = self
            .conns
            .into_iter()
            .map(|m| Ok((m.fd, serde_json::to_vec(&m.state)?)))
            .collect::<Result<Vec<_>, serde_json::Error>>()?;
        Ok(Export {
            schema: SCHEMA.to_string(),
            shared,
            conns,
            left: self.left,
        })
    }

    /// Back from a received state of [`SCHEMA`].
    pub fn from_transfer(t: Transfer) -> Result<Frozen, ReceiveError> {
        if t.schema != SCHEMA {
            return Err(ReceiveError::Schema(t.schema));
        }
        let decode = |e: serde_json::Error| ReceiveError::Decode(e.to_string());
        let shared = serde_json::from_slice(&t.shared).map_err(decode)?;
        let conns = t
            .conns
            .into_iter()
            .map(|(fd, bytes)| {
                let state = serde_json::from_slice(&bytes).map_err(decode)?;
                Ok(MovedConn { fd, state })
            })
            .collect::<Result<Vec<_>, ReceiveError>>()?;
        Ok(Frozen {
            shared,
            conns,
            left: 0,
        })
    }

    /// Sends the whole state over `ch` (see `emqx_handoff::transfer`).
    pub fn send(self, ch: &Channel) -> Result<(), ChannelError> {
        let export = self
            .into_export()
            .map_err(|e| ChannelError::Undecodable(format!("encoding: {e}")))?;
        export.send(ch)
    }

    /// Receives a state sent by [`Frozen::send`], within `bounds`.
    pub fn recv(ch: &Channel, bounds: &Bounds) -> Result<Frozen, ReceiveError> {
        let t = transfer::recv(ch, bounds).map_err(ReceiveError::Transfer)?;
        Frozen::from_transfer(t)
    }
}

impl Loop {
    /// Freezes the loop (again: the same answer) and exports everything.
    pub(super) fn freeze(&mut self) -> Frozen {
        let now = Instant::now();
        let mut frozen = Frozen {
            shared: self.broker.export_shared(),
            ..Frozen::default()
        };
        let mut moved = Vec::new();
        let mut tokens: Vec<usize> = self.conns.map.keys().copied().collect();
        tokens.sort_unstable();
        for t in tokens {
            let Some(c) = self.conns.map.get(&t) else {
                continue;
            };
            let client = self.broker.export_client(t);
            let fd = c.stream.as_fd().try_clone_to_owned();
            match (c.ended || c.closing_since.is_some(), client, fd) {
                (false, Some(client), Ok(fd)) => {
                    frozen.conns.push(MovedConn {
                        fd,
                        state: ConnState {
                            client,
                            inbuf: c.inbuf.clone(),
                            out: c.out[c.out_at..].to_vec(),
                            connected: c.connected,
                            keep_alive: c.keep_alive,
                            idle_ms: now.duration_since(c.last_read).as_millis() as u64,
                        },
                    });
                    moved.push(t);
                }
                _ => frozen.left += 1,
            }
        }
        self.frozen = Some((moved, now));
        frozen
    }

    /// Carries on: every connection is read and flushed again, held
    /// connections are served, its clocks (CONNECT deadline, keep-alive,
    /// close wait) moved on by the time frozen, deferred close-alls done.
    pub(super) fn thaw(&mut self) {
        let Some((_, since)) = self.frozen.take() else {
            return;
        };
        self.imported.clear();
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
                let _ = self.poll.registry().deregister(&mut c.stream);
                // Dropping closes our descriptor; the socket lives on.
            }
            self.broker.release_client(*t);
        }
        self.thaw();
        moved.len()
    }

    /// Takes over `frozen`: shared state first, then each connection on a
    /// new token, nothing sent, and the loop stays frozen: the imported
    /// connections are served from the thaw, which comes after the
    /// exporter's go (two brokers never serve one socket). On an error the
    /// connections imported are dropped (closing only our descriptors; the
    /// exporter still has its own) and the error returned; the shared
    /// state stays, as an importer that failed is not used.
    pub(super) fn import(&mut self, frozen: Frozen) -> Result<Vec<usize>, ImportError> {
        self.broker.import_shared(&frozen.shared)?;
        let now = Instant::now();
        let mut added = Vec::new();
        for m in frozen.conns {
            match self.adopt(m, now) {
                Ok(t) => added.push(t),
                Err(e) => {
                    self.unadopt(&added);
                    return Err(e);
                }
            }
        }
        if self.frozen.is_none() {
            self.frozen = Some((Vec::new(), now));
        }
        self.imported.extend(&added);
        Ok(added)
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
                let _ = self.poll.registry().deregister(&mut c.stream);
            }
            self.broker.release_client(*t);
        }
    }

    fn adopt(&mut self, m: MovedConn, now: Instant) -> Result<usize, ImportError> {
        let invalid = |e: std::io::Error| ImportError::Invalid(format!("a moved socket: {e}"));
        let std = std::net::TcpStream::from(m.fd);
        std.set_nonblocking(true).map_err(invalid)?;
        let mut stream = mio::net::TcpStream::from_std(std);
        let t = self.next;
        self.next += 1;
        self.poll
            .registry()
            .register(&mut stream, Token(t), Interest::READABLE)
            .map_err(invalid)?;
        if let Err(e) = self.broker.import_client(t, &m.state.client) {
            let _ = self.poll.registry().deregister(&mut stream);
            return Err(e);
        }
        let s = m.state;
        let idle = Duration::from_millis(s.idle_ms);
        self.conns.map.insert(
            t,
            Box::new(Conn {
                stream,
                inbuf: s.inbuf,
                out: s.out,
                out_at: 0,
                opened: now.checked_sub(idle).unwrap_or(now),
                last_read: now.checked_sub(idle).unwrap_or(now),
                keep_alive: s.keep_alive,
                connected: s.connected,
                ended: false,
                closing_since: None,
                fin_sent: false,
                writable: false,
                dirty: true,
            }),
        );
        Ok(t)
    }
}
