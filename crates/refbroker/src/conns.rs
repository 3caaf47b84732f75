//! The event loop's connection table: each connection's transport, byte
//! queues, timers and close state, and the [`Wire`] the state machine
//! sends through.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use emqx_mqtt::Level;

use crate::transport::{Output, Transport};
use crate::wire::Wire;

/// Queued bytes past which a send writes at once.
const EARLY_WRITE: usize = 64 * 1024;

/// One connection's I/O state.
pub struct Conn {
    /// Between the socket and the two queues below.
    pub transport: Box<dyn Transport>,
    /// MQTT bytes read and not yet a whole packet.
    pub inbuf: Vec<u8>,
    /// MQTT bytes queued and not yet written.
    pub out: Output,
    pub opened: Instant,
    pub last_read: Instant,
    /// After CONNECT: its keep-alive in seconds (0: none).
    pub keep_alive: u16,
    pub connected: bool,
    /// The protocol level its CONNECT named (3.1.1 until then).
    pub level: Level,
    /// Since when it closes: it was reported to the broker as ended.
    pub closing_since: Option<Instant>,
    pub fin_sent: bool,
    /// Registered for writable events.
    pub writable: bool,
    /// Listed in [`Conns::dirty`] for a flush at the end of the turn.
    pub dirty: bool,
}

/// What a connection starts with besides its transport: nothing for an
/// accepted one, its carried state for one moved from another broker.
#[derive(Debug, Default)]
pub struct Carried {
    /// Bytes read and not yet a whole packet.
    pub inbuf: Vec<u8>,
    /// Bytes queued and not yet written.
    pub out: Vec<u8>,
    /// Its CONNECT came, with this keep-alive.
    pub connected: bool,
    pub keep_alive: u16,
    /// How long since its last packet (and since it opened).
    pub idle: Duration,
    /// The protocol level of its CONNECT (3.1.1 before one).
    pub level: Level,
}

impl Conn {
    /// A connection on `transport` as of `now`, with what it carries.
    pub fn new(transport: Box<dyn Transport>, now: Instant, carried: Carried) -> Conn {
        let since = now.checked_sub(carried.idle).unwrap_or(now);
        Conn {
            transport,
            inbuf: carried.inbuf,
            out: Output::from_vec(carried.out),
            opened: since,
            last_read: since,
            keep_alive: carried.keep_alive,
            connected: carried.connected,
            level: carried.level,
            closing_since: None,
            fin_sent: false,
            writable: false,
            dirty: false,
        }
    }

    /// Ended (reported to the broker) and closing.
    pub fn closing(&self) -> bool {
        self.closing_since.is_some()
    }
}

#[derive(Default)]
pub struct Conns {
    /// Boxed: a growing table moves 8 bytes per connection, not the
    /// whole state (and leaves less behind in the allocator).
    pub map: HashMap<usize, Box<Conn>>,
    pub dirty: Vec<usize>,
}

impl Conns {
    /// Marks `t` closing; the loop flushes it, then sends FIN.
    pub fn start_close(&mut self, t: usize) {
        if let Some(c) = self.map.get_mut(&t) {
            c.closing_since.get_or_insert_with(Instant::now);
            if !c.dirty {
                c.dirty = true;
                self.dirty.push(t);
            }
        }
    }
}

impl Wire for Conns {
    fn backlog(&self, conn: usize) -> usize {
        self.map
            .get(&conn)
            .map_or(0, |c| c.transport.unsent(&c.out))
    }

    fn send(&mut self, conn: usize, bytes: &[u8]) {
        if let Some(c) = self.map.get_mut(&conn).filter(|c| !c.fin_sent) {
            c.out.push(bytes);
            if !c.dirty {
                c.dirty = true;
                self.dirty.push(conn);
            }
            // Much queued within one turn (a fast publisher, one slow
            // subscriber): write now rather than at the end of the turn.
            // An error is the end-of-turn flush's to find and report.
            if c.transport.unsent(&c.out) >= EARLY_WRITE {
                let _ = c.transport.write(&mut c.out);
            }
        }
    }

    fn close(&mut self, conn: usize) {
        self.start_close(conn);
    }
}
