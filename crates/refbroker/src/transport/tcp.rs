//! Plain TCP: the MQTT bytes are the socket's bytes.

use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use mio::event::Source;
use mio::net::TcpStream;

use super::{read_socket, Kind, Output, Reading, Transport};

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

    /// The socket, for a transport on top of it.
    pub fn into_stream(self) -> TcpStream {
        self.stream
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
        read_socket(&mut self.stream, scratch, limit, |bytes| {
            if let Some(input) = input.as_mut() {
                input.extend_from_slice(bytes);
            }
        })
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
    use crate::transport::ReadEnd;

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
