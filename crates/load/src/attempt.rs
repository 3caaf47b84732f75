//! One connection attempt: TCP connect, CONNECT/CONNACK, then SUBSCRIBE
//! until both the SUBACK and the retained `$SYS/broker/version` arrive,
//! all within one deadline (`connect_timeout` from just before connect()).

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::stats::{classify_io, Outcome, Stats};
use emqx_mqtt::{read_packet, Packet, PacketError};

/// The retained topic every subscriber gets on SUBSCRIBE.
pub const VERSION_TOPIC: &str = "$SYS/broker/version";
/// Largest packet the load clients accept.
pub const MAX_PACKET: usize = 1 << 20;
/// Keep alive the clients announce, in seconds.
pub const KEEP_ALIVE: u16 = 30;
/// Packet id of the attempt's SUBSCRIBE.
const SUBSCRIBE_ID: u16 = 1;

/// A connection that completed its attempt.
pub struct Established {
    pub stream: TcpStream,
    /// The payload of the retained version message.
    pub version: String,
}

/// A failed attempt: its class, and whether CONNACK had been received
/// (then the broker closed an established connection).
pub struct Failure {
    pub outcome: Outcome,
    pub after_connack: bool,
}

impl Failure {
    fn before(outcome: Outcome) -> Failure {
        Failure {
            outcome,
            after_connack: false,
        }
    }
}

/// Short name of a packet, for error messages.
pub fn kind(p: &Packet) -> &'static str {
    p.name()
}

/// Classifies a codec error; `waiting` names what was awaited.
pub fn classify_packet_error(waiting: &str, e: &PacketError) -> Outcome {
    match e {
        PacketError::Io(e) => classify_io(&format!("reading {waiting}"), e),
        PacketError::Malformed(m) => Outcome::Other(format!("malformed packet ({waiting}): {m}")),
        PacketError::TooLarge(n) => {
            Outcome::Other(format!("packet of {n} bytes too large ({waiting})"))
        }
    }
}

fn remaining(deadline: Instant) -> Result<Duration, Outcome> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(Outcome::TimedOut)
    } else {
        Ok(left)
    }
}

/// Writes one packet before `deadline`.
pub fn send(stream: &mut TcpStream, p: &Packet, deadline: Instant) -> Result<(), Outcome> {
    let left = remaining(deadline)?;
    stream
        .set_write_timeout(Some(left))
        .map_err(|e| classify_io("set write timeout", &e))?;
    stream
        .write_all(&p.encode())
        .map_err(|e| classify_io(&format!("writing {}", kind(p)), &e))
}

/// Reads one packet before `deadline`; a clean EOF is an error naming
/// what was awaited.
fn recv(stream: &mut TcpStream, deadline: Instant, waiting: &str) -> Result<Packet, Outcome> {
    let left = remaining(deadline)?;
    stream
        .set_read_timeout(Some(left))
        .map_err(|e| classify_io("set read timeout", &e))?;
    match read_packet(stream, MAX_PACKET) {
        Ok(Some(p)) => Ok(p),
        Ok(None) => Err(Outcome::Other(format!(
            "connection closed by broker before {waiting}"
        ))),
        Err(e) => Err(classify_packet_error(waiting, &e)),
    }
}

/// Runs one attempt to `addr` for `client_id`, subscribing to `filters`
/// (the version topic is added), and records its CONNACK latency.
pub fn handshake(
    addr: SocketAddr,
    client_id: &str,
    filters: &[(String, u8)],
    timeout: Duration,
    stats: &Stats,
) -> Result<Established, Failure> {
    let start = Instant::now();
    let deadline = start + timeout;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| Failure::before(classify_io("connect", &e)))?;
    // On loopback, a connect to a port nobody listens on can pick that
    // very port as its source and connect to itself (TCP simultaneous
    // open): nobody is listening, so it is a refusal.
    if let (Ok(local), Ok(peer)) = (stream.local_addr(), stream.peer_addr()) {
        if local == peer {
            return Err(Failure::before(Outcome::Refused));
        }
    }
    // Latency matters more than batching for a handful of small packets.
    let _ = stream.set_nodelay(true);
    let connect = Packet::connect(client_id, true, KEEP_ALIVE);
    send(&mut stream, &connect, deadline).map_err(Failure::before)?;
    match recv(&mut stream, deadline, "CONNACK").map_err(Failure::before)? {
        Packet::ConnAck { code: 0, .. } => stats.connack_latency(start.elapsed()),
        Packet::ConnAck { code, .. } => {
            stats.connack_latency(start.elapsed());
            return Err(Failure::before(Outcome::Other(format!(
                "CONNACK return code {code}"
            ))));
        }
        other => {
            return Err(Failure::before(Outcome::Other(format!(
                "expected CONNACK, got {}",
                kind(&other)
            ))))
        }
    }
    let after = |outcome| Failure {
        outcome,
        after_connack: true,
    };
    let mut all = filters.to_vec();
    all.push((VERSION_TOPIC.to_string(), 0));
    let subscribe = Packet::Subscribe {
        packet_id: SUBSCRIBE_ID,
        filters: all,
    };
    send(&mut stream, &subscribe, deadline).map_err(after)?;
    let mut subacked = false;
    let mut version = None;
    while !subacked || version.is_none() {
        let waiting = if subacked { "the version" } else { "SUBACK" };
        match recv(&mut stream, deadline, waiting).map_err(after)? {
            Packet::SubAck { packet_id, codes } if packet_id == SUBSCRIBE_ID => {
                if let Some(bad) = codes.iter().find(|c| **c > 2) {
                    return Err(after(Outcome::Other(format!(
                        "SUBACK refused a filter (code {bad:#04x})"
                    ))));
                }
                subacked = true;
            }
            Packet::Publish {
                topic,
                payload,
                qos,
                packet_id,
                ..
            } => {
                if qos > 0 {
                    if let Some(id) = packet_id {
                        send(&mut stream, &Packet::PubAck { packet_id: id }, deadline)
                            .map_err(after)?;
                    }
                }
                if topic == VERSION_TOPIC {
                    version = Some(String::from_utf8_lossy(&payload).into_owned());
                }
            }
            Packet::PingResp => {}
            other => {
                return Err(after(Outcome::Other(format!(
                    "unexpected {} while waiting for {waiting}",
                    kind(&other)
                ))))
            }
        }
    }
    Ok(Established {
        stream,
        version: version.unwrap_or_default(),
    })
}
