//! What goes out to the sessions: a message routed to every matching
//! one, QoS 0 sent at once or dropped (offline, or past
//! [`QOS0_BACKLOG`](super::QOS0_BACKLOG) unsent), QoS 1/2 put in flight
//! or queued, retained messages on SUBSCRIBE, and what a resumed session
//! gets again.

use std::rc::Rc;

use emqx_mqtt::{topic, Packet, Properties, ReasonCode};

use super::{Broker, Wire, QOS0_BACKLOG};
use crate::session::{Inflight, Message, Session};

impl Broker {
    /// Redelivers what was in flight (PUBLISH with DUP, or PUBREL), then
    /// what was queued.
    pub(super) fn resume(&mut self, id: &Rc<str>, conn: usize, wire: &mut dyn Wire) {
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        for (packet_id, state) in &s.inflight {
            let bytes = match state {
                Inflight::Sent(m) => publish(m, Some(*packet_id), true),
                Inflight::Released => Packet::pubrel(*packet_id).encode(),
            };
            wire.send(conn, &bytes);
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
        filters: Vec<(String, u8)>,
        wire: &mut dyn Wire,
    ) {
        let mut codes = Vec::with_capacity(filters.len());
        let mut granted = Vec::new();
        for (filter, qos) in filters {
            if topic::valid_filter(&filter) {
                let q = qos.min(2);
                self.router.subscribe(id, &filter, q);
                if let Some(s) = self.sessions.get_mut(id) {
                    s.subscribe(&filter, q);
                }
                codes.push(q);
                granted.push((filter, q));
            } else {
                codes.push(0x80);
            }
        }
        let codes = codes.into_iter().map(ReasonCode).collect();
        wire.send(conn, &Packet::suback(packet_id, codes).encode());
        for (filter, q) in granted {
            for m in self.router.retained(&filter) {
                self.deliver(id, m, q, &mut None, wire);
            }
        }
    }

    /// Delivers `message` to every matching session.
    pub(super) fn route(&mut self, message: Message, wire: &mut dyn Wire) {
        let message = Message {
            retain: false,
            ..message
        };
        // The QoS 0 packet is the same for every target: encoded once.
        let mut qos0 = None;
        for (client, qos) in self.router.targets(&message.topic) {
            self.deliver(&client, message.clone(), qos, &mut qos0, wire);
        }
    }

    /// One delivery at the lower of the message's and `granted` QoS: QoS 0
    /// goes out now (as `qos0`, encoded on first use) or is dropped; QoS
    /// 1/2 go in flight or wait queued.
    fn deliver(
        &mut self,
        client: &str,
        message: Message,
        granted: u8,
        qos0: &mut Option<Vec<u8>>,
        wire: &mut dyn Wire,
    ) {
        let Some(s) = self.sessions.get_mut(client) else {
            return;
        };
        let message = Message {
            qos: message.qos.min(granted),
            ..message
        };
        if message.qos == 0 {
            match s.conn {
                Some(c) if wire.backlog(c) < QOS0_BACKLOG => {
                    let bytes = qos0.get_or_insert_with(|| publish(&message, None, false));
                    wire.send(c, bytes);
                    self.traffic.delivered += 1;
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

/// Puts queued messages in flight while the window is open.
fn fill(s: &mut Session, wire: &mut dyn Wire) {
    while let (true, Some(c)) = (s.window_open() && !s.queue.is_empty(), s.conn) {
        let Some(m) = s.queue.pop_front() else { break };
        let id = s.next_packet_id();
        wire.send(c, &publish(&m, Some(id), false));
        s.inflight.push_back((id, Inflight::Sent(m)));
    }
}

fn publish(m: &Message, packet_id: Option<u16>, dup: bool) -> Vec<u8> {
    Packet::Publish {
        topic: m.topic.to_string(),
        payload: m.payload.to_vec(),
        qos: m.qos,
        retain: m.retain,
        dup,
        packet_id,
        properties: Properties::default(),
    }
    .encode()
}
