//! Protocol messages and version negotiation.

use serde::{Deserialize, Serialize};

use crate::ChannelError;

/// The newest protocol version this build speaks.
pub const PROTOCOL: u32 = 1;
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
    /// Either side: the session ends because of this.
    Error {
        /// Why.
        reason: String,
    },
}

impl Message {
    /// The hello of this process.
    pub fn hello(version: &str) -> Message {
        Message::Hello {
            protocol: PROTOCOL,
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
            Message::Error { .. } => "error",
        }
    }
}

/// The protocol both sides speak: the newest version in both ranges.
pub fn negotiate(peer_min: u32, peer_max: u32) -> Option<u32> {
    let version = PROTOCOL.min(peer_max);
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
    fn neighbouring_versions_negotiate() {
        assert_eq!(negotiate(1, 1), Some(1));
        assert_eq!(negotiate(1, 2), Some(1), "a newer peer that still speaks 1");
        assert_eq!(negotiate(2, 3), None, "a peer that dropped 1");
        assert_eq!(negotiate(0, 0), None);
    }
}
