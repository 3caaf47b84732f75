//! One TLS connection between byte queues. The owner appends what the
//! socket gave to [`Engine::incoming`], calls [`Engine::process`] for the
//! plaintext, encrypts with [`Engine::send`] and writes
//! [`Engine::write_to`] to the socket. s2n reads only from whole records
//! handed to it and writes into the outgoing queue, which always takes
//! everything: so between calls it holds no partial record, no unread
//! plaintext and no unflushed output, and [`Engine::freeze`] serializes
//! an established connection at any moment.
//!
//! Serializing ends an s2n connection (its keys are wiped, so that no
//! nonce is ever used twice): the frozen engine keeps the blob and
//! [`Engine::thaw`] rebuilds itself from it if the move does not happen.

use std::cell::RefCell;
use std::ffi::c_void;
use std::io::{self, Write};
use std::task::Poll;

use nix::errno::Errno;
use s2n_tls::connection::Connection;
use s2n_tls::enums::{PeerKeyUpdate, Version};

use crate::config::TlsConfig;
use crate::identity::common_name;
use crate::secret::Secret;
use crate::spare::Spare;

mod moving;

pub use moving::TlsState;

/// The longest TLS record: a 5-byte header and at most 2^14 + 2048
/// bytes of ciphertext.
pub const MAX_RECORD: usize = 5 + (1 << 14) + 2048;

/// Which end of the connection this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Server,
    Client,
}

/// How a connection stands after [`Engine::process`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The handshake goes on.
    Handshaking,
    /// Established: application data flows.
    Established,
    /// The peer sent close_notify.
    Closed,
}

/// Why the engine cannot go on (the connection ends).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("not TLS (a record of type {0})")]
    NotTls(u8),
    #[error("a TLS record of {0} bytes (at most {MAX_RECORD})")]
    RecordTooLong(usize),
    #[error("TLS: {0}")]
    Tls(#[from] s2n_tls::error::Error),
    #[error("in the middle of its TLS handshake")]
    Handshaking,
    #[error("the TLS connection is frozen")]
    Frozen,
    #[error("TLS blocked writing into a queue that takes everything")]
    Blocked,
}

/// The queues s2n's I/O callbacks reach (through a pointer to the
/// `RefCell`, as s2n's own test harness does).
#[derive(Default)]
struct Pipe {
    /// Whole records handed to s2n, and how far it read them.
    feed: Vec<u8>,
    fed: usize,
    /// Ciphertext for the peer, and how much of it is written.
    out: Vec<u8>,
    sent: usize,
}

/// One TLS connection.
pub struct Engine {
    /// Declared before `pipe`: dropped first, while its context lives.
    conn: Option<Connection>,
    /// The connection a freeze serialized (it holds no keys any more):
    /// freed at the thaw or the drop, so that its cost (s2n wipes every
    /// buffer it frees) is never paid inside a move's pause.
    retired: Option<Connection>,
    pipe: Box<RefCell<Pipe>>,
    config: TlsConfig,
    side: Side,
    /// Ciphertext read off the socket and not yet a whole record.
    incoming: Vec<u8>,
    /// s2n has been given its first record (a server: the ClientHello)
    /// or has written its first (a client).
    started: bool,
    established: bool,
    /// Frozen: the serialized connection, kept for a thaw.
    frozen: Option<Secret>,
    peer_cn: Option<String>,
    server_name: Option<String>,
    version: Option<Version>,
}

/// s2n's receive callback: bytes of whole records only; none left is
/// "would block" (EAGAIN), never end of stream.
pub(crate) unsafe extern "C" fn recv_cb(ctx: *mut c_void, data: *mut u8, len: u32) -> i32 {
    // SAFETY: `ctx` is the engine's boxed RefCell<Pipe>, which outlives
    // its connection; only a shared reference is made.
    let pipe = unsafe { &*(ctx as *const RefCell<Pipe>) };
    let Ok(mut p) = pipe.try_borrow_mut() else {
        Errno::EIO.set();
        return -1;
    };
    let avail = p.feed.len() - p.fed;
    if avail == 0 {
        Errno::EAGAIN.set();
        return -1;
    }
    let n = avail.min(len as usize);
    // SAFETY: s2n passes a writable buffer of `len` bytes.
    let dst = unsafe { std::slice::from_raw_parts_mut(data, n) };
    let at = p.fed;
    dst.copy_from_slice(&p.feed[at..at + n]);
    p.fed += n;
    n as i32
}

/// s2n's send callback: everything goes into the outgoing queue.
pub(crate) unsafe extern "C" fn send_cb(ctx: *mut c_void, data: *const u8, len: u32) -> i32 {
    // SAFETY: as in `recv_cb`.
    let pipe = unsafe { &*(ctx as *const RefCell<Pipe>) };
    let Ok(mut p) = pipe.try_borrow_mut() else {
        Errno::EIO.set();
        return -1;
    };
    // SAFETY: s2n passes `len` readable bytes.
    let src = unsafe { std::slice::from_raw_parts(data, len as usize) };
    p.out.extend_from_slice(src);
    len as i32
}

/// How many leading bytes of `buf` are whole TLS records.
fn whole_records(buf: &[u8]) -> Result<usize, EngineError> {
    let mut at = 0;
    while buf.len() - at >= 5 {
        let kind = buf[at];
        if !(20..=24).contains(&kind) || buf[at + 1] != 3 {
            return Err(EngineError::NotTls(kind));
        }
        let len = 5 + usize::from(u16::from_be_bytes([buf[at + 3], buf[at + 4]]));
        if len > MAX_RECORD {
            return Err(EngineError::RecordTooLong(len));
        }
        if buf.len() - at < len {
            break;
        }
        at += len;
    }
    // A header not yet whole is still checked as far as it goes.
    if let Some(&kind) = buf.get(at) {
        if !(20..=24).contains(&kind) {
            return Err(EngineError::NotTls(kind));
        }
    }
    Ok(at)
}

fn version_name(v: Version) -> &'static str {
    match v {
        Version::TLS13 => "TLSv1.3",
        Version::TLS12 => "TLSv1.2",
        Version::TLS11 => "TLSv1.1",
        Version::TLS10 => "TLSv1.0",
        _ => "SSLv3",
    }
}

impl Engine {
    /// A new connection of `side` (a client names `server_name`).
    pub fn new(
        config: &TlsConfig,
        side: Side,
        server_name: Option<&str>,
    ) -> Result<Engine, EngineError> {
        let mut engine = Engine {
            conn: None,
            retired: None,
            pipe: Box::new(RefCell::new(Pipe::default())),
            config: config.clone(),
            side,
            incoming: Vec::new(),
            started: false,
            established: false,
            frozen: None,
            peer_cn: None,
            server_name: None,
            version: None,
        };
        let mut conn = engine.connection()?;
        if let Some(name) = server_name {
            conn.set_server_name(name)?;
        }
        engine.conn = Some(conn);
        Ok(engine)
    }

    /// A fresh s2n connection on this engine's pipe.
    fn connection(&self) -> Result<Connection, EngineError> {
        self.attach(Spare::new(&self.config, self.side)?)
    }

    /// `spare` on this engine's pipe.
    fn attach(&self, spare: Spare) -> Result<Connection, EngineError> {
        let mut conn = spare.conn;
        let ctx = &*self.pipe as *const RefCell<Pipe> as *mut c_void;
        // SAFETY: the pipe is boxed (its address never changes) and is
        // dropped after the connection (field order, and `thaw` replaces
        // the connection, never the pipe).
        unsafe {
            conn.set_receive_context(ctx)?;
            conn.set_send_context(ctx)?;
        }
        Ok(conn)
    }

    /// Where the owner appends the ciphertext it read.
    pub fn incoming(&mut self) -> &mut Vec<u8> {
        &mut self.incoming
    }

    /// Whether the handshake is done.
    pub fn established(&self) -> bool {
        self.established
    }

    /// Whether [`Engine::freeze`] can take it now: established, or its
    /// handshake not begun (nothing but raw bytes to carry). In the
    /// middle of a handshake it cannot.
    pub fn movable(&self) -> bool {
        self.established || !self.started
    }

    /// The negotiated version, `TLSv1.2` or `TLSv1.3`, once established.
    pub fn version(&self) -> Option<&'static str> {
        self.version.map(version_name)
    }

    /// The client certificate's common name (servers, once established).
    pub fn peer_cn(&self) -> Option<&str> {
        self.peer_cn.as_deref()
    }

    /// The server name the client asked for (servers, once established).
    pub fn server_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }

    fn conn(&mut self) -> Result<&mut Connection, EngineError> {
        self.conn.as_mut().ok_or(EngineError::Frozen)
    }

    /// Hands s2n the whole records read so far and runs the handshake
    /// or decrypts, appending the plaintext to `plain`.
    pub fn process(&mut self, plain: &mut Vec<u8>) -> Result<Progress, EngineError> {
        let whole = whole_records(&self.incoming)?;
        if whole > 0 {
            let mut p = self.pipe.borrow_mut();
            let fed = p.fed;
            p.feed.drain(..fed);
            p.fed = 0;
            p.feed.extend(self.incoming.drain(..whole));
        }
        if !self.established {
            if whole == 0 && !self.started && self.side == Side::Server {
                // Nothing for s2n yet: the handshake has not begun.
                return Ok(Progress::Handshaking);
            }
            self.started = true;
            match self.conn()?.poll_negotiate() {
                Poll::Ready(Ok(_)) => self.on_established()?,
                Poll::Ready(Err(e)) => return Err(e.into()),
                Poll::Pending => return Ok(Progress::Handshaking),
            }
        }
        let mut buf = [0u8; 16 * 1024];
        loop {
            match self.conn()?.poll_recv(&mut buf) {
                Poll::Ready(Ok(0)) => return Ok(Progress::Closed),
                Poll::Ready(Ok(n)) => plain.extend_from_slice(&buf[..n]),
                Poll::Ready(Err(e)) => return Err(e.into()),
                Poll::Pending => break,
            }
        }
        let mut p = self.pipe.borrow_mut();
        if p.fed == p.feed.len() {
            p.feed = Vec::new();
            p.fed = 0;
        }
        Ok(Progress::Established)
    }

    fn on_established(&mut self) -> Result<(), EngineError> {
        self.established = true;
        let conn = self.conn()?;
        let version = conn.actual_protocol_version().ok();
        let cn = match conn.peer_cert_chain() {
            Ok(chain) => chain
                .iter()
                .next()
                .and_then(|c| c.ok())
                .and_then(|c| c.der().ok().and_then(common_name)),
            Err(_) => None,
        };
        // A client's own request, not worth keeping.
        let server_name = conn.server_name().map(str::to_string);
        self.version = version;
        self.peer_cn = cn;
        self.server_name = (self.side == Side::Server).then_some(server_name).flatten();
        Ok(())
    }

    /// Encrypts `plain` into the outgoing queue (established only).
    pub fn send(&mut self, plain: &[u8]) -> Result<(), EngineError> {
        if !self.established {
            return Err(EngineError::Handshaking);
        }
        let conn = self.conn()?;
        let mut at = 0;
        while at < plain.len() {
            match conn.poll_send(&plain[at..]) {
                Poll::Ready(Ok(n)) => at += n,
                Poll::Ready(Err(e)) => return Err(e.into()),
                Poll::Pending => return Err(EngineError::Blocked),
            }
        }
        match conn.poll_flush() {
            Poll::Ready(Ok(_)) => Ok(()),
            Poll::Ready(Err(e)) => Err(e.into()),
            Poll::Pending => Err(EngineError::Blocked),
        }
    }

    /// Queues a close_notify alert (a graceful end of an established
    /// connection; a handshake is just dropped); errors are moot.
    pub fn close_notify(&mut self) {
        if !self.established {
            return;
        }
        if let Some(conn) = self.conn.as_mut() {
            let _ = conn.poll_shutdown_send();
        }
    }

    /// Updates this side's TLS 1.3 traffic keys: the KeyUpdate message
    /// goes out before the next record [`Engine::send`] encrypts.
    pub fn key_update(&mut self) -> Result<(), EngineError> {
        self.conn()?
            .request_key_update(PeerKeyUpdate::KeyUpdateNotRequested)?;
        Ok(())
    }

    /// Frees s2n's I/O buffers of an idle connection (about 47 KB down
    /// to 8 KB); refused, harmlessly, while they hold anything.
    pub fn release_buffers(&mut self) {
        if let Some(conn) = self.conn.as_mut() {
            let _ = conn.release_buffers();
        }
    }

    /// Ciphertext not yet written.
    pub fn outgoing_len(&self) -> usize {
        let p = self.pipe.borrow();
        p.out.len() - p.sent
    }

    /// Writes the outgoing queue into `w` until it is empty or `w` would
    /// block; other errors are returned.
    pub fn write_to(&mut self, w: &mut impl Write) -> io::Result<()> {
        let mut p = self.pipe.borrow_mut();
        while p.sent < p.out.len() {
            let at = p.sent;
            match w.write(&p.out[at..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => p.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if p.sent == p.out.len() {
            // An idle connection holds no buffer.
            p.out = Vec::new();
            p.sent = 0;
        }
        Ok(())
    }
}
