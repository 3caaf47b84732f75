//! Subscriptions by client id and retained messages: which sessions a
//! publish reaches, at which QoS. Filters without wildcards are found by
//! one lookup; only wildcard filters are matched one by one. Overlapping
//! subscriptions of one client give one delivery, at the highest of their
//! QoS (3.1.1 §3.3.5 allows that or one per subscription).

use std::collections::HashMap;
use std::rc::Rc;

use emqx_mqtt::topic;

use crate::session::Message;

pub mod shared;

type Table = HashMap<String, HashMap<Rc<str>, u8>>;

/// The broker's routing state.
#[derive(Default)]
pub struct Router {
    /// Filter without wildcard (= the topic) -> client id -> QoS.
    exact: Table,
    /// Filter with wildcards -> client id -> QoS.
    wild: Table,
    /// `$share/GROUP/FILTER` subscriptions.
    pub shared: shared::Shared,
    retained: HashMap<String, Message>,
}

impl Router {
    fn table(&mut self, filter: &str) -> &mut Table {
        if topic::has_wildcard(filter) {
            &mut self.wild
        } else {
            &mut self.exact
        }
    }

    /// Subscribes `client` to a valid `filter` (replacing the QoS of the
    /// same filter).
    pub fn subscribe(&mut self, client: &Rc<str>, filter: &str, qos: u8) {
        if filter.starts_with(shared::PREFIX) {
            return self.shared.subscribe(client, filter, qos);
        }
        self.table(filter)
            .entry(filter.to_string())
            .or_default()
            .insert(Rc::clone(client), qos);
    }

    /// Removes `client`'s subscription to `filter`, if any.
    pub fn unsubscribe(&mut self, client: &str, filter: &str) {
        if filter.starts_with(shared::PREFIX) {
            return self.shared.unsubscribe(client, filter);
        }
        let table = self.table(filter);
        if let Some(subs) = table.get_mut(filter) {
            subs.remove(client);
            if subs.is_empty() {
                table.remove(filter);
            }
        }
    }

    /// Client id -> QoS of the delivery for a message on `name`.
    pub fn targets(&self, name: &str) -> HashMap<Rc<str>, u8> {
        let mut out: HashMap<Rc<str>, u8> = HashMap::new();
        let mut add = |subs: &HashMap<Rc<str>, u8>| {
            for (client, qos) in subs {
                let q = out.entry(Rc::clone(client)).or_insert(*qos);
                *q = (*q).max(*qos);
            }
        };
        if let Some(subs) = self.exact.get(name) {
            add(subs);
        }
        for (filter, subs) in &self.wild {
            if topic::matches(filter, name) {
                add(subs);
            }
        }
        out
    }

    /// Retains `message` on its topic; an empty payload clears it.
    pub fn retain(&mut self, message: &Message) {
        if message.payload.is_empty() {
            self.retained.remove(&*message.topic);
        } else {
            self.retained
                .insert(message.topic.to_string(), message.clone());
        }
    }

    /// Every retained message, by topic.
    pub fn all_retained(&self) -> impl Iterator<Item = &Message> {
        self.retained.values()
    }

    /// The retained messages `filter` matches, flagged retained.
    pub fn retained(&self, filter: &str) -> Vec<Message> {
        let mut out: Vec<Message> = self
            .retained
            .values()
            .filter(|m| topic::matches(filter, &m.topic))
            .map(|m| Message {
                retain: true,
                ..m.clone()
            })
            .collect();
        out.sort_by(|a, b| a.topic.cmp(&b.topic));
        out
    }
}

#[cfg(test)]
mod tests {
    //! Overlapping subscriptions, and retained messages set, replaced
    //! and deleted.

    use super::*;

    fn msg(topic: &str, payload: &[u8]) -> Message {
        Message {
            topic: topic.into(),
            payload: Rc::from(payload),
            qos: 1,
            retain: true,
            props: None,
        }
    }

    #[test]
    fn overlapping_filters_give_one_target_at_the_highest_qos() {
        let mut r = Router::default();
        let a: Rc<str> = "a".into();
        r.subscribe(&a, "x/y", 0);
        r.subscribe(&a, "x/+", 2);
        r.subscribe(&a, "#", 1);
        let t = r.targets("x/y");
        assert_eq!(t.len(), 1);
        assert_eq!(t.get("a"), Some(&2));
        r.unsubscribe("a", "x/+");
        assert_eq!(r.targets("x/y").get("a"), Some(&1));
        assert!(r.targets("$SYS/x").is_empty(), "# does not match $ topics");
    }

    #[test]
    fn retained_set_replace_delete() {
        let mut r = Router::default();
        r.retain(&msg("t", b"1"));
        r.retain(&msg("t", b"2"));
        assert_eq!(&*r.retained("#")[0].payload, b"2");
        r.retain(&msg("t", b""));
        assert!(r.retained("#").is_empty());
    }
}
