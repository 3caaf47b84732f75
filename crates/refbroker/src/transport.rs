//! The one layer between a connection's socket and its MQTT byte queues,
//! in the spirit of sozu's `SocketHandler`: a [`Transport`] reads the
//! peer's bytes into the connection's input queue, writes its [`Output`]
//! queue, says whether it wants to write, ends the write side (FIN), and
//! lends or takes the descriptor when the connection moves. Nothing else
//! in the broker touches a socket.
//!
//! Plain TCP ([`Tcp`]) and TLS ([`Tls`]). TLS reads raw ciphertext into
//! a queue of its own, feeds s2n-tls whole records and appends the
//! plaintext to the input queue; it encrypts the output queue into its
//! own ciphertext queue, so at a packet boundary s2n holds nothing and
//! the unsent and unparsed ciphertext move as bytes ([`emqx_tls`]).
//! WebSocket ([`Ws`]) sits between TLS (or the socket) and MQTT. Each is a
//! [`Kind`], which a moved connection's state records; a transport's
//! own state beyond its queues ([`Transport::freeze`]) moves with it.

mod tcp;
mod tls;
mod ws;

pub use tcp::Tcp;
pub use tls::Tls;
pub use ws::{Ws, WsState};

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{BorrowedFd, OwnedFd};

use emqx_tls::{Spares, TlsConfig, TlsState};
use mio::event::Source;
use serde::{Deserialize, Serialize};

use crate::settings::ListenerKind;

/// What a connection runs over, as its exported state records it.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Plain TCP: the MQTT bytes are the socket's bytes.
    #[default]
    Tcp,
    /// TLS (s2n-tls), its state carried serialized.
    Ssl,
    /// WebSocket over plain TCP, its state carried ([`WsState`]).
    Ws,
    /// WebSocket over TLS, both states carried.
    Wss,
}

impl Kind {
    /// Plain TCP, which the state of a moved connection leaves unsaid
    /// (as `refbroker/1` always did).
    pub fn is_tcp(&self) -> bool {
        *self == Kind::Tcp
    }
}

/// Bytes queued for the peer and not yet handed to the transport's
/// socket, oldest first.
#[derive(Debug, Default)]
pub struct Output {
    buf: Vec<u8>,
    /// How much of `buf` is written.
    at: usize,
}

impl Output {
    /// A queue holding `bytes` (a moved connection's unsent output).
    pub fn from_vec(bytes: Vec<u8>) -> Output {
        Output { buf: bytes, at: 0 }
    }

    /// Queues `bytes` after the rest.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The bytes not yet written.
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.at..]
    }

    /// How many bytes are not yet written.
    pub fn len(&self) -> usize {
        self.buf.len() - self.at
    }

    /// Whether every byte is written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `n` more bytes are written; a queue written whole starts over
    /// (keeping its buffer for the rest of the turn).
    fn consume(&mut self, n: usize) {
        self.at += n;
        if self.at == self.buf.len() {
            self.buf.clear();
            self.at = 0;
        }
    }

    /// Frees the buffer of a queue written whole: an idle connection
    /// holds none.
    pub fn release(&mut self) {
        if self.is_empty() {
            self.buf = Vec::new();
            self.at = 0;
        }
    }
}

/// How a read stopped.
#[derive(Debug)]
pub enum ReadEnd {
    /// Nothing more to read for now.
    Drained,
    /// The turn's limit was reached: there may be more.
    Turn,
    /// The peer's end of stream.
    Eof,
    /// The connection failed.
    Failed(io::Error),
}

/// What one read did.
#[derive(Debug)]
pub struct Reading {
    /// Bytes read off the socket (what was kept of them is in the input
    /// queue); over WebSocket the MQTT bytes of its frames, so that
    /// control frames do not count as the client's activity.
    pub bytes: usize,
    /// Why it stopped.
    pub end: ReadEnd,
}

/// Between one connection's socket and its MQTT byte queues.
pub trait Transport: Send {
    /// What it is, for the connection's exported state.
    fn kind(&self) -> Kind;

    /// What the event loop registers with its poll (the socket's
    /// readiness: a transport never blocks).
    fn source(&mut self) -> &mut dyn Source;

    /// Reads what the peer sent, up to about `limit` bytes this turn,
    /// through `scratch`, appending the MQTT bytes to `input` (`None`:
    /// read and drop them, for a closing connection).
    fn read(&mut self, input: Option<&mut Vec<u8>>, scratch: &mut [u8], limit: usize) -> Reading;

    /// Writes as much of `out` as the socket takes now; an error ends the
    /// connection.
    fn write(&mut self, out: &mut Output) -> io::Result<()>;

    /// Bytes of `out`, and any of its own, not yet written to the socket.
    fn unsent(&self, out: &Output) -> usize;

    /// Whether it waits for the socket to take more bytes.
    fn wants_write(&self, out: &Output) -> bool {
        self.unsent(out) > 0
    }

    /// Ends the write side (FIN) once everything queued is written; the
    /// peer's end of stream is still read. Never for a connection that
    /// moved: dropping the transport closes only this process's
    /// descriptor.
    fn close(&mut self);

    /// The socket, lent for export (the importer receives its own copy;
    /// this one closes when the transport is dropped).
    fn fd(&self) -> BorrowedFd<'_>;

    /// Stops for a move at a packet boundary: the state it carries beyond
    /// the socket and the two queues (none for plain TCP), or why it
    /// cannot move now. Nothing is read or written until [`Transport::thaw`]
    /// or the drop.
    fn freeze(&mut self) -> Result<Option<TlsState>, Unmovable> {
        Ok(None)
    }

    /// The move did not happen: carry on as before the freeze.
    fn thaw(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// The peer certificate's common name (TLS with a client certificate).
    fn peer_cn(&self) -> Option<&str> {
        None
    }

    /// Whether it is TLS (its client may be named by its certificate).
    fn is_tls(&self) -> bool {
        false
    }

    /// In the middle of a handshake (TLS): its reads cost CPU, and the
    /// loop takes only so many per turn.
    fn handshaking(&self) -> bool {
        false
    }

    /// Whether [`Transport::freeze`] can take it now (not in the middle
    /// of a TLS handshake).
    fn movable(&self) -> bool {
        true
    }

    /// Everything is written: free what buffers it can (an idle
    /// connection holds as little as possible).
    fn release(&mut self) {}

    /// Its WebSocket state, to move (WebSocket only; call after
    /// [`Transport::freeze`]).
    fn ws_state(&self) -> Option<WsState> {
        None
    }
}

/// Reads `stream` through `scratch` until it would block, ends, fails
/// or gave about `limit` bytes, handing each chunk to `sink`: the one
/// read loop of every transport.
fn read_socket(
    stream: &mut mio::net::TcpStream,
    scratch: &mut [u8],
    limit: usize,
    mut sink: impl FnMut(&[u8]),
) -> Reading {
    use std::io::Read;
    let mut bytes = 0;
    let end = loop {
        match stream.read(scratch) {
            Ok(0) => break ReadEnd::Eof,
            Ok(n) => {
                sink(&scratch[..n]);
                bytes += n;
                if bytes >= limit {
                    break ReadEnd::Turn;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break ReadEnd::Drained,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break ReadEnd::Failed(e),
        }
    };
    Reading { bytes, end }
}

/// Why a connection cannot move now (it drains instead).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unmovable {
    /// Its TLS handshake is not done.
    Handshaking,
    /// The TLS library would not serialize it (why).
    Tls(String),
}

impl fmt::Display for Unmovable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unmovable::Handshaking => f.write_str("in the middle of its TLS handshake"),
            Unmovable::Tls(why) => write!(f, "its TLS state cannot be serialized: {why}"),
        }
    }
}

/// A transport of `kind` on a descriptor received from another broker,
/// with the TLS state it carried (TLS connections only; `config` is the
/// importer's TLS configuration, a bare one if it has no TLS listener)
/// and its WebSocket state (WebSocket connections only).
pub fn adopt(
    kind: Kind,
    fd: OwnedFd,
    tls: Option<&TlsState>,
    ws: Option<WsState>,
    config: Option<&TlsConfig>,
    spares: &mut Spares,
) -> io::Result<Box<dyn Transport>> {
    let inner: Box<dyn Transport> = match (kind, tls) {
        (Kind::Tcp | Kind::Ws, None) => Box::new(Tcp::adopt(fd)?),
        (Kind::Ssl | Kind::Wss, Some(state)) => match config {
            Some(config) => Box::new(Tls::adopt(fd, state, config, spares.take())?),
            None => {
                return Err(io::Error::other(
                    "no TLS configuration to continue it under",
                ))
            }
        },
        (Kind::Tcp | Kind::Ws, Some(_)) => {
            return Err(io::Error::other("a plain connection with a TLS state"))
        }
        (Kind::Ssl | Kind::Wss, None) => {
            return Err(io::Error::other("a TLS connection without its TLS state"))
        }
    };
    match (kind, ws) {
        (Kind::Ws | Kind::Wss, Some(state)) => Ok(Box::new(Ws::adopt(inner, state)?)),
        (Kind::Tcp | Kind::Ssl, None) => Ok(inner),
        (Kind::Ws | Kind::Wss, None) => Err(io::Error::other(
            "a WebSocket connection without its WebSocket state",
        )),
        (Kind::Tcp | Kind::Ssl, Some(_)) => Err(io::Error::other(
            "a connection with a WebSocket state it does not speak",
        )),
    }
}

/// A transport for a connection accepted on a listener of `kind` (`tls`:
/// the configuration of `ssl` and `wss` listeners; `path`: the HTTP path
/// of `ws` and `wss` ones), and its peer's address (known even when it
/// cannot be served).
pub fn accept(
    kind: ListenerKind,
    stream: std::net::TcpStream,
    tls: Option<&TlsConfig>,
    path: &str,
) -> (Option<SocketAddr>, io::Result<Box<dyn Transport>>) {
    let (peer, tcp) = Tcp::accept(stream);
    let secure = |tcp: Tcp| match tls {
        Some(config) => Tls::new(tcp, config).map(|t| Box::new(t) as Box<dyn Transport>),
        None => Err(io::Error::other(
            "a TLS listener without a TLS configuration",
        )),
    };
    let transport = match (kind, tcp) {
        (ListenerKind::Tcp, Ok(tcp)) => Ok(Box::new(tcp) as Box<dyn Transport>),
        (ListenerKind::Ssl, Ok(tcp)) => secure(tcp),
        (ListenerKind::Ws, Ok(tcp)) => {
            Ok(Box::new(Ws::new(Box::new(tcp), path)) as Box<dyn Transport>)
        }
        (ListenerKind::Wss, Ok(tcp)) => {
            secure(tcp).map(|t| Box::new(Ws::new(t, path)) as Box<dyn Transport>)
        }
        (_, Err(e)) => Err(e),
    };
    (peer, transport)
}
