//! MQTT over WebSocket (RFC 6455; MQTT 3.1.1 §6 and MQTT 5 §6): the HTTP
//! upgrade a server answers ([`handshake`]) and the framing both ends
//! speak ([`frames`]): binary frames carrying MQTT bytes, which may split
//! a packet or pack several; ping, pong and close answered; text frames,
//! unmasked client frames and oversized frames refused with the close
//! code RFC 6455 names.
//!
//! Why not tungstenite's `WebSocket`: a connection that moves to another
//! process at a switch must take its WebSocket state along (the bytes of
//! an unfinished frame, a fragmented message in progress, a close sent or
//! received), and `WebSocket` keeps its read buffer and partial message
//! inside, with no way to take them out (it can be resumed from bytes
//! already read, `from_partially_read`, but not exported from). So the
//! state here is plain data ([`frames::Reader`], serde), and tungstenite
//! does what it exposes: frame headers ([`FrameHeader`]), masking, the
//! accept key, and httparse the request.
//!
//! [`FrameHeader`]: tungstenite::protocol::frame::FrameHeader

pub mod frames;
pub mod handshake;

pub use frames::{Control, FrameError, Reader, Side};
pub use handshake::{
    client_check, client_key, client_request, server_upgrade, AnswerError, Upgrade,
};
