//! The policy in the state machine: CONNECT answers at both levels, the
//! ACL at PUBLISH, SUBSCRIBE, each delivery and a will's publication,
//! and a login carried by `refbroker/4` and checked again by an importer
//! whose files changed.

use emqx_auth::{AclFile, PasswordFile, Policy};
use emqx_mqtt::{Level, Packet, Properties, ReasonCode, Will};

use crate::broker::{Auth, Broker, End, Step};
use crate::broker_tests::{publish, Recorder};
use crate::snapshot::{ClientState, Schema, SharedState};

/// `mosquitto_passwd -c -b f alice secret` (PBKDF2, `$7$`).
const ALICE: &str = "alice:$7$101$zQASycP1WEtpj+Fd$HYPBt1jaZLpgAkWMOwQAEjvZeW0T7FKG4ZsAzoBF/8PFcmX9r2Xx/M7KUcEpsJ43eMQSc5xIZoeTjft/e+ttLQ==";
/// `mosquitto_passwd -H sha512 -b f bob hunter2` (`$6$`).
const BOB: &str = "bob:$6$9ko2pMwHKt98PLA8$HO4bdRSofGtl3t8MlouD7ZEtEALSEGpaAFmekMj+08ga0LndG3lcrMWo4xRzhLIb08KfikYlJTIu7pBJOBdbYQ==";

const ACL: &str = "\
user alice
topic readwrite a/#
topic write in/#
topic deny a/secret
user bob
topic write a/#
pattern read in/%u/#
";

fn broker(users: &[&str], acl: Option<&str>) -> Broker {
    let passwords = PasswordFile::parse(&users.join("\n")).unwrap();
    let acl = acl.map(|a| AclFile::parse(a).unwrap());
    Broker::new("5.0.0", "$SYS/v", 10).with_auth(Auth {
        policy: Policy::new(Some(passwords), acl, None),
        cert_as_username: false,
    })
}

fn login(level: Level, id: &str, user: Option<&str>, password: &str, will: Option<Will>) -> Packet {
    Packet::Connect {
        level,
        client_id: id.into(),
        keep_alive: 0,
        clean_session: true,
        username: user.map(str::to_string),
        password: user.map(|_| password.as_bytes().to_vec()),
        will,
        properties: Properties::default(),
    }
}

/// What connection `conn` got for its CONNECT: the step and the code.
fn attempt(b: &mut Broker, w: &mut Recorder, conn: usize, connect: Packet) -> (Step, ReasonCode) {
    if matches!(
        connect,
        Packet::Connect {
            level: Level::V5,
            ..
        }
    ) {
        w.v5.insert(conn);
    }
    b.opened(conn, "mqtt", None);
    let step = b.packet(conn, connect, w);
    // The CONNACK; what follows it (a resumed session's) stays.
    let mut sent = w.take(conn);
    let rest = sent.split_off(1.min(sent.len()));
    w.sent.insert(conn, rest);
    match sent.as_slice() {
        [Packet::ConnAck { code, .. }] => (step, *code),
        other => panic!("{other:?}"),
    }
}

fn connected(level: Level) -> Step {
    Step::Connected {
        keep_alive: 0,
        level,
    }
}

#[test]
fn connect_is_answered_by_the_password_file_at_both_levels() {
    let (mut b, mut w) = (broker(&[ALICE, BOB], None), Recorder::default());
    let ok = login(Level::V311, "a", Some("alice"), "secret", None);
    assert_eq!(
        attempt(&mut b, &mut w, 1, ok),
        (connected(Level::V311), ReasonCode::SUCCESS)
    );
    let ok5 = login(Level::V5, "b", Some("bob"), "hunter2", None);
    assert_eq!(
        attempt(&mut b, &mut w, 2, ok5),
        (connected(Level::V5), ReasonCode::SUCCESS)
    );
    for (conn, packet, code) in [
        (3, login(Level::V311, "c", Some("alice"), "Secret", None), 5),
        (4, login(Level::V311, "d", None, "", None), 5),
        (5, login(Level::V311, "e", Some("carol"), "secret", None), 5),
        (
            6,
            login(Level::V5, "f", Some("alice"), "hunter2", None),
            0x87,
        ),
        (7, login(Level::V5, "g", None, "", None), 0x87),
    ] {
        let (step, got) = attempt(&mut b, &mut w, conn, packet);
        assert_eq!(got, ReasonCode(code), "connection {conn}");
        assert!(
            matches!(step, Step::End(End::Refused(ReasonCode::NOT_AUTHORIZED, _))),
            "connection {conn}: {step:?}"
        );
    }
    // The refused never got a session.
    assert_eq!(b.sessions.len(), 2);
}

#[test]
fn a_certificate_without_a_common_name_is_bad_credentials() {
    let mut b = broker(&[ALICE], None);
    b.auth.cert_as_username = true;
    let mut w = Recorder::default();
    // Whatever CONNECT says, the certificate names the client.
    b.opened(1, "mqtts", None);
    b.certified(1, Some("device-1"));
    let p = login(Level::V311, "x", Some("alice"), "wrong", None);
    assert_eq!(b.packet(1, p, &mut w), connected(Level::V311));
    assert_eq!(b.sessions["x"].username.as_deref(), Some("device-1"));
    b.opened(2, "mqtts", None);
    b.certified(2, None);
    let p = login(Level::V311, "y", Some("alice"), "secret", None);
    assert!(matches!(
        b.packet(2, p, &mut w),
        Step::End(End::Refused(..))
    ));
    assert!(matches!(
        w.take(2).as_slice(),
        [Packet::ConnAck {
            code: ReasonCode(4),
            ..
        }]
    ));
}

/// alice (3.1.1) on connection 1 and bob (MQTT 5) on 2, both subscribed
/// to everything.
fn alice_and_bob() -> (Broker, Recorder) {
    let (mut b, mut w) = (broker(&[ALICE, BOB], Some(ACL)), Recorder::default());
    attempt(
        &mut b,
        &mut w,
        1,
        login(Level::V311, "a", Some("alice"), "secret", None),
    );
    attempt(
        &mut b,
        &mut w,
        2,
        login(Level::V5, "b", Some("bob"), "hunter2", None),
    );
    for conn in [1, 2] {
        assert_eq!(
            b.packet(conn, Packet::subscribe(1, [("#", 1)]), &mut w),
            Step::Go
        );
        // mosquitto's acl_file grants every SUBSCRIBE; reads are checked
        // at each delivery.
        assert!(matches!(
            w.take(conn).as_slice(),
            [Packet::SubAck { codes, .. }] if codes == &[ReasonCode(1)]
        ));
    }
    (b, w)
}

fn topics(w: &mut Recorder, conn: usize) -> Vec<String> {
    w.take(conn)
        .into_iter()
        .filter_map(|p| match p {
            Packet::Publish { topic, .. } => Some(topic),
            _ => None,
        })
        .collect()
}

fn ack_code(w: &mut Recorder, conn: usize) -> ReasonCode {
    match w.take(conn).as_slice() {
        [Packet::PubAck { reason, .. }] => *reason,
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_acl_decides_publish_and_each_delivery() {
    let (mut b, mut w) = alice_and_bob();
    // bob may write a/#, alice read it; bob reads only in/bob/#.
    b.packet(2, publish("a/x", 1, Some(1)), &mut w);
    assert_eq!(ack_code(&mut w, 2), ReasonCode::SUCCESS);
    assert_eq!(topics(&mut w, 1), ["a/x"]);
    // MQTT 5: refused in the PUBACK, routed nowhere.
    b.packet(2, publish("b/x", 1, Some(2)), &mut w);
    assert_eq!(ack_code(&mut w, 2), ReasonCode::NOT_AUTHORIZED);
    // alice's deny beats her readwrite: bob writes it, she never sees it.
    b.packet(2, publish("a/secret", 1, Some(3)), &mut w);
    assert_eq!(ack_code(&mut w, 2), ReasonCode::SUCCESS);
    assert!(topics(&mut w, 1).is_empty());
    // 3.1.1 has no code to say so: acknowledged and dropped.
    b.packet(1, publish("b/x", 1, Some(4)), &mut w);
    assert_eq!(ack_code(&mut w, 1), ReasonCode::SUCCESS);
    assert!(topics(&mut w, 2).is_empty());
    // The pattern: bob reads in/bob/..., not another user's inbox, and
    // alice, who may write there, does not read it.
    b.packet(1, publish("in/bob/1", 0, None), &mut w);
    b.packet(1, publish("in/carol/1", 0, None), &mut w);
    assert_eq!(topics(&mut w, 2), ["in/bob/1"]);
    assert!(topics(&mut w, 1).is_empty());
}

/// As mosquitto 2.0.11 does: the CONNECT is let in, and the will is
/// dropped when it would be published.
#[test]
fn a_will_the_acl_forbids_is_dropped_not_refused() {
    let (mut b, mut w) = alice_and_bob();
    for (conn, topic) in [(3, "b/will"), (4, "in/bob/will")] {
        let will = Will::new(topic, b"x", 0, false);
        let p = login(Level::V311, topic, Some("alice"), "secret", Some(will));
        assert_eq!(attempt(&mut b, &mut w, conn, p).1, ReasonCode::SUCCESS);
        b.closed(conn, &End::Eof, &mut w);
    }
    // bob reads in/bob/#: only the will alice may write reaches him.
    assert_eq!(topics(&mut w, 2), ["in/bob/will"]);
}

fn export(b: &Broker, schema: Schema) -> (SharedState, Vec<(usize, ClientState)>) {
    let clients = [1, 2]
        .iter()
        .map(|c| (*c, b.export_client(*c, schema, &mut 0).unwrap()))
        .collect();
    (b.export_shared(schema), clients)
}

#[test]
fn the_login_moves_and_the_importer_checks_it_against_its_own_files() {
    let (a, _) = alice_and_bob();
    let state = export(&a, Schema::Login);
    let login = state.1[0].1.login.as_ref().unwrap();
    assert_eq!(login.username.as_deref(), Some("alice"));
    assert_eq!(login.password.as_deref(), Some(&b"secret"[..]));
    assert_eq!(login.verified.as_ref().map(Vec::len), Some(32));
    assert!(!format!("{:?}", state.1).contains("secret"), "never shown");
    // A fingerprint that is not one is refused, changing nothing.
    let mut forged = state.1[0].1.clone();
    if let Some(l) = forged.login.as_mut() {
        l.verified = Some(vec![0; 31]);
    }
    let mut d = broker(&[ALICE, BOB], Some(ACL));
    assert!(d.import_client(1, &forged, Schema::Login).is_err());
    // So is a session that reads as another user than its login.
    let mut forged = state.1[0].1.clone();
    if let Some(s) = forged.session.as_mut() {
        s.username = Some("admin".into());
    }
    assert!(d.import_client(1, &forged, Schema::Login).is_err());
    assert!(d.clients.is_empty());
    assert!(export(&a, Schema::Mqtt5).1[0].1.login.is_none());
    // alice is gone from the new broker's password file, and bob's
    // pattern with her.
    let mut b = broker(&[BOB], Some("user bob\ntopic write a/#\n"));
    b.import_shared(&state.0, Schema::Login).unwrap();
    for (conn, c) in &state.1 {
        b.import_client(*conn, c, Schema::Login).unwrap();
        b.recheck_moved(*conn, None);
    }
    b.imported();
    assert_eq!(b.take_refused(), [(1, ReasonCode::NOT_AUTHORIZED)]);
    assert!(b.take_refused().is_empty(), "asked once");
    // bob keeps who he is, under the new rules: no read of in/bob/ now.
    let mut w = Recorder::default();
    w.v5.insert(2);
    assert_eq!(b.sessions["b"].username.as_deref(), Some("bob"));
    b.packet(2, publish("a/y", 0, None), &mut w);
    b.packet(2, publish("in/bob/2", 0, None), &mut w);
    assert!(topics(&mut w, 2).is_empty());
    // The same state into a broker that still knows alice: nobody refused.
    let mut c = broker(&[ALICE, BOB], Some(ACL));
    c.import_shared(&state.0, Schema::Login).unwrap();
    for (conn, s) in &state.1 {
        c.import_client(*conn, s, Schema::Login).unwrap();
        c.recheck_moved(*conn, None);
    }
    assert!(c.take_refused().is_empty());
    assert_eq!(c.clients[&1].login.verified, a.clients[&1].login.verified);
}

/// `login`, keeping the session (clean session 0).
fn keeping(p: Packet) -> Packet {
    match p {
        Packet::Connect {
            level,
            client_id,
            keep_alive,
            username,
            password,
            will,
            properties,
            ..
        } => Packet::Connect {
            level,
            client_id,
            keep_alive,
            clean_session: false,
            username,
            password,
            will,
            properties,
        },
        other => other,
    }
}

/// As mosquitto's `connection_check_acl`: what a session holds for
/// delivery goes only to a client that may read it now.
#[test]
fn a_resumed_session_gets_only_what_its_login_may_read() {
    for (user, pw, expect) in [("bob", "hunter2", 0), ("alice", "secret", 1)] {
        let (mut b, mut w) = (broker(&[ALICE, BOB], Some(ACL)), Recorder::default());
        let p = keeping(login(Level::V311, "dev1", Some("alice"), "secret", None));
        attempt(&mut b, &mut w, 1, p);
        b.packet(1, Packet::subscribe(1, [("a/#", 1)]), &mut w);
        b.closed(1, &End::Eof, &mut w);
        attempt(
            &mut b,
            &mut w,
            2,
            login(Level::V5, "b", Some("bob"), "hunter2", None),
        );
        b.packet(2, publish("a/x", 1, Some(1)), &mut w);
        assert_eq!(b.sessions["dev1"].queue.len(), 1);
        // Someone resumes dev1's session.
        let p = keeping(login(Level::V311, "dev1", Some(user), pw, None));
        assert_eq!(attempt(&mut b, &mut w, 3, p).1, ReasonCode::SUCCESS);
        assert_eq!(topics(&mut w, 3).len(), expect, "{user}");
    }
}

/// A connection refused at import is closed without its will.
#[test]
fn a_login_refused_at_import_sends_no_will() {
    let (mut a, mut w) = alice_and_bob();
    // bob (connection 2) reads in/bob/#, where alice may write.
    let will = Will::new("in/bob/will", b"x", 0, false);
    let p = login(Level::V5, "w", Some("alice"), "secret", Some(will));
    attempt(&mut a, &mut w, 3, p);
    let mut b = broker(&[BOB], Some(ACL));
    for conn in [2, 3] {
        let state = a.export_client(conn, Schema::Login, &mut 0).unwrap();
        b.import_client(conn, &state, Schema::Login).unwrap();
        b.recheck_moved(conn, None);
    }
    let refused = b.take_refused();
    assert_eq!(refused, [(3, ReasonCode::NOT_AUTHORIZED)]);
    let mut w = Recorder::default();
    w.v5.extend([2, 3]);
    b.closed(3, &End::Refused(refused[0].1, "test".into()), &mut w);
    assert!(topics(&mut w, 2).is_empty(), "no will");
    assert!(b.pending_wills.is_empty());
    // The same close for another reason sends it.
    attempt(
        &mut a,
        &mut w,
        4,
        login(
            Level::V5,
            "w2",
            Some("alice"),
            "secret",
            Some(Will::new("in/bob/will", b"x", 0, false)),
        ),
    );
    a.closed(4, &End::Eof, &mut w);
    assert_eq!(topics(&mut w, 2), ["in/bob/will"]);
}

/// Where a login's name comes from must be what this broker would use
/// now: a changed certificate setting or another certificate name
/// refuses it (the client logs in again); NUL in a name is no name.
#[test]
fn a_moved_login_from_another_source_is_refused() {
    let cert_login = |cn: Option<&str>| {
        let mut a = broker(&[ALICE], None);
        a.auth.cert_as_username = true;
        let mut w = Recorder::default();
        a.opened(1, "mqtts", None);
        a.certified(1, cn);
        let step = a.packet(1, login(Level::V311, "c", None, "", None), &mut w);
        (a.export_client(1, Schema::Login, &mut 0).unwrap(), step)
    };
    let (state, _) = cert_login(Some("device-1"));
    let refused = |cert_as_username: bool, tls: Option<Option<&str>>, state: &ClientState| {
        let mut b = broker(&[ALICE], None);
        b.auth.cert_as_username = cert_as_username;
        b.import_client(1, state, Schema::Login).unwrap();
        b.recheck_moved(1, tls);
        !b.take_refused().is_empty()
    };
    assert!(!refused(true, Some(Some("device-1")), &state));
    assert!(refused(true, Some(Some("device-2")), &state));
    assert!(
        refused(false, Some(Some("device-1")), &state),
        "passwords now"
    );
    let a = alice_and_bob().0;
    let password_state = a.export_client(1, Schema::Login, &mut 0).unwrap();
    assert!(
        !refused(true, None, &password_state),
        "plain TCP: passwords"
    );
    assert!(refused(true, Some(Some("alice")), &password_state));
    let (_, step) = cert_login(Some("dev\0ice"));
    assert!(matches!(step, Step::End(End::Refused(..))), "{step:?}");
}
