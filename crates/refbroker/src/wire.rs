//! What the state machine and the event loop tell each other: where
//! packets go ([`Wire`]), why a connection ended ([`End`]), what a packet
//! did ([`Step`]).

/// Where the broker's packets go: the event loop's connections.
pub trait Wire {
    /// Bytes queued to `conn` and not yet written.
    fn backlog(&self, conn: usize) -> usize;
    /// Queues `bytes` to `conn`.
    fn send(&mut self, conn: usize, bytes: &[u8]);
    /// Starts the graceful close of `conn`, already ended here: the loop
    /// must not report it back.
    fn close(&mut self, conn: usize);
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The client closed the connection.
    Eof,
    /// The client sent DISCONNECT: no will.
    Disconnect,
    /// No packet within 1.5 × keep-alive, or no CONNECT in time.
    Idle(String),
    /// A malformed packet or a protocol violation (counted), to log.
    Error(String),
    /// The connection failed or the client read too slowly, to log.
    Lost(String),
    /// Another connection took its client id over.
    TakenOver,
    /// The broker closes every connection (the end of a drain): no will.
    Shutdown,
}

impl End {
    /// Whether the will is published (any close but DISCONNECT; not when
    /// the broker itself shuts down).
    pub fn publishes_will(&self) -> bool {
        !matches!(self, End::Disconnect | End::Shutdown)
    }
}

/// What a packet did to its connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Go on reading.
    Go,
    /// CONNECT accepted with this keep-alive (seconds, 0: none): close
    /// after 1.5 times that without a packet.
    Connected(u16),
    /// End the connection.
    End(End),
}
