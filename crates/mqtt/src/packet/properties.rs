//! MQTT 5 properties (§2.2.2): the typed [`Properties`] of a packet or a
//! will, which packets may carry each, and their encoding and decoding
//! with every rule of the specification checked (an identifier not valid
//! for the packet, unknown, of the wrong type or running past the
//! property length is a Malformed Packet; a property included twice that
//! may appear once, or a value the specification forbids, is a Protocol
//! Error).

use super::encode::{put_binary, put_str, put_varint};
use super::error::{bad, protocol};
use super::read::Body;
use super::{name_of, PacketError, ReasonCode, MAX_REMAINING, PUBLISH, SUBSCRIBE};

/// The properties of a packet (or of a will): every property of MQTT 5,
/// absent unless set. Encoding writes only those the packet may carry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Properties {
    /// 0x01 Payload Format Indicator (PUBLISH, will): 0 bytes, 1 UTF-8.
    pub payload_format_indicator: Option<u8>,
    /// 0x02 Message Expiry Interval in seconds (PUBLISH, will).
    pub message_expiry_interval: Option<u32>,
    /// 0x03 Content Type (PUBLISH, will).
    pub content_type: Option<String>,
    /// 0x08 Response Topic (PUBLISH, will).
    pub response_topic: Option<String>,
    /// 0x09 Correlation Data (PUBLISH, will).
    pub correlation_data: Option<Vec<u8>>,
    /// 0x0B Subscription Identifiers (1..=268,435,455): one in SUBSCRIBE,
    /// one per matching subscription in a PUBLISH to a client.
    pub subscription_identifiers: Vec<u32>,
    /// 0x11 Session Expiry Interval in seconds (CONNECT, CONNACK,
    /// DISCONNECT).
    pub session_expiry_interval: Option<u32>,
    /// 0x12 Assigned Client Identifier (CONNACK).
    pub assigned_client_identifier: Option<String>,
    /// 0x13 Server Keep Alive (CONNACK).
    pub server_keep_alive: Option<u16>,
    /// 0x15 Authentication Method (CONNECT, CONNACK, AUTH).
    pub authentication_method: Option<String>,
    /// 0x16 Authentication Data (CONNECT, CONNACK, AUTH).
    pub authentication_data: Option<Vec<u8>>,
    /// 0x17 Request Problem Information (CONNECT).
    pub request_problem_information: Option<bool>,
    /// 0x18 Will Delay Interval in seconds (will).
    pub will_delay_interval: Option<u32>,
    /// 0x19 Request Response Information (CONNECT).
    pub request_response_information: Option<bool>,
    /// 0x1A Response Information (CONNACK).
    pub response_information: Option<String>,
    /// 0x1C Server Reference (CONNACK, DISCONNECT).
    pub server_reference: Option<String>,
    /// 0x1F Reason String (CONNACK, acknowledgements, DISCONNECT, AUTH).
    pub reason_string: Option<String>,
    /// 0x21 Receive Maximum, non-zero (CONNECT, CONNACK).
    pub receive_maximum: Option<u16>,
    /// 0x22 Topic Alias Maximum (CONNECT, CONNACK).
    pub topic_alias_maximum: Option<u16>,
    /// 0x23 Topic Alias, non-zero (PUBLISH).
    pub topic_alias: Option<u16>,
    /// 0x24 Maximum QoS, 0 or 1 (CONNACK).
    pub maximum_qos: Option<u8>,
    /// 0x25 Retain Available (CONNACK).
    pub retain_available: Option<bool>,
    /// 0x26 User Properties, in order, repeats allowed (every packet with
    /// properties, and wills).
    pub user_properties: Vec<(String, String)>,
    /// 0x27 Maximum Packet Size, non-zero (CONNECT, CONNACK).
    pub maximum_packet_size: Option<u32>,
    /// 0x28 Wildcard Subscription Available (CONNACK).
    pub wildcard_subscription_available: Option<bool>,
    /// 0x29 Subscription Identifiers Available (CONNACK).
    pub subscription_identifier_available: Option<bool>,
    /// 0x2A Shared Subscription Available (CONNACK).
    pub shared_subscription_available: Option<bool>,
}

/// Where a property block is: a bit per packet type (`1 << type`), bit 0
/// for a will's properties.
pub(crate) type Place = u16;
/// The place of a will's properties.
pub(crate) const WILL: Place = 1;

/// The place of packet type `kind`'s properties.
pub(crate) const fn at(kind: u8) -> Place {
    1 << kind
}

const PUB_WILL: Place = at(PUBLISH) | WILL;
const ACKS: Place = at(4) | at(5) | at(6) | at(7);
const EVERYWHERE: Place = (0xfffe & !at(12) & !at(13)) | WILL;

/// Each property: identifier, name, the places it may appear.
const DEFS: [(u8, &str, Place); 27] = [
    (0x01, "Payload Format Indicator", PUB_WILL),
    (0x02, "Message Expiry Interval", PUB_WILL),
    (0x03, "Content Type", PUB_WILL),
    (0x08, "Response Topic", PUB_WILL),
    (0x09, "Correlation Data", PUB_WILL),
    (0x0b, "Subscription Identifier", at(PUBLISH) | at(SUBSCRIBE)),
    (0x11, "Session Expiry Interval", at(1) | at(2) | at(14)),
    (0x12, "Assigned Client Identifier", at(2)),
    (0x13, "Server Keep Alive", at(2)),
    (0x15, "Authentication Method", at(1) | at(2) | at(15)),
    (0x16, "Authentication Data", at(1) | at(2) | at(15)),
    (0x17, "Request Problem Information", at(1)),
    (0x18, "Will Delay Interval", WILL),
    (0x19, "Request Response Information", at(1)),
    (0x1a, "Response Information", at(2)),
    (0x1c, "Server Reference", at(2) | at(14)),
    (
        0x1f,
        "Reason String",
        at(2) | ACKS | at(9) | at(11) | at(14) | at(15),
    ),
    (0x21, "Receive Maximum", at(1) | at(2)),
    (0x22, "Topic Alias Maximum", at(1) | at(2)),
    (0x23, "Topic Alias", at(PUBLISH)),
    (0x24, "Maximum QoS", at(2)),
    (0x25, "Retain Available", at(2)),
    (0x26, "User Property", EVERYWHERE),
    (0x27, "Maximum Packet Size", at(1) | at(2)),
    (0x28, "Wildcard Subscription Available", at(2)),
    (0x29, "Subscription Identifier Available", at(2)),
    (0x2a, "Shared Subscription Available", at(2)),
];

/// Whether property `id` may appear at `place`.
pub(crate) fn allowed(id: u8, place: Place) -> bool {
    DEFS.iter().any(|(i, _, p)| *i == id && p & place != 0)
}

fn place_name(place: Place) -> &'static str {
    if place == WILL {
        return "will properties";
    }
    name_of(place.trailing_zeros() as u8)
}

/// Sets a property that may appear once.
fn once<T>(slot: &mut Option<T>, value: T, name: &str) -> Result<(), PacketError> {
    if slot.is_some() {
        return Err(protocol(format!("{name} included more than once")));
    }
    *slot = Some(value);
    Ok(())
}

/// A Byte property whose only values are 0 and 1.
fn flag(r: &mut Body<'_>, name: &str) -> Result<bool, PacketError> {
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        v => Err(protocol(format!("{name} of {v}, not 0 or 1"))),
    }
}

fn nonzero<T: PartialEq + Default>(value: T, name: &str) -> Result<T, PacketError> {
    if value == T::default() {
        return Err(protocol(format!("{name} of 0")));
    }
    Ok(value)
}

impl Properties {
    /// Whether no property is set.
    pub fn is_empty(&self) -> bool {
        *self == Properties::default()
    }

    /// Reads a Property Length and the properties it covers, at `place`.
    pub(crate) fn decode(b: &mut Body<'_>, place: Place) -> Result<Properties, PacketError> {
        let len = b.varint()? as usize;
        if len > b.len() {
            return Err(bad(format!(
                "property length {len} past the end of the packet ({} bytes left)",
                b.len()
            )));
        }
        let mut r = Body::new(b.take(len)?);
        let mut p = Properties::default();
        while !r.is_empty() {
            let id = r.varint()?;
            let Some((id, name, places)) = DEFS.iter().find(|d| u32::from(d.0) == id) else {
                return Err(bad(format!("unknown property identifier {id:#04x}")));
            };
            if places & place == 0 {
                return Err(bad(format!("{name} in {}", place_name(place))));
            }
            p.read_value(*id, name, &mut r, place)?;
        }
        if p.authentication_data.is_some() && p.authentication_method.is_none() {
            return Err(protocol(
                "Authentication Data without an Authentication Method",
            ));
        }
        Ok(p)
    }

    /// Reads the value of property `id` (allowed at `place`) into its
    /// field.
    fn read_value(
        &mut self,
        id: u8,
        name: &str,
        r: &mut Body<'_>,
        place: Place,
    ) -> Result<(), PacketError> {
        match id {
            0x01 => once(&mut self.payload_format_indicator, r.u8()?, name),
            0x02 => once(&mut self.message_expiry_interval, r.u32()?, name),
            0x03 => once(&mut self.content_type, r.string()?, name),
            0x08 => once(&mut self.response_topic, r.string()?, name),
            0x09 => once(&mut self.correlation_data, r.binary()?.to_vec(), name),
            0x0b => {
                let v = nonzero(r.varint()?, name)?;
                if place == at(SUBSCRIBE) && !self.subscription_identifiers.is_empty() {
                    return Err(protocol(format!("{name} included more than once")));
                }
                self.subscription_identifiers.push(v);
                Ok(())
            }
            0x11 => once(&mut self.session_expiry_interval, r.u32()?, name),
            0x12 => once(&mut self.assigned_client_identifier, r.string()?, name),
            0x13 => once(&mut self.server_keep_alive, r.u16()?, name),
            0x15 => once(&mut self.authentication_method, r.string()?, name),
            0x16 => once(&mut self.authentication_data, r.binary()?.to_vec(), name),
            0x17 => once(&mut self.request_problem_information, flag(r, name)?, name),
            0x18 => once(&mut self.will_delay_interval, r.u32()?, name),
            0x19 => once(&mut self.request_response_information, flag(r, name)?, name),
            0x1a => once(&mut self.response_information, r.string()?, name),
            0x1c => once(&mut self.server_reference, r.string()?, name),
            0x1f => once(&mut self.reason_string, r.string()?, name),
            0x21 => once(&mut self.receive_maximum, nonzero(r.u16()?, name)?, name),
            0x22 => once(&mut self.topic_alias_maximum, r.u16()?, name),
            0x23 => match r.u16()? {
                // §3.3.2.3.4: a Protocol Error answered with 0x94.
                0 => Err(PacketError::Protocol {
                    code: ReasonCode::TOPIC_ALIAS_INVALID,
                    what: "Topic Alias of 0".into(),
                }),
                v => once(&mut self.topic_alias, v, name),
            },
            0x24 => match r.u8()? {
                v @ (0 | 1) => once(&mut self.maximum_qos, v, name),
                v => Err(protocol(format!("{name} of {v}, not 0 or 1"))),
            },
            0x25 => once(&mut self.retain_available, flag(r, name)?, name),
            0x26 => {
                let pair = (r.string()?, r.string()?);
                self.user_properties.push(pair);
                Ok(())
            }
            0x27 => once(
                &mut self.maximum_packet_size,
                nonzero(r.u32()?, name)?,
                name,
            ),
            0x28 => once(
                &mut self.wildcard_subscription_available,
                flag(r, name)?,
                name,
            ),
            0x29 => once(
                &mut self.subscription_identifier_available,
                flag(r, name)?,
                name,
            ),
            _ => once(
                &mut self.shared_subscription_available,
                flag(r, name)?,
                name,
            ),
        }
    }

    /// Writes the Property Length and the properties allowed at `place`.
    pub(crate) fn encode(&self, place: Place, out: &mut Vec<u8>) {
        let mut w = Writer {
            out: Vec::new(),
            place,
        };
        self.write_values(&mut w);
        put_varint(out, w.out.len());
        out.extend_from_slice(&w.out);
    }

    fn write_values(&self, w: &mut Writer) {
        w.byte(0x01, self.payload_format_indicator);
        w.u32(0x02, self.message_expiry_interval);
        w.str(0x03, self.content_type.as_deref());
        w.str(0x08, self.response_topic.as_deref());
        w.bin(0x09, self.correlation_data.as_deref());
        for v in &self.subscription_identifiers {
            if w.ok(0x0b) {
                w.out.push(0x0b);
                put_varint(&mut w.out, (*v as usize).min(MAX_REMAINING));
            }
        }
        w.u32(0x11, self.session_expiry_interval);
        w.str(0x12, self.assigned_client_identifier.as_deref());
        w.u16(0x13, self.server_keep_alive);
        w.str(0x15, self.authentication_method.as_deref());
        w.bin(0x16, self.authentication_data.as_deref());
        w.byte(0x17, self.request_problem_information.map(u8::from));
        w.u32(0x18, self.will_delay_interval);
        w.byte(0x19, self.request_response_information.map(u8::from));
        w.str(0x1a, self.response_information.as_deref());
        w.str(0x1c, self.server_reference.as_deref());
        w.str(0x1f, self.reason_string.as_deref());
        w.u16(0x21, self.receive_maximum);
        w.u16(0x22, self.topic_alias_maximum);
        w.u16(0x23, self.topic_alias);
        w.byte(0x24, self.maximum_qos);
        w.byte(0x25, self.retain_available.map(u8::from));
        for (k, v) in &self.user_properties {
            if w.ok(0x26) {
                w.out.push(0x26);
                put_str(&mut w.out, k);
                put_str(&mut w.out, v);
            }
        }
        w.u32(0x27, self.maximum_packet_size);
        w.byte(0x28, self.wildcard_subscription_available.map(u8::from));
        w.byte(0x29, self.subscription_identifier_available.map(u8::from));
        w.byte(0x2a, self.shared_subscription_available.map(u8::from));
    }
}

/// Writes the properties allowed at its place.
struct Writer {
    out: Vec<u8>,
    place: Place,
}

impl Writer {
    fn ok(&self, id: u8) -> bool {
        allowed(id, self.place)
    }

    fn byte(&mut self, id: u8, v: Option<u8>) {
        if let Some(v) = v.filter(|_| self.ok(id)) {
            self.out.extend_from_slice(&[id, v]);
        }
    }

    fn u16(&mut self, id: u8, v: Option<u16>) {
        if let Some(v) = v.filter(|_| self.ok(id)) {
            self.out.push(id);
            self.out.extend_from_slice(&v.to_be_bytes());
        }
    }

    fn u32(&mut self, id: u8, v: Option<u32>) {
        if let Some(v) = v.filter(|_| self.ok(id)) {
            self.out.push(id);
            self.out.extend_from_slice(&v.to_be_bytes());
        }
    }

    fn str(&mut self, id: u8, v: Option<&str>) {
        if let Some(v) = v.filter(|_| self.ok(id)) {
            self.out.push(id);
            put_str(&mut self.out, v);
        }
    }

    fn bin(&mut self, id: u8, v: Option<&[u8]>) {
        if let Some(v) = v.filter(|_| self.ok(id)) {
            self.out.push(id);
            put_binary(&mut self.out, v);
        }
    }
}
