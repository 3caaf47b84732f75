//! WebSocket framing for MQTT: what a [`Reader`] makes of the bytes one
//! side receives (the payload of binary frames, as one byte stream for
//! the MQTT decoder, and the control frames to answer), and the frames
//! each side writes ([`binary`], [`pong`], [`close`]). A client masks
//! its frames and a server must not; a server refuses an unmasked one,
//! as RFC 6455 §5.1 asks. The reader's state is plain data, so a
//! connection moves to another process in the middle of a frame or of a
//! fragmented message and goes on there.

use std::io::Cursor;

use serde::{Deserialize, Serialize};
use tungstenite::protocol::frame::coding::{Control as Ctl, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

/// Which end reads: a server reads masked frames, a client unmasked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Server,
    Client,
}

/// A control frame received, to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Answer with a pong carrying this payload.
    Ping(Vec<u8>),
    /// A pong, with its payload (nothing to do).
    Pong(Vec<u8>),
    /// The peer closes, with its status code if it gave one: answer with
    /// a close, then close the connection.
    Close(Option<u16>),
}

/// Why a stream of frames is refused: the close code to send is
/// [`FrameError::close_code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("a text frame (MQTT is sent in binary frames)")]
    Text,
    #[error("an unmasked frame from a client")]
    Unmasked,
    #[error("a masked frame from a server")]
    Masked,
    #[error("a frame of {0} bytes, over the bound")]
    TooLarge(u64),
    #[error("reserved bits set, or a reserved opcode")]
    Reserved,
    #[error("a control frame fragmented or over 125 bytes")]
    BadControl,
    #[error("a continuation frame with no message to continue, or a new message inside one")]
    BadContinuation,
    #[error("a frame after the peer's close")]
    AfterClose,
    #[error("a close frame whose payload is 1 byte")]
    BadClose,
    #[error("a payload length not in its shortest form, or with its top bit set")]
    BadLength,
}

impl FrameError {
    /// The close status RFC 6455 §7.4.1 names: 1003 (data it cannot
    /// accept) for text, 1009 (too big) for size, 1002 (protocol error)
    /// for the rest.
    pub fn close_code(&self) -> u16 {
        match self {
            FrameError::Text => 1003,
            FrameError::TooLarge(_) => 1009,
            _ => 1002,
        }
    }
}

/// What one side has read of the other's frames: plain data, moved with
/// the connection.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Reader {
    /// Received bytes not yet a whole frame (at most a header and the
    /// bound on a frame's payload).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partial: Vec<u8>,
    /// A fragmented binary message is in progress: the next data frame
    /// must continue it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub continuing: bool,
    /// The peer's close frame arrived: nothing may follow it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub close_received: bool,
}

impl Reader {
    /// Reads `bytes` as `side`: the payload of each whole binary frame
    /// goes to `data` (MQTT bytes), each control frame to `controls`,
    /// and the rest of an unfinished frame waits in the reader. Frames
    /// over `max_frame` payload bytes are refused. On an error, what was
    /// read before the bad frame has been delivered.
    pub fn feed(
        &mut self,
        side: Side,
        bytes: &[u8],
        max_frame: u64,
        data: &mut Vec<u8>,
        controls: &mut Vec<Control>,
    ) -> Result<(), FrameError> {
        self.partial.extend_from_slice(bytes);
        let mut at = 0;
        let result = loop {
            match self.frame(side, &self.partial[at..], max_frame) {
                Ok(Some((header, start, len))) => {
                    let end = at + start + len;
                    let payload = &mut self.partial[at + start..end];
                    if let Some(mask) = header.mask {
                        apply_mask(payload, mask);
                    }
                    if let Err(e) = self.take(&header, at + start, end, data, controls) {
                        break Err(e);
                    }
                    at = end;
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        self.partial.drain(..at);
        result
    }

    /// The next whole frame of `buf`: its header, where its payload
    /// starts and how long it is; `None` until it is all there.
    fn frame(
        &self,
        side: Side,
        buf: &[u8],
        max_frame: u64,
    ) -> Result<Option<(FrameHeader, usize, usize)>, FrameError> {
        if buf.is_empty() {
            return Ok(None);
        }
        if self.close_received {
            return Err(FrameError::AfterClose);
        }
        let mut cursor = Cursor::new(buf);
        let (header, len) = match FrameHeader::parse(&mut cursor) {
            Ok(Some(h)) => h,
            Ok(None) => return Ok(None),
            Err(_) => return Err(FrameError::Reserved),
        };
        // RFC 6455 §5.2: the shortest form, and a 64-bit length's most
        // significant bit 0 (a protocol error, not a frame too big).
        let minimal = match buf.get(1).map(|b| b & 0x7f) {
            Some(126) => len >= 126,
            Some(127) => len > 0xffff && len >> 63 == 0,
            _ => true,
        };
        if !minimal {
            return Err(FrameError::BadLength);
        }
        check(&header, side, len, max_frame)?;
        let start = cursor.position() as usize;
        let len = len as usize;
        match buf.len() >= start + len {
            true => Ok(Some((header, start, len))),
            false => Ok(None),
        }
    }

    /// A whole frame, unmasked in `self.partial[start..end]`.
    fn take(
        &mut self,
        header: &FrameHeader,
        start: usize,
        end: usize,
        data: &mut Vec<u8>,
        controls: &mut Vec<Control>,
    ) -> Result<(), FrameError> {
        let payload = &self.partial[start..end];
        match header.opcode {
            OpCode::Data(Data::Binary) if self.continuing => Err(FrameError::BadContinuation),
            OpCode::Data(Data::Continue) if !self.continuing => Err(FrameError::BadContinuation),
            OpCode::Data(Data::Binary | Data::Continue) => {
                data.extend_from_slice(payload);
                self.continuing = !header.is_final;
                Ok(())
            }
            OpCode::Data(Data::Text) => Err(FrameError::Text),
            OpCode::Control(Ctl::Ping) => {
                controls.push(Control::Ping(payload.to_vec()));
                Ok(())
            }
            OpCode::Control(Ctl::Pong) => {
                controls.push(Control::Pong(payload.to_vec()));
                Ok(())
            }
            OpCode::Control(Ctl::Close) => {
                let code = match payload.len() {
                    0 => None,
                    1 => return Err(FrameError::BadClose),
                    _ => Some(u16::from_be_bytes([payload[0], payload[1]])),
                };
                self.close_received = true;
                controls.push(Control::Close(code));
                Ok(())
            }
            _ => Err(FrameError::Reserved),
        }
    }
}

/// What a header must be before its payload is even waited for.
fn check(header: &FrameHeader, side: Side, len: u64, max_frame: u64) -> Result<(), FrameError> {
    if header.rsv1 || header.rsv2 || header.rsv3 {
        return Err(FrameError::Reserved);
    }
    match (side, header.mask.is_some()) {
        (Side::Server, false) => return Err(FrameError::Unmasked),
        (Side::Client, true) => return Err(FrameError::Masked),
        _ => {}
    }
    if let OpCode::Control(_) = header.opcode {
        if !header.is_final || len > 125 {
            return Err(FrameError::BadControl);
        }
    } else if len > max_frame {
        return Err(FrameError::TooLarge(len));
    }
    Ok(())
}

/// Appends one frame of `opcode` with `payload`, masked with `mask` (a
/// client's) or not (a server's).
fn frame(opcode: OpCode, payload: &[u8], mask: Option<[u8; 4]>, out: &mut Vec<u8>) {
    let header = FrameHeader {
        is_final: true,
        rsv1: false,
        rsv2: false,
        rsv3: false,
        opcode,
        mask,
    };
    // Writing into a Vec cannot fail.
    let _ = header.format(payload.len() as u64, out);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(mask) = mask {
        apply_mask(&mut out[start..], mask);
    }
}

/// Masks or unmasks `buf` (RFC 6455 §5.3: each byte XOR the key's byte
/// at its position mod 4; tungstenite keeps its own private).
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// Appends a binary frame carrying `payload` (MQTT bytes).
pub fn binary(payload: &[u8], mask: Option<[u8; 4]>, out: &mut Vec<u8>) {
    frame(OpCode::Data(Data::Binary), payload, mask, out);
}

/// Appends the pong that answers a ping with `payload`.
pub fn pong(payload: &[u8], mask: Option<[u8; 4]>, out: &mut Vec<u8>) {
    frame(OpCode::Control(Ctl::Pong), payload, mask, out);
}

/// Appends a ping with `payload`.
pub fn ping(payload: &[u8], mask: Option<[u8; 4]>, out: &mut Vec<u8>) {
    frame(OpCode::Control(Ctl::Ping), payload, mask, out);
}

/// Appends a close frame with status `code`.
pub fn close(code: u16, mask: Option<[u8; 4]>, out: &mut Vec<u8>) {
    frame(OpCode::Control(Ctl::Close), &code.to_be_bytes(), mask, out);
}

#[cfg(test)]
mod tests;
