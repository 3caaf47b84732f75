//! Why a packet could not be read, with the reason code MQTT 5 names for
//! it (what a server puts in its CONNACK or DISCONNECT before closing).

use std::fmt;
use std::io;

use super::ReasonCode;

/// Why a packet could not be read.
#[derive(Debug)]
pub enum PacketError {
    /// The connection failed, timed out or ended mid-packet.
    Io(io::Error),
    /// The bytes cannot be parsed as the packet (0x81 Malformed Packet):
    /// bad flags, a truncated field, a property not allowed in that
    /// packet, of the wrong type or unknown, a property length past the
    /// packet...
    Malformed(String),
    /// The packet parses but breaks a rule the specification calls a
    /// Protocol Error: `code` is 0x82 (Protocol Error) unless the
    /// specification names another (0x94 Topic Alias invalid).
    Protocol {
        /// The reason code to answer with.
        code: ReasonCode,
        /// What is wrong.
        what: String,
    },
    /// The packet's remaining length exceeds the bound (0x95 Packet too
    /// large).
    TooLarge(usize),
    /// A CONNECT for a protocol level this codec (or, through
    /// [`decode`](super::decode), the 3.1.1-only caller) does not speak:
    /// the level byte it asked for (0x84 Unsupported Protocol Version).
    UnsupportedVersion(u8),
}

impl PacketError {
    /// The reason code a server sends for this error in its CONNACK (for
    /// a CONNECT) or DISCONNECT; `None` for I/O errors, where nothing can
    /// be sent.
    pub fn reason_code(&self) -> Option<ReasonCode> {
        match self {
            PacketError::Io(_) => None,
            PacketError::Malformed(_) => Some(ReasonCode::MALFORMED_PACKET),
            PacketError::Protocol { code, .. } => Some(*code),
            PacketError::TooLarge(_) => Some(ReasonCode::PACKET_TOO_LARGE),
            PacketError::UnsupportedVersion(_) => Some(ReasonCode::UNSUPPORTED_PROTOCOL_VERSION),
        }
    }
}

impl fmt::Display for PacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PacketError::Io(e) => write!(f, "{e}"),
            PacketError::Malformed(m) => write!(f, "malformed packet: {m}"),
            PacketError::Protocol { code, what } if *code == ReasonCode::PROTOCOL_ERROR => {
                write!(f, "protocol error: {what}")
            }
            PacketError::Protocol { code, what } => write!(f, "protocol error ({code}): {what}"),
            PacketError::TooLarge(n) => write!(f, "packet of {n} bytes is too large"),
            PacketError::UnsupportedVersion(l) => {
                write!(f, "unsupported protocol version: protocol level {l}")
            }
        }
    }
}

impl std::error::Error for PacketError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PacketError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for PacketError {
    fn from(e: io::Error) -> Self {
        PacketError::Io(e)
    }
}

/// A Malformed Packet error.
pub(crate) fn bad(m: impl Into<String>) -> PacketError {
    PacketError::Malformed(m.into())
}

/// A Protocol Error (0x82).
pub(crate) fn protocol(m: impl Into<String>) -> PacketError {
    PacketError::Protocol {
        code: ReasonCode::PROTOCOL_ERROR,
        what: m.into(),
    }
}
