//! The MQTT 5 clients of the load: which to run ([`V5Load`]), what their
//! CONNECT and PUBLISH packets carry (Session Expiry Interval, Receive
//! Maximum 2, Topic Alias Maximum, a Message Expiry Interval and user
//! properties on every message), and what each connection checks of the
//! broker ([`V5Conn`]): topic aliases resolved, no more QoS 1/2 deliveries
//! unacknowledged than the Receive Maximum, each message's properties as
//! sent ([`check_delivery`]).

use std::collections::HashMap;
use std::fmt;

use emqx_mqtt::{Level, Packet, Properties};

/// Session Expiry Interval of the MQTT 5 sessions, in seconds.
pub const SESSION_EXPIRY: u32 = 300;
/// Message Expiry Interval of every MQTT 5 message, in seconds: long
/// enough that none expires under load.
pub const MESSAGE_EXPIRY: u32 = 3600;
/// Receive Maximum of every MQTT 5 client.
pub const RECEIVE_MAXIMUM: u16 = 2;
/// Topic Alias Maximum of every MQTT 5 client (aliases the broker may
/// set up towards it).
pub const TOPIC_ALIAS_MAXIMUM: u16 = 8;
/// The alias a publisher gives its topic.
pub const OUR_ALIAS: u16 = 1;

/// Which MQTT 5 clients a run has (none by default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct V5Load {
    /// Persistent sessions (Session Expiry Interval [`SESSION_EXPIRY`]):
    /// one ring per QoS, each publishing to the next, leaving and coming
    /// back like the 3.1.1 sessions.
    pub sessions: usize,
    /// Their QoS, in turn (each 1 or 2).
    pub session_qos: Vec<u8>,
    /// Shared subscriptions: one publisher and a `$share` group per
    /// entry, at that QoS (0, 1 or 2).
    pub shared_qos: Vec<u8>,
    /// Subscribers per group (at least 1).
    pub group: usize,
}

impl V5Load {
    /// No MQTT 5 client.
    pub fn off() -> V5Load {
        V5Load::default()
    }

    /// Four sessions (two rings, QoS 1 and 2) and one group of three per
    /// QoS 0, 1 and 2: 16 clients.
    pub fn on() -> V5Load {
        V5Load {
            sessions: 4,
            session_qos: vec![1, 2],
            shared_qos: vec![0, 1, 2],
            group: 3,
        }
    }

    /// Whether it has any client.
    pub fn enabled(&self) -> bool {
        self.sessions > 0 || !self.shared_qos.is_empty()
    }
}

/// The CONNECT of an MQTT 5 client: a session (`expiry`) or a clean one,
/// Receive Maximum [`RECEIVE_MAXIMUM`], Topic Alias Maximum
/// [`TOPIC_ALIAS_MAXIMUM`].
pub fn connect(client_id: String, clean_start: bool, expiry: u32, keep_alive: u16) -> Packet {
    Packet::Connect {
        level: Level::V5,
        client_id,
        keep_alive,
        clean_session: clean_start,
        username: None,
        password: None,
        will: None,
        properties: Properties {
            session_expiry_interval: (expiry > 0).then_some(expiry),
            receive_maximum: Some(RECEIVE_MAXIMUM),
            topic_alias_maximum: Some(TOPIC_ALIAS_MAXIMUM),
            ..Properties::default()
        },
    }
}

/// The user properties of message `seq` of stream `stream`: its numbers,
/// a non-ASCII value, and one name twice (order and repeats must stay).
pub fn user_properties(stream: usize, seq: u64) -> Vec<(String, String)> {
    vec![
        ("load-stream".into(), stream.to_string()),
        ("load-seq".into(), seq.to_string()),
        ("load-mark".into(), "emqx-relup ✓ grüße".into()),
        ("load-mark".into(), format!("{stream}/{seq}")),
    ]
}

/// The properties of message `seq` of stream `stream` (without alias).
pub fn publish_properties(stream: usize, seq: u64) -> Properties {
    Properties {
        message_expiry_interval: Some(MESSAGE_EXPIRY),
        user_properties: user_properties(stream, seq),
        ..Properties::default()
    }
}

/// What an MQTT 5 broker got wrong, as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum V5Error {
    /// PUBLISH with an empty topic and an alias never set up.
    AliasUnknown(u16),
    /// PUBLISH with alias 0 or above our Topic Alias Maximum.
    AliasOutOfRange(u16),
    /// PUBLISH with an empty topic and no alias.
    NoTopic,
    /// A QoS 1/2 PUBLISH while this many were unacknowledged.
    ReceiveMaxExceeded(usize),
    /// User properties not the ones sent.
    PropsDamaged,
    /// Message Expiry Interval missing or above the one sent.
    ExpiryBad(Option<u32>),
}

impl fmt::Display for V5Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            V5Error::AliasUnknown(a) => write!(f, "topic alias {a} never set up"),
            V5Error::AliasOutOfRange(a) => {
                write!(f, "topic alias {a} outside 1..={TOPIC_ALIAS_MAXIMUM}")
            }
            V5Error::NoTopic => write!(f, "PUBLISH without topic or alias"),
            V5Error::ReceiveMaxExceeded(n) => write!(
                f,
                "QoS 1/2 PUBLISH with {n} unacknowledged (Receive Maximum {RECEIVE_MAXIMUM})"
            ),
            V5Error::PropsDamaged => write!(f, "user properties damaged"),
            V5Error::ExpiryBad(e) => write!(f, "message expiry {e:?}, sent {MESSAGE_EXPIRY}"),
        }
    }
}

impl std::error::Error for V5Error {}

/// Checks a delivery of message `seq` of stream `stream`: its user
/// properties exactly as sent, its expiry at most the one sent. Both
/// failures may come at once.
pub fn check_delivery(p: &Properties, stream: usize, seq: u64) -> Vec<V5Error> {
    let mut errors = Vec::new();
    if p.user_properties != user_properties(stream, seq) {
        errors.push(V5Error::PropsDamaged);
    }
    match p.message_expiry_interval {
        Some(e) if e <= MESSAGE_EXPIRY => {}
        other => errors.push(V5Error::ExpiryBad(other)),
    }
    errors
}

/// One MQTT 5 connection's view of the broker: the aliases it set up,
/// the QoS 1/2 deliveries not yet acknowledged, what its CONNACK allows.
#[derive(Debug, Default)]
pub struct V5Conn {
    /// Alias → topic, as the broker set them up on this connection.
    aliases: HashMap<u16, String>,
    /// Packet id → acknowledgement queued (PUBACK, or PUBCOMP at QoS 2)
    /// but maybe not yet written; the broker cannot have it before.
    unacked: HashMap<u16, bool>,
    /// The broker's Topic Alias Maximum (0: it takes none).
    pub alias_max: u16,
    /// The broker's Receive Maximum.
    pub receive_max: u16,
}

impl V5Conn {
    /// The state of a connection whose CONNACK carried `p`.
    pub fn new(p: &Properties) -> V5Conn {
        V5Conn {
            alias_max: p.topic_alias_maximum.unwrap_or(0),
            receive_max: p.receive_maximum.unwrap_or(u16::MAX),
            ..V5Conn::default()
        }
    }

    /// The topic of a PUBLISH from the broker: with an alias and a topic
    /// the alias is (re)set, with an alias alone it is looked up.
    pub fn resolve(&mut self, topic: String, alias: Option<u16>) -> Result<String, V5Error> {
        let Some(alias) = alias else {
            return match topic.is_empty() {
                true => Err(V5Error::NoTopic),
                false => Ok(topic),
            };
        };
        if alias == 0 || alias > TOPIC_ALIAS_MAXIMUM {
            return Err(V5Error::AliasOutOfRange(alias));
        }
        if topic.is_empty() {
            return self
                .aliases
                .get(&alias)
                .cloned()
                .ok_or(V5Error::AliasUnknown(alias));
        }
        self.aliases.insert(alias, topic.clone());
        Ok(topic)
    }

    /// A QoS 1/2 PUBLISH `id` arrived: an error when the Receive Maximum
    /// was already reached (a retransmission of one unacknowledged is
    /// none).
    pub fn received(&mut self, id: u16) -> Result<(), V5Error> {
        if self.unacked.contains_key(&id) {
            return Ok(());
        }
        let n = self.unacked.len();
        self.unacked.insert(id, false);
        match n >= usize::from(RECEIVE_MAXIMUM) {
            true => Err(V5Error::ReceiveMaxExceeded(n)),
            false => Ok(()),
        }
    }

    /// The last acknowledgement of delivery `id` is queued.
    pub fn ack_queued(&mut self, id: u16) {
        if let Some(queued) = self.unacked.get_mut(&id) {
            *queued = true;
        }
    }

    /// Everything queued is written: the acknowledged are done.
    pub fn flushed(&mut self) {
        self.unacked.retain(|_, queued| !*queued);
    }
}

#[cfg(test)]
mod tests {
    //! Aliases resolved or refused, the Receive Maximum counted as the
    //! broker can know it, properties checked.

    use super::*;

    #[test]
    fn aliases_are_set_then_resolved() {
        let mut c = V5Conn::default();
        assert_eq!(c.resolve("a/b".into(), Some(3)), Ok("a/b".into()));
        assert_eq!(c.resolve(String::new(), Some(3)), Ok("a/b".into()));
        assert_eq!(c.resolve("a/c".into(), Some(3)), Ok("a/c".into()));
        assert_eq!(c.resolve(String::new(), Some(3)), Ok("a/c".into()));
        assert_eq!(
            c.resolve(String::new(), Some(4)),
            Err(V5Error::AliasUnknown(4))
        );
        assert_eq!(
            c.resolve("x".into(), Some(TOPIC_ALIAS_MAXIMUM + 1)),
            Err(V5Error::AliasOutOfRange(9))
        );
        assert_eq!(c.resolve(String::new(), None), Err(V5Error::NoTopic));
    }

    #[test]
    fn a_third_unacknowledged_delivery_exceeds_the_maximum() {
        let mut c = V5Conn::default();
        assert_eq!(c.received(1), Ok(()));
        assert_eq!(c.received(2), Ok(()));
        assert_eq!(c.received(2), Ok(()), "a retransmission");
        c.ack_queued(1);
        assert_eq!(c.received(3), Err(V5Error::ReceiveMaxExceeded(2)));
        c.flushed();
        c.ack_queued(2);
        c.ack_queued(3);
        c.flushed();
        assert_eq!(c.received(4), Ok(()));
        assert_eq!(c.received(5), Ok(()));
    }

    #[test]
    fn damaged_properties_and_longer_expiry_are_caught() {
        let mut p = publish_properties(3, 9);
        assert!(check_delivery(&p, 3, 9).is_empty());
        p.message_expiry_interval = Some(MESSAGE_EXPIRY - 5);
        assert!(check_delivery(&p, 3, 9).is_empty());
        p.user_properties.swap(2, 3);
        p.message_expiry_interval = Some(MESSAGE_EXPIRY + 1);
        assert_eq!(
            check_delivery(&p, 3, 9),
            vec![
                V5Error::PropsDamaged,
                V5Error::ExpiryBad(Some(MESSAGE_EXPIRY + 1))
            ]
        );
        assert_eq!(
            check_delivery(&Properties::default(), 3, 9),
            vec![V5Error::PropsDamaged, V5Error::ExpiryBad(None)]
        );
    }
}
