//! MQTT 3.1.1 control packets: the [`Packet`] model, its encoding, and
//! decoding that enforces the rules a broker must (fixed-header flags,
//! UTF-8 strings without U+0000, non-zero packet identifiers, QoS 0..=2,
//! protocol level 4).

use std::fmt;
use std::io::{self, Read};

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

fn bad(m: impl Into<String>) -> PacketError {
    PacketError::Malformed(m.into())
}

/// A packet read off the wire, not yet decoded: its first byte and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Packet type (high nibble) and flags (low nibble).
    pub header: u8,
    /// The remaining bytes.
    pub body: Vec<u8>,
}

impl Frame {
    /// The packet type (1 = CONNECT ... 14 = DISCONNECT).
    pub fn kind(&self) -> u8 {
        self.header >> 4
    }

    /// Decodes the packet.
    pub fn decode(&self) -> Result<Packet, PacketError> {
        decode_body(self.header, &self.body)
    }

    /// For a CONNECT under a protocol name MQTT has used (`MQTT`, or
    /// `MQIsdp` for 3.1): the protocol level it asks for. A server answers
    /// a level other than 4 with CONNACK code 1.
    pub fn connect_level(&self) -> Option<u8> {
        if self.kind() != CONNECT {
            return None;
        }
        let mut b = Body { bytes: &self.body };
        let name = b.string().ok()?;
        if name != "MQTT" && name != "MQIsdp" {
            return None;
        }
        b.u8().ok()
    }
}

/// Reads exactly one packet (blocking); `Ok(None)` on a clean end of stream
/// before its first byte. `max_size` bounds the remaining length.
pub fn read_packet(r: &mut impl Read, max_size: usize) -> Result<Option<Packet>, PacketError> {
    match read_frame(r, max_size)? {
        Some(frame) => frame.decode().map(Some),
        None => Ok(None),
    }
}

/// Reads exactly one packet without decoding it; `Ok(None)` on a clean end
/// of stream before its first byte.
pub fn read_frame(r: &mut impl Read, max_size: usize) -> Result<Option<Frame>, PacketError> {
    let mut first = [0u8; 1];
    loop {
        match r.read(&mut first) {
            Ok(0) => return Ok(None),
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(PacketError::Io(e)),
        }
    }
    let mut len = 0usize;
    let mut i = 0;
    loop {
        let mut b = [0u8; 1];
        r.read_exact(&mut b)?;
        len |= usize::from(b[0] & 0x7f) << (7 * i);
        if b[0] & 0x80 == 0 {
            break;
        }
        i += 1;
        if i == 4 {
            return Err(bad("remaining length longer than 4 bytes"));
        }
    }
    if len > max_size {
        return Err(PacketError::TooLarge(len));
    }
    // Grows with the bytes that arrive, not with what the peer announced.
    let mut body = Vec::with_capacity(len.min(64 * 1024));
    r.take(len as u64).read_to_end(&mut body)?;
    if body.len() < len {
        return Err(PacketError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "stream ended {} bytes into a {len}-byte packet body",
                body.len()
            ),
        )));
    }
    Ok(Some(Frame {
        header: first[0],
        body,
    }))
}

/// Decodes one packet from the start of `buf`: `Ok(None)` while it is
/// incomplete, else the packet and how many bytes it took.
pub fn decode(buf: &[u8], max_size: usize) -> Result<Option<(Packet, usize)>, PacketError> {
    let Some(&header) = buf.first() else {
        return Ok(None);
    };
    let mut len = 0usize;
    let mut at = 1;
    loop {
        let Some(&b) = buf.get(at) else {
            return Ok(None);
        };
        len |= usize::from(b & 0x7f) << (7 * (at - 1));
        at += 1;
        if b & 0x80 == 0 {
            break;
        }
        if at == 5 {
            return Err(bad("remaining length longer than 4 bytes"));
        }
    }
    if len > max_size {
        return Err(PacketError::TooLarge(len));
    }
    match buf.get(at..at + len) {
        Some(body) => Ok(Some((decode_body(header, body)?, at + len))),
        None => Ok(None),
    }
}

struct Body<'a> {
    bytes: &'a [u8],
}

impl<'a> Body<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], PacketError> {
        if self.bytes.len() < n {
            return Err(bad("truncated body"));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, PacketError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, PacketError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn packet_id(&mut self) -> Result<u16, PacketError> {
        match self.u16()? {
            0 => Err(bad("packet identifier 0")),
            id => Ok(id),
        }
    }
    fn binary(&mut self) -> Result<&'a [u8], PacketError> {
        let n = usize::from(self.u16()?);
        self.take(n)
    }
    fn string(&mut self) -> Result<String, PacketError> {
        let s = std::str::from_utf8(self.binary()?).map_err(|_| bad("string is not UTF-8"))?;
        if s.contains('\0') {
            return Err(bad("string contains U+0000"));
        }
        Ok(s.to_string())
    }
    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }
    fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
    fn done(&self) -> Result<(), PacketError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(bad(format!("{} trailing bytes", self.bytes.len())))
        }
    }
}

fn name_of(kind: u8) -> &'static str {
    match kind {
        1 => "CONNECT",
        2 => "CONNACK",
        3 => "PUBLISH",
        4 => "PUBACK",
        5 => "PUBREC",
        6 => "PUBREL",
        7 => "PUBCOMP",
        8 => "SUBSCRIBE",
        9 => "SUBACK",
        10 => "UNSUBSCRIBE",
        11 => "UNSUBACK",
        12 => "PINGREQ",
        13 => "PINGRESP",
        14 => "DISCONNECT",
        _ => "reserved type",
    }
}

fn decode_body(header: u8, body: &[u8]) -> Result<Packet, PacketError> {
    let (kind, flags) = (header >> 4, header & 0x0f);
    let mut b = Body { bytes: body };
    let want_flags = |want: u8| {
        if flags == want {
            Ok(())
        } else {
            Err(bad(format!(
                "{} with flags {flags:#06b} (must be {want:#06b})",
                name_of(kind)
            )))
        }
    };
    let packet = match kind {
        CONNECT => {
            want_flags(0)?;
            decode_connect(&mut b)?
        }
        2 => {
            want_flags(0)?;
            let ack = b.u8()?;
            if ack & 0xfe != 0 {
                return Err(bad("CONNACK reserved flags set"));
            }
            let code = b.u8()?;
            if code > 5 {
                return Err(bad(format!("CONNACK return code {code}")));
            }
            Packet::ConnAck {
                session_present: ack & 1 != 0,
                code,
            }
        }
        3 => {
            let qos = (flags >> 1) & 3;
            if qos == 3 {
                return Err(bad("PUBLISH at QoS 3"));
            }
            let dup = flags & 8 != 0;
            if dup && qos == 0 {
                return Err(bad("PUBLISH with DUP at QoS 0"));
            }
            let topic = b.string()?;
            let packet_id = if qos > 0 { Some(b.packet_id()?) } else { None };
            return Ok(Packet::Publish {
                topic,
                payload: b.rest().to_vec(),
                qos,
                retain: flags & 1 != 0,
                dup,
                packet_id,
            });
        }
        4 => {
            want_flags(0)?;
            Packet::PubAck {
                packet_id: b.packet_id()?,
            }
        }
        8 => {
            want_flags(2)?;
            let packet_id = b.packet_id()?;
            let mut filters = Vec::new();
            while !b.is_empty() {
                let f = b.string()?;
                let q = b.u8()?;
                if q > 2 {
                    return Err(bad(format!("SUBSCRIBE options byte {q:#04x}")));
                }
                filters.push((f, q));
            }
            if filters.is_empty() {
                return Err(bad("SUBSCRIBE without filters"));
            }
            Packet::Subscribe { packet_id, filters }
        }
        9 => {
            want_flags(0)?;
            let packet_id = b.packet_id()?;
            let codes = b.rest().to_vec();
            if codes.is_empty() {
                return Err(bad("SUBACK without return codes"));
            }
            if let Some(c) = codes.iter().find(|c| !matches!(c, 0 | 1 | 2 | 0x80)) {
                return Err(bad(format!("SUBACK return code {c:#04x}")));
            }
            Packet::SubAck { packet_id, codes }
        }
        10 => {
            want_flags(2)?;
            let packet_id = b.packet_id()?;
            let mut filters = Vec::new();
            while !b.is_empty() {
                filters.push(b.string()?);
            }
            if filters.is_empty() {
                return Err(bad("UNSUBSCRIBE without filters"));
            }
            Packet::Unsubscribe { packet_id, filters }
        }
        11 => {
            want_flags(0)?;
            Packet::UnsubAck {
                packet_id: b.packet_id()?,
            }
        }
        12 => {
            want_flags(0)?;
            Packet::PingReq
        }
        13 => {
            want_flags(0)?;
            Packet::PingResp
        }
        14 => {
            want_flags(0)?;
            Packet::Disconnect
        }
        5..=7 => return Err(bad(format!("{} (QoS 2) is not supported", name_of(kind)))),
        other => return Err(bad(format!("packet type {other}"))),
    };
    b.done()?;
    Ok(packet)
}

fn decode_connect(b: &mut Body<'_>) -> Result<Packet, PacketError> {
    let name = b.string()?;
    if name != "MQTT" {
        return Err(bad(format!("protocol name {name:?}, not \"MQTT\"")));
    }
    let level = b.u8()?;
    if level != PROTOCOL_LEVEL {
        return Err(bad(format!("protocol level {level}, not 4 (3.1.1)")));
    }
    let cf = b.u8()?;
    if cf & 0x01 != 0 {
        return Err(bad("reserved connect flag set"));
    }
    let will = cf & 0x04 != 0;
    let will_qos = (cf >> 3) & 3;
    let will_retain = cf & 0x20 != 0;
    if will && will_qos == 3 {
        return Err(bad("will at QoS 3"));
    }
    if !will && (will_qos != 0 || will_retain) {
        return Err(bad("will QoS or retain without a will"));
    }
    let has_user = cf & 0x80 != 0;
    let has_password = cf & 0x40 != 0;
    if has_password && !has_user {
        return Err(bad("password without a user name"));
    }
    let keep_alive = b.u16()?;
    let client_id = b.string()?;
    if will {
        // The will is parsed for its framing only: this model keeps none.
        b.string()?;
        b.binary()?;
    }
    let username = if has_user { Some(b.string()?) } else { None };
    let password = if has_password {
        Some(b.binary()?.to_vec())
    } else {
        None
    };
    Ok(Packet::Connect {
        client_id,
        keep_alive,
        clean_session: cf & 0x02 != 0,
        username,
        password,
    })
}

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
            } => {
                put_str(&mut body, "MQTT");
                body.push(PROTOCOL_LEVEL);
                let mut cf = 0u8;
                if *clean_session {
                    cf |= 0x02;
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
            Packet::PubAck { packet_id } => {
                body.extend_from_slice(&packet_id.to_be_bytes());
                0x40
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn read(bytes: &[u8]) -> Result<Option<Packet>, PacketError> {
        read_packet(&mut &bytes[..], 1 << 20)
    }

    fn round(p: Packet) {
        let bytes = p.encode();
        assert_eq!(read(&bytes).unwrap().as_ref(), Some(&p), "{bytes:02x?}");
        assert_eq!(decode(&bytes, 1 << 20).unwrap(), Some((p, bytes.len())));
    }

    #[test]
    fn every_packet_round_trips() {
        round(Packet::Connect {
            client_id: "c1".into(),
            keep_alive: 30,
            clean_session: true,
            username: Some("u".into()),
            password: Some(b"p".to_vec()),
        });
        round(Packet::Connect {
            client_id: String::new(),
            keep_alive: 0,
            clean_session: false,
            username: None,
            password: None,
        });
        round(Packet::ConnAck {
            session_present: true,
            code: 0,
        });
        round(Packet::ConnAck {
            session_present: false,
            code: 5,
        });
        round(Packet::Publish {
            topic: "a/b".into(),
            payload: b"x".to_vec(),
            qos: 1,
            retain: true,
            dup: true,
            packet_id: Some(7),
        });
        round(Packet::Publish {
            topic: "a".into(),
            payload: vec![0; 200],
            qos: 2,
            retain: false,
            dup: false,
            packet_id: Some(65535),
        });
        round(Packet::Publish {
            topic: "ünïcödé/$x".into(),
            payload: vec![],
            qos: 0,
            retain: false,
            dup: false,
            packet_id: None,
        });
        round(Packet::PubAck { packet_id: 7 });
        round(Packet::Subscribe {
            packet_id: 1,
            filters: vec![("a/#".into(), 1), ("$SYS/+".into(), 0), ("x".into(), 2)],
        });
        round(Packet::SubAck {
            packet_id: 1,
            codes: vec![1, 0x80, 0, 2],
        });
        round(Packet::Unsubscribe {
            packet_id: 2,
            filters: vec!["a/#".into(), "b".into()],
        });
        round(Packet::UnsubAck { packet_id: 2 });
        round(Packet::PingReq);
        round(Packet::PingResp);
        round(Packet::Disconnect);
    }

    #[test]
    fn remaining_length_uses_up_to_four_bytes() {
        let bounds = [(3, 1), (127, 1), (128, 2), (16_383, 2), (16_384, 3)];
        for (remaining, len_bytes) in bounds.into_iter().chain([(2_097_151, 3), (2_097_152, 4)]) {
            let n = remaining - 3; // topic "t" takes 3 bytes
            let p = Packet::Publish {
                topic: "t".into(),
                payload: vec![7; n],
                qos: 0,
                retain: false,
                dup: false,
                packet_id: None,
            };
            let bytes = p.encode();
            assert_eq!(bytes.len(), 1 + len_bytes + 3 + n, "payload {n}");
            assert_eq!(read_packet(&mut &bytes[..], 4 << 20).unwrap(), Some(p));
        }
    }

    /// A CONNECT with the given flags byte and payload.
    fn connect_with(level: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', level, flags, 0, 30];
        body.extend_from_slice(payload);
        let mut out = vec![0x10, body.len() as u8];
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn a_will_is_skipped_with_its_framing() {
        // Client id "c", will topic "w", will message "bye", user "u".
        let payload = [0, 1, b'c', 0, 1, b'w', 0, 3, b'b', b'y', b'e', 0, 1, b'u'];
        let p = read(&connect_with(4, 0x80 | 0x20 | 0x08 | 0x04 | 0x02, &payload))
            .unwrap()
            .unwrap();
        assert_eq!(
            p,
            Packet::Connect {
                client_id: "c".into(),
                keep_alive: 30,
                clean_session: true,
                username: Some("u".into()),
                password: None,
            }
        );
    }

    #[test]
    fn malformed_input_is_refused() {
        let c = [0, 1, b'c'];
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("5-byte varint", vec![0x10, 0x80, 0x80, 0x80, 0x80, 0x01]),
            ("truncated topic", vec![0x30, 0x05, 0x00, 0x09]),
            ("truncated body", vec![0x30, 0x05, 0x00, 0x01, b'a']),
            ("truncated varint", vec![0x30, 0x80]),
            ("header only", vec![0x30]),
            ("SUBSCRIBE flags 0", vec![0x80, 0x06, 0, 1, 0, 1, b'a', 0]),
            ("UNSUBSCRIBE flags 0", vec![0xa0, 0x05, 0, 1, 0, 1, b'a']),
            ("PUBLISH QoS 3", vec![0x36, 0x03, 0x00, 0x01, b'a']),
            ("DUP at QoS 0", vec![0x38, 0x03, 0x00, 0x01, b'a']),
            ("packet id 0", vec![0x32, 0x05, 0, 1, b'a', 0, 0]),
            ("PUBACK id 0", vec![0x40, 0x02, 0, 0]),
            ("PINGREQ with a body", vec![0xc0, 0x01, 0x00]),
            ("PINGREQ flags", vec![0xc1, 0x00]),
            ("type 15", vec![0xf0, 0x00]),
            ("type 0", vec![0x00, 0x00]),
            ("PUBREL", vec![0x62, 0x02, 0, 1]),
            ("SUBSCRIBE without filters", vec![0x82, 0x02, 0x00, 0x01]),
            ("SUBSCRIBE QoS 3", vec![0x82, 0x06, 0, 1, 0, 1, b'a', 3]),
            ("SUBACK code 3", vec![0x90, 0x03, 0, 1, 3]),
            ("CONNACK code 6", vec![0x20, 0x02, 0, 6]),
            ("not UTF-8", vec![0x30, 0x04, 0, 2, 0xc3, 0x28]),
            ("U+0000", vec![0x30, 0x04, 0, 2, b'a', 0]),
            ("level 3", connect_with(3, 0x02, &c)),
            ("level 5", connect_with(5, 0x02, &c)),
            ("reserved connect flag", connect_with(4, 0x03, &c)),
            (
                "will QoS 3",
                connect_with(4, 0x1c, &[0, 1, b'c', 0, 1, b'w', 0, 0]),
            ),
            ("will retain, no will", connect_with(4, 0x22, &c)),
            (
                "password, no user",
                connect_with(4, 0x42, &[0, 1, b'c', 0, 1, b'p']),
            ),
            ("trailing bytes", connect_with(4, 0x02, &[0, 1, b'c', 9])),
        ];
        for (what, bytes) in &cases {
            assert!(read(bytes).is_err(), "accepted {what}: {bytes:02x?}");
            assert!(
                !matches!(decode(bytes, 1 << 20), Ok(Some(_))),
                "decode accepted {what}"
            );
        }
        assert!(matches!(
            read(&[0x30, 0x05, 0, 1]),
            Err(PacketError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof
        ));
        assert!(matches!(
            read_packet(&mut &[0x30u8, 0x7f][..], 10),
            Err(PacketError::TooLarge(127))
        ));
        assert!(matches!(
            decode(&[0x30u8, 0x7f], 10),
            Err(PacketError::TooLarge(127))
        ));
        assert!(read(&[]).unwrap().is_none());
    }

    #[test]
    fn the_level_of_a_refused_connect_is_told() {
        let c = [0, 1, b'c'];
        let frame = read_frame(&mut &connect_with(3, 0x02, &c)[..], 100)
            .unwrap()
            .unwrap();
        assert!(frame.decode().is_err());
        assert_eq!(frame.connect_level(), Some(3));
        let ok = read_frame(&mut &connect_with(4, 0x02, &c)[..], 100)
            .unwrap()
            .unwrap();
        assert_eq!(ok.connect_level(), Some(4));
        let ping = read_frame(&mut &[0xc0u8, 0][..], 100).unwrap().unwrap();
        assert_eq!(ping.connect_level(), None);
    }

    #[test]
    fn long_strings_are_cut_on_a_character_boundary() {
        let topic = "é".repeat(40_000); // 80,000 bytes
        let bytes = Packet::Publish {
            topic,
            payload: b"p".to_vec(),
            qos: 0,
            retain: false,
            dup: false,
            packet_id: None,
        }
        .encode();
        match read(&bytes).unwrap() {
            Some(Packet::Publish { topic, payload, .. }) => {
                assert_eq!(topic.len(), 65_534);
                assert_eq!(payload, b"p");
            }
            other => panic!("{other:?}"),
        }
    }

    fn text() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9/+#$é ]{0,40}"
    }

    fn id() -> impl Strategy<Value = u16> {
        1u16..
    }

    fn any_packet() -> impl Strategy<Value = Packet> {
        let connect = (
            text(),
            any::<u16>(),
            any::<bool>(),
            proptest::option::of((
                text(),
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
            )),
        )
            .prop_map(|(client_id, keep_alive, clean_session, user)| {
                let (username, password) = match user {
                    Some((u, p)) => (Some(u), p),
                    None => (None, None),
                };
                Packet::Connect {
                    client_id,
                    keep_alive,
                    clean_session,
                    username,
                    password,
                }
            });
        let publish = (
            text(),
            proptest::collection::vec(any::<u8>(), 0..300),
            0u8..3,
            any::<bool>(),
            any::<bool>(),
            id(),
        )
            .prop_map(|(topic, payload, qos, retain, dup, id)| Packet::Publish {
                topic,
                payload,
                qos,
                retain,
                dup: dup && qos > 0,
                packet_id: (qos > 0).then_some(id),
            });
        prop_oneof![
            connect,
            (any::<bool>(), 0u8..6).prop_map(|(session_present, code)| Packet::ConnAck {
                session_present,
                code
            }),
            publish,
            id().prop_map(|packet_id| Packet::PubAck { packet_id }),
            (id(), proptest::collection::vec((text(), 0u8..3), 1..5))
                .prop_map(|(packet_id, filters)| Packet::Subscribe { packet_id, filters }),
            (
                id(),
                proptest::collection::vec(
                    prop_oneof![Just(0u8), Just(1), Just(2), Just(0x80)],
                    1..5
                )
            )
                .prop_map(|(packet_id, codes)| Packet::SubAck { packet_id, codes }),
            (id(), proptest::collection::vec(text(), 1..5))
                .prop_map(|(packet_id, filters)| Packet::Unsubscribe { packet_id, filters }),
            id().prop_map(|packet_id| Packet::UnsubAck { packet_id }),
            Just(Packet::PingReq),
            Just(Packet::PingResp),
            Just(Packet::Disconnect),
        ]
    }

    proptest! {
        #[test]
        fn every_packet_round_trips_property(p in any_packet()) {
            let bytes = p.encode();
            prop_assert_eq!(read(&bytes).unwrap(), Some(p.clone()));
            // A buffer decoder sees nothing until the last byte arrives.
            for cut in 0..bytes.len() {
                prop_assert!(decode(&bytes[..cut], 1 << 20).unwrap().is_none());
            }
            let mut two = bytes.clone();
            two.extend_from_slice(&Packet::PingReq.encode());
            prop_assert_eq!(decode(&two, 1 << 20).unwrap(), Some((p, bytes.len())));
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = read_packet(&mut &bytes[..], 1 << 10);
            let _ = decode(&bytes, 1 << 10);
        }

        #[test]
        fn reading_agrees_with_decoding(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let streamed = read_packet(&mut &bytes[..], 1 << 10);
            match decode(&bytes, 1 << 10) {
                Ok(Some((p, _))) => prop_assert_eq!(streamed.unwrap(), Some(p)),
                Ok(None) => prop_assert!(!matches!(streamed, Ok(Some(_)))),
                Err(_) => prop_assert!(streamed.is_err()),
            }
        }
    }
}
