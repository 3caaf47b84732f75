//! Side by side with Debian's mosquitto 2.0: one password file written by
//! `mosquitto_passwd` (`$7$`, `$6$`, and a `$7$` line of 1000 iterations
//! made by Python's hashlib) and one ACL file drive two mosquitto brokers
//! (`allow_anonymous false` and `true`) and this library; for every row of
//! a table of (who, what, topic) mosquitto's answer, read off the wire by
//! its own clients, must equal ours, and both the expected one.

mod support;

use std::collections::BTreeMap;
use std::process::Command;

use emqx_auth::{Access, Credentials, Identity, Policy};
use support::pki::{client, make_ca_and_server, ClientTls};
use support::table::{common_name, rows, Ask, CertRow, Net, Row, CERTS, CERT_ROWS};
use support::{
    config, connack, ensure_mosquitto, free_port, puback, wire, write_files, Broker, Login,
};

/// Our answer to a row, in the words of [`wire::answer`].
fn our_answer(policies: &BTreeMap<Net, Policy>, row: &Row) -> (String, bool) {
    let policy = &policies[&row.who.net];
    let id = Identity {
        username: row.who.user,
        client_id: row.who.id,
    };
    match row.ask {
        Ask::Connect { v5 } => {
            let d = policy.connect(&Credentials::Password {
                username: row.who.user,
                password: row.who.pass.map(str::as_bytes),
            });
            let code = if v5 {
                d.v5_reason_code()
            } else {
                d.v311_return_code()
            };
            (format!("CONNACK {code}"), d.is_allowed())
        }
        Ask::Publish(topic) => {
            let ok = policy.authorize(&id, topic, Access::Write);
            (if ok { "PUBACK ok" } else { "PUBACK 135" }.to_string(), ok)
        }
        Ask::Subscribe { filter, v5 } => {
            let ok = policy.authorize(&id, filter, Access::Subscribe);
            let code = match (ok, v5) {
                (true, _) => 1,
                (false, true) => 0x87,
                (false, false) => 0x80,
            };
            (format!("SUBACK {code}"), ok)
        }
        Ask::Deliver(topic) => {
            let ok = policy.authorize(&id, topic, Access::Read);
            (if ok { "delivered" } else { "withheld" }.to_string(), ok)
        }
    }
}

#[test]
fn mosquitto_and_this_library_decide_alike() {
    ensure_mosquitto();
    let dir = tempfile::tempdir().expect("a temporary folder");
    let (pw, acl) = write_files(dir.path());
    let brokers = BTreeMap::from([
        (
            Net::Closed,
            Broker::start(dir.path(), "closed", &config(&pw, &acl, false)),
        ),
        (
            Net::Open,
            Broker::start(dir.path(), "open", &config(&pw, &acl, true)),
        ),
    ]);
    let ports: wire::Ports = brokers.iter().map(|(n, b)| (*n, b.port)).collect();
    let policy = |anon| Policy::load_files(Some(&pw), Some(&acl), Some(anon)).expect("our load");
    let policies = BTreeMap::from([(Net::Closed, policy(false)), (Net::Open, policy(true))]);
    let rows = rows();
    let (deliver, single): (Vec<&Row>, Vec<&Row>) =
        rows.iter().partition(|r| matches!(r.ask, Ask::Deliver(_)));
    let mut answers: Vec<(&Row, String)> = single
        .iter()
        .map(|&r| (r, wire::answer(&ports, r)))
        .collect();
    answers.extend(
        deliver
            .iter()
            .copied()
            .zip(wire::deliveries(&ports, &deliver)),
    );

    let mut table = format!(
        "{:<7} {:<16} {:<9} {:<30} {:<11} {:<11} expected\n",
        "broker", "user:password", "client id", "asks", "mosquitto", "ours"
    );
    let mut differ = 0;
    for (row, theirs) in &answers {
        let (ours, allowed) = our_answer(&policies, row);
        let ok = *theirs == ours && allowed == row.expect;
        differ += usize::from(!ok);
        table.push_str(&line(row, theirs, &ours, ok));
    }
    println!("{} rows\n{table}", answers.len());
    assert_eq!(
        differ,
        0,
        "{differ} of {} rows differ:\n{table}\nclosed broker's log:\n{}",
        answers.len(),
        brokers[&Net::Closed].log()
    );
}

/// One row of the printed table.
fn line(row: &Row, theirs: &str, ours: &str, ok: bool) -> String {
    let user = match (row.who.user, row.who.pass) {
        (None, _) => "(anonymous)".to_string(),
        (Some(u), None) => format!("{u} (no pw)"),
        (Some(u), Some(p)) => format!("{u}:{p}"),
    };
    format!(
        "{:<7} {:<16} {:<9} {:<30} {:<11} {:<11} {}{}\n",
        format!("{:?}", row.who.net),
        user,
        row.who.id,
        row.ask.describe(),
        theirs,
        ours,
        if row.expect { "allowed" } else { "refused" },
        if ok { "" } else { "   <-- differs" },
    )
}

/// A line mosquitto refuses to start on is one we refuse to load, and a
/// line it takes we take.
#[test]
fn acl_lines_mosquitto_refuses_we_refuse() {
    ensure_mosquitto();
    let dir = tempfile::tempdir().expect("a temporary folder");
    let pw = write_files(dir.path()).0;
    let acl = dir.path().join("acl");
    let cases = [
        ("topic sometimes a/b", false),
        ("frobnicate", false),
        ("topic read a+", false),
        ("user", false),
        ("topic", false),
        ("topic deny", true),
        ("  user   bob smith  \ntopic   read   a b/c  ", true),
        ("topic read a/b\n# comment\n\n", true),
    ];
    for (text, accepted) in cases {
        std::fs::write(&acl, text).expect("writing the ACL file");
        let ours = emqx_auth::AclFile::load(&acl);
        assert_eq!(ours.is_ok(), accepted, "{text:?}: {ours:?}");
        let conf = dir.path().join("m.conf");
        std::fs::write(
            &conf,
            config(&pw, &acl, false) + "user root\nlistener 0 127.0.0.1\n",
        )
        .expect("writing mosquitto.conf");
        // `-t`-less check: mosquitto exits at once on a bad ACL file, and
        // keeps running on a good one (stopped after 1 s by timeout).
        let status = Command::new("timeout")
            .args(["1", support::MOSQUITTO, "-c"])
            .arg(&conf)
            .output()
            .expect("running mosquitto");
        let ran = status.status.code() == Some(124);
        assert_eq!(
            ran,
            accepted,
            "{text:?}: mosquitto {:?}",
            String::from_utf8_lossy(&status.stderr)
        );
    }
}

/// Where mosquitto logs a bad password line and runs on without that user,
/// we refuse the whole file (naming the line), so a broker does not start
/// with a user silently missing. Both halves are checked here.
#[test]
fn password_lines_mosquitto_drops_we_refuse() {
    ensure_mosquitto();
    let dir = tempfile::tempdir().expect("a temporary folder");
    let (pw, acl) = write_files(dir.path());
    let mut text = std::fs::read_to_string(&pw).expect("reading the password file");
    text.push_str("carol:plaintext\n");
    std::fs::write(&pw, &text).expect("writing the password file");
    let line = text.lines().count();
    let ours = Policy::load_files(Some(&pw), Some(&acl), Some(false)).unwrap_err();
    let want = format!("line {line}: unknown password hash type");
    assert!(ours.to_string().contains(&want), "{ours}");
    assert!(!ours.to_string().contains("plaintext"), "{ours}");
    let broker = Broker::start(dir.path(), "drops", &config(&pw, &acl, false));
    let at = |user, pass| Login {
        port: broker.port,
        user: Some(user),
        pass: Some(pass),
        id: "c",
        v5: false,
        tls: None,
    };
    assert_eq!(connack(&at("alice", "secret")), Some(0), "{}", broker.log());
    assert_eq!(
        connack(&at("carol", "plaintext")),
        Some(5),
        "{}",
        broker.log()
    );
    assert!(
        broker
            .log()
            .contains("Invalid password hash type for user carol"),
        "{}",
        broker.log()
    );
}

/// mosquitto's `use_identity_as_username` (our
/// `EMQX_SSL_PEER_CERT_AS_USERNAME=cn`): the certificate's common name is
/// the username, with no password check (a name outside the password file
/// gets in, CONNECT credentials are ignored); no certificate or no common
/// name is "bad username or password", 4 / 0x86. Each row: mosquitto's
/// CONNACK (or MQTT 5 PUBACK) against ours.
#[test]
fn certificate_names_as_mosquitto_uses_them() {
    ensure_mosquitto();
    let dir = tempfile::tempdir().expect("a temporary folder");
    let (pw, acl) = write_files(dir.path());
    let listener = make_ca_and_server(dir.path());
    // The first listener requires a certificate (mosquitto only asks for
    // one then); the second does not, so a client without one gets a
    // CONNACK instead of a failed handshake.
    let optional = free_port();
    let conf = format!(
        "{}{}listener {optional} 127.0.0.1\n{}",
        config(&pw, &acl, false),
        listener(true),
        listener(false)
    );
    let broker = Broker::start(dir.path(), "tls", &conf);
    let policy = Policy::load_files(Some(&pw), Some(&acl), None).expect("our load");
    let clients: BTreeMap<&str, ClientTls> = CERTS
        .iter()
        .map(|&(name, subject)| (name, client(dir.path(), name, subject)))
        .collect();
    let mut differ = Vec::new();
    for row in &CERT_ROWS {
        for v5 in [false, true] {
            let tls = &clients[row.cert];
            let login = Login {
                port: if tls.cert.is_some() {
                    broker.port
                } else {
                    optional
                },
                user: row.connect_with.map(|c| c.0),
                pass: row.connect_with.map(|c| c.1),
                id: "tls-c",
                v5,
                tls: Some(tls),
            };
            let Some((theirs, ours)) = cert_answers(&policy, &login, row) else {
                continue;
            };
            let line = format!(
                "cert {} {:?} v5={v5} publish {:?}: mosquitto {theirs:?}, ours {ours:?}",
                row.cert, row.connect_with, row.publish
            );
            println!("{line}");
            if theirs != Some(ours) {
                differ.push(line);
            }
        }
    }
    assert!(
        differ.is_empty(),
        "differ:\n{}\n{}",
        differ.join("\n"),
        broker.log()
    );
}

/// mosquitto's and our CONNACK code, or for a publishing row (MQTT 5
/// only, else `None`) PUBACK 0 or 135.
fn cert_answers(policy: &Policy, login: &Login<'_>, row: &CertRow) -> Option<(Option<u8>, u8)> {
    let username = common_name(row.cert);
    let Some(topic) = row.publish else {
        let d = policy.connect(&Credentials::Certificate { username });
        let ours = if login.v5 {
            d.v5_reason_code()
        } else {
            d.v311_return_code()
        };
        return Some((connack(login), ours));
    };
    if !login.v5 {
        return None;
    }
    let who = Identity {
        username,
        client_id: login.id,
    };
    let ours = if policy.authorize(&who, topic, Access::Write) {
        0
    } else {
        135
    };
    let theirs = puback(login, topic)
        .ok()
        .map(|c| if c == 135 { 135 } else { 0 });
    Some((theirs, ours))
}
