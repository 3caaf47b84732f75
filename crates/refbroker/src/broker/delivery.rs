//! What goes out to the sessions: a message routed to every matching
//! one the ACL lets read it (filters are asked at SUBSCRIBE), QoS 0 sent at once or dropped (offline, or past
//! [`QOS0_BACKLOG`](super::QOS0_BACKLOG) unsent), QoS 1/2 put in flight
//! or queued, retained messages on SUBSCRIBE, and what a resumed session
//! gets again. Each delivery is encoded at its session's protocol level;
//! at MQTT 5 with the message's properties and the expiry left, never
//! past the client's maximum packet size or receive maximum, and not
//! back to a `no local` publisher; a topic the client allows an alias for
//! is named by its alias after the first time. An expired message is
//! dropped.

use std::rc::Rc;
use std::time::Instant;

use emqx_mqtt::{topic, Level, Packet, Properties, ReasonCode, RetainHandling, SubOptions};

use emqx_auth::Access;

use super::{auth, Broker, Wire, QOS0_BACKLOG};
use crate::router::shared;
use crate::session::{Alias, Inflight, Message, Session};

impl Broker {
    /// Redelivers what was in flight (PUBLISH with DUP, or PUBREL), then
    /// what was queued; first, as mosquitto's `connection_check_acl`,
    /// drops what the client now connected may not read (another user
    /// may resume the session, or the ACL changed since it was queued).
    pub(super) fn resume(&mut self, id: &Rc<str>, conn: usize, wire: &mut dyn Wire) {
        let policy = &self.auth.policy;
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        let user = s.username.clone();
        let may_read = |m: &Message| auth::may(policy, id, user.as_deref(), &m.topic, Access::Read);
        s.inflight.retain(|(_, state)| match state {
            Inflight::Sent(m) => may_read(m),
            Inflight::Released => true,
        });
        s.queue.retain(may_read);
        let now = Instant::now();
        let packets: Vec<Packet> = s
            .inflight
            .iter()
            .filter_map(|(packet_id, state)| match state {
                Inflight::Sent(m) => publish(s, m, Some(*packet_id), true, now),
                Inflight::Released => Some(Packet::pubrel(*packet_id)),
            })
            .collect();
        for p in packets {
            match p {
                p @ Packet::Publish { .. } => {
                    send(s, conn, p, wire);
                }
                p => wire.send(conn, &p.encode_as(s.level)),
            }
        }
        fill(s, wire);
    }

    pub(super) fn acked(
        &mut self,
        id: &Rc<str>,
        packet_id: u16,
        released: bool,
        wire: &mut dyn Wire,
    ) {
        if let Some(s) = self.sessions.get_mut(id) {
            if s.ack(packet_id, released) {
                fill(s, wire);
            }
        }
    }

    pub(super) fn subscribe(
        &mut self,
        conn: usize,
        id: &Rc<str>,
        packet_id: u16,
        filters: Vec<(String, SubOptions)>,
        sub_id: Option<u32>,
        wire: &mut dyn Wire,
    ) {
        let level = self.sessions.get(id).map_or(Level::V311, |s| s.level);
        let user = self.sessions.get(id).and_then(|s| s.username.clone());
        let mut codes = Vec::with_capacity(filters.len());
        let mut retained_for = Vec::new();
        for (filter, options) in filters {
            let is_shared = filter.starts_with(shared::PREFIX);
            let valid = match is_shared {
                true => shared::split(&filter).is_some(),
                false => topic::valid_filter(&filter),
            };
            // A shared subscription is asked about the filter it shares.
            let asked = shared::split(&filter).map_or(filter.as_str(), |(_, f)| f);
            let code = if !valid {
                ReasonCode::TOPIC_FILTER_INVALID
            } else if !self.may(id, user.as_deref(), asked, Access::Subscribe) {
                ReasonCode::NOT_AUTHORIZED
            } else {
                let options = SubOptions {
                    qos: options.qos.min(2),
                    ..options
                };
                self.router.subscribe(id, &filter, options.qos);
                let new = self.sessions.get_mut(id).is_some_and(|s| {
                    s.set_sub_id(&filter, sub_id);
                    s.subscribe(&filter, options)
                });
                let wants = match options.retain_handling {
                    RetainHandling::OnSubscribe => true,
                    RetainHandling::OnNewSubscription => new,
                    RetainHandling::Never => false,
                };
                // A new shared subscription gets no retained message.
                if wants && !is_shared {
                    retained_for.push((filter, options.qos));
                }
                ReasonCode(options.qos)
            };
            // 3.1.1 knows one failure code.
            codes.push(match (level, code.0 >= 0x80) {
                (Level::V5, _) | (_, false) => code,
                (_, true) => ReasonCode::UNSPECIFIED_ERROR,
            });
        }
        wire.send(conn, &Packet::suback(packet_id, codes).encode_as(level));
        for (filter, q) in retained_for {
            for m in self.router.retained(&filter) {
                self.deliver(id, m, q, Why::Retained, &mut [None, None], wire);
            }
        }
    }

    /// Delivers `message` (from client `from`, if one published it) to
    /// every matching session; how many it went to.
    pub(super) fn route(
        &mut self,
        message: Message,
        from: Option<&Rc<str>>,
        wire: &mut dyn Wire,
    ) -> usize {
        // The QoS 0 packet is the same for every target of a level:
        // encoded once each.
        let mut qos0 = [None, None];
        let targets = self.router.targets(&message.topic);
        let sessions = &self.sessions;
        let online = |c: &str| sessions.get(c).is_some_and(|s| s.conn.is_some());
        let shared = self.router.shared.pick(&message.topic, online);
        let n = targets.len() + shared.len();
        for (client, qos) in targets.into_iter().chain(shared) {
            let why = Why::Published(from);
            self.deliver(&client, message.clone(), qos, why, &mut qos0, wire);
        }
        n
    }

    /// One delivery at the lower of the message's and `granted` QoS: QoS 0
    /// goes out now (as `qos0`, encoded on first use per level) or is
    /// dropped; QoS 1/2 go in flight or wait queued.
    fn deliver(
        &mut self,
        client: &Rc<str>,
        message: Message,
        granted: u8,
        why: Why<'_>,
        qos0: &mut [Option<Vec<u8>>; 2],
        wire: &mut dyn Wire,
    ) {
        let Some(s) = self.sessions.get_mut(&**client) else {
            return;
        };
        let user = s.username.as_deref();
        if !auth::may(
            &self.auth.policy,
            client,
            user,
            &message.topic,
            Access::Read,
        ) {
            return;
        }
        let (no_local, as_published) = options(s, &message.topic);
        let retain = match why {
            Why::Retained => true,
            Why::Published(from) if no_local && from == Some(client) => return,
            Why::Published(_) => message.retain && as_published,
        };
        let message = Message {
            qos: message.qos.min(granted),
            retain,
            ..message
        };
        if message.qos == 0 {
            match s.conn {
                Some(c) if wire.backlog(c) < QOS0_BACKLOG => {
                    let now = Instant::now();
                    // A packet of its own for its subscription identifiers
                    // or topic aliases; else the one of every session of
                    // its level.
                    let sent = match s.level.is_v5()
                        && (s.out_aliases.max > 0 || has_ids(s, &message.topic))
                    {
                        true => publish(s, &message, None, false, now)
                            .is_some_and(|p| send(s, c, p, wire)),
                        false => {
                            let slot = &mut qos0[usize::from(s.level.is_v5())];
                            if slot.is_none() {
                                *slot = publish(s, &message, None, false, now)
                                    .map(|p| p.encode_as(s.level));
                            }
                            match &*slot {
                                Some(bytes) if fits(s, bytes) => {
                                    wire.send(c, bytes);
                                    true
                                }
                                _ => false,
                            }
                        }
                    };
                    match sent {
                        true => self.traffic.delivered += 1,
                        false => s.dropped += 1,
                    }
                }
                _ => s.dropped += 1,
            }
            return;
        }
        self.traffic.delivered += 1;
        s.enqueue(message, self.max_queued);
        fill(s, wire);
    }
}

/// Why a message goes to a session.
#[derive(Clone, Copy)]
enum Why<'a> {
    /// A client (or a will, `None`) published it.
    Published(Option<&'a Rc<str>>),
    /// It is retained and the session subscribed.
    Retained,
}

/// Whether `s`'s subscriptions matching `name` all say `no local`, and
/// whether one says `retain as published`.
fn options(s: &Session, name: &str) -> (bool, bool) {
    let mut matching = s
        .subs
        .iter()
        .filter(|(f, _)| topic::matches(shared::matching_filter(f), name));
    let first = matching.next();
    let no_local = first.is_some_and(|(_, o)| o.no_local);
    let rap = first.is_some_and(|(_, o)| o.retain_as_published);
    matching.fold((no_local, rap), |(n, r), (_, o)| {
        (n && o.no_local, r || o.retain_as_published)
    })
}

/// The identifiers of `s`'s subscriptions that match `name`, unsorted.
fn matching_ids<'a>(s: &'a Session, name: &'a str) -> impl Iterator<Item = u32> + 'a {
    s.sub_ids
        .iter()
        .filter(move |(f, _)| topic::matches(shared::matching_filter(f), name))
        .map(|(_, id)| *id)
}

/// Whether a subscription of `s` with an identifier matches `name`.
fn has_ids(s: &Session, name: &str) -> bool {
    matching_ids(s, name).next().is_some()
}

/// The identifiers of `s`'s subscriptions that match `name`.
fn ids(s: &Session, name: &str) -> Vec<u32> {
    let mut ids: Vec<u32> = matching_ids(s, name).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Whether `bytes` fit the client's maximum packet size.
fn fits(s: &Session, bytes: &[u8]) -> bool {
    s.max_packet.is_none_or(|max| bytes.len() <= max as usize)
}

/// Puts queued messages in flight while the window is open; one expired
/// or too large for the client is dropped (MQTT-3.3.2-5, MQTT-3.1.2-25).
fn fill(s: &mut Session, wire: &mut dyn Wire) {
    let now = Instant::now();
    while let (true, Some(c)) = (s.window_open() && !s.queue.is_empty(), s.conn) {
        let Some(m) = s.queue.pop_front() else { break };
        let id = s.next_packet_id();
        let sent = publish(s, &m, Some(id), false, now).is_some_and(|p| send(s, c, p, wire));
        match sent {
            true => s.inflight.push_back((id, Inflight::Sent(m))),
            false => s.dropped += 1,
        }
    }
}

/// Sends PUBLISH `p` to `s`'s client on connection `c`, naming its topic
/// by an alias where the client takes them; false (nothing sent, no
/// alias set) when it is larger than the client takes.
fn send(s: &mut Session, c: usize, mut p: Packet, wire: &mut dyn Wire) -> bool {
    let Packet::Publish {
        topic, properties, ..
    } = &mut p
    else {
        return false;
    };
    let alias = match s.level.is_v5() {
        true => s.out_aliases.lookup(topic),
        false => Alias::Name,
    };
    let set = match alias {
        Alias::Name => None,
        Alias::Known(n) => {
            properties.topic_alias = Some(n);
            topic.clear();
            None
        }
        Alias::Set(n) => {
            properties.topic_alias = Some(n);
            Some(Rc::<str>::from(topic.as_str()))
        }
    };
    let bytes = p.encode_as(s.level);
    if !fits(s, &bytes) {
        return false;
    }
    if let Some(topic) = set {
        s.out_aliases.record(topic);
    }
    wire.send(c, &bytes);
    true
}

/// The PUBLISH of `m` to session `s` at `now` (with the identifiers of
/// its matching subscriptions); none once it has expired.
fn publish(
    s: &Session,
    m: &Message,
    packet_id: Option<u16>,
    dup: bool,
    now: Instant,
) -> Option<Packet> {
    let mut properties = match &m.props {
        Some(p) => p.at(now)?,
        None => Properties::default(),
    };
    if s.level.is_v5() {
        properties.subscription_identifiers = ids(s, &m.topic);
    }
    Some(Packet::Publish {
        topic: m.topic.to_string(),
        payload: m.payload.to_vec(),
        qos: m.qos,
        retain: m.retain,
        dup,
        packet_id,
        properties,
    })
}
