//! MQTT control packets of 3.1, 3.1.1 and 5.0 in one model: [`Packet`],
//! its encoding at a protocol [`Level`], and decoding that enforces the
//! rules a broker must (fixed-header flags, UTF-8 strings without U+0000,
//! non-zero packet identifiers, QoS 0..=2, and at 5.0 every rule on
//! properties, reason codes and subscription options).
//!
//! A connection's level is the one its CONNECT names: decode the CONNECT
//! with [`decode_as`] (it reads the level from the packet), then decode
//! and encode everything else of that connection at that level
//! ([`decode_as`], [`Frame::decode_as`], [`Packet::encode_as`]). The
//! plain [`decode`], [`read_packet`] and [`Packet::encode`] are MQTT 3.1.1
//! only, as they always were. Fields a level cannot carry (properties and
//! reason codes at 3.1.1) are left out when encoding at that level.

mod connect;
mod decode;
mod encode;
mod error;
mod parse;
mod properties;
mod read;
mod reason;
#[cfg(test)]
mod tests;
mod types;

pub use decode::{decode, decode_as, read_frame, read_packet, read_packet_as, Frame};
pub use error::PacketError;
pub use properties::Properties;
pub use reason::ReasonCode;
pub use types::{Level, RetainHandling, SubOptions, Will};

/// The largest remaining length the 4-byte varint can carry.
pub const MAX_REMAINING: usize = 268_435_455;
/// The largest string or binary field (a 16-bit length).
pub const MAX_FIELD: usize = 65_535;
/// The protocol level of MQTT 3.1.1.
pub const PROTOCOL_LEVEL: u8 = 4;

/// Packet type of CONNECT (the high nibble of the first byte).
pub const CONNECT: u8 = 1;
/// Packet type of CONNACK.
pub const CONNACK: u8 = 2;
/// Packet type of PUBLISH.
pub const PUBLISH: u8 = 3;
/// Packet type of PUBACK.
pub const PUBACK: u8 = 4;
/// Packet type of PUBREC.
pub const PUBREC: u8 = 5;
/// Packet type of PUBREL.
pub const PUBREL: u8 = 6;
/// Packet type of PUBCOMP.
pub const PUBCOMP: u8 = 7;
/// Packet type of SUBSCRIBE.
pub const SUBSCRIBE: u8 = 8;
/// Packet type of SUBACK.
pub const SUBACK: u8 = 9;
/// Packet type of UNSUBSCRIBE.
pub const UNSUBSCRIBE: u8 = 10;
/// Packet type of UNSUBACK.
pub const UNSUBACK: u8 = 11;
/// Packet type of PINGREQ.
pub const PINGREQ: u8 = 12;
/// Packet type of PINGRESP.
pub const PINGRESP: u8 = 13;
/// Packet type of DISCONNECT.
pub const DISCONNECT: u8 = 14;
/// Packet type of AUTH (MQTT 5 only).
pub const AUTH: u8 = 15;

/// One control packet. At 3.1 and 3.1.1 the properties are empty and the
/// reason codes of the acknowledgements are success.
// CONNECT (once per connection) carries two property sets; boxing them
// would cost an allocation on every packet instead.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// Client: open a session.
    Connect {
        /// The protocol level it asks for; it is encoded at this level
        /// whatever level [`Packet::encode_as`] is given.
        level: Level,
        /// Client identifier (may be empty).
        client_id: String,
        /// Keep-alive in seconds (0: none).
        keep_alive: u16,
        /// Start without a stored session (3.1.1's clean session, 5's
        /// clean start).
        clean_session: bool,
        /// User name.
        username: Option<String>,
        /// Password (before 5, valid only with a user name).
        password: Option<Vec<u8>>,
        /// The will: published by the server when the connection closes
        /// without DISCONNECT.
        will: Option<Will>,
        /// CONNECT properties (5).
        properties: Properties,
    },
    /// Server: session opened or refused.
    ConnAck {
        /// A stored session was resumed.
        session_present: bool,
        /// At 5 a reason code; at 3.1.1 the return code (0 accepted, 1
        /// unacceptable protocol version ... 5 not authorized; see
        /// [`ReasonCode::v3_connack`]).
        code: ReasonCode,
        /// CONNACK properties (5).
        properties: Properties,
    },
    /// An application message.
    Publish {
        /// Topic name (at 5, empty when a topic alias stands for it).
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
        /// PUBLISH properties (5).
        properties: Properties,
    },
    /// QoS 1 acknowledgement.
    PubAck {
        /// Of this packet.
        packet_id: u16,
        /// Reason code (5).
        reason: ReasonCode,
        /// Properties (5).
        properties: Properties,
    },
    /// QoS 2, step 1: publish received.
    PubRec {
        /// Of this packet.
        packet_id: u16,
        /// Reason code (5).
        reason: ReasonCode,
        /// Properties (5).
        properties: Properties,
    },
    /// QoS 2, step 2: publish release.
    PubRel {
        /// Of this packet.
        packet_id: u16,
        /// Reason code (5).
        reason: ReasonCode,
        /// Properties (5).
        properties: Properties,
    },
    /// QoS 2, step 3: publish complete.
    PubComp {
        /// Of this packet.
        packet_id: u16,
        /// Reason code (5).
        reason: ReasonCode,
        /// Properties (5).
        properties: Properties,
    },
    /// Client: subscribe to filters, each with its options.
    Subscribe {
        /// Packet identifier.
        packet_id: u16,
        /// Filters and their options (before 5 only the QoS).
        filters: Vec<(String, SubOptions)>,
        /// SUBSCRIBE properties (5: subscription identifier, user
        /// properties).
        properties: Properties,
    },
    /// Server: a result per filter (granted QoS, or a failure).
    SubAck {
        /// Of this packet.
        packet_id: u16,
        /// One per filter: 0..=2 granted QoS, 0x80 and up (5: any SUBACK
        /// reason code) a failure.
        codes: Vec<ReasonCode>,
        /// Properties (5).
        properties: Properties,
    },
    /// Client: unsubscribe.
    Unsubscribe {
        /// Packet identifier.
        packet_id: u16,
        /// Filters.
        filters: Vec<String>,
        /// Properties (5).
        properties: Properties,
    },
    /// Server: unsubscribed.
    UnsubAck {
        /// Of this packet.
        packet_id: u16,
        /// One per filter at 5; empty before.
        codes: Vec<ReasonCode>,
        /// Properties (5).
        properties: Properties,
    },
    /// Client: are you there?
    PingReq,
    /// Server: yes.
    PingResp,
    /// Closing cleanly (at 5 from either side, with a reason).
    Disconnect {
        /// Reason code (5).
        reason: ReasonCode,
        /// Properties (5).
        properties: Properties,
    },
    /// Enhanced authentication (5 only).
    Auth {
        /// Reason code: success, continue or re-authenticate.
        reason: ReasonCode,
        /// Properties.
        properties: Properties,
    },
}

impl Packet {
    /// A 3.1.1 CONNECT without credentials or will.
    pub fn connect(client_id: impl Into<String>, clean_session: bool, keep_alive: u16) -> Packet {
        Packet::Connect {
            level: Level::V311,
            client_id: client_id.into(),
            keep_alive,
            clean_session,
            username: None,
            password: None,
            will: None,
            properties: Properties::default(),
        }
    }

    /// A CONNACK without properties.
    pub fn connack(session_present: bool, code: ReasonCode) -> Packet {
        Packet::ConnAck {
            session_present,
            code,
            properties: Properties::default(),
        }
    }

    /// A PUBLISH without properties, not a duplicate; the packet
    /// identifier is used only at QoS > 0.
    pub fn publish(
        topic: impl Into<String>,
        payload: impl Into<Vec<u8>>,
        qos: u8,
        retain: bool,
        packet_id: u16,
    ) -> Packet {
        Packet::Publish {
            topic: topic.into(),
            payload: payload.into(),
            qos,
            retain,
            dup: false,
            packet_id: (qos > 0).then_some(packet_id),
            properties: Properties::default(),
        }
    }

    /// A successful PUBACK.
    pub fn puback(packet_id: u16) -> Packet {
        Packet::PubAck {
            packet_id,
            reason: ReasonCode::SUCCESS,
            properties: Properties::default(),
        }
    }

    /// A successful PUBREC.
    pub fn pubrec(packet_id: u16) -> Packet {
        Packet::PubRec {
            packet_id,
            reason: ReasonCode::SUCCESS,
            properties: Properties::default(),
        }
    }

    /// A successful PUBREL.
    pub fn pubrel(packet_id: u16) -> Packet {
        Packet::PubRel {
            packet_id,
            reason: ReasonCode::SUCCESS,
            properties: Properties::default(),
        }
    }

    /// A successful PUBCOMP.
    pub fn pubcomp(packet_id: u16) -> Packet {
        Packet::PubComp {
            packet_id,
            reason: ReasonCode::SUCCESS,
            properties: Properties::default(),
        }
    }

    /// A SUBSCRIBE of filters at a maximum QoS each, default options.
    pub fn subscribe<S: Into<String>>(
        packet_id: u16,
        filters: impl IntoIterator<Item = (S, u8)>,
    ) -> Packet {
        Packet::Subscribe {
            packet_id,
            filters: filters
                .into_iter()
                .map(|(f, q)| (f.into(), SubOptions::qos(q)))
                .collect(),
            properties: Properties::default(),
        }
    }

    /// A SUBACK without properties.
    pub fn suback(packet_id: u16, codes: Vec<ReasonCode>) -> Packet {
        Packet::SubAck {
            packet_id,
            codes,
            properties: Properties::default(),
        }
    }

    /// An UNSUBSCRIBE without properties.
    pub fn unsubscribe(packet_id: u16, filters: Vec<String>) -> Packet {
        Packet::Unsubscribe {
            packet_id,
            filters,
            properties: Properties::default(),
        }
    }

    /// A 3.1.1 UNSUBACK (no reason codes, no properties).
    pub fn unsuback(packet_id: u16) -> Packet {
        Packet::UnsubAck {
            packet_id,
            codes: Vec::new(),
            properties: Properties::default(),
        }
    }

    /// A DISCONNECT: normal disconnection, no properties.
    pub fn disconnect() -> Packet {
        Packet::Disconnect {
            reason: ReasonCode::NORMAL_DISCONNECTION,
            properties: Properties::default(),
        }
    }

    /// A DISCONNECT with `reason` (MQTT 5; before 5 the reason is not
    /// on the wire).
    pub fn disconnect_with(reason: ReasonCode) -> Packet {
        Packet::Disconnect {
            reason,
            properties: Properties::default(),
        }
    }

    /// The same packet with reason code `code` (PUBACK, PUBREC, PUBREL,
    /// PUBCOMP, DISCONNECT, AUTH; any other packet is unchanged).
    pub fn with_reason(mut self, code: ReasonCode) -> Packet {
        match &mut self {
            Packet::PubAck { reason, .. }
            | Packet::PubRec { reason, .. }
            | Packet::PubRel { reason, .. }
            | Packet::PubComp { reason, .. }
            | Packet::Disconnect { reason, .. }
            | Packet::Auth { reason, .. } => *reason = code,
            _ => {}
        }
        self
    }

    /// The same SUBACK or UNSUBACK with these reason codes (any other
    /// packet is unchanged).
    pub fn with_codes(mut self, new: Vec<ReasonCode>) -> Packet {
        if let Packet::SubAck { codes, .. } | Packet::UnsubAck { codes, .. } = &mut self {
            *codes = new;
        }
        self
    }

    /// The packet type (1 = CONNECT ... 15 = AUTH).
    pub fn kind(&self) -> u8 {
        match self {
            Packet::Connect { .. } => CONNECT,
            Packet::ConnAck { .. } => CONNACK,
            Packet::Publish { .. } => PUBLISH,
            Packet::PubAck { .. } => PUBACK,
            Packet::PubRec { .. } => PUBREC,
            Packet::PubRel { .. } => PUBREL,
            Packet::PubComp { .. } => PUBCOMP,
            Packet::Subscribe { .. } => SUBSCRIBE,
            Packet::SubAck { .. } => SUBACK,
            Packet::Unsubscribe { .. } => UNSUBSCRIBE,
            Packet::UnsubAck { .. } => UNSUBACK,
            Packet::PingReq => PINGREQ,
            Packet::PingResp => PINGRESP,
            Packet::Disconnect { .. } => DISCONNECT,
            Packet::Auth { .. } => AUTH,
        }
    }

    /// The packet type's name in the specification (`PUBLISH`...).
    pub fn name(&self) -> &'static str {
        name_of(self.kind())
    }
}

/// The name of packet type `kind` in the specification.
pub fn name_of(kind: u8) -> &'static str {
    match kind {
        CONNECT => "CONNECT",
        CONNACK => "CONNACK",
        PUBLISH => "PUBLISH",
        PUBACK => "PUBACK",
        PUBREC => "PUBREC",
        PUBREL => "PUBREL",
        PUBCOMP => "PUBCOMP",
        SUBSCRIBE => "SUBSCRIBE",
        SUBACK => "SUBACK",
        UNSUBSCRIBE => "UNSUBSCRIBE",
        UNSUBACK => "UNSUBACK",
        PINGREQ => "PINGREQ",
        PINGRESP => "PINGRESP",
        DISCONNECT => "DISCONNECT",
        AUTH => "AUTH",
        _ => "reserved type",
    }
}
