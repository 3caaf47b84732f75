//! The MQTT 3.1.1 state machine, without I/O: CONNECT (client ids,
//! takeover, session present), PUBLISH at QoS 0/1/2 both ways, retained
//! messages, SUBSCRIBE/UNSUBSCRIBE, wills, and what a closed connection
//! leaves behind. The event loop feeds it packets and gives it a [`Wire`]
//! to send on. What goes out to the sessions (routing, QoS 0 drops, the
//! in-flight window and queue) is in its `delivery` part.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;

use emqx_mqtt::packet::CONNECT;
use emqx_mqtt::{topic, Level, Packet, ReasonCode, Will};

use crate::router::Router;
use crate::session::{Message, Props, Session};
pub use crate::wire::{End, Step, Wire};

mod connect;
mod delivery;

/// QoS 0 deliveries are dropped while this much is unsent to a client.
pub const QOS0_BACKLOG: usize = 1 << 20;

/// A live connection as the state machine knows it.
pub(crate) struct Client {
    /// Shared by every connection of the listener.
    pub(crate) listener: Rc<str>,
    pub(crate) peer: Option<SocketAddr>,
    /// Set by CONNECT.
    pub(crate) id: Option<Rc<str>>,
    pub(crate) will: Option<Box<Will>>,
    /// The protocol level of its CONNECT.
    pub(crate) level: Level,
}

fn shown(peer: Option<SocketAddr>) -> String {
    peer.map_or_else(|| "?".to_string(), |a| a.to_string())
}

/// The broker's state.
pub struct Broker {
    version: String,
    pub(crate) router: Router,
    pub(crate) sessions: HashMap<Rc<str>, Box<Session>>,
    pub(crate) clients: HashMap<usize, Box<Client>>,
    listeners: Vec<Rc<str>>,
    pub(crate) max_queued: usize,
    /// Connections closed for a malformed packet or a protocol violation
    /// (not for a lost connection); also retained on
    /// [`crate::MALFORMED_TOPIC`].
    pub malformed: u64,
    /// Messages since the last summary line.
    pub(crate) traffic: Traffic,
}

/// Messages counted for the summary line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Traffic {
    /// PUBLISH packets taken from clients (duplicates and `$SYS` not).
    pub published: u64,
    /// Deliveries to subscribers (sent, or queued in their session).
    pub delivered: u64,
}

impl Broker {
    /// A broker of release `version` (retained on `version_topic`),
    /// queueing at most `max_queued` QoS 1/2 messages per session.
    pub fn new(version: &str, version_topic: &str, max_queued: usize) -> Broker {
        let mut router = Router::default();
        router.retain(&Message {
            topic: version_topic.into(),
            payload: Rc::from(version.as_bytes()),
            qos: 0,
            retain: true,
            props: None,
        });
        Broker {
            version: version.to_string(),
            router,
            sessions: HashMap::new(),
            clients: HashMap::new(),
            listeners: Vec::new(),
            max_queued,
            malformed: 0,
            traffic: Traffic::default(),
        }
    }

    /// Logs one line with the broker's prefix.
    pub fn log(&self, line: std::fmt::Arguments<'_>) {
        crate::log(&self.version, line);
    }

    /// Logs one line about one connection, at debug level only.
    pub fn debug(&self, line: std::fmt::Arguments<'_>) {
        crate::debug(&self.version, line);
    }

    /// Logs the summary line: connections (`live`), sessions, and the
    /// messages per second in and out since the last one (`since` ago).
    pub fn summary(&mut self, live: usize, since: std::time::Duration) {
        let secs = since.as_secs_f64().max(0.001);
        let Traffic {
            published,
            delivered,
        } = std::mem::take(&mut self.traffic);
        self.log(format_args!(
            "{live} connections, {} sessions, {:.1} messages/s in, {:.1} messages/s out",
            self.sessions.len(),
            published as f64 / secs,
            delivered as f64 / secs
        ));
    }

    /// A connection was accepted.
    pub fn opened(&mut self, conn: usize, listener: &str, peer: Option<SocketAddr>) {
        let listener = self.listener(listener);
        self.clients.insert(
            conn,
            Box::new(Client {
                listener,
                peer,
                id: None,
                will: None,
                level: Level::V311,
            }),
        );
    }

    /// The listener name shared by its connections.
    pub(crate) fn listener(&mut self, listener: &str) -> Rc<str> {
        match self.listeners.iter().find(|l| &***l == listener) {
            Some(l) => Rc::clone(l),
            None => {
                let l: Rc<str> = listener.into();
                self.listeners.push(Rc::clone(&l));
                l
            }
        }
    }

    fn who(&self, conn: usize) -> String {
        match self.clients.get(&conn).map(|c| &**c) {
            Some(Client { id: Some(id), .. }) => format!("client {id:?}"),
            Some(c) => format!("connection from {} on {}", shown(c.peer), c.listener),
            None => format!("connection {conn}"),
        }
    }

    /// The connection ended (reported once): logs why, publishes the will
    /// unless the rules say not, and detaches or discards its session.
    pub fn closed(&mut self, conn: usize, end: &End, wire: &mut dyn Wire) {
        let who = self.who(conn);
        let Some(client) = self.clients.remove(&conn) else {
            return;
        };
        let why = match end {
            End::Eof if client.id.is_none() => "closed before CONNECT".to_string(),
            End::Eof => "closed the connection".into(),
            End::Disconnect => "disconnected".into(),
            End::Idle(m) | End::Error(m) | End::Violation(_, m) | End::Lost(m) => {
                format!("{m}: closing")
            }
            End::DisconnectWithWill => "disconnected, asking for its will".into(),
            End::TakenOver | End::Shutdown => "closed by the broker".into(),
        };
        if client.level.is_v5() {
            if let Some(reason) = end.reason() {
                wire.send(conn, &encoded(client.level, &Packet::disconnect_with(reason)));
            }
        }
        if end.is_violation() {
            self.malformed += 1;
            self.router.retain(&Message {
                topic: crate::MALFORMED_TOPIC.into(),
                payload: Rc::from(self.malformed.to_string().as_bytes()),
                qos: 0,
                retain: true,
                props: None,
            });
        }
        let dropped = client
            .id
            .as_ref()
            .and_then(|id| self.sessions.get(id))
            .map_or(0, |s| s.dropped);
        if dropped > 0 {
            self.debug(format_args!(
                "{who} {why} ({dropped} deliveries dropped: it read too slowly or was offline)"
            ));
        } else {
            self.debug(format_args!("{who} {why}"));
        }
        let Some(id) = client.id else { return };
        // Detached first: a will the client itself subscribed to is not
        // sent on the connection that is going away.
        let clean = match self.sessions.get_mut(&id) {
            Some(s) if s.conn == Some(conn) => {
                s.conn = None;
                s.clean
            }
            _ => false,
        };
        if let Some(s) = self.sessions.get_mut(&id).filter(|s| s.conn.is_none()) {
            s.offline_since = Some(std::time::Instant::now());
        }
        if let Some(will) = client.will.filter(|_| end.publishes_will()) {
            let will = *will;
            let message = Message {
                topic: will.topic.as_str().into(),
                payload: will.payload.into(),
                qos: will.qos,
                retain: will.retain,
                props: Props::of(will.properties),
            };
            if message.retain {
                self.router.retain(&message);
            }
            self.route(message, None, wire);
        }
        if clean {
            self.discard(&id);
        }
    }

    /// Ends the offline sessions whose expiry has passed at `now`.
    pub fn expire(&mut self, now: std::time::Instant) {
        let expired: Vec<Rc<str>> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.conn.is_none() && s.expired(now))
            .map(|(id, _)| Rc::clone(id))
            .collect();
        for id in expired {
            self.debug(format_args!("the session of client {id:?} expired"));
            self.discard(&id);
        }
    }

    /// The protocol level of connection `conn`'s client.
    pub fn level_of(&self, conn: usize) -> Level {
        self.clients.get(&conn).map_or(Level::V311, |c| c.level)
    }

    fn discard(&mut self, id: &Rc<str>) {
        if let Some(s) = self.sessions.remove(id) {
            for (filter, _) in &s.subs {
                self.router.unsubscribe(id, filter);
            }
        }
    }

    /// The first packet of a connection was a CONNECT of another
    /// protocol level (answered with CONNACK 1).
    pub fn refuse_level(&mut self, conn: usize, level: u8, wire: &mut dyn Wire) -> Step {
        wire.send(conn, &connack(false, 1));
        Step::End(End::Error(format!(
            "refused protocol level {level} (CONNACK 1: only 4, MQTT 3.1.1)"
        )))
    }

    /// Whether `conn` may send a packet of type `kind` (the high nibble
    /// of its first byte) now: before its CONNECT nothing else may
    /// (3.1.1 §3.1). The one check of that rule; the event loop asks it
    /// on a packet's first byte, before the packet is whole or decoded,
    /// so a client cannot make the broker buffer one it refuses anyway.
    pub fn admits(&self, conn: usize, kind: u8) -> Result<(), End> {
        if kind == CONNECT || self.clients.get(&conn).is_some_and(|c| c.id.is_some()) {
            return Ok(());
        }
        Err(not_connect(format_args!("of type {kind}")))
    }

    /// One packet from `conn`.
    pub fn packet(&mut self, conn: usize, packet: Packet, wire: &mut dyn Wire) -> Step {
        let id = self.clients.get(&conn).and_then(|c| c.id.clone());
        match (id, packet) {
            (Some(id), packet) => self.session_packet(conn, &id, packet, wire),
            (None, connect @ Packet::Connect { .. }) => self.connect(conn, connect, wire),
            // What `admits` refuses, handed over decoded.
            (None, other) => Step::End(not_connect(other.name())),
        }
    }

    /// A packet of connected client `id`.
    fn session_packet(
        &mut self,
        conn: usize,
        id: &Rc<str>,
        packet: Packet,
        wire: &mut dyn Wire,
    ) -> Step {
        let level = self.clients.get(&conn).map_or(Level::V311, |c| c.level);
        let send = |wire: &mut dyn Wire, p: &Packet| wire.send(conn, &encoded(level, p));
        match packet {
            Packet::Publish {
                topic: name,
                payload,
                qos,
                retain,
                packet_id,
                properties,
                ..
            } => {
                if properties.topic_alias.is_some() {
                    return Step::End(End::Violation(
                        ReasonCode::TOPIC_ALIAS_INVALID,
                        "a topic alias, above the topic alias maximum (0)".into(),
                    ));
                }
                if !properties.subscription_identifiers.is_empty() {
                    return Step::End(End::Violation(
                        ReasonCode::PROTOCOL_ERROR,
                        "a subscription identifier in a client's PUBLISH".into(),
                    ));
                }
                let message = Message {
                    topic: name.as_str().into(),
                    payload: payload.into(),
                    qos,
                    retain,
                    props: Props::of(properties),
                };
                return self.publish(conn, id, message, packet_id.unwrap_or(0), wire);
            }
            Packet::PubRel { packet_id, .. } => {
                let known = self
                    .sessions
                    .get_mut(id)
                    .is_some_and(|s| s.awaiting_rel.remove(&packet_id));
                let reason = match known {
                    true => ReasonCode::SUCCESS,
                    false => ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
                };
                send(wire, &Packet::pubcomp(packet_id).with_reason(reason));
            }
            Packet::PubAck { packet_id, .. } => self.acked(id, packet_id, false, wire),
            Packet::PubComp { packet_id, .. } => self.acked(id, packet_id, true, wire),
            Packet::PubRec { packet_id, .. } => {
                if self
                    .sessions
                    .get_mut(id)
                    .is_some_and(|s| s.received(packet_id))
                {
                    send(wire, &Packet::pubrel(packet_id));
                }
            }
            Packet::Subscribe {
                packet_id,
                filters,
                properties,
            } => {
                if !properties.subscription_identifiers.is_empty() {
                    return Step::End(End::Violation(
                        ReasonCode::SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED,
                        "a subscription identifier (not available here)".into(),
                    ));
                }
                self.subscribe(conn, id, packet_id, filters, wire)
            }
            Packet::Unsubscribe {
                packet_id, filters, ..
            } => {
                let mut codes = Vec::with_capacity(filters.len());
                for f in &filters {
                    self.router.unsubscribe(id, f);
                    let had = self.sessions.get_mut(id).is_some_and(|s| s.unsubscribe(f));
                    codes.push(match had {
                        true => ReasonCode::SUCCESS,
                        false => ReasonCode::NO_SUBSCRIPTION_EXISTED,
                    });
                }
                send(wire, &Packet::unsuback(packet_id).with_codes(codes));
            }
            Packet::PingReq => send(wire, &Packet::PingResp),
            Packet::Disconnect { reason, properties } => {
                return self.disconnected(id, reason, properties.session_expiry_interval)
            }
            Packet::Connect { .. } => return Step::End(End::Error("a second CONNECT".into())),
            Packet::Auth { .. } => {
                return Step::End(End::Violation(
                    ReasonCode::PROTOCOL_ERROR,
                    "AUTH without enhanced authentication".into(),
                ))
            }
            other => {
                return Step::End(End::Error(format!(
                    "a server's packet from a client: {}",
                    other.name()
                )))
            }
        }
        Step::Go
    }

    /// A DISCONNECT from client `id` (MQTT 5: with `reason`, perhaps a new
    /// session expiry).
    fn disconnected(&mut self, id: &Rc<str>, reason: ReasonCode, expiry: Option<u32>) -> Step {
        if let (Some(secs), Some(s)) = (expiry, self.sessions.get_mut(id)) {
            // MQTT-3.14.2-2: not from 0 to more.
            if s.expiry == 0 && secs > 0 {
                return Step::End(End::Violation(
                    ReasonCode::PROTOCOL_ERROR,
                    "a session expiry set at DISCONNECT after 0 at CONNECT".into(),
                ));
            }
            s.expiry = secs;
            s.clean = secs == 0;
        }
        match reason {
            ReasonCode::DISCONNECT_WITH_WILL => Step::End(End::DisconnectWithWill),
            _ => Step::End(End::Disconnect),
        }
    }

    /// A PUBLISH from client `id`: routed (once for QoS 2: a duplicate
    /// packet id awaiting PUBREL is not routed again), retained if asked,
    /// acknowledged at its QoS.
    fn publish(
        &mut self,
        conn: usize,
        id: &Rc<str>,
        message: Message,
        packet_id: u16,
        wire: &mut dyn Wire,
    ) -> Step {
        let name = &message.topic;
        if !topic::valid_topic(name) {
            return Step::End(End::Error(format!("PUBLISH to invalid topic {name:?}")));
        }
        let qos = message.qos;
        let level = self.clients.get(&conn).map_or(Level::V311, |c| c.level);
        let duplicate = qos == 2
            && !self
                .sessions
                .get_mut(id)
                .is_some_and(|s| s.awaiting_rel.insert(packet_id));
        if qos == 2
            && !duplicate
            && self
                .sessions
                .get(id)
                .is_some_and(|s| s.awaiting_rel.len() > crate::session::MAX_INFLIGHT)
        {
            return Step::End(End::Violation(
                ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
                format!(
                    "more than {} QoS 2 messages awaiting PUBREL",
                    crate::session::MAX_INFLIGHT
                ),
            ));
        }
        let mut matched = true;
        if name.starts_with("$SYS/") {
            self.debug(format_args!(
                "{}: PUBLISH to {name:?} ignored ($SYS is the broker's)",
                self.who(conn)
            ));
        } else if !duplicate {
            self.traffic.published += 1;
            if message.retain {
                self.router.retain(&message);
            }
            matched = self.route(message, Some(id), wire) > 0;
        }
        let reason = match matched {
            true => ReasonCode::SUCCESS,
            false => ReasonCode::NO_MATCHING_SUBSCRIBERS,
        };
        match qos {
            1 => wire.send(conn, &encoded(level, &Packet::puback(packet_id).with_reason(reason))),
            2 => wire.send(conn, &encoded(level, &Packet::pubrec(packet_id).with_reason(reason))),
            _ => {}
        }
        Step::Go
    }
}

/// Why a connection's first packet is refused: it is `what`, not CONNECT.
fn not_connect(what: impl std::fmt::Display) -> End {
    End::Error(format!("first packet {what}, not CONNECT"))
}

fn connack(session_present: bool, code: u8) -> Vec<u8> {
    Packet::connack(session_present, ReasonCode(code)).encode()
}

/// `packet` encoded at the level of `conn`'s client.
pub(crate) fn encoded(level: Level, packet: &Packet) -> Vec<u8> {
    packet.encode_as(level)
}
