//! Decoding: frames off a byte stream or out of a buffer, then packets at
//! a connection's level (the rules are in `parse` and `connect`).

use std::io::{self, Read};

use super::error::bad;
use super::parse::{decode_body, Ctx};
use super::read::Body;
use super::{Level, Packet, PacketError, CONNECT};

/// What the 3.1.1-only entry points decode with.
const V311_ONLY: Ctx<'static> = Ctx {
    level: Level::V311,
    connect: &[Level::V311],
};

/// The context of a connection at `level`: its CONNECT may name any level.
fn at_level(level: Level) -> Ctx<'static> {
    Ctx {
        level,
        connect: &Level::ALL,
    }
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
    /// The packet type (1 = CONNECT ... 15 = AUTH).
    pub fn kind(&self) -> u8 {
        self.header >> 4
    }

    /// Decodes the packet as MQTT 3.1.1 (a CONNECT must ask for 3.1.1).
    pub fn decode(&self) -> Result<Packet, PacketError> {
        decode_body(self.header, &self.body, V311_ONLY)
    }

    /// Decodes the packet of a connection at `level` (a CONNECT at
    /// whatever level it names).
    pub fn decode_as(&self, level: Level) -> Result<Packet, PacketError> {
        decode_body(self.header, &self.body, at_level(level))
    }

    /// For a CONNECT under a protocol name MQTT has used (`MQTT`, or
    /// `MQIsdp` for 3.1): the protocol level byte it asks for. A 3.1.1
    /// server answers a level other than 4 with CONNACK code 1.
    pub fn connect_level(&self) -> Option<u8> {
        if self.kind() != CONNECT {
            return None;
        }
        let mut b = Body::new(&self.body);
        let name = b.string().ok()?;
        if name != "MQTT" && name != "MQIsdp" {
            return None;
        }
        b.u8().ok()
    }
}

/// Reads exactly one packet as MQTT 3.1.1 (blocking); `Ok(None)` on a
/// clean end of stream before its first byte. `max_size` bounds the
/// remaining length.
pub fn read_packet(r: &mut impl Read, max_size: usize) -> Result<Option<Packet>, PacketError> {
    match read_frame(r, max_size)? {
        Some(frame) => frame.decode().map(Some),
        None => Ok(None),
    }
}

/// [`read_packet`] for a connection at `level` (a CONNECT at whatever
/// level it names).
pub fn read_packet_as(
    r: &mut impl Read,
    max_size: usize,
    level: Level,
) -> Result<Option<Packet>, PacketError> {
    match read_frame(r, max_size)? {
        Some(frame) => frame.decode_as(level).map(Some),
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

/// Decodes one MQTT 3.1.1 packet from the start of `buf` (a CONNECT must
/// ask for 3.1.1, else [`PacketError::UnsupportedVersion`]): `Ok(None)`
/// while it is incomplete, else the packet and how many bytes it took.
pub fn decode(buf: &[u8], max_size: usize) -> Result<Option<(Packet, usize)>, PacketError> {
    decode_with(buf, max_size, V311_ONLY)
}

/// [`decode`] for a connection at `level`; a CONNECT is decoded at
/// whatever level it names (3.1, 3.1.1 or 5: see its `level`).
pub fn decode_as(
    buf: &[u8],
    max_size: usize,
    level: Level,
) -> Result<Option<(Packet, usize)>, PacketError> {
    decode_with(buf, max_size, at_level(level))
}

fn decode_with(
    buf: &[u8],
    max_size: usize,
    cx: Ctx<'_>,
) -> Result<Option<(Packet, usize)>, PacketError> {
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
        Some(body) => Ok(Some((decode_body(header, body, cx)?, at + len))),
        None => Ok(None),
    }
}
