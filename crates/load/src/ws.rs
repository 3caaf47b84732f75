//! The client end of MQTT over WebSocket for the load clients: the
//! upgrade request (nothing else is sent until the server's `101`, as RFC
//! 6455 §4.1 asks), MQTT bytes out as masked binary frames, the server's
//! frames in (pings answered, a close taken as the end).

use std::fmt;

use emqx_ws::frames::{self, Control, FrameError, Reader, Side};
use emqx_ws::{client_check, client_key, client_request, AnswerError};

/// The largest frame payload accepted from the server.
const MAX_FRAME: u64 = 2 << 20;

/// A connection's WebSocket layer, between the MQTT queues and the
/// socket (or TLS).
pub struct WsLink {
    key: String,
    /// The `Host` of the request: the address connected to.
    host: String,
    path: String,
    /// The server's `101` arrived.
    upgraded: bool,
    /// The server's answer so far, while upgrading.
    answer: Vec<u8>,
    /// Frames written before the upgrade, sent once it is done.
    held: Vec<u8>,
    reader: Reader,
    /// Our close frame is queued: nothing follows it.
    close_sent: bool,
    /// State of the mask generator (xorshift32, seeded from the key):
    /// predictable to whoever saw the key, which RFC 6455 §5.3 asks not
    /// to be; enough for a load harness on loopback, whose masks guard
    /// no browser against a proxy.
    mask: u32,
}

/// What the server's bytes came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound {
    Open,
    /// The server sent its close frame (answered).
    Closed,
}

/// Why the link failed.
#[derive(Debug)]
pub enum WsError {
    Answer(AnswerError),
    Frame(FrameError),
}

impl fmt::Display for WsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WsError::Answer(e) => write!(f, "WebSocket upgrade refused: {e}"),
            WsError::Frame(e) => write!(f, "WebSocket frames: {e}"),
        }
    }
}

impl std::error::Error for WsError {}

impl WsLink {
    /// A link to `host` (`ip:port`) for `path`.
    pub fn new(host: &str, path: &str) -> WsLink {
        let key = client_key();
        let seed = key.bytes().fold(0x9e37_79b9u32, |h, b| {
            h.rotate_left(5) ^ u32::from(b).wrapping_mul(0x0100_0193)
        });
        WsLink {
            key,
            host: host.to_string(),
            path: path.to_string(),
            upgraded: false,
            answer: Vec::new(),
            held: Vec::new(),
            reader: Reader::default(),
            close_sent: false,
            mask: seed | 1,
        }
    }

    /// The upgrade request, to send first.
    pub fn request(&self) -> Vec<u8> {
        client_request(&self.host, &self.path, &self.key)
    }

    fn next_mask(&mut self) -> [u8; 4] {
        let mut x = self.mask;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.mask = x;
        x.to_le_bytes()
    }

    /// Frames MQTT bytes into `out` (held until the upgrade is done).
    pub fn send(&mut self, mqtt: &[u8], out: &mut Vec<u8>) {
        if self.close_sent {
            return;
        }
        let mask = Some(self.next_mask());
        if self.upgraded {
            frames::binary(mqtt, mask, out);
        } else {
            frames::binary(mqtt, mask, &mut self.held);
        }
    }

    /// Queues our close frame (status 1000, normal closure), once.
    pub fn close(&mut self, out: &mut Vec<u8>) {
        if self.upgraded && !self.close_sent {
            let mask = Some(self.next_mask());
            frames::close(1000, mask, out);
        }
        self.close_sent = true;
    }

    /// Takes the server's bytes: the answer to the upgrade, then frames
    /// whose payload goes to `mqtt`; pongs and our close go to `out`.
    pub fn receive(
        &mut self,
        bytes: &[u8],
        mqtt: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<Inbound, WsError> {
        if self.upgraded {
            return self.frames(bytes, mqtt, out);
        }
        self.answer.extend_from_slice(bytes);
        let Some(n) = client_check(&self.answer, &self.key).map_err(WsError::Answer)? else {
            return Ok(Inbound::Open);
        };
        self.upgraded = true;
        out.append(&mut self.held);
        let answer = std::mem::take(&mut self.answer);
        self.frames(&answer[n..], mqtt, out)
    }

    fn frames(
        &mut self,
        bytes: &[u8],
        mqtt: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<Inbound, WsError> {
        let mut controls = Vec::new();
        let read = self
            .reader
            .feed(Side::Client, bytes, MAX_FRAME, mqtt, &mut controls);
        for c in controls {
            match c {
                // Nothing follows our close, not even a pong.
                Control::Ping(_) if self.close_sent => {}
                Control::Ping(payload) => {
                    let mask = Some(self.next_mask());
                    frames::pong(&payload, mask, out);
                }
                Control::Pong(_) => {}
                Control::Close(_) => {
                    self.close(out);
                    return Ok(Inbound::Closed);
                }
            }
        }
        read.map_err(WsError::Frame)?;
        Ok(Inbound::Open)
    }
}

#[cfg(test)]
mod tests {
    //! The link against the reference broker's own upgrade and framing
    //! code, as a server would answer.

    use super::*;

    fn server_answer(request: &[u8]) -> Vec<u8> {
        match emqx_ws::server_upgrade(request, "/mqtt") {
            emqx_ws::Upgrade::Accepted { response, .. } => response,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn frames_wait_for_the_upgrade_and_pings_are_answered() {
        let mut link = WsLink::new("127.0.0.1:8083", "/mqtt");
        let request = link.request();
        let mut out = Vec::new();
        link.send(b"\x10\x00", &mut out);
        assert!(out.is_empty(), "nothing before the 101");
        let mut answer = server_answer(&request);
        // The server's first frame arrives with its answer.
        frames::binary(b"\x20\x02\x00\x00", None, &mut answer);
        frames::ping(b"hi", None, &mut answer);
        let mut mqtt = Vec::new();
        let (a, b) = answer.split_at(7);
        assert_eq!(link.receive(a, &mut mqtt, &mut out).unwrap(), Inbound::Open);
        assert!(!link.upgraded);
        assert_eq!(link.receive(b, &mut mqtt, &mut out).unwrap(), Inbound::Open);
        assert_eq!(mqtt, b"\x20\x02\x00\x00");
        // Our held frame, then the pong: both masked, as a server reads.
        let (mut data, mut controls) = (Vec::new(), Vec::new());
        Reader::default()
            .feed(Side::Server, &out, 1 << 20, &mut data, &mut controls)
            .unwrap();
        assert_eq!(data, b"\x10\x00");
        assert_eq!(controls, vec![Control::Pong(b"hi".to_vec())]);
    }

    #[test]
    fn a_refusal_and_a_close_end_the_link() {
        let mut link = WsLink::new("127.0.0.1:8083", "/mqtt");
        let (mut mqtt, mut out) = (Vec::new(), Vec::new());
        let refused = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        assert!(matches!(
            link.receive(refused, &mut mqtt, &mut out),
            Err(WsError::Answer(AnswerError::Status(404)))
        ));
        let mut link = WsLink::new("127.0.0.1:8083", "/mqtt");
        let request = link.request();
        let mut answer = server_answer(&request);
        frames::close(1000, None, &mut answer);
        assert_eq!(
            link.receive(&answer, &mut mqtt, &mut out).unwrap(),
            Inbound::Closed
        );
        let (mut data, mut controls) = (Vec::new(), Vec::new());
        Reader::default()
            .feed(Side::Server, &out, 1 << 20, &mut data, &mut controls)
            .unwrap();
        assert_eq!(controls, vec![Control::Close(Some(1000))]);
        // Nothing after our close.
        let before = out.len();
        link.send(b"\xe0\x00", &mut out);
        assert_eq!(out.len(), before);
        // An unmasked frame is fine from a server, a masked one is not.
        let mut link = WsLink::new("127.0.0.1:8083", "/mqtt");
        let request = link.request();
        let mut answer = server_answer(&request);
        frames::binary(b"x", Some([1, 2, 3, 4]), &mut answer);
        assert!(matches!(
            link.receive(&answer, &mut mqtt, &mut out),
            Err(WsError::Frame(FrameError::Masked))
        ));
    }
}
