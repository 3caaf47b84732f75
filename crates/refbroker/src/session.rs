//! One client connection's session: CONNECT first, then packets until
//! DISCONNECT, end of stream, a protocol error, keep-alive expiry, a
//! takeover or the broker's close; then the graceful close (FIN after the
//! queued packets, read until end of stream or [`CLOSE_WAIT`]).

use std::collections::HashSet;
use std::io::{self, BufReader, Read};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::conn::Conn;
use super::{Shared, MAX_PACKET};
use emqx_mqtt::packet::{CONNECT, PROTOCOL_LEVEL};
use emqx_mqtt::{read_frame, read_packet, topic, Packet, PacketError};

/// How long a new connection has to send CONNECT.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closing connection is read for its end of stream.
pub const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Why a session ended.
enum End {
    /// The client closed the connection.
    Eof,
    /// The client sent DISCONNECT.
    Disconnect,
    /// No packet within 1.5 × keep-alive (or no CONNECT in time).
    Idle(String),
    /// A protocol error, to log.
    Error(String),
    /// The broker closed it (a takeover, the end of a drain).
    Closed,
}

struct Session<'a> {
    shared: &'a Shared,
    conn: &'a Arc<Conn>,
    client_id: Option<String>,
    filters: HashSet<String>,
}

/// Serves `stream` until the session ends, then closes it gracefully.
pub fn run(shared: &Shared, conn: &Arc<Conn>, stream: TcpStream) {
    let mut reader = BufReader::with_capacity(16 * 1024, stream);
    let mut session = Session {
        shared,
        conn,
        client_id: None,
        filters: HashSet::new(),
    };
    let end = session.serve(&mut reader);
    // No more deliveries to a connection on its way out.
    for f in &session.filters {
        shared.router.unsubscribe(conn.id, f);
    }
    if let Some(id) = &session.client_id {
        shared.unregister(id, conn.id);
    }
    session.log_end(&end);
    conn.close();
    drain(&mut reader, CLOSE_WAIT);
    conn.force();
    conn.set_finished();
}

/// Reads and discards until end of stream, an error or `wait`: closing a
/// socket with unread data would reset the connection.
fn drain(r: &mut BufReader<TcpStream>, wait: Duration) {
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || r.get_ref().set_read_timeout(Some(left)).is_err() {
            return;
        }
        match r.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl Session<'_> {
    fn who(&self) -> String {
        match &self.client_id {
            Some(id) => format!("client {id:?}"),
            None => format!(
                "connection from {} on {}",
                self.conn.peer, self.conn.listener
            ),
        }
    }

    fn log_end(&self, end: &End) {
        let who = self.who();
        let why = match end {
            End::Eof if self.client_id.is_none() => "closed before CONNECT".to_string(),
            End::Eof => "closed the connection".into(),
            End::Disconnect => "disconnected".into(),
            End::Idle(m) => format!("{m}: closing"),
            End::Error(m) => format!("{m}: closing"),
            End::Closed => "closed by the broker".into(),
        };
        let dropped = self.conn.dropped();
        if dropped > 0 {
            self.shared.log(format_args!(
                "{who} {why} ({dropped} deliveries dropped: it read too slowly)"
            ));
        } else {
            self.shared.log(format_args!("{who} {why}"));
        }
    }

    /// What a failed read means; `idle` tells a timeout.
    fn read_failed(&self, e: PacketError, idle: impl FnOnce() -> String) -> End {
        if self.conn.closing() {
            return End::Closed;
        }
        match e {
            PacketError::Io(e) if is_timeout(&e) => End::Idle(idle()),
            PacketError::Io(e) => End::Error(format!("connection lost: {e}")),
            other => End::Error(other.to_string()),
        }
    }

    fn serve(&mut self, r: &mut BufReader<TcpStream>) -> End {
        let _ = r.get_ref().set_read_timeout(Some(CONNECT_TIMEOUT));
        let frame = match read_frame(r, MAX_PACKET) {
            Ok(Some(f)) => f,
            Ok(None) => return End::Eof,
            Err(e) => {
                return self.read_failed(e, || {
                    format!("no CONNECT within {} s", CONNECT_TIMEOUT.as_secs())
                })
            }
        };
        if frame.kind() != CONNECT {
            return End::Error(format!(
                "first packet of type {}, not CONNECT",
                frame.kind()
            ));
        }
        let connect = match frame.decode() {
            Ok(p) => p,
            Err(e) => {
                if let Some(level) = frame.connect_level().filter(|l| *l != PROTOCOL_LEVEL) {
                    self.conn.send(&Packet::ConnAck {
                        session_present: false,
                        code: 1,
                    });
                    return End::Error(format!(
                        "refused protocol level {level} (CONNACK 1: only 4, MQTT 3.1.1)"
                    ));
                }
                return End::Error(e.to_string());
            }
        };
        let Packet::Connect {
            client_id,
            keep_alive,
            clean_session,
            ..
        } = connect
        else {
            return End::Error("CONNECT did not decode as CONNECT".into());
        };
        let client_id = if client_id.is_empty() {
            if !clean_session {
                self.conn.send(&Packet::ConnAck {
                    session_present: false,
                    code: 2,
                });
                return End::Error(
                    "refused an empty client id without a clean session (CONNACK 2)".into(),
                );
            }
            format!("refbroker-{}-{}", std::process::id(), self.conn.id)
        } else {
            client_id
        };
        self.shared.register(&client_id, self.conn);
        self.conn.send(&Packet::ConnAck {
            session_present: false,
            code: 0,
        });
        self.shared.log(format_args!(
            "client {client_id:?} connected on {} from {} (keep-alive {keep_alive} s)",
            self.conn.listener, self.conn.peer
        ));
        self.client_id = Some(client_id);
        let idle = (keep_alive > 0).then(|| Duration::from_millis(u64::from(keep_alive) * 1500));
        let _ = r.get_ref().set_read_timeout(idle);
        loop {
            let packet = match read_packet(r, MAX_PACKET) {
                Ok(Some(p)) => p,
                Ok(None) if self.conn.closing() => return End::Closed,
                Ok(None) => return End::Eof,
                Err(e) => {
                    return self.read_failed(e, || {
                        format!("keep-alive expired (no packet within 1.5 × {keep_alive} s)")
                    })
                }
            };
            if self.conn.closing() {
                return End::Closed;
            }
            if let Some(end) = self.handle(packet) {
                return end;
            }
        }
    }

    /// Handles one packet after CONNECT; `Some` ends the session.
    fn handle(&mut self, packet: Packet) -> Option<End> {
        match packet {
            Packet::Publish {
                topic: name,
                payload,
                qos,
                retain,
                packet_id,
                ..
            } => {
                if qos > 1 {
                    return Some(End::Error("PUBLISH at QoS 2 is not supported".into()));
                }
                if !topic::valid_topic(&name) {
                    return Some(End::Error(format!("PUBLISH to invalid topic {name:?}")));
                }
                if name.starts_with("$SYS/") {
                    self.shared.log(format_args!(
                        "{}: PUBLISH to {name:?} ignored ($SYS is the broker's)",
                        self.who()
                    ));
                } else {
                    if retain {
                        self.shared.router.retain(&name, &payload, qos);
                    }
                    self.shared.router.publish(&name, &payload, qos);
                }
                if let (1, Some(packet_id)) = (qos, packet_id) {
                    self.conn.send(&Packet::PubAck { packet_id });
                }
            }
            Packet::Subscribe { packet_id, filters } => {
                let mut codes = Vec::with_capacity(filters.len());
                let mut granted = Vec::new();
                for (filter, qos) in filters {
                    if topic::valid_filter(&filter) {
                        let q = qos.min(1);
                        self.shared.router.subscribe(self.conn, &filter, q);
                        codes.push(q);
                        self.filters.insert(filter.clone());
                        granted.push((filter, q));
                    } else {
                        codes.push(0x80);
                    }
                }
                self.conn.send(&Packet::SubAck { packet_id, codes });
                for (filter, q) in granted {
                    for r in self.shared.router.retained(&filter) {
                        let qos = r.qos.min(q);
                        self.conn.send(&Packet::Publish {
                            topic: r.topic,
                            payload: r.payload,
                            qos,
                            retain: true,
                            dup: false,
                            packet_id: (qos > 0).then(|| self.conn.packet_id()),
                        });
                    }
                }
            }
            Packet::Unsubscribe { packet_id, filters } => {
                for f in &filters {
                    self.shared.router.unsubscribe(self.conn.id, f);
                    self.filters.remove(f);
                }
                self.conn.send(&Packet::UnsubAck { packet_id });
            }
            Packet::PingReq => self.conn.send(&Packet::PingResp),
            // QoS 1 deliveries are sent once; their acknowledgements end nothing.
            Packet::PubAck { .. } => {}
            Packet::Disconnect => return Some(End::Disconnect),
            Packet::Connect { .. } => return Some(End::Error("a second CONNECT".into())),
            other => {
                return Some(End::Error(format!(
                    "a server's packet from a client: {other:?}"
                )))
            }
        }
        None
    }
}
