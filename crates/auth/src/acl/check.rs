//! What an ACL file decides, as mosquitto 2.0 decides it
//! (`mosquitto_acl_check` with the `acl_file` check,
//! `mosquitto_acl_check_default`):
//!
//! 1. `$SYS...` topics are never writable (but for
//!    `$SYS/broker/connection/+/state`) and `$share...` topics are only
//!    subscribable, whatever the file says.
//! 2. A subscription is always allowed: mosquitto 2.0 does not check
//!    filters against the file ("FIXME - implement ACL subscription
//!    strings"); what the client may read is checked at each delivery.
//! 3. The client's own list (its user's `topic` lines, or the lines before
//!    any `user` line when it has no username): a matching `deny` denies,
//!    else a matching rule with the access allows.
//! 4. When there are `pattern` lines, a username or client id holding `+`
//!    or `#` is denied (`/` is not: it spreads `%c`/`%u` over levels).
//! 5. The patterns, `%c` and `%u` replaced, the same way as the own list.
//! 6. Otherwise denied. So an own-list grant beats a `pattern ... deny`,
//!    and a file without rules denies every publish and delivery.

use super::{AclFile, Rules, READ, WRITE};
use crate::topic::matches;

/// What a client asks to do with a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Receive a message published to the topic (checked at each delivery,
    /// retained messages included).
    Read,
    /// Publish to the topic (PUBLISH, and a will at CONNECT).
    Write,
    /// Subscribe to the filter.
    Subscribe,
}

/// Who asks: the username (from CONNECT or the client certificate) and
/// the client id (assigned by the broker when the client sent none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity<'a> {
    pub username: Option<&'a str>,
    pub client_id: &'a str,
}

impl AclFile {
    /// Whether `who` may do `access` on `topic` (a topic name for
    /// [`Access::Read`] and [`Access::Write`], a filter for
    /// [`Access::Subscribe`]) with this file as mosquitto's `acl_file`.
    pub fn check(&self, who: &Identity<'_>, topic: &str, access: Access) -> bool {
        !dollar_denies(topic, access) && self.rules_allow(who, topic, access)
    }

    /// Steps 2 to 6 of the module's list.
    fn rules_allow(&self, who: &Identity<'_>, topic: &str, access: Access) -> bool {
        let want = match access {
            Access::Subscribe => return true,
            Access::Read => READ,
            Access::Write => WRITE,
        };
        let own = match who.username {
            Some(name) => self.users.get(name),
            None => Some(&self.anonymous),
        };
        if let Some(decided) = own.and_then(|rules| rules.decide(want, |f| matches(f, topic))) {
            return decided;
        }
        if self.patterns.is_empty() {
            return false;
        }
        if who.username.is_some_and(dangerous) || dangerous(who.client_id) {
            return false;
        }
        let applies = |pattern: &str| {
            (who.username.is_some() || !pattern.contains("%u"))
                && matches(&expand(pattern, who), topic)
        };
        self.patterns.decide(want, applies).unwrap_or(false)
    }
}

impl Rules {
    /// `Some(false)` when a `deny` rule applies, else `Some(true)` when a
    /// rule granting `want` applies, else `None`.
    fn decide(&self, want: u8, applies: impl Fn(&str) -> bool) -> Option<bool> {
        if self.deny.iter().any(|f| applies(f)) {
            return Some(false);
        }
        let granted = self
            .grant
            .iter()
            .any(|(f, access)| access & want != 0 && applies(f));
        granted.then_some(true)
    }
}

/// mosquitto's `acl__check_dollar`: what no ACL can allow. The prefixes
/// are compared as mosquitto does (`$SYSfoo` counts as `$SYS`).
pub(crate) fn dollar_denies(topic: &str, access: Access) -> bool {
    if topic.starts_with("$SYS") {
        access == Access::Write && !matches("$SYS/broker/connection/+/state", topic)
    } else if topic.starts_with("$share") {
        access != Access::Subscribe
    } else {
        false
    }
}

/// A username or client id that would act as a wildcard in a pattern.
fn dangerous(name: &str) -> bool {
    name.contains(['+', '#'])
}

/// `pattern` with `%c` replaced by the client id and `%u` by the username
/// (left as is without one), scanning left to right as mosquitto does.
fn expand(pattern: &str, who: &Identity<'_>) -> String {
    let mut out = String::with_capacity(pattern.len() + who.client_id.len());
    let mut rest = pattern;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        match (after.as_bytes().first(), who.username) {
            (Some(b'c'), _) => out.push_str(who.client_id),
            (Some(b'u'), Some(user)) => out.push_str(user),
            _ => {
                out.push('%');
                rest = after;
                continue;
            }
        }
        rest = &after[1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    //! Pattern expansion and the `$` rules on their own.

    use super::*;

    fn who<'a>(username: Option<&'a str>, client_id: &'a str) -> Identity<'a> {
        Identity {
            username,
            client_id,
        }
    }

    #[test]
    fn expansion_scans_left_to_right() {
        let w = who(Some("u1"), "c1");
        assert_eq!(expand("a/%c/%u/b", &w), "a/c1/u1/b");
        assert_eq!(expand("%c%u%c", &w), "c1u1c1");
        assert_eq!(expand("%%c", &w), "%c1");
        assert_eq!(expand("%x/%", &w), "%x/%");
        assert_eq!(expand("a/%u", &who(None, "c")), "a/%u");
        assert_eq!(expand("%c/é", &who(None, "ü")), "ü/é");
    }

    #[test]
    fn dollar_topics() {
        assert!(dollar_denies("$SYS/x", Access::Write));
        assert!(dollar_denies("$SYSTEM", Access::Write));
        assert!(!dollar_denies(
            "$SYS/broker/connection/b1/state",
            Access::Write
        ));
        assert!(!dollar_denies("$SYS/x", Access::Read));
        assert!(!dollar_denies("$SYS/#", Access::Subscribe));
        assert!(dollar_denies("$share/g/t", Access::Write));
        assert!(dollar_denies("$share/g/t", Access::Read));
        assert!(!dollar_denies("$share/g/t", Access::Subscribe));
        assert!(!dollar_denies("$other/x", Access::Write));
        assert!(!dollar_denies("a/$SYS", Access::Write));
    }
}
