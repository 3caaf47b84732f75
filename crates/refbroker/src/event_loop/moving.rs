//! Freeze, export, import, go, discard and thaw on the event loop: the
//! connection side of moving established sessions (protocol 2). A frozen
//! loop reads, writes and times nothing, so each connection stops at a
//! packet boundary with its unparsed input and unsent output in hand; the
//! export sends each connection's own socket (lent by its transport) with
//! that state, the transport's kind and its frozen state (a TLS
//! connection's serialized s2n connection, in a schema that carries TLS),
//! a batch at a time. What the schema cannot carry (a TLS connection in
//! `refbroker/1`, an MQTT 5 session before `refbroker/3`) stays and
//! drains, and the answer says why. The encoded states hold traffic secrets and
//! are wiped once sent or decoded. Go closes our
//! copies with close() only (never shutdown(): the connection lives on in
//! the importer). Thaw resumes as if nothing happened; discard drops an
//! import that will not go.

use std::collections::BTreeMap;
use std::fmt;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use emqx_handoff::broker::{ExportError, Exported};
use emqx_handoff::transfer::{Sender, MAX_BATCH_FDS};
use emqx_handoff::Channel;
use emqx_tls::wipe;
use mio::{Interest, Token};

use super::moved::{ConnStateRef, MovedConn};
use super::{Loop, READ_TURN};

/// What an import took: connections, and how many of them the policy
/// refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Imported {
    pub connections: usize,
    pub refused: usize,
}

/// How long a freeze waits for TLS handshakes in flight to finish.
const HANDSHAKE_GRACE: Duration = Duration::from_millis(100);
use crate::broker::End;
use crate::conns::{Carried, Conn};
use crate::snapshot::{ImportError, Schema, SharedState};
use crate::transport::{Kind, ReadEnd, Unmovable};

fn failed(e: impl fmt::Display) -> ExportError {
    ExportError::Failed(e.to_string())
}

/// One line for the live connections an export left, by reason:
/// "2 connections: refbroker/1 carries no TLS connection; 1 connection:
/// in the middle of its TLS handshake".
fn left_why(reasons: &BTreeMap<String, usize>) -> Option<String> {
    let parts: Vec<String> = reasons
        .iter()
        .map(|(why, n)| {
            let s = if *n == 1 { "" } else { "s" };
            format!("{n} connection{s}: {why}")
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
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
        schema: Schema,
        deadline: Instant,
    ) -> Result<Exported, ExportError> {
        if self.frozen.is_some() {
            return Err(ExportError::Failed("already frozen".into()));
        }
        if schema.carries_tls() {
            self.finish_handshakes();
        }
        let now = Instant::now();
        let (moving, left, reasons) = self.choose(schema);
        self.frozen = Some((moving.clone(), now));
        self.schema = schema;
        let shared = serde_json::to_vec(&self.broker.export_shared(schema)).map_err(failed)?;
        let mut tx = Sender::begin(ch, schema.name(), &shared, moving.len()).map_err(failed)?;
        let mut stripped = 0;
        for chunk in moving.chunks(MAX_BATCH_FDS) {
            // Each packet may wait only for what is left of the deadline.
            let rest = deadline.saturating_duration_since(Instant::now());
            if rest.is_zero() || ch.set_timeout(rest).is_err() {
                return Err(failed("the deadline passed"));
            }
            // Frozen a batch at a time: the first batch leaves at once,
            // and the importer takes it in while the next is frozen.
            let mut states = Vec::with_capacity(chunk.len());
            for t in chunk {
                states.push(self.freeze_one(*t, schema, now, &mut stripped)?);
            }
            let items: Vec<(BorrowedFd<'_>, &[u8])> = chunk
                .iter()
                .zip(&states)
                .filter_map(|(t, s)| Some((self.conns.map.get(t)?.transport.fd(), &s[..])))
                .collect();
            let sent = match items.len() == chunk.len() {
                true => tx.batch(&items).map_err(failed),
                false => Err(failed("a frozen connection went away")),
            };
            for s in &mut states {
                wipe(s);
            }
            sent?;
        }
        tx.end().map_err(failed)?;
        if stripped > 0 {
            self.broker.log(format_args!(
                "{stripped} messages of moved sessions lose their MQTT 5 properties and expiry: {schema} carries none"
            ));
        }
        Ok(Exported {
            conns: moving.len(),
            left,
            left_why: left_why(&reasons),
        })
    }

    /// Gives TLS handshakes in flight up to [`HANDSHAKE_GRACE`] to finish,
    /// so that they can move: the TLS layer only (what it decrypts stays
    /// unparsed in the input queue; no MQTT packet is handled, no other
    /// connection is read). A handshake not begun moves as its bytes; one
    /// still in flight after the grace stays, and drains.
    fn finish_handshakes(&mut self) {
        let until = Instant::now() + HANDSHAKE_GRACE;
        loop {
            let pending: Vec<usize> = self
                .conns
                .map
                .iter()
                .filter(|(_, c)| !c.closing() && !c.transport.movable())
                .map(|(t, _)| *t)
                .collect();
            if pending.is_empty() || Instant::now() >= until {
                return;
            }
            for t in pending {
                let Some(c) = self.conns.map.get_mut(&t) else {
                    continue;
                };
                let _ = c.transport.write(&mut c.out);
                let reading = c
                    .transport
                    .read(Some(&mut c.inbuf), &mut self.scratch, READ_TURN);
                let _ = c.transport.write(&mut c.out);
                // A connection that ended meanwhile (a refused upgrade,
                // a close frame, a reset) closes here; it does not move.
                match reading.end {
                    ReadEnd::Eof => self.end(t, End::Eof),
                    ReadEnd::Failed(e) => self.end(t, End::Lost(format!("connection lost: {e}"))),
                    ReadEnd::Drained | ReadEnd::Turn => {}
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Which connections go in `schema`; how many stay, and why live
    /// ones do (an MQTT 5 session before `refbroker/3`, a TLS connection
    /// in `refbroker/1`, or in the middle of its handshake).
    fn choose(&mut self, schema: Schema) -> (Vec<usize>, usize, BTreeMap<String, usize>) {
        let mut tokens: Vec<usize> = self.conns.map.keys().copied().collect();
        tokens.sort_unstable();
        let mut moving = Vec::with_capacity(tokens.len());
        let mut left = 0;
        let mut reasons = BTreeMap::new();
        for t in tokens {
            let Some(c) = self.conns.map.get(&t).filter(|c| !c.closing()) else {
                left += 1;
                continue;
            };
            let why = match c.transport.kind() {
                _ if self.broker.level_of(t).is_v5() && !schema.carries_mqtt5() => {
                    Some(format!("{schema} carries no MQTT 5 session"))
                }
                Kind::Tcp => None,
                Kind::Ssl if !schema.carries_tls() => {
                    Some(format!("{schema} carries no TLS connection"))
                }
                Kind::Ssl if !c.transport.movable() => Some(Unmovable::Handshaking.to_string()),
                Kind::Ssl => None,
                Kind::Ws | Kind::Wss if !schema.carries_websocket() => {
                    Some(format!("{schema} carries no WebSocket connection"))
                }
                Kind::Wss if !c.transport.movable() => Some(Unmovable::Handshaking.to_string()),
                Kind::Ws | Kind::Wss => None,
            };
            match why {
                None if self.broker.has_client(t) => moving.push(t),
                None => left += 1,
                Some(why) => {
                    left += 1;
                    *reasons.entry(why).or_insert(0) += 1;
                }
            }
        }
        (moving, left, reasons)
    }

    /// Freezes connection `t` (its TLS state serialized) and encodes
    /// what it carries in `schema`, frozen at `now`.
    fn freeze_one(
        &mut self,
        t: usize,
        schema: Schema,
        now: Instant,
        stripped: &mut usize,
    ) -> Result<Vec<u8>, ExportError> {
        let client = self
            .broker
            .export_client(t, schema, stripped)
            .ok_or_else(|| failed("a frozen connection lost its client"))?;
        let Some(c) = self.conns.map.get_mut(&t) else {
            return Err(failed("a frozen connection went away"));
        };
        let tls = c.transport.freeze().map_err(failed)?;
        let state = ConnStateRef {
            client: &client,
            inbuf: &c.inbuf,
            out: c.out.pending(),
            connected: c.connected,
            keep_alive: c.keep_alive,
            idle_ms: now.duration_since(c.last_read).as_millis() as u64,
            transport: c.transport.kind(),
            tls: tls.as_ref(),
            ws: c.transport.ws_state(),
        };
        serde_json::to_vec(&state).map_err(failed)
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
        let mut lost = Vec::new();
        for (t, c) in self.conns.map.iter_mut() {
            // A frozen TLS connection continues from its kept state.
            if let Err(e) = c.transport.thaw() {
                lost.push((*t, e));
            }
            c.opened += paused;
            c.last_read += paused;
            if let Some(t) = c.closing_since.as_mut() {
                *t += paused;
            }
        }
        for (t, e) in lost {
            self.end(
                t,
                End::Lost(format!("its TLS state could not be restored: {e}")),
            );
        }
        // Moved in with a login this broker's files refuse: closed first.
        for (t, code) in self.broker.take_refused() {
            let why = format!("its login is refused by this broker's files ({code})");
            self.end(t, End::Refused(code, why));
        }
        for (listener, stream) in std::mem::take(&mut self.held) {
            self.serve(&listener, stream);
        }
        self.accept_again.extend(0..self.listeners.len());
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
        self.broker.moved_out(self.schema);
        self.thaw();
        moved.len()
    }

    /// Begins taking over another broker's state: the broker-wide part
    /// first; the loop stays frozen (the imported connections are served
    /// from the thaw, which comes after the exporter's go: two brokers
    /// never serve one socket).
    pub(super) fn import_shared(&mut self, shared: SharedState, schema: Schema) {
        if self.frozen.is_none() {
            self.frozen = Some((Vec::new(), Instant::now()));
        }
        self.schema = schema;
        if self.import_error.is_none() {
            self.import_error = self.broker.import_shared(&shared, schema).err();
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

    /// The import is whole: how many connections it took and how many
    /// of them its policy refuses (closed once served), or its first
    /// error, after which every connection imported is dropped again
    /// (the exporter still has its own) and the loop carries on; the
    /// shared state stays, as an importer that failed is not used.
    pub(super) fn import_end(&mut self) -> Result<Imported, ImportError> {
        match self.import_error.take() {
            Some(e) => {
                self.discard();
                Err(e)
            }
            None => {
                self.broker.imported();
                Ok(Imported {
                    connections: self.imported.len(),
                    refused: self.broker.refused.len(),
                })
            }
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
        let MovedConn {
            mut transport,
            state: s,
        } = m;
        let t = self.next;
        self.next += 1;
        self.poll
            .registry()
            .register(transport.source(), Token(t), Interest::READABLE)
            .map_err(invalid)?;
        if let Err(e) = self.broker.import_client(t, &s.client, self.schema) {
            let _ = self.poll.registry().deregister(transport.source());
            return Err(e);
        }
        let tls = transport.is_tls().then(|| transport.peer_cn());
        self.broker.recheck_moved(t, tls);
        if let (Some(cn), Some(session)) = (transport.peer_cn(), &s.client.session) {
            self.broker.debug(format_args!(
                "client {:?} moved in over TLS, certificate CN {cn:?}",
                session.id
            ));
        }
        let carried = Carried {
            inbuf: s.inbuf,
            out: s.out,
            connected: s.connected,
            keep_alive: s.keep_alive,
            idle: Duration::from_millis(s.idle_ms),
            // Its packets are read at the level of its CONNECT.
            level: self.broker.level_of(t),
        };
        let conn = Conn::new(transport, now, carried);
        self.conns.map.insert(t, Box::new(conn));
        Ok(t)
    }
}
