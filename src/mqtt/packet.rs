//! MQTT 3.1.1 control packets: encoding and decoding.

use std::fmt;
use std::io::{self, Read};

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
        /// Password.
        password: Option<Vec<u8>>,
    },
    /// Server: session opened (code 0) or refused.
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
        /// QoS 0 or 1 (2 is decoded but not served).
        qos: u8,
        /// Retain flag.
        retain: bool,
        /// Duplicate delivery flag.
        dup: bool,
        /// Packet identifier (QoS > 0).
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
    /// The connection failed or ended mid-packet.
    Io(io::Error),
    /// The bytes are not a valid MQTT 3.1.1 packet.
    Malformed(String),
    /// The packet exceeds the size bound.
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

impl std::error::Error for PacketError {}

impl From<io::Error> for PacketError {
    fn from(e: io::Error) -> Self {
        PacketError::Io(e)
    }
}

fn bad(m: impl Into<String>) -> PacketError {
    PacketError::Malformed(m.into())
}

/// Reads exactly one packet; `Ok(None)` on a clean end of stream before its
/// first byte.
pub fn read_packet(r: &mut impl Read, max_size: usize) -> Result<Option<Packet>, PacketError> {
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
    for i in 0..4 {
        let mut b = [0u8; 1];
        r.read_exact(&mut b)?;
        len |= ((b[0] & 0x7f) as usize) << (7 * i);
        if b[0] & 0x80 == 0 {
            if len > max_size {
                return Err(PacketError::TooLarge(len));
            }
            let mut body = vec![0u8; len];
            r.read_exact(&mut body)?;
            return decode(first[0], &body).map(Some);
        }
    }
    Err(bad("remaining length longer than 4 bytes"))
}

struct Body<'a> {
    bytes: &'a [u8],
}

impl<'a> Body<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], PacketError> {
        if self.bytes.len() < n {
            return Err(bad("truncated"));
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
    fn bytes(&mut self) -> Result<Vec<u8>, PacketError> {
        let n = self.u16()? as usize;
        Ok(self.take(n)?.to_vec())
    }
    fn string(&mut self) -> Result<String, PacketError> {
        let s = String::from_utf8(self.bytes()?).map_err(|_| bad("string is not UTF-8"))?;
        if s.contains('\0') {
            return Err(bad("string contains U+0000"));
        }
        Ok(s)
    }
    fn rest(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.bytes).to_vec()
    }
    fn done(&self) -> Result<(), PacketError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(bad("trailing bytes"))
        }
    }
}

fn decode(header: u8, body: &[u8]) -> Result<Packet, PacketError> {
    let (kind, flags) = (header >> 4, header & 0x0f);
    let mut b = Body { bytes: body };
    let fixed_flags = |want: u8| {
        if flags == want {
            Ok(())
        } else {
            Err(bad(format!("packet type {kind} with flags {flags:#x}")))
        }
    };
    let packet = match kind {
        1 => {
            fixed_flags(0)?;
            if b.string()? != "MQTT" {
                return Err(bad("protocol name is not MQTT"));
            }
            let level = b.u8()?;
            if level != 4 {
                return Err(bad(format!("protocol level {level}, not 4 (3.1.1)")));
            }
            let cf = b.u8()?;
            if cf & 0x01 != 0 {
                return Err(bad("reserved connect flag set"));
            }
            let keep_alive = b.u16()?;
            let client_id = b.string()?;
            if cf & 0x04 != 0 {
                b.string()?;
                b.bytes()?;
            } else if cf & 0x38 != 0 {
                return Err(bad("will QoS or retain without a will"));
            }
            let username = if cf & 0x80 != 0 {
                Some(b.string()?)
            } else {
                None
            };
            let password = if cf & 0x40 != 0 {
                Some(b.bytes()?)
            } else {
                None
            };
            Packet::Connect {
                client_id,
                keep_alive,
                clean_session: cf & 0x02 != 0,
                username,
                password,
            }
        }
        2 => {
            fixed_flags(0)?;
            let ack = b.u8()?;
            Packet::ConnAck {
                session_present: ack & 1 != 0,
                code: b.u8()?,
            }
        }
        3 => {
            let qos = (flags >> 1) & 3;
            if qos == 3 {
                return Err(bad("QoS 3"));
            }
            let topic = b.string()?;
            let packet_id = if qos > 0 { Some(b.u16()?) } else { None };
            return Ok(Packet::Publish {
                topic,
                payload: b.rest(),
                qos,
                retain: flags & 1 != 0,
                dup: flags & 8 != 0,
                packet_id,
            });
        }
        4 => {
            fixed_flags(0)?;
            Packet::PubAck {
                packet_id: b.u16()?,
            }
        }
        8 => {
            fixed_flags(2)?;
            let packet_id = b.u16()?;
            let mut filters = Vec::new();
            while !b.bytes.is_empty() {
                let f = b.string()?;
                let q = b.u8()?;
                if q > 2 {
                    return Err(bad("requested QoS above 2"));
                }
                filters.push((f, q));
            }
            if filters.is_empty() {
                return Err(bad("SUBSCRIBE without filters"));
            }
            Packet::Subscribe { packet_id, filters }
        }
        9 => {
            fixed_flags(0)?;
            let packet_id = b.u16()?;
            return Ok(Packet::SubAck {
                packet_id,
                codes: b.rest(),
            });
        }
        10 => {
            fixed_flags(2)?;
            let packet_id = b.u16()?;
            let mut filters = Vec::new();
            while !b.bytes.is_empty() {
                filters.push(b.string()?);
            }
            if filters.is_empty() {
                return Err(bad("UNSUBSCRIBE without filters"));
            }
            Packet::Unsubscribe { packet_id, filters }
        }
        11 => {
            fixed_flags(0)?;
            Packet::UnsubAck {
                packet_id: b.u16()?,
            }
        }
        12 => {
            fixed_flags(0)?;
            Packet::PingReq
        }
        13 => {
            fixed_flags(0)?;
            Packet::PingResp
        }
        14 => {
            fixed_flags(0)?;
            Packet::Disconnect
        }
        other => return Err(bad(format!("packet type {other}"))),
    };
    b.done()?;
    Ok(packet)
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

impl Packet {
    /// The packet's bytes.
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
                put_str(&mut body, b"MQTT");
                body.push(4);
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
                put_str(&mut body, client_id.as_bytes());
                if let Some(u) = username {
                    put_str(&mut body, u.as_bytes());
                }
                if let Some(p) = password {
                    put_str(&mut body, p);
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
                put_str(&mut body, topic.as_bytes());
                if let Some(id) = packet_id {
                    body.extend_from_slice(&id.to_be_bytes());
                }
                body.extend_from_slice(payload);
                0x30 | (u8::from(*dup) << 3) | ((qos & 3) << 1) | u8::from(*retain)
            }
            Packet::PubAck { packet_id } => {
                body.extend_from_slice(&packet_id.to_be_bytes());
                0x40
            }
            Packet::Subscribe { packet_id, filters } => {
                body.extend_from_slice(&packet_id.to_be_bytes());
                for (f, q) in filters {
                    put_str(&mut body, f.as_bytes());
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
                    put_str(&mut body, f.as_bytes());
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

    fn round(p: Packet) {
        let bytes = p.encode();
        let back = read_packet(&mut &bytes[..], 1 << 20).unwrap().unwrap();
        assert_eq!(back, p);
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
        round(Packet::ConnAck {
            session_present: false,
            code: 0,
        });
        round(Packet::Publish {
            topic: "a/b".into(),
            payload: b"x".to_vec(),
            qos: 1,
            retain: true,
            dup: false,
            packet_id: Some(7),
        });
        round(Packet::Publish {
            topic: "a".into(),
            payload: vec![],
            qos: 0,
            retain: false,
            dup: false,
            packet_id: None,
        });
        round(Packet::PubAck { packet_id: 7 });
        round(Packet::Subscribe {
            packet_id: 1,
            filters: vec![("a/#".into(), 1), ("$SYS/+".into(), 0)],
        });
        round(Packet::SubAck {
            packet_id: 1,
            codes: vec![1, 0x80],
        });
        round(Packet::Unsubscribe {
            packet_id: 2,
            filters: vec!["a/#".into()],
        });
        round(Packet::UnsubAck { packet_id: 2 });
        round(Packet::PingReq);
        round(Packet::PingResp);
        round(Packet::Disconnect);
    }

    #[test]
    fn malformed_input_is_refused() {
        let cases: &[&[u8]] = &[
            &[0x10, 0x80, 0x80, 0x80, 0x80, 0x01], // 5-byte length
            &[0x30, 0x05, 0x00, 0x09],             // truncated topic
            &[0x80, 0x03, 0x00, 0x01, 0x00],       // SUBSCRIBE with flags 0
            &[0x36, 0x03, 0x00, 0x00, 0x00],       // PUBLISH QoS 3
            &[0xc0, 0x01, 0x00],                   // PINGREQ with a body
            &[0xf0, 0x00],                         // type 15
            &[0x82, 0x02, 0x00, 0x01],             // SUBSCRIBE without filters
            &[
                0x10, 0x0a, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x03, 0x02, 0x00, 0x1e,
            ], // level 3
        ];
        for c in cases {
            assert!(read_packet(&mut &c[..], 1 << 20).is_err(), "accepted {c:?}");
        }
        assert!(matches!(
            read_packet(&mut &[0x30u8, 0x7f][..], 10),
            Err(PacketError::TooLarge(127))
        ));
        assert!(read_packet(&mut &[][..], 10).unwrap().is_none());
    }

    proptest! {
        #[test]
        fn publish_round_trips(topic in "[a-z/]{1,30}", payload in proptest::collection::vec(any::<u8>(), 0..300), qos in 0u8..2, retain: bool, id in 1u16..) {
            let p = Packet::Publish { topic, payload, qos, retain, dup: false, packet_id: (qos > 0).then_some(id) };
            let bytes = p.encode();
            prop_assert_eq!(read_packet(&mut &bytes[..], 1 << 20).unwrap().unwrap(), p);
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = read_packet(&mut &bytes[..], 1 << 10);
        }
    }
}
