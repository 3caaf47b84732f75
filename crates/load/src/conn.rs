//! One non-blocking client connection: connect in progress, bytes in and
//! out, packets decoded from what arrived.

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use emqx_mqtt::{decode, Packet, PacketError};
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

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
    /// directions under `token`.
    pub fn open(addr: SocketAddr, registry: &Registry, token: Token) -> io::Result<Conn> {
        let mut stream = TcpStream::connect(addr)?;
        registry.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)?;
        Ok(Conn {
            stream,
            inbuf: Vec::new(),
            in_at: 0,
            out: Vec::new(),
            out_at: 0,
            connected: false,
        })
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
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Queues one packet; [`Conn::flush`] writes it.
    pub fn send(&mut self, p: &Packet) {
        self.out.extend_from_slice(&p.encode());
    }

    /// Half-closes: the broker reads EOF after what was sent.
    pub fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
    }

    /// Bytes queued and not yet written.
    pub fn backlog(&self) -> usize {
        self.out.len() - self.out_at
    }

    /// Writes what is queued until the socket is full.
    pub fn flush(&mut self) -> Io {
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

    /// Reads what arrived until the socket is empty.
    pub fn fill(&mut self) -> Io {
        let mut chunk = [0u8; CHUNK];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Io::Eof,
                Ok(n) => self.inbuf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Io::Open,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Io::Failed(e),
            }
        }
    }

    /// The next complete packet that arrived, if any.
    pub fn packet(&mut self) -> Result<Option<Packet>, PacketError> {
        match decode(&self.inbuf[self.in_at..], MAX_PACKET)? {
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
