//! The denied probe of a load with [`crate::LoadAuth`]: once connected,
//! and then about once a second, it SUBSCRIBEs to the denied topic and
//! PUBLISHes to it at QoS 1, and counts what the broker answers: a
//! SUBACK failure (0x80, at 5 any code from 0x80) or an MQTT 5 PUBACK
//! 0x87 is a *denied check*; an MQTT 5 PUBACK that succeeded is a
//! *leak*, and so is a granted SUBACK when the broker must refuse it
//! ([`crate::LoadAuth::refuse_subscribe`]), else it is counted as
//! `denied_subscribed` (mosquitto 2.0 grants every subscription and
//! checks each delivery). A 3.1.1 PUBACK says nothing: the broker drops
//! an unauthorized message and acknowledges it. Any client that gets a
//! message on the denied topic counts a leak ([`Client::denied_delivery`]).

use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use emqx_mqtt::{Packet, ReasonCode};

use super::{relaxed, Client, Ctx, Kind};
use crate::conn::Conn;

/// How often a probe tries the denied topic.
const PERIOD: Duration = Duration::from_secs(1);
/// Its first packet id; below it, the connection attempt's SUBSCRIBE.
const FIRST_ID: u16 = super::SUBSCRIBE_ID + 1;
/// The payload of its PUBLISH.
const PAYLOAD: &[u8] = b"emqx-load: this must never be delivered";

/// A probe's state on its connection.
pub struct Probe {
    /// Whether it speaks MQTT 5.
    pub v5: bool,
    next: Instant,
    next_id: u16,
    /// Packet ids of its SUBSCRIBE and PUBLISH not answered yet.
    subscribe: Option<u16>,
    publish: Option<u16>,
}

impl Probe {
    pub fn new(v5: bool) -> Probe {
        Probe {
            v5,
            next: Instant::now(),
            next_id: FIRST_ID,
            subscribe: None,
            publish: None,
        }
    }

    /// When it tries next.
    pub fn next(&self) -> Instant {
        self.next
    }

    /// A new connection: it tries at once.
    pub fn restart(&mut self, now: Instant) {
        self.next = now;
    }

    /// The connection is gone, with what it waited for.
    pub fn forget(&mut self) {
        self.subscribe = None;
        self.publish = None;
    }

    fn take_id(&mut self) -> u16 {
        let id = self.next_id;
        self.next_id = self.next_id.checked_add(1).unwrap_or(FIRST_ID);
        id
    }

    /// Queues its SUBSCRIBE and PUBLISH when due.
    pub fn probe_due(&mut self, cx: &Ctx, conn: &mut Conn) {
        let Some(auth) = cx.opts.auth.as_ref() else {
            return;
        };
        if cx.now < self.next {
            return;
        }
        self.next = cx.now + PERIOD;
        let (sub, publ) = (self.take_id(), self.take_id());
        conn.send(&Packet::subscribe(sub, [(auth.denied_topic.as_str(), 1)]));
        conn.send(&Packet::publish(
            auth.denied_topic.as_str(),
            PAYLOAD,
            1,
            false,
            publ,
        ));
        self.subscribe = Some(sub);
        self.publish = Some(publ);
    }
}

impl Client {
    /// A denied probe, at MQTT 5 or 3.1.1.
    pub fn probe(slot: usize, name: String, v5: bool) -> Client {
        Client {
            probe: Some(Probe::new(v5)),
            ..Client::new(Kind::Probe, slot, name, None)
        }
    }

    /// A packet from the broker, before anything else sees it: an
    /// answer to the probe is counted and consumed (None).
    pub(super) fn probe_answer(&mut self, cx: &Ctx, p: Packet) -> Option<Packet> {
        let Some(probe) = self.probe.as_mut() else {
            return Some(p);
        };
        let refuse = cx.opts.auth.as_ref().is_some_and(|a| a.refuse_subscribe);
        let s = cx.stats;
        let counter: Option<&AtomicU64> = match &p {
            Packet::SubAck {
                packet_id, codes, ..
            } if Some(*packet_id) == probe.subscribe => {
                probe.subscribe = None;
                Some(match codes.first() {
                    Some(c) if !c.is_error() && refuse => &s.denied_leaks,
                    Some(c) if !c.is_error() => &s.denied_subscribed,
                    _ => &s.denied_checks,
                })
            }
            Packet::PubAck {
                packet_id, reason, ..
            } if Some(*packet_id) == probe.publish => {
                probe.publish = None;
                match (probe.v5, *reason) {
                    (false, _) => None,
                    (true, ReasonCode::NOT_AUTHORIZED) => Some(&s.denied_checks),
                    (true, r) if !r.is_error() => Some(&s.denied_leaks),
                    // Refused for another reason: no answer on the ACL.
                    (true, _) => None,
                }
            }
            _ => return Some(p),
        };
        if let Some(c) = counter {
            c.fetch_add(1, relaxed());
        }
        None
    }

    /// Whether a delivery on `topic` is one on the denied topic (counted
    /// as a leak).
    pub(super) fn denied_delivery(&self, cx: &Ctx, topic: &str) -> bool {
        let denied = cx
            .opts
            .auth
            .as_ref()
            .is_some_and(|a| a.denied_topic == topic);
        if denied {
            cx.stats.denied_leaks.fetch_add(1, relaxed());
        }
        denied
    }
}
