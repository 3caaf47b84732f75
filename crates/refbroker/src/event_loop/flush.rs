//! Writing a connection's queued bytes through its transport: FIN once
//! a closing connection's bytes are out, write interest only while bytes
//! wait, and the end of a client that reads too slowly.

use mio::{Interest, Token};

use super::{Loop, MAX_BACKLOG};
use crate::broker::End;

impl Loop {
    pub(super) fn flush(&mut self, t: usize) {
        let Some(c) = self.conns.map.get_mut(&t) else {
            return;
        };
        if let Err(e) = c.transport.write(&mut c.out) {
            if !c.closing() {
                self.end(t, End::Lost(format!("connection lost: {e}")));
            }
            self.drop_conn(t);
            return;
        }
        let pending = c.transport.unsent(&c.out);
        if pending == 0 {
            // Idle connections hold no buffer at all.
            c.out.release();
            c.transport.release();
            if c.closing() && !c.fin_sent {
                c.transport.close();
                c.fin_sent = true;
            }
        }
        let want_write = c.transport.wants_write(&c.out);
        if want_write != c.writable {
            let interest = if want_write {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if self
                .poll
                .registry()
                .reregister(c.transport.source(), Token(t), interest)
                .is_ok()
            {
                c.writable = want_write;
            }
        }
        if pending > MAX_BACKLOG && !c.closing() {
            self.end(
                t,
                End::Lost(format!("it read too slowly ({pending} bytes unsent)")),
            );
        }
    }
}
