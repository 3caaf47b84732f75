//! The classes of messages the report counts apart: persistent session
//! or clean, and QoS. A module of its own: the message ledger and the
//! counters ([`crate::stats`]) both need it, and the ledger feeds the
//! counters, so the counters must not depend on the ledger.

/// The kind of client and the QoS of a stream: the classes the report
/// counts separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Class {
    /// Persistent session (`clean_session=0`) rather than a clean one.
    pub session: bool,
    pub qos: u8,
}

impl Class {
    /// Every class, in report order.
    pub const ALL: [Class; 5] = [
        Class::live(0),
        Class::live(1),
        Class::live(2),
        Class::session(1),
        Class::session(2),
    ];

    pub const fn live(qos: u8) -> Class {
        Class {
            session: false,
            qos,
        }
    }

    pub const fn session(qos: u8) -> Class {
        Class { session: true, qos }
    }

    /// Its slot in [`Class::ALL`].
    pub fn index(self) -> usize {
        match (self.session, self.qos) {
            (false, q) => usize::from(q.min(2)),
            (true, q) => 2 + usize::from(q.clamp(1, 2)),
        }
    }

    /// "live-qos1", "session-qos2", ...
    pub fn name(self) -> String {
        let kind = if self.session { "session" } else { "live" };
        format!("{kind}-qos{}", self.qos)
    }
}
