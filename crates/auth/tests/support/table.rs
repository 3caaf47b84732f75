//! The side-by-side table: the ACL file, who asks (which broker, username,
//! password, client id), what they ask, and what both mosquitto and this
//! library should answer. Rows are kept one per line (`rustfmt::skip`).

/// The ACL file both mosquitto and this library read.
pub const ACL: &str = "\
# Clients without a username: the lines before any user line.
topic read public/#
topic anon/rw

user alice
topic readwrite a/#
topic deny a/secret/#
topic read shared/#
topic write inbox/alice

user bob
topic read a/#
topic write b/+/cmd
topic b/free

user admin
topic write #

user team/eve
topic read team/#

user dev+x
topic readwrite own/#

pattern readwrite users/%u/#
pattern deny users/%u/locked
pattern read devices/%c/in
pattern write devices/%c/out
pattern read probe/%c/done
";

/// Which broker: `allow_anonymous false` (the issue's default) or `true`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Net {
    Closed,
    Open,
}

/// A client: its broker, username, password and client id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Who {
    pub net: Net,
    pub user: Option<&'static str>,
    pub pass: Option<&'static str>,
    pub id: &'static str,
}

/// What the client asks.
#[derive(Debug, Clone, Copy)]
pub enum Ask {
    Connect {
        v5: bool,
    },
    /// An MQTT 5 QoS 1 PUBLISH (its PUBACK says 0x87 when refused).
    Publish(&'static str),
    Subscribe {
        filter: &'static str,
        v5: bool,
    },
    /// Whether a message admin publishes to the topic reaches the client.
    Deliver(&'static str),
}

impl Ask {
    pub fn describe(&self) -> String {
        let v = |v5| if v5 { "v5" } else { "v3.1.1" };
        match *self {
            Ask::Connect { v5 } => format!("connect {}", v(v5)),
            Ask::Publish(t) => format!("publish {t}"),
            Ask::Subscribe { filter, v5 } => format!("subscribe {} {filter}", v(v5)),
            Ask::Deliver(t) => format!("deliver {t}"),
        }
    }
}

pub struct Row {
    pub who: Who,
    pub ask: Ask,
    /// Whether the client should be let in / allowed.
    pub expect: bool,
}

const fn user(net: Net, name: &'static str, pass: &'static str, id: &'static str) -> Who {
    Who {
        net,
        user: Some(name),
        pass: Some(pass),
        id,
    }
}

const fn anon(net: Net, id: &'static str) -> Who {
    Who {
        net,
        user: None,
        pass: None,
        id,
    }
}

use Net::{Closed, Open};

pub const ALICE: Who = user(Closed, "alice", "secret", "alice-c");
pub const BOB: Who = user(Closed, "bob", "hunter2", "bob-c");
pub const ADMIN: Who = user(Closed, "admin", "adminpw", "admin-pub");
const DAVE: Who = user(Closed, "dave", "davepw", "dave-c");
const fn alice_as(id: &'static str) -> Who {
    Who { id, ..ALICE }
}

/// Every row: connect, publish, subscribe, deliver.
pub fn rows() -> Vec<Row> {
    let mut rows = Vec::new();
    for (who, expect) in connects() {
        for v5 in [false, true] {
            rows.push(Row {
                who,
                ask: Ask::Connect { v5 },
                expect,
            });
        }
    }
    for (who, topics) in publishes() {
        rows.extend(topics.iter().map(|&(t, expect)| Row {
            who,
            ask: Ask::Publish(t),
            expect,
        }));
    }
    for (who, filter) in [
        (ALICE, "a/#"),
        (ALICE, "secret/#"),
        (BOB, "#"),
        (ALICE, "$SYS/#"),
        (DAVE, "users/+/x"),
    ] {
        for v5 in [false, true] {
            // mosquitto 2.0's acl_file never refuses a subscription.
            rows.push(Row {
                who,
                ask: Ask::Subscribe { filter, v5 },
                expect: true,
            });
        }
    }
    rows.push(Row {
        who: ALICE,
        ask: Ask::Subscribe {
            filter: "$share/g/a/b",
            v5: true,
        },
        expect: true,
    });
    for (who, topics) in deliveries() {
        rows.extend(topics.iter().map(|&(t, expect)| Row {
            who,
            ask: Ask::Deliver(t),
            expect,
        }));
    }
    rows
}

#[rustfmt::skip]
fn connects() -> [(Who, bool); 13] {
    [
        (ALICE, true),
        (user(Closed, "alice", "wrong", "c1"), false),
        (BOB, true),                                        // a $6$ line
        (user(Closed, "bob", "hunter", "c1"), false),
        (user(Closed, "dave", "davepw", "c1"), true),       // $7$ with 1000 rounds
        (user(Closed, "dave", "wrong", "c1"), false),
        (user(Closed, "mallory", "secret", "c1"), false),   // unknown user
        (anon(Closed, "c1"), false),
        (Who { pass: None, ..ALICE }, false),               // username, no password
        (anon(Open, "c1"), true),
        (user(Open, "mallory", "secret", "c1"), false),     // still checked
        (user(Open, "alice", "secret", "c1"), true),
        (user(Open, "alice", "wrong", "c1"), false),
    ]
}

type Topics = &'static [(&'static str, bool)];

#[rustfmt::skip]
fn publishes() -> [(Who, Topics); 13] {
    [
        (ALICE, &[("a/b", true), ("a", true), ("a/secret", false), ("a/secret/x", false)]),
        (ALICE, &[("shared/x", false), ("inbox/alice", true), ("public/x", false), ("$SYS/x", false)]),
        (ALICE, &[("users/alice/x", true), ("users/bob/x", false), ("users/alice/locked", false)]),
        (ALICE, &[("devices/alice-c/out", true), ("devices/other/out", false), ("devices/alice-c/in", false)]),
        (BOB, &[("b/x/cmd", true), ("b/x/y/cmd", false), ("b/free", true), ("a/b", false), ("users/bob/z", true)]),
        // An own-list grant is decided before a pattern's deny.
        (ADMIN, &[("users/admin/locked", true), ("any/where", true), ("$SYS/broker/x", false)]),
        (DAVE, &[("users/dave/x", true), ("a/b", false), ("devices/dave-c/out", true)]),
        (user(Closed, "team/eve", "evepw", "eve-c"), &[("users/team/eve/x", true), ("team/x", false)]),
        // '/' in a client id is not refused: %c spans two levels.
        (alice_as("x/y"), &[("devices/x/y/out", true)]),
        // '+' or '#' in a client id or username refuses the patterns only.
        (alice_as("c+1"), &[("a/b", true), ("users/alice/x", false)]),
        (alice_as("c#1"), &[("users/alice/x", false), ("a/secret", false)]),
        (user(Closed, "dev+x", "devpw", "devx"), &[("own/1", true), ("devices/devx/out", false)]),
        (anon(Open, "anon-c"), &[("anon/rw", true), ("public/x", false), ("devices/anon-c/out", true), ("users/x/y", false)]),
    ]
}

#[rustfmt::skip]
fn deliveries() -> [(Who, Topics); 6] {
    [
        (user(Closed, "alice", "secret", "alice-r"), &[("a/b", true), ("a/secret/x", false), ("shared/x", true), ("inbox/alice", false), ("public/x", false)]),
        (user(Closed, "alice", "secret", "alice-r"), &[("users/alice/x", true), ("users/alice/locked", false), ("devices/alice-r/in", true), ("devices/alice-r/out", false), ("b/free", false)]),
        (user(Closed, "bob", "hunter2", "bob-r"), &[("a/b", true), ("a/secret/x", true), ("b/free", true), ("b/x/cmd", false), ("devices/bob-r/in", true), ("users/bob/x", true)]),
        (user(Closed, "team/eve", "evepw", "eve-r"), &[("team/x", true), ("users/team/eve/x", true), ("a/b", false)]),
        (user(Closed, "dave", "davepw", "dave-r"), &[("users/dave/x", true), ("devices/dave-r/in", true), ("a/b", false)]),
        (anon(Open, "anon-r"), &[("public/x", true), ("anon/rw", true), ("a/b", false), ("devices/anon-r/in", true), ("users/x/x", false)]),
    ]
}

/// A row of the certificate test: which client certificate (see
/// [`CERTS`]), the user name and password also sent in CONNECT, and the
/// topic published (MQTT 5 only), if any.
pub struct CertRow {
    pub cert: &'static str,
    pub connect_with: Option<(&'static str, &'static str)>,
    pub publish: Option<&'static str>,
}

/// The client certificates: name, subject (`None`: no certificate).
pub const CERTS: [(&str, Option<&str>); 4] = [
    ("alice", Some("/O=test/CN=alice")),
    ("zed", Some("/CN=zed")),
    ("nocn", Some("/O=test")),
    ("none", None),
];

/// The common name of a certificate of [`CERTS`].
pub fn common_name(cert: &str) -> Option<&str> {
    ["alice", "zed"].contains(&cert).then_some(cert)
}

const fn cert(
    cert: &'static str,
    connect_with: Option<(&'static str, &'static str)>,
    publish: Option<&'static str>,
) -> CertRow {
    CertRow {
        cert,
        connect_with,
        publish,
    }
}

#[rustfmt::skip]
pub const CERT_ROWS: [CertRow; 11] = [
    cert("alice", None, None),
    cert("zed", None, None),                              // not in the password file
    cert("nocn", None, None),
    cert("none", None, None),
    cert("none", Some(("alice", "secret")), None),        // a good password does not help
    cert("alice", None, Some("a/b")),
    cert("alice", None, Some("a/secret")),
    cert("alice", Some(("bob", "hunter2")), Some("b/x/cmd")), // still alice, not bob
    cert("alice", Some(("bob", "wrong")), Some("a/b")),   // the password is not checked
    cert("zed", None, Some("users/zed/x")),               // %u is the common name
    cert("zed", None, Some("a/b")),
];
