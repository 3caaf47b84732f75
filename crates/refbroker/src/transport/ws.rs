//! MQTT over WebSocket on top of plain TCP (`ws`) or TLS (`wss`): the
//! inner transport carries the socket's bytes; this one answers the HTTP
//! upgrade, reads the client's frames with an [`emqx_ws::Reader`]
//! (binary payloads to the input queue, pings answered, a close echoed)
//! and frames the output queue into binary frames of its own queue,
//! which the inner transport writes. A request or a frame it refuses is
//! answered (an HTTP status, a close frame with RFC 6455's code) and ends
//! the connection. At a move its state beyond the queues ([`WsState`]:
//! an unfinished upgrade request, the frame reader, framed bytes not yet
//! written) goes along, and the importer continues it over the inner
//! transport it restores.

use std::io;
use std::os::fd::BorrowedFd;

use emqx_ws::frames::{self, Control, Side};
use emqx_ws::{server_upgrade, Reader, Upgrade};
use mio::event::Source;
use serde::{Deserialize, Serialize};

use super::{Kind, Output, ReadEnd, Reading, Transport, Unmovable};

/// The largest frame payload read: an MQTT packet as large as the broker
/// takes ([`crate::MAX_PACKET`]) and its header.
const MAX_FRAME: u64 = crate::MAX_PACKET as u64 + 5;
/// The most output bytes put in one frame: the backlog stays in the
/// output queue (where the broker's backpressure counts it and a move
/// carries it as any connection's), at most one frame in `framed`.
const OUT_FRAME: usize = 64 * 1024;

/// A WebSocket connection's state beyond its socket and MQTT queues, as
/// it moves (`refbroker/5`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WsState {
    /// The HTTP path its listener serves.
    pub path: String,
    /// The upgrade request read so far, while it is not whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrading: Option<Vec<u8>>,
    /// What was read of the client's frames.
    #[serde(default)]
    pub reader: Reader,
    /// The upgrade answer and frames not yet written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub framed: Vec<u8>,
    /// Refused or closed: nothing more is read.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub done: bool,
}

/// The longest upgrade request a moved state may hold.
const MAX_MOVED_REQUEST: usize = emqx_ws::handshake::MAX_REQUEST;

enum Phase {
    /// Reading the HTTP upgrade request (the bytes so far).
    Upgrading(Vec<u8>),
    /// Upgraded: frames both ways.
    Open,
    /// Refused or closed: nothing more is read into the input queue.
    Done,
}

/// WebSocket over another transport.
pub struct Ws {
    inner: Box<dyn Transport>,
    path: String,
    phase: Phase,
    reader: Reader,
    /// The upgrade answer and frames, not yet written by the inner
    /// transport.
    framed: Output,
    /// Raw bytes of one read.
    raw: Vec<u8>,
}

impl Ws {
    /// WebSocket for a connection just accepted on a listener serving
    /// `path`, over `inner` (TCP, or TLS for `wss`).
    pub fn new(inner: Box<dyn Transport>, path: &str) -> Ws {
        Ws {
            inner,
            path: path.to_string(),
            phase: Phase::Upgrading(Vec::new()),
            reader: Reader::default(),
            framed: Output::default(),
            raw: Vec::new(),
        }
    }

    /// A connection moved in with `state`, over `inner` restored.
    pub fn adopt(inner: Box<dyn Transport>, state: WsState) -> io::Result<Ws> {
        let bound = MAX_FRAME as usize + 14;
        let too_big = state
            .upgrading
            .as_ref()
            .is_some_and(|r| r.len() > MAX_MOVED_REQUEST)
            || state.reader.partial.len() > bound
            || state.framed.len() > OUT_FRAME + 2 * 14 + 125 + MAX_MOVED_REQUEST;
        if too_big {
            return Err(io::Error::other("a WebSocket state over its bounds"));
        }
        let phase = match (state.upgrading, state.done) {
            (_, true) => Phase::Done,
            (Some(request), false) => Phase::Upgrading(request),
            (None, false) => Phase::Open,
        };
        Ok(Ws {
            inner,
            path: state.path,
            phase,
            reader: state.reader,
            framed: Output::from_vec(state.framed),
            raw: Vec::new(),
        })
    }

    /// Reads what `raw` holds into `input`; the end the read should
    /// report instead of its own, if the WebSocket ends.
    fn take_in(&mut self, raw: &[u8], input: Option<&mut Vec<u8>>) -> Option<ReadEnd> {
        let rest = match &mut self.phase {
            // The common case: frames, read where they lie.
            Phase::Open => return self.frames_in(raw, input),
            Phase::Done => return None,
            Phase::Upgrading(request) => {
                request.extend_from_slice(raw);
                match server_upgrade(request, &self.path) {
                    Upgrade::Incomplete => return None,
                    Upgrade::Accepted {
                        consumed, response, ..
                    } => {
                        self.framed.push(&response);
                        let rest = request.split_off(consumed);
                        self.phase = Phase::Open;
                        rest
                    }
                    Upgrade::Refused { response, why, .. } => {
                        self.framed.push(&response);
                        self.phase = Phase::Done;
                        return Some(ReadEnd::Failed(io::Error::other(format!(
                            "WebSocket upgrade refused: {why}"
                        ))));
                    }
                }
            }
        };
        self.frames_in(&rest, input)
    }

    /// Reads frames: payloads to `input`, controls answered.
    fn frames_in(&mut self, bytes: &[u8], input: Option<&mut Vec<u8>>) -> Option<ReadEnd> {
        // Payloads go straight to the input queue (nowhere, closing: and
        // pings are not answered then, the connection is on its way out).
        let closing = input.is_none();
        let mut dropped = Vec::new();
        let data = input.unwrap_or(&mut dropped);
        let mut controls = Vec::new();
        let result = self
            .reader
            .feed(Side::Server, bytes, MAX_FRAME, data, &mut controls);
        let mut out = Vec::new();
        let mut end = None;
        for c in controls {
            match c {
                Control::Ping(payload) if !closing => frames::pong(&payload, None, &mut out),
                Control::Ping(_) => {}
                Control::Pong(_) => {}
                Control::Close(code) => {
                    // Echoed when it is one a peer may send, else 1002.
                    let echo = match code {
                        None => 1000,
                        Some(c) if sendable(c) => c,
                        Some(_) => 1002,
                    };
                    frames::close(echo, None, &mut out);
                    self.phase = Phase::Done;
                    end = Some(ReadEnd::Eof);
                }
            }
        }
        // After the peer's close, bytes that follow are ignored: one
        // close frame answers it.
        if let (Err(e), None) = (result, &end) {
            frames::close(e.close_code(), None, &mut out);
            self.phase = Phase::Done;
            end = Some(ReadEnd::Failed(io::Error::other(format!("WebSocket: {e}"))));
        }
        self.framed.push(&out);
        end
    }
}

impl Transport for Ws {
    fn kind(&self) -> Kind {
        match self.inner.is_tls() {
            true => Kind::Wss,
            false => Kind::Ws,
        }
    }

    fn source(&mut self) -> &mut dyn Source {
        self.inner.source()
    }

    fn read(
        &mut self,
        mut input: Option<&mut Vec<u8>>,
        scratch: &mut [u8],
        limit: usize,
    ) -> Reading {
        let mut raw = std::mem::take(&mut self.raw);
        raw.clear();
        let mut reading = self.inner.read(Some(&mut raw), scratch, limit);
        let before = input.as_deref().map_or(0, Vec::len);
        if let Some(end) = self.take_in(&raw, input.as_deref_mut()) {
            reading.end = end;
        }
        // MQTT bytes only: a client that sends nothing but WebSocket
        // pings is idle to MQTT's keep-alive (as in EMQX).
        reading.bytes = input.as_deref().map_or(0, Vec::len) - before;
        raw.clear();
        self.raw = raw;
        reading
    }

    fn write(&mut self, out: &mut Output) -> io::Result<()> {
        // After a close nothing more may be sent: what the broker still
        // queued is dropped, so the connection can end.
        if matches!(self.phase, Phase::Done) {
            out.consume(out.len());
        }
        loop {
            self.inner.write(&mut self.framed)?;
            if !self.framed.is_empty() || out.is_empty() || !matches!(self.phase, Phase::Open) {
                return Ok(());
            }
            // One frame at a time, as the socket takes them.
            let n = out.len().min(OUT_FRAME);
            let mut frame = Vec::with_capacity(n + 10);
            frames::binary(&out.pending()[..n], None, &mut frame);
            self.framed.push(&frame);
            out.consume(n);
        }
    }

    fn unsent(&self, out: &Output) -> usize {
        out.len() + self.inner.unsent(&self.framed)
    }

    fn close(&mut self) {
        if matches!(self.phase, Phase::Open) {
            let mut frame = Vec::new();
            frames::close(1000, None, &mut frame);
            self.framed.push(&frame);
            self.phase = Phase::Done;
            let _ = self.inner.write(&mut self.framed);
        }
        self.inner.close();
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.inner.fd()
    }

    fn freeze(&mut self) -> Result<Option<emqx_tls::TlsState>, Unmovable> {
        self.inner.freeze()
    }

    fn thaw(&mut self) -> io::Result<()> {
        self.inner.thaw()
    }

    fn ws_state(&self) -> Option<WsState> {
        Some(WsState {
            path: self.path.clone(),
            upgrading: match &self.phase {
                Phase::Upgrading(request) => Some(request.clone()),
                _ => None,
            },
            reader: self.reader.clone(),
            framed: self.framed.pending().to_vec(),
            done: matches!(self.phase, Phase::Done),
        })
    }

    fn peer_cn(&self) -> Option<&str> {
        self.inner.peer_cn()
    }

    fn is_tls(&self) -> bool {
        self.inner.is_tls()
    }

    fn handshaking(&self) -> bool {
        self.inner.handshaking()
    }

    fn movable(&self) -> bool {
        self.inner.movable()
    }

    fn release(&mut self) {
        self.framed.release();
        self.raw = Vec::new();
        self.inner.release();
    }
}

/// A close status a peer may send (RFC 6455 §7.4): 1000 to 1003, 1007 to
/// 1011, 3000 to 4999; never 1004 to 1006 or 1015.
fn sendable(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999)
}
