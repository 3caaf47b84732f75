//! Shared subscriptions (`$share/GROUP/FILTER`, MQTT 5 §4.8.2, for 5 and
//! 3.1.1 clients alike): each message on a group's filter goes to one of
//! its members, in turn, a connected one first.

use std::collections::HashMap;
use std::rc::Rc;

use emqx_mqtt::topic;

/// The prefix of a shared subscription's filter.
pub const PREFIX: &str = "$share/";

/// `$share/GROUP/FILTER` split into its group and filter, if it is a valid
/// shared subscription (a group name without `/`, `+` or `#`, a valid
/// filter).
pub fn split(filter: &str) -> Option<(&str, &str)> {
    let rest = filter.strip_prefix(PREFIX)?;
    let (group, filter) = rest.split_once('/')?;
    let valid = !group.is_empty()
        && !group.contains(['+', '#'])
        && !filter.is_empty()
        && topic::valid_filter(filter);
    valid.then_some((group, filter))
}

/// The filter a subscription matches topics with: the filter itself, or a
/// shared one's filter.
pub fn matching_filter(filter: &str) -> &str {
    split(filter).map_or(filter, |(_, f)| f)
}

/// One group on one filter.
#[derive(Default)]
struct Group {
    filter: String,
    /// Client id and granted QoS, in the order they joined.
    members: Vec<(Rc<str>, u8)>,
    /// Whose turn it is.
    next: usize,
}

/// Every shared subscription, by its full `$share/GROUP/FILTER`.
#[derive(Default)]
pub struct Shared {
    groups: HashMap<String, Group>,
}

impl Shared {
    /// Adds `client` to the group of a valid `full` filter (or sets its QoS).
    pub fn subscribe(&mut self, client: &Rc<str>, full: &str, qos: u8) {
        let Some((_, filter)) = split(full) else {
            return;
        };
        let group = self
            .groups
            .entry(full.to_string())
            .or_insert_with(|| Group {
                filter: filter.to_string(),
                ..Group::default()
            });
        match group.members.iter_mut().find(|(c, _)| c == client) {
            Some((_, q)) => *q = qos,
            None => group.members.push((Rc::clone(client), qos)),
        }
    }

    /// Takes `client` out of the group of `full`.
    pub fn unsubscribe(&mut self, client: &str, full: &str) {
        if let Some(group) = self.groups.get_mut(full) {
            group.members.retain(|(c, _)| &**c != client);
            if group.members.is_empty() {
                self.groups.remove(full);
            }
        }
    }

    /// Every group: its full filter, its members in turn order, and whose
    /// turn it is.
    pub fn groups(&self) -> impl Iterator<Item = (&str, impl Iterator<Item = &Rc<str>>, usize)> {
        self.groups
            .iter()
            .map(|(f, g)| (f.as_str(), g.members.iter().map(|(c, _)| c), g.next))
    }

    /// Puts the members of group `full` in the turn order `order` (those
    /// not in it after, as they were; names not members are ignored) and
    /// makes it `next`'s turn: a group moved from another broker takes
    /// turns where it left off.
    pub fn restore(&mut self, full: &str, order: &[String], next: usize) {
        let Some(group) = self.groups.get_mut(full) else {
            return;
        };
        let rank = |c: &str| order.iter().position(|o| o == c).unwrap_or(usize::MAX);
        group.members.sort_by_key(|(c, _)| rank(c));
        group.next = next;
    }

    /// For a message on `name`: one member of each matching group, the
    /// next in turn that `online` says is connected (else the next in
    /// turn), with its QoS.
    pub fn pick(&mut self, name: &str, online: impl Fn(&str) -> bool) -> Vec<(Rc<str>, u8)> {
        let mut out = Vec::new();
        for group in self.groups.values_mut() {
            if !topic::matches(&group.filter, name) {
                continue;
            }
            let n = group.members.len();
            let turn = (0..n)
                .map(|k| (group.next + k) % n)
                .find(|&i| online(&group.members[i].0))
                .unwrap_or(group.next % n);
            group.next = turn + 1;
            out.push(group.members[turn].clone());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_takes_turns_and_prefers_connected_members() {
        let (a, b, c): (Rc<str>, Rc<str>, Rc<str>) = ("a".into(), "b".into(), "c".into());
        let mut s = Shared::default();
        for m in [&a, &b, &c] {
            s.subscribe(m, "$share/g/t/+", 1);
        }
        s.subscribe(&a, "$share/other/t/#", 0);
        let all = |_: &str| true;
        let picks: Vec<Vec<(Rc<str>, u8)>> = (0..3).map(|_| s.pick("t/x", all)).collect();
        let of_g: Vec<&str> = picks
            .iter()
            .map(|p| p.iter().find(|(_, q)| *q == 1).map(|(c, _)| &**c).unwrap())
            .collect();
        assert_eq!(of_g, ["a", "b", "c"]);
        assert!(picks.iter().all(|p| p.len() == 2), "one per group");
        // Only c is connected: g skips to it; `other` has only a.
        let only_c = |c: &str| c == "c";
        let names = |p: Vec<(Rc<str>, u8)>| {
            let mut v: Vec<String> = p.iter().map(|(c, _)| c.to_string()).collect();
            v.sort();
            v
        };
        assert_eq!(names(s.pick("t/x", only_c)), ["a", "c"]);
        assert_eq!(
            names(s.pick("t/x", only_c)),
            ["a", "c"],
            "c again: a and b are away"
        );
        s.unsubscribe("c", "$share/g/t/+");
        assert_eq!(
            s.pick("t/x", only_c).len(),
            2,
            "no one online: in turn anyway"
        );
        assert!(s.pick("u", all).is_empty());
    }

    #[test]
    fn only_valid_shared_filters_split() {
        assert_eq!(split("$share/g/a/#"), Some(("g", "a/#")));
        for bad in [
            "$share/g",
            "$share//a",
            "$share/g+/a",
            "$share/g/a/#/b",
            "a/b",
            "$share/g/",
        ] {
            assert_eq!(split(bad), None, "{bad}");
        }
        assert_eq!(matching_filter("$share/g/a/+"), "a/+");
        assert_eq!(matching_filter("a/+"), "a/+");
    }
}
