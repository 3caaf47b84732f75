//! Encoding: a [`Packet`] to its bytes.

use super::{Packet, MAX_FIELD, MAX_REMAINING, PROTOCOL_LEVEL};

/// Writes a length-prefixed field, cut at [`MAX_FIELD`] bytes.
fn put_binary(out: &mut Vec<u8>, b: &[u8]) {
    let b = &b[..b.len().min(MAX_FIELD)];
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

/// Writes a string, cut at [`MAX_FIELD`] bytes on a character boundary.
fn put_str(out: &mut Vec<u8>, s: &str) {
    let mut end = s.len().min(MAX_FIELD);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    put_binary(out, &s.as_bytes()[..end]);
}

impl Packet {
    /// The packet's bytes. Fields beyond what the protocol can carry are
    /// cut (strings at 65,535 bytes, the body at [`MAX_REMAINING`]); a
    /// PUBLISH carries its packet identifier when its QoS is above 0 (0 if
    /// `packet_id` is `None`, which peers refuse).
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        let header: u8 = match self {
            Packet::Connect {
                client_id,
                keep_alive,
                clean_session,
                username,
                password,
                will,
            } => {
                put_str(&mut body, "MQTT");
                body.push(PROTOCOL_LEVEL);
                let mut cf = 0u8;
                if *clean_session {
                    cf |= 0x02;
                }
                if let Some(w) = will {
                    cf |= 0x04 | ((w.qos & 3) << 3) | if w.retain { 0x20 } else { 0 };
                }
                if password.is_some() {
                    cf |= 0x40;
                }
                if username.is_some() {
                    cf |= 0x80;
                }
                body.push(cf);
                body.extend_from_slice(&keep_alive.to_be_bytes());
                put_str(&mut body, client_id);
                if let Some(w) = will {
                    put_str(&mut body, &w.topic);
                    put_binary(&mut body, &w.payload);
                }
                if let Some(u) = username {
                    put_str(&mut body, u);
                }
                if let Some(p) = password {
                    put_binary(&mut body, p);
                }
                0x10
            }
            Packet::ConnAck {
                session_present,
                code,
            } => {
                body.push(u8::from(*session_present));
                body.push(*code);
                0x20
            }
            Packet::Publish {
                topic,
                payload,
                qos,
                retain,
                dup,
                packet_id,
            } => {
                let qos = qos & 3;
                put_str(&mut body, topic);
                if qos > 0 {
                    body.extend_from_slice(&packet_id.unwrap_or(0).to_be_bytes());
                }
                body.extend_from_slice(payload);
                0x30 | (u8::from(*dup) << 3) | (qos << 1) | u8::from(*retain)
            }
            Packet::PubAck { packet_id }
            | Packet::PubRec { packet_id }
            | Packet::PubRel { packet_id }
            | Packet::PubComp { packet_id } => {
                body.extend_from_slice(&packet_id.to_be_bytes());
                match self {
                    Packet::PubAck { .. } => 0x40,
                    Packet::PubRec { .. } => 0x50,
                    // PUBREL's fixed-header flags are 0010.
                    Packet::PubRel { .. } => 0x62,
                    _ => 0x70,
                }
            }
            Packet::Subscribe { packet_id, filters } => {
                body.extend_from_slice(&packet_id.to_be_bytes());
                for (f, q) in filters {
                    put_str(&mut body, f);
                    body.push(*q);
                }
                0x82
            }
            Packet::SubAck { packet_id, codes } => {
                body.extend_from_slice(&packet_id.to_be_bytes());
                body.extend_from_slice(codes);
                0x90
            }
            Packet::Unsubscribe { packet_id, filters } => {
                body.extend_from_slice(&packet_id.to_be_bytes());
                for f in filters {
                    put_str(&mut body, f);
                }
                0xa2
            }
            Packet::UnsubAck { packet_id } => {
                body.extend_from_slice(&packet_id.to_be_bytes());
                0xb0
            }
            Packet::PingReq => 0xc0,
            Packet::PingResp => 0xd0,
            Packet::Disconnect => 0xe0,
        };
        body.truncate(MAX_REMAINING);
        let mut out = Vec::with_capacity(body.len() + 5);
        out.push(header);
        let mut len = body.len();
        loop {
            let mut byte = (len % 128) as u8;
            len /= 128;
            if len > 0 {
                byte |= 0x80;
            }
            out.push(byte);
            if len == 0 {
                break;
            }
        }
        out.extend_from_slice(&body);
        out
    }
}
