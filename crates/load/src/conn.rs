//! One non-blocking client connection: connect in progress, bytes in and
//! out, packets decoded from what arrived; over TLS ([`emqx_tls::Engine`],
//! its handshake a state of the connection) or plain TCP, with WebSocket
//! on top or not ([`WsLink`]); at MQTT 3.1.1 or 5 ([`Conn::set_level`]).

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use emqx_mqtt::{decode_as, Level, Packet, PacketError};
use emqx_tls::{Engine, Progress, Side, TlsConfig};
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::ws::{Inbound, WsLink};

/// Largest packet the load clients accept.
pub const MAX_PACKET: usize = 1 << 20;
/// Bytes read per read() call.
const CHUNK: usize = 16 * 1024;

/// A connection and its buffers.
pub struct Conn {
    stream: TcpStream,
    inbuf: Vec<u8>,
    in_at: usize,
    out: Vec<u8>,
    out_at: usize,
    pub connected: bool,
    /// TLS between the socket and the queues above (which hold MQTT
    /// bytes: what is queued before the handshake ends waits for it).
    tls: Option<Engine>,
    /// The protocol level packets are written and read at.
    level: Level,
    /// WebSocket between the MQTT queues and the socket (or TLS).
    ws: Option<WsLink>,
    /// With WebSocket: bytes from the server not yet taken by the link.
    ws_in: Vec<u8>,
}

/// How the connection stands after I/O.
#[derive(Debug)]
pub enum Io {
    Open,
    /// The peer closed its end (FIN).
    Eof,
    Failed(io::Error),
}

impl Conn {
    /// Starts a non-blocking connect to `addr`, registered for both
    /// directions under `token`; over TLS with `tls`; MQTT over WebSocket
    /// at `ws_path` if given.
    pub fn open(
        addr: SocketAddr,
        registry: &Registry,
        token: Token,
        tls: Option<&TlsConfig>,
        ws_path: Option<&str>,
    ) -> io::Result<Conn> {
        let tls = match tls {
            Some(config) => Some(
                Engine::new(config, Side::Client, Some("localhost")).map_err(io::Error::other)?,
            ),
            None => None,
        };
        let mut stream = TcpStream::connect(addr)?;
        registry.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)?;
        Ok(Conn {
            stream,
            inbuf: Vec::new(),
            in_at: 0,
            out: Vec::new(),
            out_at: 0,
            connected: false,
            tls,
            level: Level::V311,
            ws: ws_path.map(|path| WsLink::new(&addr.to_string(), path)),
            ws_in: Vec::new(),
        })
    }

    /// Speaks `level` from now on (3.1.1 until then).
    pub fn set_level(&mut self, level: Level) {
        self.level = level;
    }

    /// Whether it runs over TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Whether it runs MQTT over WebSocket.
    pub fn is_ws(&self) -> bool {
        self.ws.is_some()
    }

    /// After a readiness event while connecting: `Ok(true)` once the
    /// connection is established, `Ok(false)` while still in progress.
    pub fn check_connected(&mut self) -> io::Result<bool> {
        if let Some(e) = self.stream.take_error()? {
            return Err(e);
        }
        match self.stream.peer_addr() {
            Ok(peer) => {
                // On loopback a connect to a port nobody listens on can
                // pick that very port as its source and connect to itself
                // (TCP simultaneous open): nobody is listening, a refusal.
                if self.stream.local_addr().ok() == Some(peer) {
                    return Err(io::ErrorKind::ConnectionRefused.into());
                }
                let _ = self.stream.set_nodelay(true);
                self.connected = true;
                // The ClientHello goes out with the next flush, and the
                // upgrade request (after the handshake, over TLS).
                if let Some(tls) = self.tls.as_mut() {
                    tls.process(&mut self.inbuf).map_err(io::Error::other)?;
                }
                if let Some(ws) = self.ws.as_ref() {
                    self.out.extend_from_slice(&ws.request());
                }
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Queues one packet; [`Conn::flush`] writes it.
    pub fn send(&mut self, p: &Packet) {
        let bytes = p.encode_as(self.level);
        match self.ws.as_mut() {
            Some(ws) => ws.send(&bytes, &mut self.out),
            None => self.out.extend_from_slice(&bytes),
        }
    }

    /// Half-closes: the broker reads EOF after what was sent (over
    /// WebSocket, after a close frame; over TLS, after a close_notify).
    pub fn shutdown_write(&mut self) {
        if let Some(ws) = self.ws.as_mut() {
            ws.close(&mut self.out);
            let _ = self.flush();
        }
        if let Some(tls) = self.tls.as_mut() {
            tls.close_notify();
            let _ = tls.write_to(&mut self.stream);
        }
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
    }

    /// Bytes queued and not yet written.
    pub fn backlog(&self) -> usize {
        self.out.len() - self.out_at + self.tls.as_ref().map_or(0, |t| t.outgoing_len())
    }

    /// Writes what is queued until the socket is full.
    pub fn flush(&mut self) -> Io {
        if let Some(tls) = self.tls.as_mut() {
            if tls.established() && self.out_at < self.out.len() {
                if let Err(e) = tls.send(&self.out[self.out_at..]) {
                    return Io::Failed(io::Error::other(e));
                }
                self.out.clear();
                self.out_at = 0;
            }
            return match tls.write_to(&mut self.stream) {
                Ok(()) => Io::Open,
                Err(e) => Io::Failed(e),
            };
        }
        while self.out_at < self.out.len() {
            match self.stream.write(&self.out[self.out_at..]) {
                Ok(0) => return Io::Failed(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.out_at += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Io::Failed(e),
            }
        }
        if self.out_at == self.out.len() {
            self.out.clear();
            self.out_at = 0;
        } else if self.out_at > 64 * 1024 {
            self.out.drain(..self.out_at);
            self.out_at = 0;
        }
        Io::Open
    }

    /// Reads what arrived until the socket is empty (over TLS: and
    /// decrypts it; over WebSocket: and takes the frames apart).
    pub fn fill(&mut self) -> Io {
        let mut chunk = [0u8; CHUNK];
        let io = loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => break Io::Eof,
                Ok(n) => match (self.tls.as_mut(), self.ws.is_some()) {
                    (Some(tls), _) => tls.incoming().extend_from_slice(&chunk[..n]),
                    (None, true) => self.ws_in.extend_from_slice(&chunk[..n]),
                    (None, false) => self.inbuf.extend_from_slice(&chunk[..n]),
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Io::Open,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Io::Failed(e),
            }
        };
        let io = match self.tls.as_mut() {
            None => io,
            Some(tls) => {
                let plain = match self.ws {
                    Some(_) => &mut self.ws_in,
                    None => &mut self.inbuf,
                };
                match (tls.process(plain), io) {
                    (Err(e), _) => return Io::Failed(io::Error::other(e)),
                    (Ok(Progress::Closed), Io::Open) => Io::Eof,
                    (Ok(_), io) => io,
                }
            }
        };
        let Some(ws) = self.ws.as_mut() else {
            return io;
        };
        let received = ws.receive(&self.ws_in, &mut self.inbuf, &mut self.out);
        self.ws_in.clear();
        match (received, io) {
            (Err(e), _) => Io::Failed(io::Error::other(e)),
            (Ok(Inbound::Closed), _) => {
                // Our close frame answers the server's (RFC 6455 §5.5.1)
                // before the connection is dropped.
                let _ = self.flush();
                Io::Eof
            }
            (Ok(Inbound::Open), io) => io,
        }
    }

    /// The next complete packet that arrived, if any.
    pub fn packet(&mut self) -> Result<Option<Packet>, PacketError> {
        match decode_as(&self.inbuf[self.in_at..], MAX_PACKET, self.level)? {
            Some((p, n)) => {
                self.in_at += n;
                if self.in_at == self.inbuf.len() {
                    self.inbuf.clear();
                    self.in_at = 0;
                }
                Ok(Some(p))
            }
            None => {
                if self.in_at > 0 {
                    self.inbuf.drain(..self.in_at);
                    self.in_at = 0;
                }
                Ok(None)
            }
        }
    }
}
