//! s2n connections made ahead of a move. Making one (allocating and
//! zeroing its buffers and handshake state) costs many times what
//! restoring a serialized connection into it does, so an importer that
//! knows how many TLS connections are coming makes them before the
//! freeze, and the pause pays only for the restore.

use s2n_tls::connection::Connection;
use s2n_tls::enums::Blinding;

use crate::config::TlsConfig;
use crate::engine::{recv_cb, send_cb, EngineError, Side};

/// An s2n connection with its configuration and I/O callbacks, not yet
/// attached to an engine's queues.
pub struct Spare {
    pub(crate) conn: Connection,
    pub(crate) side: Side,
}

impl Spare {
    /// A connection of `side` under `config` (the configuration the
    /// engine that takes it must use).
    pub fn new(config: &TlsConfig, side: Side) -> Result<Spare, EngineError> {
        let mut conn = match side {
            Side::Server => Connection::new_server(),
            Side::Client => Connection::new_client(),
        };
        conn.set_config(config.config.clone())?;
        // Without it s2n sleeps 10-30 s after an error: in an event loop
        // that would stall every client. The loop closes at once instead.
        conn.set_blinding(Blinding::SelfService)?;
        conn.set_receive_callback(Some(recv_cb))?;
        conn.set_send_callback(Some(send_cb))?;
        Ok(Spare { conn, side })
    }
}

/// Spare connections of one side and configuration, taken first come.
#[derive(Default)]
pub struct Spares {
    spares: Vec<Spare>,
}

impl Spares {
    /// Makes `n` more spares; stops at the first error (an engine then
    /// makes its own connection).
    pub fn fill(&mut self, config: &TlsConfig, side: Side, n: usize) {
        self.spares.reserve(n);
        for _ in 0..n {
            match Spare::new(config, side) {
                Ok(s) => self.spares.push(s),
                Err(_) => return,
            }
        }
    }

    /// One spare, if any is left.
    pub fn take(&mut self) -> Option<Spare> {
        self.spares.pop()
    }

    /// How many are left.
    pub fn len(&self) -> usize {
        self.spares.len()
    }

    /// Whether none is left.
    pub fn is_empty(&self) -> bool {
        self.spares.is_empty()
    }
}
