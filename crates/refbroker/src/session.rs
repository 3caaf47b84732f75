//! One client's session, connected or not: its subscriptions, the QoS 1/2
//! messages in flight to it and queued for it, and the QoS 2 packet ids
//! it sent that await their PUBREL. Plain data, so a whole broker can be
//! frozen and moved (issue #12).

use std::collections::{HashSet, VecDeque};
use std::rc::Rc;
use std::time::Instant;

use emqx_mqtt::{Level, Properties, SubOptions};

/// An application message as the broker routes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Topic name.
    pub topic: Rc<str>,
    /// Payload, shared by every delivery.
    pub payload: Rc<[u8]>,
    /// The QoS it was published at (a delivery uses the lower of this and
    /// the subscription's).
    pub qos: u8,
    /// Whether it is delivered because of a new subscription (retained).
    pub retain: bool,
    /// What an MQTT 5 publisher attached, if anything.
    pub props: Option<Rc<Props>>,
}

/// The MQTT 5 properties a message carries to its subscribers untouched
/// (payload format, content type, response topic, correlation data, user
/// properties), and when it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Props {
    /// Forwarded as they came (never an alias, expiry or identifier).
    pub forwarded: Properties,
    /// When its message expiry interval ends, and the interval.
    pub expires: Option<(Instant, u32)>,
}

impl Props {
    /// What of a PUBLISH's `properties` travels with its message; none if
    /// nothing does.
    pub fn of(p: Properties) -> Option<Rc<Props>> {
        let forwarded = Properties {
            payload_format_indicator: p.payload_format_indicator,
            content_type: p.content_type,
            response_topic: p.response_topic,
            correlation_data: p.correlation_data,
            user_properties: p.user_properties,
            ..Properties::default()
        };
        let expires = p.message_expiry_interval.map(|secs| {
            (
                Instant::now() + std::time::Duration::from_secs(u64::from(secs)),
                secs,
            )
        });
        (expires.is_some() || !forwarded.is_empty()).then(|| Rc::new(Props { forwarded, expires }))
    }

    /// The properties of a delivery at `now`: the forwarded ones and
    /// the expiry interval left; none when the message has expired.
    pub fn at(&self, now: Instant) -> Option<Properties> {
        let mut p = self.forwarded.clone();
        if let Some((at, _)) = self.expires {
            let left = at.checked_duration_since(now)?;
            // Rounded up: a message is never shown as expired early.
            p.message_expiry_interval =
                Some(left.as_secs() as u32 + u32::from(left.subsec_nanos() > 0));
        }
        Some(p)
    }

    /// Whether the message has expired at `now`.
    pub fn expired(&self, now: Instant) -> bool {
        self.expires.is_some_and(|(at, _)| now >= at)
    }
}

/// An outgoing QoS 1/2 delivery not yet acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inflight {
    /// PUBLISH sent, PUBACK (QoS 1) or PUBREC (QoS 2) awaited.
    Sent(Message),
    /// PUBREL sent, PUBCOMP awaited.
    Released,
}

/// The most topic aliases this broker sets towards one client, whatever
/// larger maximum it allows (each holds a topic for the connection's life).
pub const OUT_ALIAS_CAP: u16 = 16;

/// The topic aliases this broker set towards its client on the current
/// network connection (MQTT 5, MQTT-3.3.2-7: they end with it): alias
/// `n` is `topics[n - 1]`, never more than the client's maximum.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OutAliases {
    /// The client's Topic Alias Maximum, capped at [`OUT_ALIAS_CAP`].
    pub max: u16,
    pub topics: Vec<Rc<str>>,
}

/// How a PUBLISH names its topic to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alias {
    /// By its name only (no alias left, or the client takes none).
    Name,
    /// By the alias alone: the client knows it.
    Known(u16),
    /// By its name and a new alias, recorded once the packet is sent.
    Set(u16),
}

impl OutAliases {
    /// None set yet, at most `max` (capped).
    pub fn new(max: u16) -> OutAliases {
        OutAliases {
            max: max.min(OUT_ALIAS_CAP),
            topics: Vec::new(),
        }
    }

    /// How to name `topic` in the next PUBLISH.
    pub fn lookup(&self, topic: &str) -> Alias {
        match self.topics.iter().position(|t| &**t == topic) {
            Some(i) => Alias::Known(i as u16 + 1),
            None if self.topics.len() < usize::from(self.max) => {
                Alias::Set(self.topics.len() as u16 + 1)
            }
            None => Alias::Name,
        }
    }

    /// A PUBLISH that set alias `Set(n)` for `topic` went out.
    pub fn record(&mut self, topic: Rc<str>) {
        if self.topics.len() < usize::from(self.max) {
            self.topics.push(topic);
        }
    }
}

/// The most QoS 1/2 deliveries in flight to one client (as EMQX's
/// `max_inflight`); the rest wait in the queue, in order.
pub const MAX_INFLIGHT: usize = 64;

/// A session.
#[derive(Debug, Default)]
pub struct Session {
    /// Filter and its options, the QoS the granted one (a list: most
    /// clients hold one or two, and a tree's first node costs hundreds of
    /// bytes).
    pub subs: Vec<(String, SubOptions)>,
    /// Deliveries in flight, in the order they were sent.
    pub inflight: VecDeque<(u16, Inflight)>,
    /// QoS 1/2 deliveries not sent yet (the client is offline, or the
    /// in-flight window is full), oldest first, bounded.
    pub queue: VecDeque<Message>,
    /// QoS 2 packet ids received, PUBREL not yet: a PUBLISH with one of
    /// these ids is a duplicate, not routed again.
    pub awaiting_rel: HashSet<u16>,
    /// The connection it runs on (event loop token), when connected.
    pub conn: Option<usize>,
    /// Deliveries dropped for it (queue full, or QoS 0 while offline or
    /// reading too slowly).
    pub dropped: u64,
    /// The last packet id used.
    pub(crate) next_id: u16,
    /// The protocol level of its client's last CONNECT.
    pub level: Level,
    /// Seconds it outlives its connection (0: it ends with it; `u32::MAX`:
    /// never, as 3.1.1 without clean session).
    pub expiry: u32,
    /// Since when it has no connection (when its expiry counts).
    pub offline_since: Option<Instant>,
    /// The client's receive maximum: at most this many QoS 1/2 deliveries
    /// in flight (MQTT 5; 65,535 before).
    pub receive_max: u16,
    /// The largest packet the client takes (MQTT 5), if it said.
    pub max_packet: Option<u32>,
    /// The subscription identifier of each filter that has one (MQTT 5).
    pub sub_ids: Vec<(String, u32)>,
    /// The topic aliases set towards the client on its connection.
    pub out_aliases: OutAliases,
    /// The username its client logged in with last: the ACL's reads for
    /// it, connected or not, are that user's.
    pub username: Option<Rc<str>>,
}

impl Session {
    /// A fresh session.
    pub fn new(clean: bool) -> Session {
        Session {
            expiry: if clean { 0 } else { u32::MAX },
            receive_max: u16::MAX,
            ..Session::default()
        }
    }

    /// Whether it ends with its connection (3.1.1's clean session, or
    /// MQTT 5's session expiry 0).
    pub fn clean(&self) -> bool {
        self.expiry == 0
    }

    /// Whether it has been offline past its expiry at `now`.
    pub fn expired(&self, now: Instant) -> bool {
        match (self.offline_since, self.expiry) {
            (_, u32::MAX) | (None, _) => false,
            (Some(since), secs) => now.duration_since(since).as_secs() >= u64::from(secs),
        }
    }

    /// Records a subscription, replacing one to the same filter; whether
    /// it is new.
    pub fn subscribe(&mut self, filter: &str, options: SubOptions) -> bool {
        match self.subs.iter_mut().find(|(f, _)| f == filter) {
            Some((_, o)) => {
                *o = options;
                false
            }
            None => {
                self.subs.push((filter.to_string(), options));
                true
            }
        }
    }

    /// Sets (or, with `None`, clears) the identifier of `filter`'s
    /// subscription: each SUBSCRIBE replaces it.
    pub fn set_sub_id(&mut self, filter: &str, id: Option<u32>) {
        self.sub_ids.retain(|(f, _)| f != filter);
        if let Some(id) = id {
            self.sub_ids.push((filter.to_string(), id));
        }
    }

    /// Forgets the subscription to `filter`; whether there was one.
    pub fn unsubscribe(&mut self, filter: &str) -> bool {
        self.sub_ids.retain(|(f, _)| f != filter);
        let before = self.subs.len();
        self.subs.retain(|(f, _)| f != filter);
        self.subs.len() != before
    }

    /// A packet id not in flight.
    pub fn next_packet_id(&mut self) -> u16 {
        loop {
            self.next_id = self.next_id.wrapping_add(1);
            let id = self.next_id;
            if id != 0 && !self.inflight.iter().any(|(i, _)| *i == id) {
                return id;
            }
        }
    }

    /// Whether another delivery may be put in flight now.
    pub fn window_open(&self) -> bool {
        self.conn.is_some() && self.inflight.len() < MAX_INFLIGHT.min(usize::from(self.receive_max))
    }

    /// Queues a QoS 1/2 message; `false` (and counted) past `max_queued`.
    pub fn enqueue(&mut self, message: Message, max_queued: usize) -> bool {
        if self.queue.len() >= max_queued {
            self.dropped += 1;
            return false;
        }
        self.queue.push_back(message);
        true
    }

    /// Removes the in-flight entry `id` if it is in the state `want`
    /// describes; returns whether it was.
    pub fn ack(&mut self, id: u16, released: bool) -> bool {
        let at = self
            .inflight
            .iter()
            .position(|(i, state)| *i == id && matches!(state, Inflight::Released) == released);
        match at {
            Some(at) => {
                self.inflight.remove(at);
                true
            }
            None => false,
        }
    }

    /// PUBREC for `id`: its PUBLISH becomes a released entry, keeping its
    /// place; returns whether `id` was a QoS 2 delivery in flight.
    pub fn received(&mut self, id: u16) -> bool {
        match self.inflight.iter_mut().find(|(i, _)| *i == id) {
            Some((_, state @ Inflight::Sent(_))) => {
                *state = Inflight::Released;
                true
            }
            Some((_, Inflight::Released)) => true,
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    //! Packet ids, the QoS 2 states of a delivery, the bounded queue.

    use super::*;

    fn m(qos: u8) -> Message {
        Message {
            topic: "t".into(),
            payload: Rc::from(&b"x"[..]),
            qos,
            retain: false,
            props: None,
        }
    }

    #[test]
    fn packet_ids_skip_zero_and_those_in_flight() {
        let mut s = Session::new(false);
        let a = s.next_packet_id();
        s.inflight.push_back((a, Inflight::Sent(m(1))));
        s.next_id = a.wrapping_sub(1);
        let b = s.next_packet_id();
        assert_ne!(a, b);
        s.next_id = u16::MAX;
        assert_ne!(s.next_packet_id(), 0);
    }

    #[test]
    fn qos2_goes_sent_released_completed() {
        let mut s = Session::new(false);
        s.inflight.push_back((5, Inflight::Sent(m(2))));
        assert!(!s.ack(5, true), "no PUBCOMP before PUBREC");
        assert!(s.received(5));
        assert!(s.ack(5, true));
        assert!(s.inflight.is_empty());
        assert!(!s.received(5));
    }

    #[test]
    fn the_queue_is_bounded_and_counts_drops() {
        let mut s = Session::new(false);
        assert!(s.enqueue(m(1), 2));
        assert!(s.enqueue(m(1), 2));
        assert!(!s.enqueue(m(1), 2));
        assert_eq!((s.queue.len(), s.dropped), (2, 1));
    }
}
