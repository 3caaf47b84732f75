//! The event loop: one thread that owns every listener and every
//! connection (mio, edge triggered), accepts ([`accept`]), runs TLS
//! handshakes as connection states (a bounded number per turn, so that a
//! handshake storm never starves established clients), reads whole
//! packets into the state machine of [`Broker`],
//! writes what it queues with per-connection bounded buffers (through
//! each connection's [`Transport`]: nothing here touches a socket), runs
//! the timers (CONNECT deadline, keep-alive, close wait), and closes
//! gracefully: FIN after the queued bytes, then read until the client's
//! end of stream or [`CLOSE_WAIT`]. The thread count does not grow with
//! connections.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use emqx_mqtt::{decode_as, PacketError};
use mio::{Events, Interest, Poll, Token, Waker};

mod accept;
mod flush;
mod moved;
mod moving;
mod timers;

pub use moved::{decode_shared, ConnState, MovedConn};
pub use moving::Imported;

use crate::broker::{Broker, End, Step};
use crate::conns::{Carried, Conn, Conns};
use crate::snapshot::ImportError;
use crate::transport::{self, ReadEnd};
use crate::{CLOSE_WAIT, MAX_PACKET};

pub use accept::Listening;

/// Bytes unsent to one client past which it is disconnected (it reads
/// too slowly; a persistent session keeps what is in flight and queued).
pub const MAX_BACKLOG: usize = 16 << 20;
/// At most this much is read from one connection per turn of the loop.
const READ_TURN: usize = 256 * 1024;
const WAKER: Token = Token(0);
const TICK: Duration = Duration::from_millis(100);
/// TLS handshake steps per turn of the loop (each may cost a signature,
/// about a millisecond): the rest wait for the next turn, so that a
/// connection storm delays established clients by a few milliseconds.
const HANDSHAKES_PER_TURN: usize = 16;

/// What other threads ask of the loop.
pub enum Cmd {
    /// Serve an accepted connection.
    Serve {
        /// The listener's name.
        listener: String,
        /// The connection.
        stream: std::net::TcpStream,
    },
    /// Close every connection gracefully; answer when done.
    CloseAll(mpsc::Sender<()>),
    /// Accept on these listeners.
    Listen(Vec<emqx_handoff::broker::Listener>),
    /// Stop accepting; answer when no accept can follow.
    StopAccepting(mpsc::Sender<()>),
    /// Stop reading, writing and timing every connection at a packet
    /// boundary, send the whole state over the channel (protocol 2) in
    /// the schema named and answer what went.
    Export(
        emqx_handoff::Channel,
        crate::snapshot::Schema,
        Instant,
        mpsc::Sender<Result<emqx_handoff::broker::Exported, emqx_handoff::broker::ExportError>>,
    ),
    /// Carry on as before the freeze.
    Thaw,
    /// The state moved: close our copies of the moved connections (no
    /// will, no FIN) and answer how many.
    Go(mpsc::Sender<usize>),
    /// Begin taking over another broker's state: its broker-wide part.
    ImportShared(crate::snapshot::SharedState, crate::snapshot::Schema),
    /// A batch of its connections.
    ImportBatch(Vec<MovedConn>),
    /// The import is whole: answer how many connections now run here.
    ImportEnd(mpsc::Sender<Result<moving::Imported, ImportError>>),
    /// Drop what was imported (the exporter thawed) and carry on.
    Discard,
}

/// The running loop, as other threads see it.
pub struct Handle {
    tx: mpsc::Sender<Cmd>,
    waker: Arc<Waker>,
    /// Live connections (closing ones included).
    pub live: Arc<AtomicUsize>,
}

impl Handle {
    /// Sends `cmd` and wakes the loop; false when the loop is gone.
    pub fn send(&self, cmd: Cmd) -> bool {
        self.tx.send(cmd).is_ok() && self.waker.wake().is_ok()
    }
}

/// Starts the loop on its own thread, with the broker `make` builds there
/// (its state is the loop's alone: not `Send`, never shared), serving
/// listeners as `listening` says.
pub fn start(
    make: impl FnOnce() -> Broker + Send + 'static,
    listening: Listening,
) -> io::Result<Handle> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let (tx, rx) = mpsc::channel();
    let live = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&live);
    std::thread::Builder::new()
        .name("event-loop".into())
        .spawn(move || {
            Loop {
                poll,
                rx,
                broker: make(),
                conns: Conns::default(),
                live: counter,
                next: 1,
                again: Vec::new(),
                closing_all: Vec::new(),
                scratch: vec![0; 64 * 1024],
                frozen: None,
                schema: crate::snapshot::Schema::ALL[0],
                imported: Vec::new(),
                import_error: None,
                held: Vec::new(),
                deferred: Vec::new(),
                summarized: Instant::now(),
                listening,
                listeners: Vec::new(),
                accept_again: Vec::new(),
                accept_later: Vec::new(),
                handshakes: 0,
            }
            .run()
        })?;
    Ok(Handle { tx, waker, live })
}

struct Loop {
    poll: Poll,
    rx: mpsc::Receiver<Cmd>,
    broker: Broker,
    conns: Conns,
    live: Arc<AtomicUsize>,
    next: usize,
    /// Connections with more to read than one turn took.
    again: Vec<usize>,
    closing_all: Vec<(mpsc::Sender<()>, Instant)>,
    scratch: Vec<u8>,
    /// While frozen: the connections exported, and when the freeze began.
    frozen: Option<(Vec<usize>, Instant)>,
    /// The schema of the move in progress (or the last one).
    schema: crate::snapshot::Schema,
    /// While frozen after an import: the connections imported.
    imported: Vec<usize>,
    /// The first error of an import in progress.
    import_error: Option<ImportError>,
    /// Connections accepted while frozen, served at the thaw.
    held: Vec<(String, std::net::TcpStream)>,
    /// Close-alls asked while frozen, done at the thaw.
    deferred: Vec<mpsc::Sender<()>>,
    /// When the last summary line was logged.
    summarized: Instant,
    /// Listener kinds and TLS configurations.
    listening: Listening,
    /// The listeners polled, while accepting.
    listeners: Vec<accept::Polled>,
    /// Listeners with more to accept than one turn took.
    accept_again: Vec<usize>,
    /// Listeners whose accept failed, tried again at the next tick.
    accept_later: Vec<usize>,
    /// TLS handshake steps taken this turn.
    handshakes: usize,
}

impl Loop {
    fn run(&mut self) {
        let mut events = Events::with_capacity(1024);
        let mut last_tick = Instant::now();
        loop {
            let idle = self.again.is_empty() && self.accept_again.is_empty();
            let timeout = if idle || self.frozen.is_some() {
                TICK
            } else {
                Duration::ZERO
            };
            self.handshakes = 0;
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    // Nothing would serve the clients any more: exit, so
                    // that the service manager restarts the broker (with
                    // the listeners it stored) instead of it looking alive.
                    self.broker.log(format_args!(
                        "ERROR: event loop: poll failed ({e}); exiting so the broker is restarted"
                    ));
                    std::process::exit(1);
                }
            }
            for ev in &events {
                match ev.token() {
                    WAKER => self.commands(),
                    // Frozen: nothing is read or written; the thaw reads
                    // every connection again (edges are not lost).
                    Token(_) if self.frozen.is_some() => {}
                    Token(t) if accept::listener_index(t).is_some() => {
                        if let Some(i) = accept::listener_index(t) {
                            self.accept(i);
                        }
                    }
                    Token(t) => {
                        if ev.is_writable() {
                            self.flush(t);
                        }
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            self.read(t);
                        }
                    }
                }
            }
            if self.frozen.is_some() {
                continue;
            }
            for i in std::mem::take(&mut self.accept_again) {
                self.accept(i);
            }
            for t in std::mem::take(&mut self.again) {
                self.read(t);
            }
            if last_tick.elapsed() >= TICK {
                last_tick = Instant::now();
                self.accept_again.append(&mut self.accept_later);
                self.timers();
                self.summary();
            }
            let dirty = std::mem::take(&mut self.conns.dirty);
            for t in dirty {
                if let Some(c) = self.conns.map.get_mut(&t) {
                    c.dirty = false;
                }
                self.flush(t);
            }
            self.live.store(self.conns.map.len(), Ordering::SeqCst);
            self.answer_close_all();
        }
    }

    fn commands(&mut self) {
        while let Ok(cmd) = self.rx.try_recv() {
            match cmd {
                Cmd::Serve { listener, stream } if self.frozen.is_some() => {
                    self.held.push((listener, stream))
                }
                Cmd::Serve { listener, stream } => self.serve(&listener, stream),
                Cmd::Listen(listeners) => self.listen(listeners),
                Cmd::StopAccepting(reply) => {
                    self.stop_accepting();
                    let _ = reply.send(());
                }
                Cmd::Export(ch, schema, deadline, reply) => {
                    let exported = self.export(&ch, schema, deadline);
                    // Nobody takes the answer (the asker gave up): carry on.
                    if reply.send(exported).is_err() {
                        self.thaw();
                    }
                }
                Cmd::Thaw => self.thaw(),
                Cmd::Go(reply) => {
                    let _ = reply.send(self.go());
                }
                Cmd::ImportShared(shared, schema) => self.import_shared(shared, schema),
                Cmd::ImportBatch(conns) => self.import_batch(conns),
                Cmd::ImportEnd(reply) => {
                    let imported = self.import_end();
                    // The asker gave up waiting: the exporter will thaw, so
                    // the connections must not live here too.
                    if reply.send(imported).is_err() {
                        self.discard();
                    }
                }
                Cmd::Discard => self.discard(),
                Cmd::CloseAll(reply) if self.frozen.is_some() => self.deferred.push(reply),
                Cmd::CloseAll(reply) => self.commands_close_all(reply),
            }
        }
    }

    /// Ends every connection gracefully; `reply` is answered when done.
    fn commands_close_all(&mut self, reply: mpsc::Sender<()>) {
        let ts: Vec<usize> = self.conns.map.keys().copied().collect();
        if !ts.is_empty() {
            self.broker
                .log(format_args!("closing {} connections", ts.len()));
        }
        for t in ts {
            self.end(t, End::Shutdown);
        }
        self.closing_all.push((reply, Instant::now() + CLOSE_WAIT));
    }

    fn serve(&mut self, listener: &str, stream: std::net::TcpStream) {
        let kind = self.listening.kind(listener);
        let path = self.listening.path(listener);
        let (peer, transport) = transport::accept(kind, stream, self.listening.tls.as_ref(), path);
        let t = self.next;
        let registered = transport.and_then(|mut transport| {
            self.poll
                .registry()
                .register(transport.source(), Token(t), Interest::READABLE)?;
            Ok(transport)
        });
        let transport = match registered {
            Ok(tcp) => tcp,
            Err(e) => {
                let shown = peer.map_or_else(|| "?".to_string(), |a| a.to_string());
                self.broker
                    .log(format_args!("cannot serve {shown} on {listener}: {e}"));
                return;
            }
        };
        self.next += 1;
        let conn = Conn::new(transport, Instant::now(), Carried::default());
        self.conns.map.insert(t, Box::new(conn));
        self.broker.opened(t, listener, peer);
        // Bytes may have arrived before the registration.
        self.again.push(t);
    }

    /// Ends `t` for `end` (reported to the broker once), then closes it
    /// gracefully.
    fn end(&mut self, t: usize, end: End) {
        let Some(c) = self.conns.map.get(&t) else {
            return;
        };
        let first = !c.closing();
        self.conns.start_close(t);
        if first {
            self.broker.closed(t, &end, &mut self.conns);
        }
    }

    fn drop_conn(&mut self, t: usize) {
        if let Some(mut c) = self.conns.map.remove(&t) {
            let _ = self.poll.registry().deregister(c.transport.source());
            if !c.closing() {
                self.broker
                    .closed(t, &End::Lost("connection dropped".into()), &mut self.conns);
            }
        }
    }

    fn read(&mut self, t: usize) {
        let Some(c) = self.conns.map.get_mut(&t) else {
            return;
        };
        // A handshake past this turn's share waits for the next turn.
        if c.transport.handshaking() {
            if self.handshakes >= HANDSHAKES_PER_TURN {
                self.again.push(t);
                return;
            }
            self.handshakes += 1;
        }
        // A closing connection's bytes are read only to find its end.
        let closing = c.closing();
        let input = (!closing).then_some(&mut c.inbuf);
        let reading = c.transport.read(input, &mut self.scratch, READ_TURN);
        let (eof, failed) = match reading.end {
            ReadEnd::Drained => (false, None),
            ReadEnd::Turn => {
                self.again.push(t);
                (false, None)
            }
            ReadEnd::Eof => (true, None),
            ReadEnd::Failed(e) => (false, Some(e)),
        };
        if closing {
            if eof || failed.is_some() {
                self.drop_conn(t);
            }
            return;
        }
        if reading.bytes > 0 {
            c.last_read = Instant::now();
        }
        // What the transport answered by itself (a TLS handshake's next
        // flight, a key update) goes out at the end of the turn.
        if !c.dirty && c.transport.unsent(&c.out) > 0 {
            c.dirty = true;
            self.conns.dirty.push(t);
        }
        if let Some(end) = self.packets(t) {
            self.end(t, end);
        } else if let Some(e) = failed {
            self.end(t, End::Lost(format!("connection lost: {e}")));
        } else if eof {
            self.end(t, End::Eof);
        }
    }

    /// Feeds the whole packets read so far to the broker.
    fn packets(&mut self, t: usize) -> Option<End> {
        let c = self.conns.map.get_mut(&t)?;
        if !c.connected && c.transport.is_tls() && !c.inbuf.is_empty() {
            // The handshake is over: its certificate may name the client.
            self.broker.certified(t, c.transport.peer_cn());
        }
        let mut inbuf = std::mem::take(&mut c.inbuf);
        let mut connected = c.connected;
        let mut level = c.level;
        let mut at = 0;
        let mut result = None;
        while at < inbuf.len() {
            let buf = &inbuf[at..];
            if !connected {
                if let Err(end) = self.broker.admits(t, buf[0] >> 4) {
                    result = Some(end);
                    break;
                }
            }
            // A CONNECT is read at the level it names; the rest at the
            // level of the connection's CONNECT.
            let step = match decode_as(buf, MAX_PACKET, level) {
                Ok(Some((packet, n))) => {
                    at += n;
                    self.broker.packet(t, packet, &mut self.conns)
                }
                Ok(None) => break,
                Err(PacketError::UnsupportedVersion(l)) if !connected => {
                    self.broker.refuse_level(t, l, &mut self.conns)
                }
                Err(e) => match e.reason_code() {
                    Some(code) if level.is_v5() => Step::End(End::Violation(code, e.to_string())),
                    _ => Step::End(End::Error(e.to_string())),
                },
            };
            match step {
                Step::Go => {}
                Step::Connected {
                    keep_alive,
                    level: named,
                } => {
                    connected = true;
                    level = named;
                    if let Some(c) = self.conns.map.get_mut(&t) {
                        c.connected = true;
                        c.keep_alive = keep_alive;
                        c.level = named;
                        if let Some(cn) = c.transport.peer_cn() {
                            self.broker.debug(format_args!(
                                "connection {t} connected over TLS, certificate CN {cn:?}"
                            ));
                        }
                    }
                }
                Step::End(end) => {
                    result = Some(end);
                    break;
                }
            }
            // A takeover inside may have ended this very connection.
            if self.conns.map.get(&t).is_none_or(|c| c.closing()) {
                break;
            }
        }
        inbuf.drain(..at.min(inbuf.len()));
        if inbuf.is_empty() {
            inbuf = Vec::new();
        }
        if let Some(c) = self.conns.map.get_mut(&t) {
            c.inbuf = inbuf;
        }
        result
    }
}
