//! Decoding: frames off a byte stream, then packets with every rule a
//! broker must enforce checked.

use std::io::{self, Read};

use super::{bad, Packet, PacketError, Will, CONNECT, PROTOCOL_LEVEL};

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
        4..=7 => {
            // PUBREL's flags are 0010, the other acknowledgements' 0000.
            want_flags(if kind == 6 { 2 } else { 0 })?;
            let packet_id = b.packet_id()?;
            match kind {
                4 => Packet::PubAck { packet_id },
                5 => Packet::PubRec { packet_id },
                6 => Packet::PubRel { packet_id },
                _ => Packet::PubComp { packet_id },
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
    let will = if will {
        Some(Will {
            topic: b.string()?,
            payload: b.binary()?.to_vec(),
            qos: will_qos,
            retain: will_retain,
        })
    } else {
        None
    };
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
        will,
    })
}
