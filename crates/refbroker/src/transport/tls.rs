//! TLS on a TCP socket ([`emqx_tls::Engine`]): ciphertext is read into
//! the engine's queue and decrypted into the connection's input queue
//! whole records at a time; the output queue is encrypted into the
//! engine's outgoing queue and written from there. The handshake is the
//! connection's first state in the event loop, never a blocking call.

use std::io;
use std::net::Shutdown;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use emqx_tls::{Engine, EngineError, Progress, Side, Spare, TlsConfig, TlsState};
use mio::event::Source;
use mio::net::TcpStream;

use super::{read_socket, Kind, Output, ReadEnd, Reading, Tcp, Transport, Unmovable};

/// A TLS connection.
pub struct Tls {
    stream: TcpStream,
    engine: Engine,
}

fn other(e: EngineError) -> io::Error {
    io::Error::other(e)
}

impl Tls {
    /// A server connection on an accepted socket; the handshake follows.
    pub fn new(tcp: Tcp, config: &TlsConfig) -> io::Result<Tls> {
        Ok(Tls {
            stream: tcp.into_stream(),
            engine: Engine::new(config, Side::Server, None).map_err(other)?,
        })
    }

    /// A connection moved from another broker, as its state says.
    pub fn adopt(
        fd: OwnedFd,
        state: &TlsState,
        config: &TlsConfig,
        spare: Option<Spare>,
    ) -> io::Result<Tls> {
        let tcp = Tcp::adopt(fd)?;
        Ok(Tls {
            stream: tcp.into_stream(),
            engine: Engine::adopt_into(spare, config, Side::Server, state).map_err(other)?,
        })
    }

    /// The negotiated version (`TLSv1.2`, `TLSv1.3`), once established.
    pub fn version(&self) -> Option<&'static str> {
        self.engine.version()
    }
}

impl Transport for Tls {
    fn kind(&self) -> Kind {
        Kind::Ssl
    }

    fn source(&mut self) -> &mut dyn Source {
        &mut self.stream
    }

    fn read(&mut self, input: Option<&mut Vec<u8>>, scratch: &mut [u8], limit: usize) -> Reading {
        let engine = &mut self.engine;
        let Reading { bytes, mut end } = read_socket(&mut self.stream, scratch, limit, |b| {
            engine.incoming().extend_from_slice(b)
        });
        match input {
            // What came before the end of stream is still decrypted.
            Some(input) => match self.engine.process(input) {
                Ok(Progress::Closed) => {
                    if !matches!(end, ReadEnd::Failed(_)) {
                        end = ReadEnd::Eof;
                    }
                }
                Ok(Progress::Handshaking | Progress::Established) => {}
                Err(e) => end = ReadEnd::Failed(other(e)),
            },
            None => self.engine.incoming().clear(),
        }
        Reading { bytes, end }
    }

    fn write(&mut self, out: &mut Output) -> io::Result<()> {
        if self.engine.established() && !out.is_empty() {
            self.engine.send(out.pending()).map_err(other)?;
            out.consume(out.len());
        }
        self.engine.write_to(&mut self.stream)
    }

    fn unsent(&self, out: &Output) -> usize {
        out.len() + self.engine.outgoing_len()
    }

    fn close(&mut self) {
        self.engine.close_notify();
        let _ = self.engine.write_to(&mut self.stream);
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }

    fn freeze(&mut self) -> Result<Option<TlsState>, Unmovable> {
        match self.engine.freeze() {
            Ok(state) => Ok(Some(state)),
            Err(EngineError::Handshaking) => Err(Unmovable::Handshaking),
            Err(e) => Err(Unmovable::Tls(e.to_string())),
        }
    }

    fn thaw(&mut self) -> io::Result<()> {
        self.engine.thaw().map_err(other)
    }

    fn peer_cn(&self) -> Option<&str> {
        self.engine.peer_cn()
    }

    fn is_tls(&self) -> bool {
        true
    }

    fn handshaking(&self) -> bool {
        !self.engine.established()
    }

    fn movable(&self) -> bool {
        self.engine.movable()
    }

    fn release(&mut self) {
        self.engine.release_buffers();
    }
}
