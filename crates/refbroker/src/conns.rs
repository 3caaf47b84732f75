//! The event loop's connection table: each connection's buffers, timers
//! and close state, and the [`Wire`] the state machine sends through.

use std::collections::HashMap;
use std::io::Write;
use std::time::Instant;

use mio::net::TcpStream;

use crate::wire::Wire;

/// Queued bytes past which a send writes at once.
const EARLY_WRITE: usize = 64 * 1024;

/// One connection's I/O state.
pub struct Conn {
    pub stream: TcpStream,
    pub inbuf: Vec<u8>,
    pub out: Vec<u8>,
    pub out_at: usize,
    pub opened: Instant,
    pub last_read: Instant,
    /// After CONNECT: its keep-alive in seconds (0: none).
    pub keep_alive: u16,
    pub connected: bool,
    /// Reported to the broker as ended.
    pub ended: bool,
    pub closing_since: Option<Instant>,
    pub fin_sent: bool,
    pub writable: bool,
    /// Listed in [`Conns::dirty`] for a flush at the end of the turn.
    pub dirty: bool,
}

#[derive(Default)]
pub struct Conns {
    /// Boxed: a growing table moves 8 bytes per connection, not the
    /// whole state (and leaves less behind in the allocator).
    pub map: HashMap<usize, Box<Conn>>,
    pub dirty: Vec<usize>,
}

impl Conns {
    /// Marks `t` ended and closing; the loop flushes it, then sends FIN.
    pub fn start_close(&mut self, t: usize) {
        if let Some(c) = self.map.get_mut(&t) {
            c.ended = true;
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
        self.map.get(&conn).map_or(0, |c| c.out.len() - c.out_at)
    }

    fn send(&mut self, conn: usize, bytes: &[u8]) {
        if let Some(c) = self.map.get_mut(&conn).filter(|c| !c.fin_sent) {
            c.out.extend_from_slice(bytes);
            if !c.dirty {
                c.dirty = true;
                self.dirty.push(conn);
            }
            // Much queued within one turn (a fast publisher, one slow
            // subscriber): write now rather than at the end of the turn.
            if c.out.len() - c.out_at >= EARLY_WRITE {
                while c.out_at < c.out.len() {
                    match c.stream.write(&c.out[c.out_at..]) {
                        Ok(n) if n > 0 => c.out_at += n,
                        _ => break,
                    }
                }
                if c.out_at == c.out.len() {
                    c.out.clear();
                    c.out_at = 0;
                }
            }
        }
    }

    fn close(&mut self, conn: usize) {
        self.start_close(conn);
    }
}
