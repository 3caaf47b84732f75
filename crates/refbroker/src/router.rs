//! Subscriptions and retained messages, and the fan-out of a publish.
//! Filters without wildcards are found by one lookup; only wildcard
//! filters are matched one by one.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use super::conn::Conn;
use emqx_mqtt::{topic, Packet};

/// One subscription of one connection.
struct Sub {
    conn: Arc<Conn>,
    qos: u8,
}

#[derive(Default)]
struct Subs {
    /// Filter without wildcard (= the topic) -> connection id -> subscription.
    exact: HashMap<String, HashMap<u64, Sub>>,
    /// Filter with wildcards -> connection id -> subscription.
    wild: HashMap<String, HashMap<u64, Sub>>,
}

impl Subs {
    fn table(&mut self, filter: &str) -> &mut HashMap<String, HashMap<u64, Sub>> {
        if topic::has_wildcard(filter) {
            &mut self.wild
        } else {
            &mut self.exact
        }
    }
}

/// A retained message.
#[derive(Clone)]
pub struct Retained {
    /// Its topic.
    pub topic: String,
    /// Its payload.
    pub payload: Vec<u8>,
    /// The QoS it was published at.
    pub qos: u8,
}

/// The broker's routing state.
#[derive(Default)]
pub struct Router {
    subs: RwLock<Subs>,
    retained: RwLock<HashMap<String, Retained>>,
}

impl Router {
    /// Subscribes `conn` to a valid `filter` (replacing its QoS if it was
    /// subscribed already).
    pub fn subscribe(&self, conn: &Arc<Conn>, filter: &str, qos: u8) {
        let mut subs = self.subs.write().unwrap_or_else(PoisonError::into_inner);
        subs.table(filter)
            .entry(filter.to_string())
            .or_default()
            .insert(
                conn.id,
                Sub {
                    conn: Arc::clone(conn),
                    qos,
                },
            );
    }

    /// Removes a subscription (nothing if there was none).
    pub fn unsubscribe(&self, conn: u64, filter: &str) {
        let mut subs = self.subs.write().unwrap_or_else(PoisonError::into_inner);
        let table = subs.table(filter);
        if let Some(by_conn) = table.get_mut(filter) {
            by_conn.remove(&conn);
            if by_conn.is_empty() {
                table.remove(filter);
            }
        }
    }

    /// Stores a retained message, or clears the topic's with an empty payload.
    pub fn retain(&self, topic: &str, payload: &[u8], qos: u8) {
        let mut retained = self
            .retained
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if payload.is_empty() {
            retained.remove(topic);
        } else {
            retained.insert(
                topic.to_string(),
                Retained {
                    topic: topic.to_string(),
                    payload: payload.to_vec(),
                    qos,
                },
            );
        }
    }

    /// The retained messages a valid `filter` matches.
    pub fn retained(&self, filter: &str) -> Vec<Retained> {
        let retained = self.retained.read().unwrap_or_else(PoisonError::into_inner);
        if topic::has_wildcard(filter) {
            retained
                .values()
                .filter(|r| topic::matches(filter, &r.topic))
                .cloned()
                .collect()
        } else {
            retained.get(filter).cloned().into_iter().collect()
        }
    }

    /// Sends a message to every connection with a matching subscription,
    /// once each at the lower of the publish QoS and its highest matching
    /// subscription's, with a fresh packet identifier per connection at
    /// QoS 1, RETAIN cleared. Returns (delivered, dropped).
    pub fn publish(&self, name: &str, payload: &[u8], qos: u8) -> (usize, usize) {
        let mut targets: HashMap<u64, (Arc<Conn>, u8)> = HashMap::new();
        {
            let subs = self.subs.read().unwrap_or_else(PoisonError::into_inner);
            let mut add = |by_conn: &HashMap<u64, Sub>| {
                for (id, sub) in by_conn {
                    let entry = targets
                        .entry(*id)
                        .or_insert_with(|| (Arc::clone(&sub.conn), 0));
                    entry.1 = entry.1.max(sub.qos);
                }
            };
            if let Some(by_conn) = subs.exact.get(name) {
                add(by_conn);
            }
            for (filter, by_conn) in &subs.wild {
                if topic::matches(filter, name) {
                    add(by_conn);
                }
            }
        }
        // Encoded once per QoS; QoS 1 copies get their own packet id.
        let encode = |qos: u8| {
            Packet::Publish {
                topic: name.to_string(),
                payload: payload.to_vec(),
                qos,
                retain: false,
                dup: false,
                packet_id: (qos > 0).then_some(1),
            }
            .encode()
        };
        let mut at_qos0: Option<Arc<Vec<u8>>> = None;
        let mut at_qos1: Option<Vec<u8>> = None;
        let (mut delivered, mut dropped) = (0, 0);
        for (conn, sub_qos) in targets.into_values() {
            let data = if sub_qos.min(qos) == 0 {
                Arc::clone(at_qos0.get_or_insert_with(|| Arc::new(encode(0))))
            } else {
                let mut bytes = at_qos1.get_or_insert_with(|| encode(1)).clone();
                // The packet id sits just before the payload.
                let Some(at) = bytes.len().checked_sub(payload.len() + 2) else {
                    continue;
                };
                bytes[at..at + 2].copy_from_slice(&conn.packet_id().to_be_bytes());
                Arc::new(bytes)
            };
            if conn.deliver(data) {
                delivered += 1;
            } else {
                dropped += 1;
            }
        }
        (delivered, dropped)
    }
}
