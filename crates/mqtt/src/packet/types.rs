//! The small types packets are made of: the protocol [`Level`], a
//! [`Will`], and a subscription's [`SubOptions`].

use super::Properties;

/// The protocol level a connection speaks: the one its CONNECT names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Level {
    /// MQTT 3.1 (protocol name `MQIsdp`, level 3): on the wire as 3.1.1
    /// but for the CONNECT's protocol name.
    V31,
    /// MQTT 3.1.1 (level 4).
    #[default]
    V311,
    /// MQTT 5.0 (level 5).
    V5,
}

impl Level {
    /// Every level this codec speaks.
    pub const ALL: [Level; 3] = [Level::V31, Level::V311, Level::V5];

    /// The protocol level byte of a CONNECT (3, 4 or 5).
    pub fn byte(self) -> u8 {
        match self {
            Level::V31 => 3,
            Level::V311 => 4,
            Level::V5 => 5,
        }
    }

    /// The CONNECT's protocol name at this level.
    pub fn protocol_name(self) -> &'static str {
        match self {
            Level::V31 => "MQIsdp",
            Level::V311 | Level::V5 => "MQTT",
        }
    }

    /// The level a CONNECT with this protocol name and level byte asks
    /// for, if this codec speaks it.
    pub fn of_connect(name: &str, level: u8) -> Option<Level> {
        Level::ALL
            .into_iter()
            .find(|l| l.protocol_name() == name && l.byte() == level)
    }

    /// Whether this is MQTT 5 (properties, reason codes).
    pub fn is_v5(self) -> bool {
        self == Level::V5
    }
}

/// A will message of a CONNECT.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Will {
    /// Its topic.
    pub topic: String,
    /// Its payload.
    pub payload: Vec<u8>,
    /// Its QoS (0..=2).
    pub qos: u8,
    /// Whether it is retained.
    pub retain: bool,
    /// Will properties (5: will delay, message expiry, content type...).
    pub properties: Properties,
}

impl Will {
    /// A will without properties.
    pub fn new(
        topic: impl Into<String>,
        payload: impl Into<Vec<u8>>,
        qos: u8,
        retain: bool,
    ) -> Will {
        Will {
            topic: topic.into(),
            payload: payload.into(),
            qos,
            retain,
            properties: Properties::default(),
        }
    }
}

/// What a subscription asks for (MQTT 5 §3.8.3.1); before 5 only the QoS
/// is on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SubOptions {
    /// Maximum QoS (0..=2).
    pub qos: u8,
    /// Do not deliver the subscriber's own messages.
    pub no_local: bool,
    /// Deliver with the retain flag as published (not cleared).
    pub retain_as_published: bool,
    /// When to send retained messages.
    pub retain_handling: RetainHandling,
}

impl SubOptions {
    /// Options with this maximum QoS and everything else as in 3.1.1.
    pub fn qos(qos: u8) -> SubOptions {
        SubOptions {
            qos,
            ..SubOptions::default()
        }
    }

    /// The subscription options byte of MQTT 5.
    pub fn byte(self) -> u8 {
        (self.qos & 3)
            | (u8::from(self.no_local) << 2)
            | (u8::from(self.retain_as_published) << 3)
            | (self.retain_handling.byte() << 4)
    }

    /// The options of a valid MQTT 5 options byte; `None` for reserved
    /// bits, QoS 3 or retain handling 3.
    pub fn from_byte(o: u8) -> Option<SubOptions> {
        if o & 0xc0 != 0 || o & 3 == 3 {
            return None;
        }
        Some(SubOptions {
            qos: o & 3,
            no_local: o & 0x04 != 0,
            retain_as_published: o & 0x08 != 0,
            retain_handling: RetainHandling::from_byte((o >> 4) & 3)?,
        })
    }
}

/// When a subscription gets the retained messages (MQTT 5 §3.8.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RetainHandling {
    /// 0: at every subscribe (as in 3.1.1).
    #[default]
    OnSubscribe,
    /// 1: only when the subscription did not exist yet.
    OnNewSubscription,
    /// 2: never at subscribe.
    Never,
}

impl RetainHandling {
    /// The option's value on the wire (0..=2).
    pub fn byte(self) -> u8 {
        match self {
            RetainHandling::OnSubscribe => 0,
            RetainHandling::OnNewSubscription => 1,
            RetainHandling::Never => 2,
        }
    }

    /// The option for a value on the wire; `None` for 3.
    pub fn from_byte(b: u8) -> Option<RetainHandling> {
        match b {
            0 => Some(RetainHandling::OnSubscribe),
            1 => Some(RetainHandling::OnNewSubscription),
            2 => Some(RetainHandling::Never),
            _ => None,
        }
    }
}
