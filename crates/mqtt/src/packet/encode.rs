//! Encoding: a [`Packet`] to its bytes at a protocol [`Level`].

use super::properties::{at, Properties};
use super::{
    Level, Packet, ReasonCode, AUTH, DISCONNECT, MAX_FIELD, MAX_REMAINING, PUBREL, SUBSCRIBE,
    UNSUBSCRIBE,
};

/// Writes a length-prefixed field, cut at [`MAX_FIELD`] bytes.
pub(crate) fn put_binary(out: &mut Vec<u8>, b: &[u8]) {
    let b = &b[..b.len().min(MAX_FIELD)];
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

/// Writes a string, cut at [`MAX_FIELD`] bytes on a character boundary.
pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    let mut end = s.len().min(MAX_FIELD);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    put_binary(out, &s.as_bytes()[..end]);
}

/// Writes a Variable Byte Integer (`n` at most [`MAX_REMAINING`]).
pub(crate) fn put_varint(out: &mut Vec<u8>, n: usize) {
    let mut n = n.min(MAX_REMAINING);
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            break;
        }
    }
}

impl Packet {
    /// The packet's bytes as MQTT 3.1.1 (`encode_as(Level::V311)`; a
    /// CONNECT is written at its own level).
    pub fn encode(&self) -> Vec<u8> {
        self.encode_as(Level::V311)
    }

    /// The packet's bytes at `level`, the level of the connection it goes
    /// to (a CONNECT is written at its own level). Fields beyond what the
    /// protocol can carry are cut (strings at 65,535 bytes, the body at
    /// [`MAX_REMAINING`]); what `level` cannot carry is left out
    /// (properties and reason codes before 5, properties a packet may not
    /// carry at 5); a PUBLISH carries its packet identifier when its QoS
    /// is above 0 (0 if `packet_id` is `None`, which peers refuse); AUTH
    /// exists only in 5 and is written as in 5 at any level.
    pub fn encode_as(&self, level: Level) -> Vec<u8> {
        let mut body = Vec::new();
        let v5 = level.is_v5();
        let header = match self {
            Packet::Connect { .. } => {
                self.encode_connect(&mut body);
                0x10
            }
            Packet::ConnAck {
                session_present,
                code,
                properties,
            } => {
                body.push(u8::from(*session_present));
                body.push(code.0);
                if v5 {
                    properties.encode(at(2), &mut body);
                }
                0x20
            }
            Packet::Publish { .. } => self.encode_publish(&mut body, v5),
            Packet::PingReq => 0xc0,
            Packet::PingResp => 0xd0,
            Packet::Disconnect { reason, properties } => {
                if v5 {
                    reason_and_properties(&mut body, DISCONNECT, *reason, properties);
                }
                0xe0
            }
            Packet::Auth { reason, properties } => {
                reason_and_properties(&mut body, AUTH, *reason, properties);
                0xf0
            }
            _ => self.encode_with_id(&mut body, v5),
        };
        frame(header, body)
    }

    /// The packets that start with a packet identifier (but PUBLISH):
    /// writes the body, returns the first byte.
    fn encode_with_id(&self, body: &mut Vec<u8>, v5: bool) -> u8 {
        let kind = self.kind();
        match self {
            Packet::PubAck {
                packet_id,
                reason,
                properties,
            }
            | Packet::PubRec {
                packet_id,
                reason,
                properties,
            }
            | Packet::PubRel {
                packet_id,
                reason,
                properties,
            }
            | Packet::PubComp {
                packet_id,
                reason,
                properties,
            } => {
                body.extend_from_slice(&packet_id.to_be_bytes());
                if v5 {
                    reason_and_properties(body, kind, *reason, properties);
                }
            }
            Packet::Subscribe {
                packet_id,
                filters,
                properties,
            } => {
                head(body, *packet_id, kind, v5.then_some(properties));
                for (f, o) in filters {
                    put_str(body, f);
                    body.push(if v5 { o.byte() } else { o.qos });
                }
            }
            Packet::SubAck {
                packet_id,
                codes,
                properties,
            } => {
                head(body, *packet_id, kind, v5.then_some(properties));
                body.extend(codes.iter().map(|c| c.0));
            }
            Packet::Unsubscribe {
                packet_id,
                filters,
                properties,
            } => {
                head(body, *packet_id, kind, v5.then_some(properties));
                for f in filters {
                    put_str(body, f);
                }
            }
            Packet::UnsubAck {
                packet_id,
                codes,
                properties,
            } => {
                head(body, *packet_id, kind, v5.then_some(properties));
                if v5 {
                    body.extend(codes.iter().map(|c| c.0));
                }
            }
            _ => {}
        }
        // PUBREL, SUBSCRIBE and UNSUBSCRIBE have the fixed-header flags 0010.
        (kind << 4)
            | if matches!(kind, PUBREL | SUBSCRIBE | UNSUBSCRIBE) {
                2
            } else {
                0
            }
    }

    fn encode_publish(&self, body: &mut Vec<u8>, v5: bool) -> u8 {
        let Packet::Publish {
            topic,
            payload,
            qos,
            retain,
            dup,
            packet_id,
            properties,
        } = self
        else {
            return 0x30;
        };
        let qos = qos & 3;
        put_str(body, topic);
        if qos > 0 {
            body.extend_from_slice(&packet_id.unwrap_or(0).to_be_bytes());
        }
        if v5 {
            properties.encode(at(3), body);
        }
        body.extend_from_slice(payload);
        0x30 | (u8::from(*dup) << 3) | (qos << 1) | u8::from(*retain)
    }
}

/// A packet identifier and, at 5, the properties of packet type `kind`.
fn head(body: &mut Vec<u8>, packet_id: u16, kind: u8, properties: Option<&Properties>) {
    body.extend_from_slice(&packet_id.to_be_bytes());
    if let Some(p) = properties {
        p.encode(at(kind), body);
    }
}

/// The tail of an acknowledgement, DISCONNECT or AUTH at 5, in its
/// shortest form: nothing for success without properties, the reason code
/// alone without properties, else both.
fn reason_and_properties(body: &mut Vec<u8>, kind: u8, reason: ReasonCode, p: &Properties) {
    let empty = p.is_empty() || {
        let mut probe = Vec::new();
        p.encode(at(kind), &mut probe);
        probe == [0]
    };
    if reason == ReasonCode::SUCCESS && empty {
        return;
    }
    body.push(reason.0);
    if !empty {
        p.encode(at(kind), body);
    }
}

/// The fixed header, the remaining length and the body (cut at
/// [`MAX_REMAINING`]).
fn frame(header: u8, mut body: Vec<u8>) -> Vec<u8> {
    body.truncate(MAX_REMAINING);
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(header);
    put_varint(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}
