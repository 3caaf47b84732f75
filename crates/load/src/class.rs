//! The classes of messages the report counts apart: the family of client
//! (clean or persistent session at MQTT 3.1.1; persistent session or
//! shared subscription at MQTT 5) and the QoS. A module of its own: the
//! message ledger and the counters ([`crate::stats`]) both need it, and
//! the ledger feeds the counters, so the counters must not depend on the
//! ledger.

/// The kind of client a class counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// MQTT 3.1.1, clean session, publishing to itself.
    Live,
    /// MQTT 3.1.1, `clean_session=0`, in a ring.
    Session,
    /// MQTT 5 with a Session Expiry Interval, in a ring.
    V5Session,
    /// MQTT 5: one publisher, a `$share/GROUP/FILTER` group receiving.
    V5Shared,
}

/// The kind of client and the QoS of a stream: the classes the report
/// counts separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Class {
    pub family: Family,
    pub qos: u8,
}

impl Class {
    /// How many classes there are.
    pub const COUNT: usize = 10;

    /// Every class, in report order.
    pub const ALL: [Class; Class::COUNT] = [
        Class::live(0),
        Class::live(1),
        Class::live(2),
        Class::session(1),
        Class::session(2),
        Class::v5_session(1),
        Class::v5_session(2),
        Class::v5_shared(0),
        Class::v5_shared(1),
        Class::v5_shared(2),
    ];

    pub const fn live(qos: u8) -> Class {
        Class {
            family: Family::Live,
            qos,
        }
    }

    pub const fn session(qos: u8) -> Class {
        Class {
            family: Family::Session,
            qos,
        }
    }

    pub const fn v5_session(qos: u8) -> Class {
        Class {
            family: Family::V5Session,
            qos,
        }
    }

    pub const fn v5_shared(qos: u8) -> Class {
        Class {
            family: Family::V5Shared,
            qos,
        }
    }

    /// Whether its clients speak MQTT 5.
    pub fn is_v5(self) -> bool {
        matches!(self.family, Family::V5Session | Family::V5Shared)
    }

    /// Its slot in [`Class::ALL`].
    pub fn index(self) -> usize {
        let q = usize::from(self.qos.min(2));
        match self.family {
            Family::Live => q,
            Family::Session => 2 + q.max(1),
            Family::V5Session => 4 + q.max(1),
            Family::V5Shared => 7 + q,
        }
    }

    /// "live-qos1", "session-qos2", "v5-shared-qos0", ...
    pub fn name(self) -> String {
        let kind = match self.family {
            Family::Live => "live",
            Family::Session => "session",
            Family::V5Session => "v5-session",
            Family::V5Shared => "v5-shared",
        };
        format!("{kind}-qos{}", self.qos)
    }
}

#[cfg(test)]
mod tests {
    //! Every class has its own slot, in report order.

    use super::*;

    #[test]
    fn every_class_has_its_slot() {
        for (i, c) in Class::ALL.iter().enumerate() {
            assert_eq!(c.index(), i, "{}", c.name());
        }
        assert_eq!(Class::v5_shared(1).name(), "v5-shared-qos1");
    }
}
