//! The MQTT 3.1.1 state machine, without I/O: CONNECT (client ids,
//! takeover, session present), PUBLISH at QoS 0/1/2 both ways, retained
//! messages, SUBSCRIBE/UNSUBSCRIBE, wills, and what a closed connection
//! leaves behind. The event loop feeds it packets and gives it a [`Wire`]
//! to send on. What goes out to the sessions (routing, QoS 0 drops, the
//! in-flight window and queue) is in its `delivery` part.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;

use emqx_auth::Access;
use emqx_mqtt::packet::CONNECT;
use emqx_mqtt::{Level, Packet, ReasonCode, Will};

use crate::router::Router;
use crate::session::{Message, Props, Session};
pub use crate::wire::{End, Step, Wire};

mod auth;
mod connect;
mod delivery;
mod packets;

pub use auth::{Auth, Login};
pub use connect::TOPIC_ALIAS_MAX;

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
    /// Its topic aliases (MQTT 5), at most [`connect::TOPIC_ALIAS_MAX`].
    pub(crate) aliases: Vec<(u16, Rc<str>)>,
    /// What it logged in with (its certificate's name before CONNECT).
    pub(crate) login: Login,
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
    /// Wills waiting out their delay (MQTT 5): client id, when, the will.
    pub(crate) pending_wills: Vec<(Rc<str>, std::time::Instant, Message)>,
    /// Shared groups' turn order from a broker this one is taking over,
    /// applied once the import is whole.
    pub(crate) moved_groups: Vec<crate::snapshot::GroupData>,
    /// Who may connect and do what.
    pub(crate) auth: Auth,
    /// Moved connections the policy refused at import, closed at the go
    /// (and their reason).
    pub(crate) refused: Vec<(usize, ReasonCode)>,
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
            pending_wills: Vec::new(),
            moved_groups: Vec::new(),
            auth: Auth::default(),
            refused: Vec::new(),
        }
    }

    /// The broker with this policy (by default, everyone may do
    /// everything).
    pub fn with_auth(mut self, auth: Auth) -> Broker {
        self.auth = auth;
        self
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
                aliases: Vec::new(),
                login: Login::default(),
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
            End::Idle(m)
            | End::Error(m)
            | End::Violation(_, m)
            | End::Lost(m)
            | End::Refused(_, m) => {
                format!("{m}: closing")
            }
            End::DisconnectWithWill => "disconnected, asking for its will".into(),
            End::TakenOver | End::Shutdown => "closed by the broker".into(),
        };
        if client.level.is_v5() {
            if let Some(reason) = end.reason() {
                wire.send(
                    conn,
                    &Packet::disconnect_with(reason).encode_as(client.level),
                );
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
                s.clean()
            }
            _ => false,
        };
        if let Some(s) = self.sessions.get_mut(&id).filter(|s| s.conn.is_none()) {
            s.offline_since = Some(std::time::Instant::now());
        }
        if let Some(will) = client.will.filter(|_| end.publishes_will()) {
            self.will_at_close(&id, *will, clean, wire);
        }
        if clean {
            self.discard(&id);
        }
    }

    /// A closed client's will: published now, or (MQTT 5) once its delay
    /// passes while its session lives (`clean`: the session ends now),
    /// whichever comes first.
    fn will_at_close(&mut self, id: &Rc<str>, will: Will, clean: bool, wire: &mut dyn Wire) {
        let lives = self
            .sessions
            .get(id)
            .map_or(0, |s| if clean { 0 } else { s.expiry });
        let wait = will.properties.will_delay_interval.unwrap_or(0).min(lives);
        let message = Message {
            topic: will.topic.as_str().into(),
            payload: will.payload.into(),
            qos: will.qos,
            retain: will.retain,
            props: Props::of(will.properties),
        };
        match wait {
            0 => self.publish_will(id, message, wire),
            secs => {
                let due =
                    std::time::Instant::now() + std::time::Duration::from_secs(u64::from(secs));
                self.pending_wills.retain(|(i, ..)| i != id);
                self.pending_wills.push((Rc::clone(id), due, message));
            }
        }
    }

    /// Publishes client `id`'s will (retained if it asks) when the ACL
    /// lets its session's user write the topic now: as mosquitto, which
    /// lets the CONNECT in and checks when the will is sent (after a
    /// delay, or a switch, the rules may be new).
    fn publish_will(&mut self, id: &str, message: Message, wire: &mut dyn Wire) {
        let user = self.sessions.get(id).and_then(|s| s.username.clone());
        if !self.may(id, user.as_deref(), &message.topic, Access::Write) {
            self.debug(format_args!(
                "client {id:?}: its will on {:?} is not authorized: dropped",
                message.topic
            ));
            return;
        }
        if message.retain {
            self.router.retain(&message);
        }
        self.route(message, None, wire);
    }

    /// A client `id` connected again: a will waiting out its delay is
    /// not sent, unless the session ends now (`clean`: a clean start).
    pub(crate) fn will_back(&mut self, id: &Rc<str>, clean: bool, wire: &mut dyn Wire) {
        let Some(at) = self.pending_wills.iter().position(|(i, ..)| i == id) else {
            return;
        };
        let (_, _, message) = self.pending_wills.remove(at);
        if clean {
            self.publish_will(id, message, wire);
        }
    }

    /// Publishes the wills due at `now`, and ends the offline sessions
    /// whose expiry has passed.
    pub fn expire(&mut self, now: std::time::Instant, wire: &mut dyn Wire) {
        let (due, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending_wills)
            .into_iter()
            .partition(|(_, at, _)| *at <= now);
        self.pending_wills = wait;
        for (id, _, message) in due {
            self.publish_will(&id, message, wire);
        }
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
}

/// Why a connection's first packet is refused: it is `what`, not CONNECT.
fn not_connect(what: impl std::fmt::Display) -> End {
    End::Error(format!("first packet {what}, not CONNECT"))
}

fn connack(session_present: bool, code: u8) -> Vec<u8> {
    Packet::connack(session_present, ReasonCode(code)).encode()
}
