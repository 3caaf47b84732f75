//! The load with authentication (issue #25, [`LoadOptions::auth`]): the
//! username and password every CONNECT carries, topics named after the
//! client that publishes and the user that receives so that an ACL's
//! `%c` and `%u` patterns decide them, the `acl_file` and password file
//! text a mosquitto-style broker needs for the load, and the topic the
//! denied probes (`client::probe`) check.
//!
//! [`LoadOptions::auth`]: crate::LoadOptions::auth

use std::collections::HashMap;
use std::fmt;

use emqx_mqtt::{Level, Packet, ReasonCode};

use crate::client::Client;

/// Denied probes a run with [`LoadAuth`] adds: half at MQTT 3.1.1, half at
/// MQTT 5 (with a TLS listener, one of each over TLS).
pub const DENIED_PROBES: usize = 4;

/// Longest denied topic [`LoadAuth::validate`] takes, in bytes.
const MAX_DENIED_TOPIC: usize = 1024;

/// The credentials of the load's clients and the topic none may use.
///
/// Client `i` (every client of every class: live, sessions, idle,
/// storm, the MQTT 5 ones, those over TLS, the probes) connects as user
/// `{username_prefix}{i % users}` (`load-0` ... `load-3` by default)
/// with `password`; the members of an MQTT 5 shared subscription group
/// all connect as the user of the group's publisher, so that the group's
/// topic can name one receiving user.
///
/// Without auth a stream's topic is `RUN/STREAM`; with auth it is
/// `RUN/STREAM/PUBLISHER/RECEIVER`: `RUN` the run's id
/// (`load-PID-N`), `STREAM` the stream's number, `PUBLISHER` the client
/// id of the one client publishing to it, `RECEIVER` the username of the
/// client (or the shared group) subscribed to it. Client ids are
/// `RUN-p3` (live), `RUN-c1` (sessions), `RUN-v5c0`, `RUN-v5p0` and
/// `RUN-v5s0-1` (MQTT 5), `RUN-i0` (idle), `RUN-s0-ATTEMPT` (storm),
/// `RUN-d0` (probes): none holds `/`, `+` or `#`. Every client
/// subscribes to the retained `$SYS/broker/version` when it connects
/// (idle ones excepted). The probes publish to and subscribe to
/// `denied_topic`. So this `acl_file` (from [`LoadAuth::acl_file_text`];
/// here with the default denied topic) grants everything the load does,
/// and nothing more to a client whose broker lost its username or client
/// id:
///
/// ```text
/// pattern deny emqx-load/denied
/// pattern read $SYS/broker/version
/// pattern write +/+/%c/+
/// pattern read +/+/+/%u
/// ```
///
/// `pattern` lines, not `topic` lines: mosquitto applies `topic` lines
/// before any `user` line to anonymous clients only, `pattern` lines to
/// everyone (it warns that the first two hold no `%c` or `%u`). The deny
/// line comes first, which makes it win whatever order a broker checks
/// in. mosquitto 2.0 never refuses a SUBSCRIBE because of its
/// `acl_file` (it checks each delivery instead), so by default a granted
/// SUBACK for `denied_topic` is counted as `denied_subscribed`, not as
/// a leak; with `refuse_subscribe` it is a leak.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadAuth {
    /// Usernames are this followed by a number from 0 to `users - 1`.
    pub username_prefix: String,
    /// How many usernames the clients take round-robin (at least 1).
    pub users: usize,
    /// Every user's password.
    pub password: String,
    /// The topic the ACL denies to everyone: the probes subscribe and
    /// publish to it, and no client may ever get a message on it.
    pub denied_topic: String,
    /// The broker must refuse a SUBSCRIBE to `denied_topic` (SUBACK 0x80,
    /// at 5 a failure code): a granted one counts as a leak.
    pub refuse_subscribe: bool,
}

impl Default for LoadAuth {
    /// Users `load-0` ... `load-3`, password `emqx-load`, denied topic
    /// `emqx-load/denied`, subscriptions checked at delivery.
    fn default() -> LoadAuth {
        LoadAuth {
            username_prefix: "load-".into(),
            users: 4,
            password: "emqx-load".into(),
            denied_topic: "emqx-load/denied".into(),
            refuse_subscribe: false,
        }
    }
}

/// A [`LoadAuth`] a broker's files cannot express.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// `users` is 0.
    NoUsers,
    /// The username prefix holds `:` (a password file's separator), `/`,
    /// `+` or `#` (they break the `%u` pattern), whitespace or a control
    /// character.
    UsernamePrefix,
    /// The denied topic is empty, too long, a wildcard, `$`-topic, or
    /// holds `%`, whitespace or a control character.
    DeniedTopic,
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::NoUsers => write!(f, "the load needs at least one user"),
            AuthError::UsernamePrefix => write!(
                f,
                "the username prefix may not hold ':', '/', '+', '#', whitespace or control characters"
            ),
            AuthError::DeniedTopic => write!(
                f,
                "the denied topic must be a topic name of 1 to {MAX_DENIED_TOPIC} bytes without \
                 '+', '#', '%', a leading '$', whitespace or control characters"
            ),
        }
    }
}

impl std::error::Error for AuthError {}

/// Whitespace or a control character.
fn blank(c: char) -> bool {
    c.is_whitespace() || c.is_control()
}

impl LoadAuth {
    /// Whether a broker's password file and ACL can hold these.
    pub fn validate(&self) -> Result<(), AuthError> {
        if self.users == 0 {
            return Err(AuthError::NoUsers);
        }
        if self
            .username_prefix
            .chars()
            .any(|c| matches!(c, ':' | '/' | '+' | '#') || blank(c))
        {
            return Err(AuthError::UsernamePrefix);
        }
        let t = &self.denied_topic;
        if t.is_empty()
            || t.len() > MAX_DENIED_TOPIC
            || t.starts_with('$')
            || t.chars().any(|c| matches!(c, '+' | '#' | '%') || blank(c))
        {
            return Err(AuthError::DeniedTopic);
        }
        Ok(())
    }

    /// The username of user number `k` (taken modulo `users`).
    pub fn username(&self, k: usize) -> String {
        format!("{}{}", self.username_prefix, k % self.users.max(1))
    }

    /// Every (username, password) pair, for a password file (for each:
    /// `mosquitto_passwd -b FILE USER PASSWORD`).
    pub fn credentials(&self) -> Vec<(String, String)> {
        (0..self.users.max(1))
            .map(|k| (self.username(k), self.password.clone()))
            .collect()
    }

    /// The `acl_file` granting what the load does and denying
    /// `denied_topic` (see [`LoadAuth`]), one line each, ending in a
    /// newline.
    pub fn acl_file_text(&self) -> String {
        format!(
            "pattern deny {}\n\
             pattern read {}\n\
             pattern write +/+/%c/+\n\
             pattern read +/+/+/%u\n",
            self.denied_topic,
            crate::VERSION_TOPIC
        )
    }
}

/// `p` (a CONNECT) with the username of user `user` and the password.
pub(crate) fn sign(p: &mut Packet, auth: &LoadAuth, user: usize) {
    if let Packet::Connect {
        username, password, ..
    } = p
    {
        *username = Some(auth.username(user));
        *password = Some(auth.password.clone().into_bytes());
    }
}

/// Whether a CONNACK code at `level` refuses the client's credentials:
/// 3.1.1's 4 (bad username or password) and 5 (not authorized), 5's
/// 0x86, 0x87 and 0x8C (bad authentication method).
pub(crate) fn refused_for_auth(level: Level, code: ReasonCode) -> bool {
    match level {
        Level::V5 => matches!(
            code,
            ReasonCode::BAD_USER_NAME_OR_PASSWORD
                | ReasonCode::NOT_AUTHORIZED
                | ReasonCode::BAD_AUTHENTICATION_METHOD
        ),
        _ => matches!(code.0, 4 | 5),
    }
}

/// Names every stream's topic `PREFIX STREAM/PUBLISHER/RECEIVER` (see
/// [`LoadAuth`]) in the clients' traffic.
pub(crate) fn name_topics(clients: &mut [Client], auth: &LoadAuth, prefix: &str) {
    let mut publisher: HashMap<usize, String> = HashMap::new();
    let mut receiver: HashMap<usize, String> = HashMap::new();
    for c in clients.iter() {
        let Some(t) = c.traffic.as_ref() else {
            continue;
        };
        if !t.is_shared() {
            publisher.insert(t.out(), c.name().to_string());
        }
        if let Some(input) = t.input {
            receiver.insert(input, auth.username(c.user));
        }
    }
    let topic = |s: usize| {
        let by = publisher.get(&s).map_or("", String::as_str);
        let to = receiver.get(&s).map_or("", String::as_str);
        format!("{prefix}{s}/{by}/{to}")
    };
    for c in clients.iter_mut() {
        if let Some(t) = c.traffic.as_mut() {
            let input = t.input.map(topic);
            t.set_topics(topic(t.out()), input);
        }
    }
}

#[cfg(test)]
mod tests {
    //! The files' text, the checks of the options, CONNACK refusals.

    use super::*;

    #[test]
    fn default_files() {
        let a = LoadAuth::default();
        assert_eq!(a.validate(), Ok(()));
        assert_eq!(
            a.acl_file_text(),
            "pattern deny emqx-load/denied\npattern read $SYS/broker/version\n\
             pattern write +/+/%c/+\npattern read +/+/+/%u\n"
        );
        let creds = a.credentials();
        assert_eq!(creds.len(), 4);
        assert_eq!(creds[3], ("load-3".into(), "emqx-load".into()));
        assert_eq!(a.username(5), "load-1");
    }

    #[test]
    fn unusable_options_are_refused() {
        let bad = |f: fn(&mut LoadAuth)| {
            let mut a = LoadAuth::default();
            f(&mut a);
            a.validate()
        };
        assert_eq!(bad(|a| a.users = 0), Err(AuthError::NoUsers));
        for p in ["a:b", "a/b", "u+", "#", "a b", "a\nb"] {
            let a = LoadAuth {
                username_prefix: p.into(),
                ..LoadAuth::default()
            };
            assert_eq!(a.validate(), Err(AuthError::UsernamePrefix), "{p:?}");
        }
        for t in ["", "a/+", "a/#", "$SYS/x", "a/%u", "a b", "a\nb"] {
            let a = LoadAuth {
                denied_topic: t.into(),
                ..LoadAuth::default()
            };
            assert_eq!(a.validate(), Err(AuthError::DeniedTopic), "{t:?}");
        }
        assert_eq!(
            bad(|a| a.denied_topic = "x".repeat(MAX_DENIED_TOPIC + 1)),
            Err(AuthError::DeniedTopic)
        );
        assert_eq!(bad(|a| a.username_prefix.clear()), Ok(()));
    }

    #[test]
    fn credential_refusals_are_told_apart() {
        assert!(refused_for_auth(Level::V311, ReasonCode(4)));
        assert!(refused_for_auth(Level::V311, ReasonCode(5)));
        assert!(!refused_for_auth(Level::V311, ReasonCode(3)));
        assert!(refused_for_auth(Level::V5, ReasonCode::NOT_AUTHORIZED));
        assert!(refused_for_auth(Level::V5, ReasonCode(0x86)));
        assert!(!refused_for_auth(Level::V5, ReasonCode(5)));
        assert!(!refused_for_auth(Level::V5, ReasonCode::SERVER_BUSY));
    }

    #[test]
    fn a_report_with_auth_needs_a_denial_and_no_leak() {
        use std::sync::atomic::Ordering::Relaxed;

        use crate::stats::{Outcome, Stats};
        use crate::Report;
        let s = Stats::default();
        s.record(&Outcome::Ok);
        assert!(Report::from_stats(&s, 1.0).clean(), "without auth");
        s.auth.store(true, Relaxed);
        let r = Report::from_stats(&s, 1.0);
        assert!(!r.auth_clean() && !r.clean(), "no probe answered yet");
        s.denied_checks.fetch_add(2, Relaxed);
        s.denied_subscribed.fetch_add(1, Relaxed);
        let r = Report::from_stats(&s, 1.0);
        assert!(r.clean(), "{}", r.table());
        assert!(r.table().contains("denied checks"), "{}", r.table());
        s.denied_leaks.fetch_add(1, Relaxed);
        let r = Report::from_stats(&s, 1.0);
        assert!(r.connections_clean() && !r.auth_clean() && !r.clean());
        let v: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        assert_eq!(
            (v["denied_leaks"].as_u64(), v["denied_checks"].as_u64()),
            (Some(1), Some(2))
        );
        s.denied_leaks.store(0, Relaxed);
        s.auth_refused.fetch_add(1, Relaxed);
        assert!(!Report::from_stats(&s, 1.0).clean(), "credentials refused");
    }

    #[test]
    fn a_connect_is_signed() {
        let mut p = Packet::connect("c", true, 30);
        sign(&mut p, &LoadAuth::default(), 6);
        let Packet::Connect {
            username, password, ..
        } = p
        else {
            panic!("not a CONNECT");
        };
        assert_eq!(username.as_deref(), Some("load-2"));
        assert_eq!(password.as_deref(), Some(&b"emqx-load"[..]));
    }
}
