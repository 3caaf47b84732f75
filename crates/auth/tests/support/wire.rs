//! The table's questions asked on the wire with mosquitto's own clients,
//! of any broker (mosquitto, or the reference broker reading the same
//! files): each answer in the words the printed table uses.

use std::collections::BTreeMap;

use super::table::{Ask, Net, Row, Who, ADMIN};
use super::{connack, puback, suback, Login, Reader};

/// Each broker's port.
pub type Ports = BTreeMap<Net, u16>;

pub fn login(ports: &Ports, who: &Who, v5: bool) -> Login<'static> {
    Login {
        port: ports[&who.net],
        user: who.user,
        pass: who.pass,
        id: who.id,
        v5,
        tls: None,
    }
}

/// A broker's answer to a CONNECT, PUBLISH or SUBSCRIBE row, read off the
/// wire by mosquitto's clients.
pub fn answer(ports: &Ports, row: &Row) -> String {
    match row.ask {
        Ask::Connect { v5 } => match connack(&login(ports, &row.who, v5)) {
            Some(code) => format!("CONNACK {code}"),
            None => "no CONNACK".to_string(),
        },
        // 0x10 ("no matching subscribers") is a success too.
        Ask::Publish(topic) => match puback(&login(ports, &row.who, true), topic) {
            Ok(135) => "PUBACK 135".to_string(),
            Ok(_) => "PUBACK ok".to_string(),
            Err(out) => format!("failed: {out:?}"),
        },
        Ask::Subscribe { filter, v5 } => match suback(&login(ports, &row.who, v5), filter) {
            Ok(code) => format!("SUBACK {code}"),
            Err(out) => format!("failed: {out:?}"),
        },
        Ask::Deliver(_) => unreachable!("deliveries are asked together"),
    }
}

/// Whether the broker delivered each row's topic to its reader: every
/// reader subscribes to `#`, admin publishes each topic once, then
/// `probe/ID/done` to each reader (the ACL lets every client read its own),
/// which arrives after everything published before it.
pub fn deliveries(ports: &Ports, rows: &[&Row]) -> Vec<String> {
    let mut readers: BTreeMap<Who, Reader> = BTreeMap::new();
    for row in rows {
        readers
            .entry(row.who)
            .or_insert_with(|| Reader::start(&login(ports, &row.who, true)));
    }
    let admin = |net| login(ports, &Who { net, ..ADMIN }, true);
    let mut published = std::collections::BTreeSet::new();
    for row in rows {
        let Ask::Deliver(topic) = row.ask else {
            continue;
        };
        if published.insert((row.who.net, topic)) {
            let rc = puback(&admin(row.who.net), topic);
            assert!(
                matches!(rc, Ok(c) if c != 135),
                "admin may publish {topic}: {rc:?}"
            );
        }
    }
    for (who, reader) in &mut readers {
        let done = format!("probe/{}/done", who.id);
        assert!(
            puback(&admin(who.net), &done).is_ok(),
            "admin publishes {done}"
        );
        assert!(reader.wait_for(&done), "{who:?} never got {done}");
    }
    let delivered = |row: &Row| match row.ask {
        Ask::Deliver(topic) => readers[&row.who].seen.iter().any(|t| t == topic),
        _ => false,
    };
    rows.iter()
        .map(|row| {
            if delivered(row) {
                "delivered"
            } else {
                "withheld"
            }
            .to_string()
        })
        .collect()
}
