//! Why a client's connection ended, as an attempt class or a close reason.

use std::io;

use emqx_mqtt::PacketError;

use crate::stats::{classify_io, Outcome};
use crate::traffic::AckError;

/// Why a connection ended.
pub enum Why {
    Eof,
    Io(&'static str, io::Error),
    Packet(PacketError),
    TimedOut,
    Silent,
    Protocol(String),
    /// An acknowledgement that does not fit its message.
    Ack(AckError),
}

impl From<AckError> for Why {
    fn from(e: AckError) -> Why {
        Why::Ack(e)
    }
}

impl Why {
    pub fn reset(&self) -> bool {
        match self {
            Why::Io(_, e) | Why::Packet(PacketError::Io(e)) => classify_io("", e) == Outcome::Reset,
            _ => false,
        }
    }

    /// The class of a failed attempt that was waiting for `waiting`.
    pub fn outcome(&self, waiting: &str) -> Outcome {
        match self {
            Why::Eof => Outcome::Other(format!("connection closed by broker before {waiting}")),
            Why::Io(ctx, e) => classify_io(ctx, e),
            Why::Packet(PacketError::Io(e)) => classify_io(&format!("reading {waiting}"), e),
            Why::Packet(e) => Outcome::Other(format!("{e} (waiting for {waiting})")),
            Why::TimedOut | Why::Silent => Outcome::TimedOut,
            Why::Protocol(m) => Outcome::Other(m.clone()),
            Why::Ack(e) => Outcome::Other(e.to_string()),
        }
    }

    /// Why an established connection ended, for the report.
    pub fn reason(&self) -> String {
        match self {
            Why::Eof => "connection closed by broker".into(),
            _ if self.reset() => "connection reset by broker".into(),
            Why::Io(ctx, e) => format!("{ctx}: {e}"),
            Why::Packet(e) => e.to_string(),
            Why::TimedOut => "timed out".into(),
            Why::Silent => "broker silent past keep alive".into(),
            Why::Protocol(m) => m.clone(),
            Why::Ack(e) => e.to_string(),
        }
    }
}
