//! One client's session, connected or not: its subscriptions, the QoS 1/2
//! messages in flight to it and queued for it, and the QoS 2 packet ids
//! it sent that await their PUBREL. Plain data, so a whole broker can be
//! frozen and moved (issue #12).

use std::collections::{HashSet, VecDeque};
use std::rc::Rc;

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
}

/// An outgoing QoS 1/2 delivery not yet acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inflight {
    /// PUBLISH sent, PUBACK (QoS 1) or PUBREC (QoS 2) awaited.
    Sent(Message),
    /// PUBREL sent, PUBCOMP awaited.
    Released,
}

/// The most QoS 1/2 deliveries in flight to one client (as EMQX's
/// `max_inflight`); the rest wait in the queue, in order.
pub const MAX_INFLIGHT: usize = 64;

/// A session.
#[derive(Debug, Default)]
pub struct Session {
    /// Ends with its connection (CONNECT's clean session flag).
    pub clean: bool,
    /// Filter and granted QoS (a list: most clients hold one or two, and
    /// a tree's first node costs hundreds of bytes).
    pub subs: Vec<(String, u8)>,
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
}

impl Session {
    /// A fresh session.
    pub fn new(clean: bool) -> Session {
        Session {
            clean,
            ..Session::default()
        }
    }

    /// Records a subscription, replacing one to the same filter.
    pub fn subscribe(&mut self, filter: &str, qos: u8) {
        match self.subs.iter_mut().find(|(f, _)| f == filter) {
            Some((_, q)) => *q = qos,
            None => self.subs.push((filter.to_string(), qos)),
        }
    }

    /// Forgets the subscription to `filter`.
    pub fn unsubscribe(&mut self, filter: &str) {
        self.subs.retain(|(f, _)| f != filter);
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
        self.conn.is_some() && self.inflight.len() < MAX_INFLIGHT
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
