//! The reference broker beside Debian's mosquitto 2.0.11 (issue #25): one
//! password file made by `mosquitto_passwd` and one ACL file drive both,
//! and every question of emqx-auth's side-by-side table (right and wrong
//! passwords, anonymous refused or let in, per-user and `pattern` rules
//! for publish, subscribe and delivery, 3.1.1 and MQTT 5 codes) is asked
//! of both on the wire by mosquitto's own clients: the answers must be
//! the same, and the expected ones. Then client certificates as
//! usernames, and what only a live broker shows: a 3.1.1 publish the ACL
//! refuses is acknowledged and dropped, a will the ACL refuses refuses
//! the CONNECT.

#[allow(dead_code)]
#[path = "../../auth/tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::Path;

use emqx_testkit::refbroker::RefBroker;
use support::pki::{client, make_ca_and_server};
use support::table::{rows, Ask, Net, Row, CERTS, CERT_ROWS};
use support::{
    config, connack, ensure_mosquitto, puback, wire, write_files, Broker, Login, Reader,
};

/// The reference broker reading `pw` and `acl`, its `mqtt-alt` listener
/// serving TLS from `pki` when given.
fn ours(pw: &Path, acl: &Path, anonymous: bool, pki: Option<&Path>) -> RefBroker {
    let bin = emqx_testkit::bins::bin("emqx-refbroker");
    let (pw, acl) = (pw.to_str().unwrap(), acl.to_str().unwrap());
    let mut env = vec![
        ("EMQX_BROKER_VERSION", "5.0.0".to_string()),
        ("EMQX_LOG_LEVEL", "debug".into()),
        ("EMQX_AUTH_PASSWORD_FILE", pw.into()),
        ("EMQX_AUTH_ACL_FILE", acl.into()),
        ("EMQX_ALLOW_ANONYMOUS", anonymous.to_string()),
    ];
    if let Some(dir) = pki {
        let file = |name: &str| dir.join(name).to_string_lossy().into_owned();
        env.extend([
            ("EMQX_SSL_CERTFILE", file("server.crt")),
            ("EMQX_SSL_KEYFILE", file("server.key")),
            ("EMQX_SSL_CACERTFILE", file("ca.crt")),
            ("EMQX_SSL_VERIFY", "verify_peer".into()),
            ("EMQX_SSL_PEER_CERT_AS_USERNAME", "cn".into()),
        ]);
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let alt = if pki.is_some() { "ssl" } else { "tcp" };
    RefBroker::start_serving(&bin, alt, &env)
}

/// Every row asked of the brokers on `ports`: single questions first,
/// then the deliveries, which are asked together.
fn answers<'r>(ports: &wire::Ports, rows: &'r [Row]) -> Vec<(&'r Row, String)> {
    let (deliver, single): (Vec<&Row>, Vec<&Row>) =
        rows.iter().partition(|r| matches!(r.ask, Ask::Deliver(_)));
    let mut out: Vec<(&Row, String)> = single
        .iter()
        .map(|r| (*r, wire::answer(ports, r)))
        .collect();
    out.extend(
        deliver
            .iter()
            .copied()
            .zip(wire::deliveries(ports, &deliver)),
    );
    out
}

/// The answer a row expects, in the table's words ("allowed" rows are
/// CONNACK 0, PUBACK ok, SUBACK 1, delivered).
fn expected(answer: &str, row: &Row) -> bool {
    let allowed = matches!(answer, "CONNACK 0" | "PUBACK ok" | "SUBACK 1" | "delivered");
    allowed == row.expect
}

#[test]
fn the_same_files_give_the_same_answers_as_mosquitto() {
    ensure_mosquitto();
    let dir = tempfile::tempdir().unwrap();
    let (pw, acl) = write_files(dir.path());
    let theirs = [
        (
            Net::Closed,
            Broker::start(dir.path(), "closed", &config(&pw, &acl, false)),
        ),
        (
            Net::Open,
            Broker::start(dir.path(), "open", &config(&pw, &acl, true)),
        ),
    ];
    let mine = [
        (Net::Closed, ours(&pw, &acl, false, None)),
        (Net::Open, ours(&pw, &acl, true, None)),
    ];
    let their_ports: wire::Ports = theirs.iter().map(|(n, b)| (*n, b.port)).collect();
    let our_ports: wire::Ports = mine.iter().map(|(n, b)| (*n, b.mqtt().port())).collect();
    let rows = rows();
    let (t, o) = (answers(&their_ports, &rows), answers(&our_ports, &rows));
    let mut table = String::new();
    let mut differ = 0;
    for ((row, mosq), (_, mine_said)) in t.iter().zip(&o) {
        let ok = mosq == mine_said && expected(mine_said, row);
        differ += usize::from(!ok);
        let who = format!("{:?} {:?} {}", row.who.net, row.who.user, row.who.id);
        table.push_str(&format!(
            "{who:<36} {:<34} mosquitto {mosq:<11} ours {mine_said:<11}{}\n",
            row.ask.describe(),
            if ok { "" } else { " <-- differs" }
        ));
    }
    println!("{} rows\n{table}", t.len());
    assert!(t.len() >= 100, "{table}");
    assert_eq!(
        differ,
        0,
        "{differ} rows differ:\n{table}\nour closed broker's log:\n{}",
        mine[0].1.log()
    );
}

/// `EMQX_SSL_PEER_CERT_AS_USERNAME=cn` beside `use_identity_as_username`:
/// each certificate row's CONNACK (or MQTT 5 PUBACK) from both.
#[test]
fn certificate_names_are_usernames_as_in_mosquitto() {
    ensure_mosquitto();
    let dir = tempfile::tempdir().unwrap();
    let (pw, acl) = write_files(dir.path());
    let listener = make_ca_and_server(dir.path());
    let optional = support::free_port();
    let conf = format!(
        "{}{}listener {optional} 127.0.0.1\n{}",
        config(&pw, &acl, false),
        listener(true),
        listener(false)
    );
    let theirs = Broker::start(dir.path(), "tls", &conf);
    let mine = ours(&pw, &acl, false, Some(dir.path()));
    let clients: BTreeMap<&str, _> = CERTS
        .iter()
        .map(|&(name, subject)| (name, client(dir.path(), name, subject)))
        .collect();
    let mut differ = Vec::new();
    for row in &CERT_ROWS {
        for v5 in [false, true] {
            if row.publish.is_some() && !v5 {
                continue;
            }
            let tls = &clients[row.cert];
            let at = |port| Login {
                port,
                user: row.connect_with.map(|c| c.0),
                pass: row.connect_with.map(|c| c.1),
                id: "tls-c",
                v5,
                tls: Some(tls),
            };
            let their_port = if tls.cert.is_some() {
                theirs.port
            } else {
                optional
            };
            let ask = |login: Login<'_>| match row.publish {
                None => format!("{:?}", connack(&login)),
                Some(topic) => format!("{:?}", puback(&login, topic).map(|c| c == 135)),
            };
            let (t, o) = (ask(at(their_port)), ask(at(mine.alt().port())));
            let line = format!(
                "cert {} {:?} v5={v5} publish {:?}: mosquitto {t}, ours {o}",
                row.cert, row.connect_with, row.publish
            );
            println!("{line}");
            if t != o {
                differ.push(line);
            }
        }
    }
    assert!(
        differ.is_empty(),
        "differ:\n{}\n{}",
        differ.join("\n"),
        mine.log()
    );
}

/// What the table cannot ask: a 3.1.1 PUBLISH the ACL refuses is
/// acknowledged (PUBACK 0) and dropped, and a will the ACL refuses lets
/// its client in and is dropped when it dies; a will it allows arrives.
#[test]
fn refused_publishes_and_wills_are_dropped_as_in_mosquitto() {
    ensure_mosquitto();
    let dir = tempfile::tempdir().unwrap();
    let (pw, acl) = write_files(dir.path());
    let theirs = Broker::start(dir.path(), "closed", &config(&pw, &acl, false));
    let mine = ours(&pw, &acl, false, None);
    let mut seen = Vec::new();
    for port in [theirs.port, mine.mqtt().port()] {
        let as_ = |user, pass, id, v5| Login {
            port,
            user: Some(user),
            pass: Some(pass),
            id,
            v5,
            tls: None,
        };
        // bob reads b/free and a/#; alice may write neither b/free nor
        // a/secret/#, and a/w is hers.
        let mut bob = Reader::start(&as_("bob", "hunter2", "bob-r", false));
        let alice = as_("alice", "secret", "alice-w", false);
        assert_eq!(puback(&alice, "b/free"), Ok(0), "3.1.1: acknowledged");
        for (id, topic) in [("will-1", "a/secret/w"), ("will-2", "a/w")] {
            let dying = Reader::start_with(
                &as_("alice", "secret", id, true),
                &["--will-topic", topic, "--will-payload", "x"],
            );
            drop(dying);
        }
        let admin = as_("admin", "adminpw", "admin-pub", true);
        assert!(bob.wait_for("a/w"), "the allowed will arrives");
        assert!(puback(&admin, "probe/bob-r/done").is_ok());
        assert!(bob.wait_for("probe/bob-r/done"));
        seen.push(std::mem::take(&mut bob.seen));
    }
    assert_eq!(seen[0], seen[1], "mosquitto, then ours");
    assert_eq!(seen[1], Vec::<String>::new(), "nothing refused arrived");
}
