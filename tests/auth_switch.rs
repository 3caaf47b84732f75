//! Authentication across switches (issue #25), with files made by
//! `mosquitto_passwd`: 20 switches under the load harness with every
//! client authenticated and a denied topic (nothing lost, nothing
//! leaked, identities kept), and a revocation at `emqx reload`: one user
//! removed from the password file and one rule from the ACL close exactly
//! that user's connections (MQTT 5: DISCONNECT 0x87), counted apart as
//! closed by policy, refuse the rule's topic from then on, and touch no
//! one else. A password file the new broker cannot read fails the switch
//! and the old broker serves on with the old rules.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use emqx_load::{Load, LoadAuth, LoadOptions, Report};
use emqx_mqtt::{decode_as, Level, Packet, Properties, ReasonCode};
use emqx_testkit::clients::mosquitto_password_file;
use emqx_testkit::BrokerHost;

mod clients;

/// The users besides the load's: mallory (revoked) and carol (whose
/// rule is removed).
const MALLORY: (&str, &str) = ("mallory", "mallory-pw");
const CAROL: (&str, &str) = ("carol", "carol-pw");
const CAROL_RULE: &str = "user carol\ntopic readwrite carol/#\n";
const MALLORY_RULE: &str = "user mallory\ntopic readwrite mallory/#\n";

/// A folder the broker's user can read, with the password file of
/// `users` (written by `mosquitto_passwd`) and the ACL `acl`.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new(users: &[(String, String)], acl: &str) -> Files {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let files = Files { dir };
        files.write(users, acl);
        files
    }

    fn passwords(&self) -> PathBuf {
        self.dir.path().join("passwd")
    }

    fn acl(&self) -> PathBuf {
        self.dir.path().join("acl")
    }

    /// Both files anew, each replaced whole (a rename), as an operator's
    /// tools do.
    fn write(&self, users: &[(String, String)], acl: &str) {
        mosquitto_password_file(&self.passwords(), users);
        let next = self.dir.path().join("acl.new");
        fs::write(&next, acl).unwrap();
        replace(&next, &self.acl());
    }
}

fn replace(from: &Path, to: &Path) {
    fs::set_permissions(from, fs::Permissions::from_mode(0o644)).unwrap();
    fs::rename(from, to).unwrap();
}

/// A host running 5.0.0 with a TLS listener, its broker reading `files`.
fn host(files: &Files) -> BrokerHost {
    let mut b = BrokerHost::new("");
    b.with_tls();
    for (k, v) in [
        ("EMQX_AUTH_PASSWORD_FILE", files.passwords()),
        ("EMQX_AUTH_ACL_FILE", files.acl()),
    ] {
        b.env.push((k.into(), v.to_string_lossy().into_owned()));
    }
    b.drop_broker_release("5.0.0", true, "");
    b.drop_broker_release("5.0.1", false, "");
    let (_, err, code) = b.emqx(&["install", "5.0.0"]);
    assert_eq!(code, Some(0), "{err}");
    b.start();
    b
}

fn users(auth: &LoadAuth, more: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut all = auth.credentials();
    all.extend(more.iter().map(|(u, p)| (u.to_string(), p.to_string())));
    all
}

fn authenticated_load(b: &BrokerHost, auth: &LoadAuth) -> Load {
    let mut options = LoadOptions::moving(b.addrs())
        .over_tls(b.load_tls())
        .over_websocket(b.load_ws());
    options.auth = Some(auth.clone());
    Load::start(options)
}

/// Nothing refused, closed or lost, every denied probe denied and
/// nothing of the denied topic delivered.
fn untouched(report: &Report) {
    let t = report.table();
    assert!(report.connections_clean(), "{t}");
    assert_eq!(report.closed_by_broker, 0, "{t}");
    assert_eq!(report.sessions.lost, 0, "{t}");
    assert!(report.messages_clean(), "{t}");
    assert!(report.auth_clean(), "{t}");
    assert_eq!(report.auth_refused, 0, "{t}");
    assert_eq!(report.denied_leaks, 0, "{t}");
    assert!(report.denied_checks > 0, "{t}");
}

#[test]
fn twenty_switches_keep_every_identity_and_every_denial() {
    let auth = LoadAuth::default();
    let files = Files::new(&users(&auth, &[]), &auth.acl_file_text());
    let b = host(&files);
    let load = authenticated_load(&b, &auth);
    // A client of the load's first user, moved at every switch: after
    // each one it may still publish where its client id (%c) allows and
    // is still refused the denied topic.
    let user = auth.credentials()[0].clone();
    let (mut probe, code) = login(b.addrs()[0], Level::V5, "probe-c", (&user.0, &user.1));
    assert_eq!(code, 0);
    std::thread::sleep(Duration::from_millis(500));
    for i in 0..20u16 {
        clients::switch_back_and_forth_once(&b, i as usize);
        let own = publish_code(&mut probe, "r/s/probe-c/x", 2 * i + 1);
        assert!(own == 0 || own == 0x10, "switch {i}: {own:#x}");
        let denied = publish_code(&mut probe, &auth.denied_topic, 2 * i + 2);
        assert_eq!(denied, 0x87, "switch {i}");
    }
    std::thread::sleep(Duration::from_millis(500));
    let report = load.stop();
    println!("{}", report.table());
    untouched(&report);
    // Identities held: every class's %c/%u topics kept flowing.
    for class in ["live-qos1", "session-qos2", "v5-shared-qos1"] {
        assert!(
            report.class(class).received > 0,
            "{class}: {}",
            report.table()
        );
    }
}

/// A client logged in as `user` at `level` on `addr`, with its CONNACK
/// code.
fn login(addr: SocketAddr, level: Level, id: &str, (user, pw): (&str, &str)) -> (TcpStream, u8) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let connect = Packet::Connect {
        level,
        client_id: id.into(),
        keep_alive: 60,
        clean_session: true,
        username: Some(user.into()),
        password: Some(pw.as_bytes().to_vec()),
        will: None,
        properties: Properties::default(),
    };
    s.write_all(&connect.encode_as(level)).unwrap();
    match recv(&mut s, level) {
        Some(Packet::ConnAck { code, .. }) => (s, code.0),
        other => panic!("{other:?}"),
    }
}

/// The next packet, or none at the end of the stream.
fn recv(s: &mut TcpStream, level: Level) -> Option<Packet> {
    let mut buf = Vec::new();
    loop {
        if let Ok(Some((p, _))) = decode_as(&buf, 1 << 20, level) {
            return Some(p);
        }
        let mut byte = [0u8; 1];
        match s.read(&mut byte) {
            Ok(0) | Err(_) => return None,
            Ok(_) => buf.push(byte[0]),
        }
    }
}

/// carol's MQTT 5 QoS 1 publish to `topic`: its PUBACK reason code.
fn publish_code(s: &mut TcpStream, topic: &str, id: u16) -> u8 {
    let p = Packet::Publish {
        topic: topic.into(),
        payload: b"x".to_vec(),
        qos: 1,
        retain: false,
        dup: false,
        packet_id: Some(id),
        properties: Properties::default(),
    };
    s.write_all(&p.encode_as(Level::V5)).unwrap();
    match recv(s, Level::V5) {
        Some(Packet::PubAck { reason, .. }) => reason.0,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_reload_that_revokes_closes_exactly_that_user_and_refuses_the_rule() {
    let auth = LoadAuth::default();
    let acl = format!("{}{CAROL_RULE}{MALLORY_RULE}", auth.acl_file_text());
    let files = Files::new(&users(&auth, &[MALLORY, CAROL]), &acl);
    let b = host(&files);
    let load = authenticated_load(&b, &auth);
    let addr = b.addrs()[0];
    let (mut m5, code) = login(addr, Level::V5, "m5", MALLORY);
    assert_eq!(code, 0);
    let (mut m3, code) = login(addr, Level::V311, "m3", MALLORY);
    assert_eq!(code, 0);
    let (mut carol, code) = login(addr, Level::V5, "carol-1", CAROL);
    assert_eq!(code, 0);
    // 0x10: no matching subscribers, a success.
    assert_eq!(publish_code(&mut carol, "carol/x", 1), 0x10);
    std::thread::sleep(Duration::from_millis(500));

    // mallory leaves the password file, carol's rule the ACL.
    files.write(
        &users(&auth, &[CAROL]),
        &format!("{}{MALLORY_RULE}", auth.acl_file_text()),
    );
    let (out, err, code) = b.emqx(&["-v", "reload"]);
    assert_eq!(code, Some(0), "{out}{err}\n{}", b.log_text());
    assert!(
        err.contains("2 of them closed by policy"),
        "{err}\n{}",
        b.log_text()
    );
    // mallory: DISCONNECT 0x87 at MQTT 5, a plain close at 3.1.1.
    match recv(&mut m5, Level::V5) {
        Some(Packet::Disconnect { reason, .. }) => assert_eq!(reason, ReasonCode::NOT_AUTHORIZED),
        other => panic!("mallory at 5: {other:?}"),
    }
    assert_eq!(recv(&mut m5, Level::V5), None);
    assert_eq!(recv(&mut m3, Level::V311), None);
    // carol moved, connected, and her rule is gone from now on.
    assert_eq!(publish_code(&mut carol, "carol/x", 2), 0x87);
    assert_eq!(login(addr, Level::V311, "m-again", MALLORY).1, 5);

    // carol goes too, at an upgrade asked for JSON: counted there.
    files.write(&users(&auth, &[]), &auth.acl_file_text());
    let (out, err, code) = b.emqx(&["upgrade", "5.0.1", "--json"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let json: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(json["switch"]["closed_by_policy"], 1, "{json:#}");
    assert!(json["switch"]["moved"].as_u64() > Some(1), "{json:#}");
    assert!(matches!(
        recv(&mut carol, Level::V5),
        Some(Packet::Disconnect {
            reason: ReasonCode::NOT_AUTHORIZED,
            ..
        })
    ));
    std::thread::sleep(Duration::from_millis(500));
    let report = load.stop();
    println!("{}", report.table());
    untouched(&report);
}

/// The version the broker on `addr` retains, read as `user` (the ACL
/// lets the load's users read it).
fn version_seen_as(addr: SocketAddr, user: (&str, &str)) -> String {
    let (mut s, code) = login(addr, Level::V311, "version-probe", user);
    assert_eq!(code, 0);
    let sub = Packet::subscribe(1, [("$SYS/broker/version", 0)]);
    s.write_all(&sub.encode()).unwrap();
    assert!(matches!(
        recv(&mut s, Level::V311),
        Some(Packet::SubAck { .. })
    ));
    match recv(&mut s, Level::V311) {
        Some(Packet::Publish { payload, .. }) => String::from_utf8_lossy(&payload).into_owned(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_password_file_the_new_broker_cannot_read_fails_the_switch() {
    let auth = LoadAuth::default();
    let files = Files::new(&users(&auth, &[MALLORY]), &auth.acl_file_text());
    let b = host(&files);
    let load = authenticated_load(&b, &auth);
    std::thread::sleep(Duration::from_millis(300));
    let text = fs::read_to_string(files.passwords()).unwrap();
    fs::write(files.passwords(), format!("{text}carol:plaintext\n")).unwrap();
    let (out, err, code) = b.emqx(&["upgrade", "5.0.1"]);
    assert_ne!(code, Some(0), "{out}{err}");
    let log = b.log_text();
    let line = format!(
        "{}: line {}: unknown password hash type",
        files.passwords().display(),
        text.lines().count() + 1
    );
    assert!(log.contains(&line), "{log}");
    assert!(!log.contains("plaintext"), "{log}");
    // The old broker serves on, with the old rules: mallory still gets in.
    let user = auth.credentials()[0].clone();
    assert_eq!(version_seen_as(b.addrs()[0], (&user.0, &user.1)), "5.0.0");
    assert_eq!(login(b.addrs()[0], Level::V311, "m", MALLORY).1, 0);
    let report = load.stop();
    untouched(&report);
}
