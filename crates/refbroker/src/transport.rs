//! The one layer between a connection's socket and its MQTT byte queues,
//! in the spirit of sozu's `SocketHandler`: a [`Transport`] reads the
//! peer's bytes into the connection's input queue, writes its [`Output`]
//! queue, says whether it wants to write, ends the write side (FIN), and
//! lends or takes the descriptor when the connection moves. Nothing else
//! in the broker touches a socket.
//!
//! Plain TCP ([`Tcp`]) is the first transport. TLS comes next and sits
//! the same way: it reads raw ciphertext into a queue of its own, feeds
//! s2n-tls whole records and appends the plaintext to the input queue;
//! it encrypts the output queue into its own ciphertext queue, so at a
//! packet boundary s2n holds nothing and the unsent and unparsed
//! ciphertext move as bytes. WebSocket sits between TLS (or the socket)
//! and MQTT. Each is a [`Kind`], which a moved connection's state records.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use mio::event::Source;
use mio::net::TcpStream;
use serde::{Deserialize, Serialize};

/// What a connection runs over, as its exported state records it.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Plain TCP: the MQTT bytes are the socket's bytes.
    #[default]
    Tcp,
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
    /// queue).
    pub bytes: usize,
    /// Why it stopped.
    pub end: ReadEnd,
}

/// Between one connection's socket and its MQTT byte queues.
pub trait Transport {
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
}

/// A transport of `kind` on a descriptor received from another broker.
pub fn adopt(kind: Kind, fd: OwnedFd) -> io::Result<Box<dyn Transport>> {
    match kind {
        Kind::Tcp => Ok(Box::new(Tcp::adopt(fd)?)),
    }
}

/// Plain TCP.
pub struct Tcp {
    stream: TcpStream,
}

impl Tcp {
    /// A connection from an acceptor, made non-blocking with Nagle off,
    /// and its peer's address (known even when it cannot be served).
    pub fn accept(stream: std::net::TcpStream) -> (Option<SocketAddr>, io::Result<Tcp>) {
        let peer = stream.peer_addr().ok();
        let _ = stream.set_nodelay(true);
        let tcp = stream.set_nonblocking(true).map(|()| Tcp {
            stream: TcpStream::from_std(stream),
        });
        (peer, tcp)
    }

    /// A connection received from another broker.
    pub fn adopt(fd: OwnedFd) -> io::Result<Tcp> {
        let stream = std::net::TcpStream::from(fd);
        stream.set_nonblocking(true)?;
        Ok(Tcp {
            stream: TcpStream::from_std(stream),
        })
    }
}

impl Transport for Tcp {
    fn kind(&self) -> Kind {
        Kind::Tcp
    }

    fn source(&mut self) -> &mut dyn Source {
        &mut self.stream
    }

    fn read(
        &mut self,
        mut input: Option<&mut Vec<u8>>,
        scratch: &mut [u8],
        limit: usize,
    ) -> Reading {
        let mut bytes = 0;
        let end = loop {
            match self.stream.read(scratch) {
                Ok(0) => break ReadEnd::Eof,
                Ok(n) => {
                    if let Some(input) = input.as_mut() {
                        input.extend_from_slice(&scratch[..n]);
                    }
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

    fn write(&mut self, out: &mut Output) -> io::Result<()> {
        while !out.is_empty() {
            match self.stream.write(out.pending()) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "the connection accepts no more bytes",
                    ))
                }
                Ok(n) => out.consume(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn unsent(&self, out: &Output) -> usize {
        out.len()
    }

    fn close(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }
}

#[cfg(test)]
mod tests {
    //! Plain TCP over a loopback pair: what is read lands in the input
    //! queue (or nowhere, for a closing connection), the output queue
    //! drains into the socket, and FIN is the peer's end of stream.

    use std::io::{Read as _, Write as _};
    use std::net::TcpListener;
    use std::time::{Duration, Instant};

    use super::*;

    fn pair() -> (Tcp, std::net::TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let (ours, _) = l.accept().unwrap();
        let (addr, tcp) = Tcp::accept(ours);
        assert_eq!(addr, Some(peer.local_addr().unwrap()));
        (tcp.unwrap(), peer)
    }

    /// Reads until `want` bytes came or the peer's end (a non-blocking
    /// socket may see them a moment later).
    fn read_some(tcp: &mut Tcp, input: &mut Vec<u8>, want: usize) -> ReadEnd {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut scratch = [0u8; 4];
        loop {
            let r = tcp.read(Some(input), &mut scratch, 1 << 20);
            match r.end {
                ReadEnd::Drained if input.len() < want && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                end => return end,
            }
        }
    }

    #[test]
    fn tcp_reads_into_the_input_queue_and_writes_the_output_queue() {
        let (mut tcp, mut peer) = pair();
        assert_eq!(tcp.kind(), Kind::Tcp);
        peer.write_all(b"hello").unwrap();
        let mut input = b"x".to_vec();
        assert!(matches!(
            read_some(&mut tcp, &mut input, 6),
            ReadEnd::Drained
        ));
        assert_eq!(input, b"xhello", "appended through a small scratch");
        let mut out = Output::from_vec(b"ab".to_vec());
        out.push(b"cd");
        assert!(tcp.wants_write(&out));
        tcp.write(&mut out).unwrap();
        assert_eq!((tcp.unsent(&out), tcp.wants_write(&out)), (0, false));
        out.release();
        let mut got = [0u8; 4];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"abcd");
        tcp.close();
        assert_eq!(peer.read(&mut got).unwrap(), 0, "FIN after the bytes");
    }

    #[test]
    fn a_closing_read_drops_the_bytes_and_finds_the_end() {
        let (mut tcp, mut peer) = pair();
        peer.write_all(b"late").unwrap();
        drop(peer);
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut scratch = [0u8; 64];
        let mut bytes = 0;
        loop {
            let r = tcp.read(None, &mut scratch, 1 << 20);
            bytes += r.bytes;
            match r.end {
                ReadEnd::Eof => break,
                ReadEnd::Drained if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(bytes, 4, "read, and dropped");
    }

    #[test]
    fn a_read_stops_at_the_turn_limit() {
        let (mut tcp, mut peer) = pair();
        peer.write_all(&[7u8; 64]).unwrap();
        let mut input = Vec::new();
        let mut scratch = [0u8; 8];
        let deadline = Instant::now() + Duration::from_secs(5);
        let r = loop {
            let r = tcp.read(Some(&mut input), &mut scratch, 16);
            if r.bytes > 0 || Instant::now() > deadline {
                break r;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        assert!(matches!(r.end, ReadEnd::Turn), "{r:?}");
        assert_eq!((r.bytes, input.len()), (16, 16));
    }
}
