//! The broker's state as plain data, schema [`SCHEMA`]: what protocol 2
//! (issue #12) carries to the next release. Broker-wide state (retained
//! messages, sessions without a connection) and, per connection, the
//! client (listener, peer, will) with its session (subscriptions, QoS 1/2
//! in flight both ways, queue, next packet id). Importing rebuilds the
//! routing index from the sessions, sends nothing and fires no will.
//! The broker's own `$SYS/` topics are not carried: the importer has its
//! own. Decoding is strict: a field this broker does not know (a newer
//! exporter's, e.g. a TLS connection's) refuses the import rather than
//! being dropped, so no state is read as less than it is.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::rc::Rc;

use emqx_mqtt::{topic, Will};
use serde::{Deserialize, Serialize};

use crate::broker::{Broker, Client};
use crate::session::{Inflight, Message, Session, MAX_INFLIGHT};

/// The name importers match before reading a byte of it: plain TCP
/// connections only.
pub const SCHEMA: &str = "refbroker/1";
/// [`SCHEMA`] and TLS connections, each with its serialized TLS state.
/// An importer that knows only [`SCHEMA`] gets that instead, and the TLS
/// connections drain.
pub const SCHEMA_TLS: &str = "refbroker/2";

/// An application message.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MessageData {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
}

/// One outgoing delivery in flight.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum InflightData {
    Sent(MessageData),
    Released,
}

/// A session, connected or not.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SessionData {
    pub id: String,
    pub clean: bool,
    pub subs: Vec<(String, u8)>,
    pub inflight: Vec<(u16, InflightData)>,
    pub queue: Vec<MessageData>,
    /// Sorted.
    pub awaiting_rel: Vec<u16>,
    pub dropped: u64,
    pub next_id: u16,
}

/// A will, as CONNECT gave it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WillData {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
}

/// Everything that is not one connection's.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct SharedState {
    /// Sorted by topic.
    pub retained: Vec<MessageData>,
    /// Sessions without a connection, sorted by client id.
    pub offline: Vec<SessionData>,
}

/// One connection's broker-side state.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClientState {
    pub listener: String,
    pub peer: Option<SocketAddr>,
    /// None before its CONNECT.
    pub session: Option<SessionData>,
    pub will: Option<WillData>,
}

/// Why an import was refused; the importer's state is then unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportError {
    /// A bound of this broker is exceeded (what, how many, the bound).
    Bound(&'static str, usize, usize),
    /// The data is not a state this broker could have been in.
    Invalid(String),
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportError::Bound(what, n, max) => write!(f, "{n} {what}, at most {max} here"),
            ImportError::Invalid(m) => write!(f, "invalid state: {m}"),
        }
    }
}

impl std::error::Error for ImportError {}

fn message_data(m: &Message) -> MessageData {
    MessageData {
        topic: m.topic.to_string(),
        payload: m.payload.to_vec(),
        qos: m.qos,
        retain: m.retain,
    }
}

fn message(m: &MessageData) -> Result<Message, ImportError> {
    if m.qos > 2 || !topic::valid_topic(&m.topic) {
        return Err(ImportError::Invalid(format!("message on {:?}", m.topic)));
    }
    Ok(Message {
        topic: m.topic.as_str().into(),
        payload: Rc::from(&m.payload[..]),
        qos: m.qos,
        retain: m.retain,
        props: None,
    })
}

fn session_data(id: &str, s: &Session) -> SessionData {
    let mut awaiting_rel: Vec<u16> = s.awaiting_rel.iter().copied().collect();
    awaiting_rel.sort_unstable();
    SessionData {
        id: id.to_string(),
        clean: s.clean(),
        subs: s.subs.iter().map(|(f, o)| (f.clone(), o.qos)).collect(),
        inflight: s
            .inflight
            .iter()
            .map(|(id, f)| {
                let f = match f {
                    Inflight::Sent(m) => InflightData::Sent(message_data(m)),
                    Inflight::Released => InflightData::Released,
                };
                (*id, f)
            })
            .collect(),
        queue: s.queue.iter().map(message_data).collect(),
        awaiting_rel,
        dropped: s.dropped,
        next_id: s.next_id,
    }
}

/// Checks `d` against this broker's bounds and rebuilds the session.
fn session(d: &SessionData, max_queued: usize) -> Result<Session, ImportError> {
    if d.id.is_empty() {
        return Err(ImportError::Invalid("a session without a client id".into()));
    }
    if d.inflight.len() > MAX_INFLIGHT {
        let n = d.inflight.len();
        return Err(ImportError::Bound("deliveries in flight", n, MAX_INFLIGHT));
    }
    if d.queue.len() > max_queued {
        return Err(ImportError::Bound(
            "queued messages",
            d.queue.len(),
            max_queued,
        ));
    }
    if let Some((f, _)) = d
        .subs
        .iter()
        .find(|(f, q)| *q > 2 || !topic::valid_filter(f))
    {
        return Err(ImportError::Invalid(format!("subscription {f:?}")));
    }
    if d.awaiting_rel.contains(&0) {
        return Err(ImportError::Invalid("packet id 0 awaiting PUBREL".into()));
    }
    let qos0 = |m: &MessageData| m.qos == 0;
    let sent = d.inflight.iter().filter_map(|(_, f)| match f {
        InflightData::Sent(m) => Some(m),
        InflightData::Released => None,
    });
    if d.queue.iter().chain(sent).any(qos0) {
        return Err(ImportError::Invalid(
            "a QoS 0 message in flight or queued".into(),
        ));
    }
    let mut ids = HashSet::new();
    let mut inflight = std::collections::VecDeque::new();
    for (id, f) in &d.inflight {
        if *id == 0 || !ids.insert(*id) {
            return Err(ImportError::Invalid(format!("packet id {id} in flight")));
        }
        inflight.push_back((
            *id,
            match f {
                InflightData::Sent(m) => Inflight::Sent(message(m)?),
                InflightData::Released => Inflight::Released,
            },
        ));
    }
    let mut s = Session::new(d.clean);
    s.subs = d
        .subs
        .iter()
        .map(|(f, q)| (f.clone(), emqx_mqtt::SubOptions::qos(*q)))
        .collect();
    s.inflight = inflight;
    s.queue = d.queue.iter().map(message).collect::<Result<_, _>>()?;
    s.awaiting_rel = d.awaiting_rel.iter().copied().collect();
    s.dropped = d.dropped;
    s.next_id = d.next_id;
    Ok(s)
}

impl Broker {
    /// Retained messages and offline sessions.
    pub fn export_shared(&self) -> SharedState {
        let mut retained: Vec<MessageData> = self
            .router
            .all_retained()
            .filter(|m| !m.topic.starts_with("$SYS/"))
            .map(message_data)
            .collect();
        retained.sort_by(|a, b| a.topic.cmp(&b.topic));
        let mut offline: Vec<SessionData> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.conn.is_none() && !s.level.is_v5())
            .map(|(id, s)| session_data(id, s))
            .collect();
        offline.sort_by(|a, b| a.id.cmp(&b.id));
        let v5 = self
            .sessions
            .values()
            .filter(|s| s.conn.is_none() && s.level.is_v5())
            .count();
        if v5 > 0 {
            self.log(format_args!(
                "{v5} offline MQTT 5 sessions stay here: this schema carries none (they end with this broker)"
            ));
        }
        SharedState { retained, offline }
    }

    /// Whether connection `conn` has a client here.
    pub fn has_client(&self, conn: usize) -> bool {
        self.clients.contains_key(&conn)
    }

    /// Connection `conn`'s state, if the broker knows it.
    pub fn export_client(&self, conn: usize) -> Option<ClientState> {
        let c = self.clients.get(&conn)?;
        let session =
            c.id.as_ref()
                .and_then(|id| Some(session_data(id, self.sessions.get(id)?)));
        Some(ClientState {
            listener: c.listener.to_string(),
            peer: c.peer,
            session,
            will: c.will.as_ref().map(|w| WillData {
                topic: w.topic.clone(),
                payload: w.payload.clone(),
                qos: w.qos,
                retain: w.retain,
            }),
        })
    }

    /// Adds retained messages and offline sessions. All checked first:
    /// on an error nothing changed.
    pub fn import_shared(&mut self, state: &SharedState) -> Result<(), ImportError> {
        // The importer's own `$SYS/` topics are never overwritten.
        let retained: Vec<Message> = state
            .retained
            .iter()
            .filter(|m| !m.topic.starts_with("$SYS/"))
            .map(message)
            .collect::<Result<_, _>>()?;
        let mut sessions = Vec::with_capacity(state.offline.len());
        let mut seen = HashSet::new();
        for d in &state.offline {
            if self.sessions.contains_key(d.id.as_str()) || !seen.insert(d.id.as_str()) {
                return Err(ImportError::Invalid(format!("client {:?} twice", d.id)));
            }
            sessions.push((d.id.as_str(), session(d, self.max_queued)?));
        }
        for m in &retained {
            self.router.retain(m);
        }
        for (id, s) in sessions {
            self.adopt(id.into(), s, None);
        }
        Ok(())
    }

    /// Adds connection `conn` (a token of this broker's loop) with its
    /// client and session. On an error nothing changed.
    pub fn import_client(&mut self, conn: usize, state: &ClientState) -> Result<(), ImportError> {
        if self.clients.contains_key(&conn) {
            return Err(ImportError::Invalid(format!("connection {conn} twice")));
        }
        let session = match &state.session {
            Some(d) if self.sessions.contains_key(d.id.as_str()) => {
                return Err(ImportError::Invalid(format!("client {:?} twice", d.id)))
            }
            Some(d) => Some((Rc::<str>::from(d.id.as_str()), session(d, self.max_queued)?)),
            None => None,
        };
        if let Some(w) = &state.will {
            if w.qos > 2 || !topic::valid_topic(&w.topic) {
                return Err(ImportError::Invalid(format!("a will on {:?}", w.topic)));
            }
        }
        let listener = self.listener(&state.listener);
        let id = session.as_ref().map(|(id, _)| Rc::clone(id));
        self.clients.insert(
            conn,
            Box::new(Client {
                listener,
                peer: state.peer,
                id,
                will: state.will.as_ref().map(|w| {
                    Box::new(Will::new(
                        w.topic.clone(),
                        w.payload.clone(),
                        w.qos,
                        w.retain,
                    ))
                }),
                // Only MQTT 3.1.1 clients move (refbroker/1 and /2).
                level: emqx_mqtt::Level::V311,
                aliases: Vec::new(),
            }),
        );
        if let Some((id, s)) = session {
            self.adopt(id, s, Some(conn));
        }
        Ok(())
    }

    /// Forgets connection `conn` and its session without a trace (no
    /// will, no log): they moved to another broker.
    pub fn release_client(&mut self, conn: usize) {
        let Some(c) = self.clients.remove(&conn) else {
            return;
        };
        if let Some(id) = c.id {
            if self.sessions.get(&id).is_some_and(|s| s.conn == Some(conn)) {
                if let Some(s) = self.sessions.remove(&id) {
                    for (filter, _) in &s.subs {
                        self.router.unsubscribe(&id, filter);
                    }
                }
            }
        }
    }

    /// Keeps session `s` of `id`, its subscriptions routed.
    fn adopt(&mut self, id: Rc<str>, mut s: Session, conn: Option<usize>) {
        s.conn = conn;
        for (filter, qos) in &s.subs {
            self.router.subscribe(&id, filter, qos.qos);
        }
        self.sessions.insert(id, Box::new(s));
    }
}
