//! A cursor over a packet body: the data types of MQTT (§1.5) read with
//! their rules checked, every shortfall a Malformed Packet.

use super::error::bad;
use super::PacketError;

/// The unread rest of a packet body (or of a property block).
pub(crate) struct Body<'a> {
    bytes: &'a [u8],
}

impl<'a> Body<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Body<'a> {
        Body { bytes }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], PacketError> {
        if self.bytes.len() < n {
            return Err(bad("truncated body"));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, PacketError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, PacketError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, PacketError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A Variable Byte Integer: at most 4 bytes.
    pub(crate) fn varint(&mut self) -> Result<u32, PacketError> {
        let mut value = 0u32;
        for i in 0..4 {
            let b = self.u8()?;
            value |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(bad("variable byte integer longer than 4 bytes"))
    }

    pub(crate) fn packet_id(&mut self) -> Result<u16, PacketError> {
        match self.u16()? {
            0 => Err(bad("packet identifier 0")),
            id => Ok(id),
        }
    }

    pub(crate) fn binary(&mut self) -> Result<&'a [u8], PacketError> {
        let n = usize::from(self.u16()?);
        self.take(n)
    }

    /// A UTF-8 Encoded String: well-formed, without U+0000.
    pub(crate) fn string(&mut self) -> Result<String, PacketError> {
        let s = std::str::from_utf8(self.binary()?).map_err(|_| bad("string is not UTF-8"))?;
        if s.contains('\0') {
            return Err(bad("string contains U+0000"));
        }
        Ok(s.to_string())
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }

    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub(crate) fn done(&self) -> Result<(), PacketError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(bad(format!("{} trailing bytes", self.bytes.len())))
        }
    }
}
