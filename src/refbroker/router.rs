//! Who is connected, what they subscribed to, and the retained messages.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::Outbox;
use crate::mqtt::{topic, Packet};

struct Client {
    client_id: String,
    outbox: Arc<Outbox>,
    subscriptions: Vec<(String, u8)>,
}

/// A retained message due to a new subscriber: topic, payload, QoS.
pub type Due = (String, Vec<u8>, u8);

#[derive(Default)]
struct Tables {
    clients: HashMap<u64, Client>,
    by_client_id: HashMap<String, u64>,
    retained: BTreeMap<String, (Vec<u8>, u8)>,
}

/// The broker's shared state.
#[derive(Default)]
pub struct Router {
    tables: Mutex<Tables>,
    next: AtomicU64,
}

impl Router {
    /// A fresh connection number.
    pub fn next_conn(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers a connected client; a client id in use is taken over.
    pub fn connect(&self, conn: u64, client_id: &str, outbox: Arc<Outbox>) {
        let Ok(mut t) = self.tables.lock() else {
            return;
        };
        if let Some(old) = t.by_client_id.insert(client_id.to_string(), conn) {
            if let Some(c) = t.clients.remove(&old) {
                c.outbox.kill();
            }
        }
        t.clients.insert(
            conn,
            Client {
                client_id: client_id.to_string(),
                outbox,
                subscriptions: Vec::new(),
            },
        );
    }

    /// Forgets a connection.
    pub fn disconnect(&self, conn: u64) {
        let Ok(mut t) = self.tables.lock() else {
            return;
        };
        if let Some(c) = t.clients.remove(&conn) {
            if t.by_client_id.get(&c.client_id) == Some(&conn) {
                t.by_client_id.remove(&c.client_id);
            }
        }
    }

    /// Stores (or, with an empty payload, clears) a retained message.
    pub fn retain(&self, topic: &str, payload: Vec<u8>, qos: u8) {
        let Ok(mut t) = self.tables.lock() else {
            return;
        };
        if payload.is_empty() {
            t.retained.remove(topic);
        } else {
            t.retained.insert(topic.to_string(), (payload, qos));
        }
    }

    /// Adds subscriptions; returns the SUBACK codes and the retained
    /// messages now due to the subscriber.
    pub fn subscribe(&self, conn: u64, filters: &[(String, u8)]) -> (Vec<u8>, Vec<Due>) {
        let Ok(mut t) = self.tables.lock() else {
            return (vec![0x80; filters.len()], Vec::new());
        };
        let mut codes = Vec::new();
        let mut due = Vec::new();
        for (filter, qos) in filters {
            if !topic::valid_filter(filter) {
                codes.push(0x80);
                continue;
            }
            let granted = (*qos).min(1);
            codes.push(granted);
            for (name, (payload, rqos)) in &t.retained {
                if topic::matches(filter, name) {
                    due.push((name.clone(), payload.clone(), granted.min(*rqos)));
                }
            }
            if let Some(c) = t.clients.get_mut(&conn) {
                c.subscriptions.retain(|(f, _)| f != filter);
                c.subscriptions.push((filter.clone(), granted));
            }
        }
        (codes, due)
    }

    /// Removes subscriptions.
    pub fn unsubscribe(&self, conn: u64, filters: &[String]) {
        let Ok(mut t) = self.tables.lock() else {
            return;
        };
        if let Some(c) = t.clients.get_mut(&conn) {
            c.subscriptions.retain(|(f, _)| !filters.contains(f));
        }
    }

    /// Delivers a message to every matching subscriber, at the lower of the
    /// two QoS; writes happen outside the lock.
    pub fn publish(&self, name: &str, payload: &[u8], qos: u8) {
        let targets: Vec<(Arc<Outbox>, u8)> = {
            let Ok(t) = self.tables.lock() else { return };
            t.clients
                .values()
                .filter_map(|c| {
                    let best = c
                        .subscriptions
                        .iter()
                        .filter(|(f, _)| topic::matches(f, name))
                        .map(|(_, q)| *q)
                        .max()?;
                    Some((Arc::clone(&c.outbox), best.min(qos)))
                })
                .collect()
        };
        for (outbox, q) in targets {
            let packet_id = (q > 0).then(|| outbox.packet_id());
            outbox.send(&Packet::Publish {
                topic: name.to_string(),
                payload: payload.to_vec(),
                qos: q,
                retain: false,
                dup: false,
                packet_id,
            });
        }
    }

    /// Closes every connection gracefully.
    pub fn close_all(&self) {
        let Ok(t) = self.tables.lock() else { return };
        for c in t.clients.values() {
            c.outbox.close();
        }
    }
}
