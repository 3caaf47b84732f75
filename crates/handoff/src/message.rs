//! Protocol messages and version negotiation.

use serde::{Deserialize, Serialize};

use crate::ChannelError;

/// The newest protocol version this build speaks.
pub const PROTOCOL: u32 = 2;
/// The oldest protocol version this build still speaks: neighbouring
/// versions keep working so that rollbacks between releases do.
pub const MIN_PROTOCOL: u32 = 1;
/// The largest message, in bytes.
pub const MAX_MESSAGE: usize = 16 * 1024;

/// One message; `type` names it on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Message {
    /// First message of each side.
    Hello {
        /// The newest protocol version the sender speaks.
        protocol: u32,
        /// The oldest one it still speaks.
        min_protocol: u32,
        /// The sender's release version (the helper sends its own).
        version: String,
        /// The sender's pid.
        pid: u32,
    },
    /// Helper: send me your listeners.
    GetListeners,
    /// Broker: the listeners, in this order, as the message's fds.
    Listeners {
        /// One name per fd.
        names: Vec<String>,
    },
    /// Helper: the new broker is ready; stop accepting, drain, exit.
    Commit,
    /// Broker: committed; `connections` are left to drain.
    Committed {
        /// Live connections at commit.
        connections: u64,
    },
    /// Helper, protocol 2, after the hello: which state schemas do you
    /// export and import? (Not in the hello: a protocol 1 peer refuses
    /// fields it does not know.)
    GetSchemas,
    /// Broker, protocol 2: the state schemas it exports and imports, and
    /// how long a move away from it may take (its freeze-to-go bound).
    Schemas {
        exports: Vec<String>,
        imports: Vec<String>,
        move_bound_ms: u64,
    },
    /// Helper, protocol 2: the new broker is ready and imports `schema`;
    /// stop accepting, move every connection to it over the attached
    /// socket (the brokers' direct channel), then exit.
    CommitMove {
        /// The schema both brokers speak.
        schema: String,
    },
    /// Old broker, protocol 2: the move went; it exits (after draining
    /// `drained` connections it could not export).
    Moved {
        /// Connections the new broker took over.
        moved: u64,
        /// Connections left to drain here.
        drained: u64,
        /// Why live connections were left to drain (e.g. the schema
        /// cannot carry TLS connections); absent when none were.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        drained_why: Option<String>,
        /// Microseconds from the freeze to the go.
        pause_us: u64,
        /// Of `moved`, connections the new broker closes because its
        /// policy no longer lets their login in (left out when none, as
        /// before there were any).
        #[serde(default, skip_serializing_if = "is_zero")]
        closed_by_policy: u64,
    },
    /// New broker to old, on their channel: the state is imported and
    /// waits, frozen, for the go.
    Imported {
        /// Connections taken over.
        connections: u64,
        /// Of those, the ones it closes at once: its policy refuses their
        /// login (left out when none).
        #[serde(default, skip_serializing_if = "is_zero")]
        closed_by_policy: u64,
    },
    /// Old broker to new, on their channel: the connections are yours.
    Go,
    /// New broker to old, on their channel, before it touches a moved
    /// socket: it serves them (the old broker closes its copies only on
    /// this; without it, it thaws).
    Going,
    /// Either side: the session ends because of this.
    Error {
        /// Why.
        reason: String,
    },
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Message {
    /// The hello of this process.
    pub fn hello(version: &str) -> Message {
        Message::hello_upto(version, PROTOCOL)
    }

    /// The hello of a process that speaks at most `protocol`.
    pub fn hello_upto(version: &str, protocol: u32) -> Message {
        Message::Hello {
            protocol: protocol.clamp(MIN_PROTOCOL, PROTOCOL),
            min_protocol: MIN_PROTOCOL,
            version: version.to_string(),
            pid: std::process::id(),
        }
    }

    /// Encodes for the wire.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes a message; any doubt is an error.
    pub fn decode(bytes: &[u8]) -> Result<Message, ChannelError> {
        serde_json::from_slice(bytes).map_err(|e| ChannelError::Undecodable(e.to_string()))
    }

    /// The message's name on the wire.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Hello { .. } => "hello",
            Message::GetListeners => "get_listeners",
            Message::Listeners { .. } => "listeners",
            Message::Commit => "commit",
            Message::Committed { .. } => "committed",
            Message::GetSchemas => "get_schemas",
            Message::Schemas { .. } => "schemas",
            Message::CommitMove { .. } => "commit_move",
            Message::Moved { .. } => "moved",
            Message::Imported { .. } => "imported",
            Message::Go => "go",
            Message::Going => "going",
            Message::Error { .. } => "error",
        }
    }
}

/// The protocol both sides speak: the newest version in both ranges.
pub fn negotiate(peer_min: u32, peer_max: u32) -> Option<u32> {
    negotiate_upto(PROTOCOL, peer_min, peer_max)
}

/// As [`negotiate`], for a side that speaks at most `ours`.
pub fn negotiate_upto(ours: u32, peer_min: u32, peer_max: u32) -> Option<u32> {
    let version = PROTOCOL.min(ours).min(peer_max);
    (version >= MIN_PROTOCOL && version >= peer_min).then_some(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_is_tagged_json() {
        let m = Message::Listeners {
            names: vec!["mqtt".into()],
        };
        assert_eq!(
            String::from_utf8(m.encode()).unwrap(),
            r#"{"type":"listeners","names":["mqtt"]}"#
        );
        assert_eq!(Message::decode(&m.encode()).unwrap(), m);
        assert!(Message::decode(b"{\"type\":\"launch_missiles\"}").is_err());
        assert!(Message::decode(b"\xff\x00garbage").is_err());
    }

    #[test]
    fn a_protocol_1_hello_is_the_same_bytes() {
        // What a protocol 1 peer (deny_unknown_fields) must still decode.
        let m = Message::Hello {
            protocol: 2,
            min_protocol: 1,
            version: "5.0.1".into(),
            pid: 7,
        };
        assert_eq!(
            String::from_utf8(m.encode()).unwrap(),
            r#"{"type":"hello","protocol":2,"min_protocol":1,"version":"5.0.1","pid":7}"#
        );
        for m in [
            Message::GetSchemas,
            Message::Go,
            Message::Going,
            Message::CommitMove {
                schema: "refbroker/1".into(),
            },
            Message::Moved {
                moved: 3,
                drained: 1,
                drained_why: Some("1 connection: refbroker/1 carries no TLS connection".into()),
                pause_us: 40,
                closed_by_policy: 2,
            },
            Message::Imported {
                connections: 3,
                closed_by_policy: 1,
            },
        ] {
            assert_eq!(Message::decode(&m.encode()).unwrap(), m, "{}", m.kind());
        }
        // Without a reason, `moved` is the bytes a protocol 2 peer of
        // before TLS decodes.
        let m = Message::Moved {
            moved: 3,
            drained: 0,
            drained_why: None,
            pause_us: 40,
            closed_by_policy: 0,
        };
        assert_eq!(
            String::from_utf8(m.encode()).unwrap(),
            r#"{"type":"moved","moved":3,"drained":0,"pause_us":40}"#
        );
        // Nobody closed by policy: `imported` is the bytes of before.
        let m = Message::Imported {
            connections: 3,
            closed_by_policy: 0,
        };
        assert_eq!(
            String::from_utf8(m.encode()).unwrap(),
            r#"{"type":"imported","connections":3}"#
        );
    }

    #[test]
    fn neighbouring_versions_negotiate() {
        assert_eq!(negotiate(1, 1), Some(1), "a protocol 1 peer: drain");
        assert_eq!(negotiate(1, 2), Some(2));
        assert_eq!(negotiate(1, 3), Some(2), "a newer peer that still speaks 2");
        assert_eq!(negotiate(3, 4), None, "a peer that dropped 1 and 2");
        assert_eq!(negotiate(0, 0), None);
    }
}
