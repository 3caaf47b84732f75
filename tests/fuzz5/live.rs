//! A live broker fed bad input: one connection per case (a valid MQTT 5
//! CONNECT first, or not), the bad bytes, our end of stream, then
//! everything the broker answers until it closes, within a bound (a
//! hang fails). What the decoder says of the same bytes is the yardstick
//! ([`Verdict`]), and [`judge`] holds the broker's answer to it.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use emqx_mqtt::{decode_as, Level, Packet, PacketError, Properties, ReasonCode};

use super::gen::MAX_PACKET;

/// The longest a bad connection may stay open after our end of stream.
pub const HANG: Duration = Duration::from_secs(10);

/// What the decoder makes of a byte stream at a connection's level.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Packets decoded before the end or the error.
    pub packets: Vec<Packet>,
    /// The reason code of the error that ended decoding, if one did.
    pub error: Option<u8>,
    /// Whether the error was an unsupported protocol version.
    pub unsupported: bool,
}

/// The decoder's verdict on `bytes` at `level` (a CONNECT at the level
/// it names), with the broker's bound on the remaining length.
pub fn verdict(bytes: &[u8], level: Level) -> Verdict {
    let mut v = Verdict {
        packets: Vec::new(),
        error: None,
        unsupported: false,
    };
    let mut at = 0;
    let mut level = level;
    while at < bytes.len() {
        match decode_as(&bytes[at..], MAX_PACKET, level) {
            Ok(Some((p, n))) => {
                if let Packet::Connect { level: l, .. } = &p {
                    level = *l;
                }
                v.packets.push(p);
                at += n;
            }
            Ok(None) => break,
            Err(e) => {
                v.unsupported = matches!(e, PacketError::UnsupportedVersion(_));
                v.error = Some(e.reason_code().expect("a buffer decode has no I/O").0);
                break;
            }
        }
    }
    v
}

/// What the broker did with one bad connection.
#[derive(Debug, Default, Clone)]
pub struct Answer {
    /// Every byte it sent after the CONNACK of our valid CONNECT (or
    /// from the start when there was none).
    pub bytes: Vec<u8>,
    /// It reset the connection instead of closing it.
    pub reset: bool,
}

/// An MQTT 5 CONNECT without properties beyond a maximum packet size.
pub fn connect5(client_id: &str, keep_alive: u16) -> Packet {
    Packet::Connect {
        level: Level::V5,
        client_id: client_id.into(),
        keep_alive,
        clean_session: true,
        username: None,
        password: None,
        will: None,
        properties: Properties {
            maximum_packet_size: Some(1 << 20),
            ..Properties::default()
        },
    }
}

fn stream(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Reads one packet at V5 off `s` (CONNACK...), failing on anything else.
pub fn read_one(s: &mut TcpStream) -> Packet {
    match emqx_mqtt::read_packet_as(s, MAX_PACKET, Level::V5) {
        Ok(Some(p)) => p,
        other => panic!("expected a packet, got {other:?}"),
    }
}

/// Sends `bad` on a new connection (after a valid MQTT 5 CONNECT and its
/// CONNACK when `connected`), ends our side, and reads until the broker
/// closes; panics when it does not within [`HANG`].
pub fn probe(addr: SocketAddr, id: &str, connected: bool, bad: &[u8]) -> Answer {
    let mut s = stream(addr);
    if connected {
        s.write_all(&connect5(id, 0).encode_as(Level::V5)).unwrap();
        match read_one(&mut s) {
            Packet::ConnAck {
                code: ReasonCode::SUCCESS,
                ..
            } => {}
            other => panic!("{id}: a valid CONNECT got {other:?}"),
        }
    }
    // The broker may close before reading it all: that is its right.
    let _ = s.write_all(bad);
    let _ = s.shutdown(Shutdown::Write);
    let began = Instant::now();
    let mut answer = Answer::default();
    let mut buf = [0u8; 4096];
    loop {
        assert!(
            began.elapsed() < HANG,
            "{id}: the broker did not close within {HANG:?} of our end of stream; sent {bad:02x?}"
        );
        match s.read(&mut buf) {
            Ok(0) => return answer,
            Ok(n) => answer.bytes.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                answer.reset = true;
                return answer;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("{id}: reading the answer: {e}"),
        }
    }
}

/// How the broker answered, counted over a run.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    /// Cases whose bytes the decoder refused in their first packet.
    pub refused_first: u64,
    /// Of those, answered by DISCONNECT with the decoder's reason code.
    pub disconnect_same_code: u64,
    /// Refused by the decoder, closed without a DISCONNECT.
    pub silent_close: u64,
    /// Bad first packets (not a valid CONNECT) closed without a CONNACK.
    pub first_closed: u64,
    /// Where valid packets came first and the broker's own rule ended it
    /// with another reason code (topic alias past the maximum, a second
    /// CONNECT, AUTH...).
    pub broker_rule: u64,
    /// Bad CONNECTs answered by a CONNACK with an error code.
    pub connack_refusals: u64,
    /// Resets instead of a clean close.
    pub resets: u64,
}

fn describe(bad: &[u8], v: &Verdict, got: &[Packet]) -> String {
    format!(
        "sent {bad:02x?}\ndecoder: {v:?}\nbroker sent: {got:?}",
        v = (v.error.map(|c| format!("{c:#04x}")), v.packets.len()),
    )
}

/// Holds the broker's answer to bytes sent after a valid CONNECT to the
/// decoder's verdict on them: a DISCONNECT, if any, comes last and names
/// the decoder's reason code when the very first packet was refused; a
/// reason code of the broker's own only after valid packets.
pub fn judge_connected(bad: &[u8], answer: &Answer, tally: &mut Tally) {
    let v = verdict(bad, Level::V5);
    let got = verdict(&answer.bytes, Level::V5);
    assert!(
        got.error.is_none(),
        "the broker's answer does not decode: {}",
        describe(bad, &v, &got.packets)
    );
    let disconnects: Vec<u8> = got
        .packets
        .iter()
        .filter_map(|p| match p {
            Packet::Disconnect { reason, .. } => Some(reason.0),
            _ => None,
        })
        .collect();
    let last_is_disconnect = matches!(got.packets.last(), Some(Packet::Disconnect { .. }));
    assert!(
        disconnects.len() <= 1 && (disconnects.is_empty() || last_is_disconnect),
        "one DISCONNECT at most, and last: {}",
        describe(bad, &v, &got.packets)
    );
    tally.resets += u64::from(answer.reset);
    let first_refused = v.packets.is_empty() && v.error.is_some();
    tally.refused_first += u64::from(first_refused);
    match (disconnects.first(), v.error) {
        (None, Some(_)) => tally.silent_close += 1,
        (None, None) => {}
        (Some(&code), Some(want)) if code == want => {
            tally.disconnect_same_code += u64::from(first_refused)
        }
        (Some(&code), _) => {
            assert!(
                !v.packets.is_empty() && code >= 0x80,
                "DISCONNECT {code:#04x}, not the decoder's reason code: {}",
                describe(bad, &v, &got.packets)
            );
            tally.broker_rule += 1;
        }
    }
}

/// Holds the broker's answer to a connection's first bytes: nothing but
/// a close, or a CONNACK; a CONNACK accepting only a CONNECT the decoder
/// accepts, refusing (any error code, or 3.1.1's return code 1 for an
/// unsupported level) one it refuses.
pub fn judge_first(bad: &[u8], answer: &Answer, tally: &mut Tally) {
    let v = verdict(bad, Level::V311);
    tally.resets += u64::from(answer.reset);
    let b = &answer.bytes;
    if b.is_empty() {
        tally.first_closed += u64::from(!matches!(v.packets.first(), Some(Packet::Connect { .. })));
        return;
    }
    let connect_ok = matches!(v.packets.first(), Some(Packet::Connect { .. }));
    assert!(
        b[0] == 0x20 && b.len() >= 4,
        "the first answer is not a CONNACK: {b:02x?} to {bad:02x?} ({v:?})"
    );
    let code = b[3];
    if connect_ok {
        return;
    }
    assert!(
        code != 0,
        "a CONNECT the decoder refuses ({:?}) was accepted: {bad:02x?}",
        v.error
    );
    if !v.unsupported && b[1] > 2 {
        // An MQTT 5 CONNACK: the reason code must be the decoder's.
        assert_eq!(
            Some(code),
            v.error,
            "CONNACK code for {bad:02x?} ({v:?}): {b:02x?}"
        );
    }
    tally.connack_refusals += 1;
}
