//! A blocking MQTT client over the project's TLS engine (`emqx-tls`), for
//! tests and benchmarks that need what no stock client offers: writing
//! part of a record, reading nothing for a while, updating its keys on
//! demand, counting its handshakes.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use emqx_mqtt::{decode, Packet, ReasonCode};
use emqx_tls::{ClientFiles, Engine, Progress, Side, TlsConfig};

/// A client's TLS configuration trusting the CA file `ca`.
pub fn client_config(ca: &Path) -> TlsConfig {
    TlsConfig::client(&ClientFiles {
        ca: ca.to_path_buf(),
        identity: None,
    })
    .unwrap()
}

/// One connection: the socket, its engine, decrypted bytes not yet a
/// packet.
pub struct TlsClient {
    pub stream: TcpStream,
    pub engine: Engine,
    plain: Vec<u8>,
}

impl TlsClient {
    /// Handshakes with `addr` (no MQTT yet).
    pub fn handshake(addr: SocketAddr, config: &TlsConfig) -> io::Result<TlsClient> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        stream.set_nodelay(true)?;
        let engine =
            Engine::new(config, Side::Client, Some("localhost")).map_err(io::Error::other)?;
        let mut c = TlsClient {
            stream,
            engine,
            plain: Vec::new(),
        };
        while c.engine.process(&mut c.plain).map_err(io::Error::other)? == Progress::Handshaking {
            c.flush()?;
            c.fill()?;
        }
        c.flush()?;
        Ok(c)
    }

    /// Handshakes and CONNECTs as `id` (`clean`: a clean session); whether
    /// the broker had a session for it.
    pub fn connect(
        addr: SocketAddr,
        config: &TlsConfig,
        id: &str,
        clean: bool,
    ) -> io::Result<(TlsClient, bool)> {
        let mut c = TlsClient::handshake(addr, config)?;
        c.send(&Packet::connect(id, clean, 600))?;
        match c.recv()? {
            Packet::ConnAck {
                code: ReasonCode::SUCCESS,
                session_present,
                ..
            } => Ok((c, session_present)),
            other => Err(io::Error::other(format!("{id}: {other:?}"))),
        }
    }

    /// Writes what the engine has for the socket.
    pub fn flush(&mut self) -> io::Result<()> {
        self.engine.write_to(&mut self.stream)
    }

    /// Reads what the socket has (blocking for the first bytes, within
    /// its read timeout) and decrypts it.
    pub fn fill(&mut self) -> io::Result<()> {
        let mut buf = [0u8; 64 * 1024];
        let n = self.stream.read(&mut buf)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.engine.incoming().extend_from_slice(&buf[..n]);
        match self
            .engine
            .process(&mut self.plain)
            .map_err(io::Error::other)?
        {
            Progress::Closed => Err(io::ErrorKind::UnexpectedEof.into()),
            _ => Ok(()),
        }
    }

    /// The ciphertext of `p`, not yet written.
    pub fn encrypt(&mut self, p: &Packet) -> io::Result<Vec<u8>> {
        self.engine.send(&p.encode()).map_err(io::Error::other)?;
        let mut wire = Vec::new();
        self.engine.write_to(&mut wire)?;
        Ok(wire)
    }

    /// Encrypts and writes `p`.
    pub fn send(&mut self, p: &Packet) -> io::Result<()> {
        let wire = self.encrypt(p)?;
        self.stream.write_all(&wire)
    }

    /// The next packet (an error on a timeout, the end or a bad packet).
    pub fn recv(&mut self) -> io::Result<Packet> {
        loop {
            match decode(&self.plain, 1 << 21) {
                Ok(Some((p, n))) => {
                    self.plain.drain(..n);
                    return Ok(p);
                }
                Ok(None) => self.fill()?,
                Err(e) => return Err(io::Error::other(e.to_string())),
            }
        }
    }

    /// Subscribes to `topic` at QoS 1.
    pub fn subscribe(&mut self, topic: &str) -> io::Result<()> {
        self.send(&Packet::subscribe(1, [(topic, 1)]))?;
        match self.recv()? {
            Packet::SubAck { .. } => Ok(()),
            other => Err(io::Error::other(format!("{other:?}"))),
        }
    }
}
