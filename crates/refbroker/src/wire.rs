//! What the state machine and the event loop tell each other: where
//! packets go ([`Wire`]), why a connection ended ([`End`]), what a packet
//! did ([`Step`]).

use emqx_mqtt::{Level, ReasonCode};

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
    /// An MQTT 5 client sent DISCONNECT with reason 0x04: its will goes.
    DisconnectWithWill,
    /// No packet within 1.5 × keep-alive, or no CONNECT in time.
    Idle(String),
    /// A malformed packet or a protocol violation (counted), to log.
    Error(String),
    /// As [`End::Error`], with the MQTT 5 reason code its DISCONNECT
    /// names (malformed 0x81, too large 0x95...).
    Violation(ReasonCode, String),
    /// The connection failed or the client read too slowly, to log.
    Lost(String),
    /// The policy refused the client (its CONNECT, or its login when it
    /// moved in from a broker with older files): the reason code its
    /// CONNACK or DISCONNECT names, and why, to log. Not a violation.
    Refused(ReasonCode, String),
    /// Another connection took its client id over.
    TakenOver,
    /// The broker closes every connection (the end of a drain): no will.
    Shutdown,
}

impl End {
    /// Whether the will is published (any close but DISCONNECT; not when
    /// the broker itself shuts down, nor when the policy refuses the
    /// client: a revoked credential's will is not its to send, as in
    /// mosquitto).
    pub fn publishes_will(&self) -> bool {
        !matches!(self, End::Disconnect | End::Shutdown | End::Refused(..))
    }

    /// Whether it counts as a malformed packet or protocol violation.
    pub fn is_violation(&self) -> bool {
        matches!(self, End::Error(_) | End::Violation(..))
    }

    /// The reason an MQTT 5 client is told in the server's DISCONNECT,
    /// when the server ends the connection (none when the client did).
    pub fn reason(&self) -> Option<ReasonCode> {
        match self {
            End::Eof | End::Disconnect | End::DisconnectWithWill | End::Lost(_) => None,
            End::Idle(_) => Some(ReasonCode::KEEP_ALIVE_TIMEOUT),
            End::Error(_) => Some(ReasonCode::PROTOCOL_ERROR),
            End::Violation(code, _) | End::Refused(code, _) => Some(*code),
            End::TakenOver => Some(ReasonCode::SESSION_TAKEN_OVER),
            End::Shutdown => Some(ReasonCode::SERVER_SHUTTING_DOWN),
        }
    }
}

/// What a packet did to its connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Go on reading.
    Go,
    /// CONNECT accepted with this keep-alive (seconds, 0: none): close
    /// after 1.5 times that without a packet; its packets are of `level`.
    Connected { keep_alive: u16, level: Level },
    /// End the connection.
    End(End),
}
