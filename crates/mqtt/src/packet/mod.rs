//! MQTT 3.1.1 control packets: the [`Packet`] model, its encoding, and
//! decoding that enforces the rules a broker must (fixed-header flags,
//! UTF-8 strings without U+0000, non-zero packet identifiers, QoS 0..=2,
//! protocol level 4). The model is here; `decode` reads it off the wire,
//! `encode` writes it.

mod decode;
mod encode;
#[cfg(test)]
mod tests;

use std::fmt;
use std::io;

pub use decode::{decode, read_frame, read_packet, Frame};

/// The largest remaining length the 4-byte varint can carry.
pub const MAX_REMAINING: usize = 268_435_455;
/// The largest string or binary field (a 16-bit length).
pub const MAX_FIELD: usize = 65_535;
/// The protocol level of MQTT 3.1.1.
pub const PROTOCOL_LEVEL: u8 = 4;
/// The packet type of CONNECT (the high nibble of its first byte).
pub const CONNECT: u8 = 1;

/// One control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// Client: open a session.
    Connect {
        /// Client identifier (may be empty with a clean session).
        client_id: String,
        /// Keep-alive in seconds (0: none).
        keep_alive: u16,
        /// Start without a stored session.
        clean_session: bool,
        /// User name.
        username: Option<String>,
        /// Password (valid 3.1.1 only with a user name).
        password: Option<Vec<u8>>,
        /// The will: published by the server when the connection closes
        /// without DISCONNECT.
        will: Option<Will>,
    },
    /// Server: session opened (code 0) or refused (1 to 5).
    ConnAck {
        /// A stored session was resumed.
        session_present: bool,
        /// Return code.
        code: u8,
    },
    /// An application message.
    Publish {
        /// Topic name.
        topic: String,
        /// Payload.
        payload: Vec<u8>,
        /// QoS 0, 1 or 2.
        qos: u8,
        /// Retain flag.
        retain: bool,
        /// Duplicate delivery flag (QoS > 0 only).
        dup: bool,
        /// Packet identifier: `Some` exactly when QoS > 0.
        packet_id: Option<u16>,
    },
    /// QoS 1 acknowledgement.
    PubAck {
        /// Of this packet.
        packet_id: u16,
    },
    /// QoS 2, step 1: publish received.
    PubRec {
        /// Of this packet.
        packet_id: u16,
    },
    /// QoS 2, step 2: publish release.
    PubRel {
        /// Of this packet.
        packet_id: u16,
    },
    /// QoS 2, step 3: publish complete.
    PubComp {
        /// Of this packet.
        packet_id: u16,
    },
    /// Client: subscribe to filters with a maximum QoS each.
    Subscribe {
        /// Packet identifier.
        packet_id: u16,
        /// Filters and requested QoS.
        filters: Vec<(String, u8)>,
    },
    /// Server: granted QoS per filter (0x80: failure).
    SubAck {
        /// Of this packet.
        packet_id: u16,
        /// One per filter.
        codes: Vec<u8>,
    },
    /// Client: unsubscribe.
    Unsubscribe {
        /// Packet identifier.
        packet_id: u16,
        /// Filters.
        filters: Vec<String>,
    },
    /// Server: unsubscribed.
    UnsubAck {
        /// Of this packet.
        packet_id: u16,
    },
    /// Client: are you there?
    PingReq,
    /// Server: yes.
    PingResp,
    /// Client: closing cleanly.
    Disconnect,
}

impl Packet {
    /// A CONNECT without credentials or will.
    pub fn connect(client_id: impl Into<String>, clean_session: bool, keep_alive: u16) -> Packet {
        Packet::Connect {
            client_id: client_id.into(),
            keep_alive,
            clean_session,
            username: None,
            password: None,
            will: None,
        }
    }

    /// The packet type's name in the specification (`PUBLISH`...).
    pub fn name(&self) -> &'static str {
        match self {
            Packet::Connect { .. } => "CONNECT",
            Packet::ConnAck { .. } => "CONNACK",
            Packet::Publish { .. } => "PUBLISH",
            Packet::PubAck { .. } => "PUBACK",
            Packet::PubRec { .. } => "PUBREC",
            Packet::PubRel { .. } => "PUBREL",
            Packet::PubComp { .. } => "PUBCOMP",
            Packet::Subscribe { .. } => "SUBSCRIBE",
            Packet::SubAck { .. } => "SUBACK",
            Packet::Unsubscribe { .. } => "UNSUBSCRIBE",
            Packet::UnsubAck { .. } => "UNSUBACK",
            Packet::PingReq => "PINGREQ",
            Packet::PingResp => "PINGRESP",
            Packet::Disconnect => "DISCONNECT",
        }
    }
}

/// A will message of a CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    /// Its topic.
    pub topic: String,
    /// Its payload.
    pub payload: Vec<u8>,
    /// Its QoS (0..=2).
    pub qos: u8,
    /// Whether it is retained.
    pub retain: bool,
}

/// Why a packet could not be read.
#[derive(Debug)]
pub enum PacketError {
    /// The connection failed, timed out or ended mid-packet.
    Io(io::Error),
    /// The bytes are not a valid MQTT 3.1.1 packet.
    Malformed(String),
    /// The packet's remaining length exceeds the bound.
    TooLarge(usize),
}

impl fmt::Display for PacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PacketError::Io(e) => write!(f, "{e}"),
            PacketError::Malformed(m) => write!(f, "malformed packet: {m}"),
            PacketError::TooLarge(n) => write!(f, "packet of {n} bytes is too large"),
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

pub(crate) fn bad(m: impl Into<String>) -> PacketError {
    PacketError::Malformed(m.into())
}
