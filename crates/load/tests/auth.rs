//! The load harness with credentials (issue #25) against Debian's
//! mosquitto 2.0.11 with `allow_anonymous false`, a `password_file` made
//! by `mosquitto_passwd` from [`LoadAuth::credentials`] and an `acl_file`
//! from [`LoadAuth::acl_file_text`]: every class (3.1.1 and MQTT 5, every
//! other client over TLS) runs clean, no CONNECT is refused, the denied
//! probes are denied and nothing of the denied topic leaks. Then what
//! must not pass: the same ACL without its `%u` line or its `%c` line
//! loses every message, an ACL that lets the denied topic through shows
//! leaks, a wrong password shows refused CONNACKs.

use std::fs;
use std::process::Command;
use std::thread::sleep;
use std::time::Duration;

use emqx_load::{Load, LoadAuth, LoadOptions, Report, DENIED_PROBES};
use emqx_testkit::clients::Mosquitto;
use emqx_testkit::Pki;

/// Every message class of the run.
const CLASSES: [&str; 10] = [
    "live-qos0",
    "live-qos1",
    "live-qos2",
    "session-qos1",
    "session-qos2",
    "v5-session-qos1",
    "v5-session-qos2",
    "v5-shared-qos0",
    "v5-shared-qos1",
    "v5-shared-qos2",
];

/// Receive Maximum violations tolerated of mosquitto 2.0.11 per MQTT 5
/// session resumed (its known bug: see `tests/v5.rs`).
const MOSQUITTO_RECEIVE_MAX_ALLOWANCE: u64 = 20;

/// mosquitto with a password file of `auth`'s users, `acl` as its
/// `acl_file`, no anonymous clients, and a TLS listener serving `pki`.
/// The folder of the two files lives as long as the broker needs it.
fn mosquitto(auth: &LoadAuth, acl: &str, pki: &Pki) -> (Mosquitto, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let passwords = dir.path().join("passwords");
    for (i, (user, password)) in auth.credentials().iter().enumerate() {
        let mut cmd = Command::new("/usr/bin/mosquitto_passwd");
        if i == 0 {
            cmd.arg("-c");
        }
        let out = cmd
            .arg("-b")
            .arg(&passwords)
            .args([user, password])
            .output()
            .expect("running mosquitto_passwd (scripts/test installs mosquitto)");
        assert!(out.status.success(), "mosquitto_passwd: {out:?}");
    }
    let acl_file = dir.path().join("acl");
    fs::write(&acl_file, acl).unwrap();
    let lines = format!(
        "allow_anonymous false\npassword_file {}\nacl_file {}\n",
        passwords.display(),
        acl_file.display()
    );
    (Mosquitto::start_configured(Some(pki), &lines), dir)
}

/// Every class on (as `tests/load.rs` and `tests/v5.rs` run them), every
/// other client over TLS, as the users of `auth`.
fn options(m: &Mosquitto, pki: &Pki, auth: LoadAuth) -> LoadOptions {
    LoadOptions {
        addrs: vec![m.addr],
        persistent: 6,
        sessions: 4,
        session_online: Duration::from_millis(600),
        session_offline: Duration::from_millis(150),
        idle: 3,
        publish_rate: 50.0,
        storm: 2,
        connect_timeout: Duration::from_secs(2),
        auth: Some(auth),
        ..LoadOptions::default()
    }
    .with_v5()
    .over_tls(m.tls_addr.map(|a| (a, pki.ca())))
}

/// Runs the load as `auth`'s users for `secs` against mosquitto with
/// `acl`; the report and a context for failures.
fn run(auth: LoadAuth, acl: &str, secs: u64) -> (Report, String) {
    let pki = Pki::new();
    let (m, _files) = mosquitto(&auth, acl, &pki);
    let load = Load::start(options(&m, &pki, auth));
    sleep(Duration::from_secs(secs));
    let r = load.stop();
    let ctx = format!(
        "acl:\n{acl}\n{}\n{}\nmosquitto log:\n{}",
        r.table(),
        r.json(),
        m.log()
    );
    println!("{}", r.table());
    (r, ctx)
}

/// What a broker with the right files must give: every attempt ok and
/// none refused its credentials, every class delivering all it sent (but
/// what a ring sent before its subscriber's first SUBACK), sessions
/// resumed, the probes denied and nothing of the denied topic let
/// through.
fn assert_auth_clean(r: &Report, ctx: &str) {
    assert!(r.auth && r.auth_clean(), "{ctx}");
    assert_eq!(r.auth_refused, 0, "{ctx}");
    assert!(r.denied_checks > 0, "{ctx}");
    assert_eq!(r.denied_leaks, 0, "{ctx}");
    assert!(r.connections_clean(), "{ctx}");
    assert_eq!((r.other_error, r.ok), (0, r.attempts), "{ctx}");
    assert!(r.attempts > 50 && r.tls > 0, "{ctx}");
    assert_eq!(r.closed_by_broker, 0, "{ctx}");
    for name in CLASSES {
        let c = r.class(name);
        let ctx = format!("{name}: {ctx}");
        assert!(c.clients > 0 && c.sent >= 50 && c.received > 0, "{ctx}");
        assert_eq!(c.lost + c.undelivered_at_stop, 0, "{ctx}");
        assert_eq!(c.unacked_at_close + c.unacked_at_stop, 0, "{ctx}");
        assert_eq!(c.in_flight, 0, "{ctx}");
        let excused = match name.starts_with("live") {
            true => 0,
            false => 3 * c.clients,
        };
        assert!(c.lost_at_close <= excused, "{ctx}");
        assert_eq!(c.received + c.lost_at_close, c.sent, "{ctx}");
        assert_eq!(c.dup_beyond_qos + c.out_of_order + c.misrouted, 0, "{ctx}");
        assert_eq!(c.props_damaged + c.expiry_bad + c.alias_errors, 0, "{ctx}");
        let allowed = match name.starts_with("v5-session") {
            true => MOSQUITTO_RECEIVE_MAX_ALLOWANCE * r.v5_sessions.resumed,
            false => 0,
        };
        assert!(c.receive_max_exceeded <= allowed, "{ctx}");
    }
    for s in [&r.sessions, &r.v5_sessions] {
        assert!(s.left_gracefully > 0 && s.left_abruptly > 0, "{ctx}");
        assert_eq!(s.lost, 0, "{ctx}");
    }
}

#[test]
fn every_class_runs_clean_as_users_of_mosquitto_with_its_acl() {
    let auth = LoadAuth::default();
    let acl = auth.acl_file_text();
    let (r, ctx) = run(auth, &acl, 4);
    assert_auth_clean(&r, &ctx);
    // mosquitto 2.0 grants every SUBSCRIBE whatever its acl_file says
    // (and checks each delivery): the probes' subscriptions are granted,
    // their MQTT 5 PUBLISHes refused with 0x87 (once a second each).
    assert!(r.denied_subscribed >= DENIED_PROBES as u64, "{ctx}");
    assert!(r.denied_checks >= (DENIED_PROBES / 2) as u64, "{ctx}");
    let json: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
    assert_eq!(json["auth_refused"], 0, "{ctx}");
    assert_eq!(json["denied_leaks"], 0, "{ctx}");
    assert!(r.table().contains("denied checks"), "{ctx}");
}

/// What an ACL missing a grant the load needs must show: no message of
/// any class delivered, messages lost, the report unclean; yet no
/// CONNECT refused and nothing of the denied topic let through.
fn assert_all_lost(r: &Report, ctx: &str) {
    assert!(!r.messages_clean() && !r.clean(), "{ctx}");
    assert_eq!((r.auth_refused, r.denied_leaks), (0, 0), "{ctx}");
    let mut lost = 0;
    for name in CLASSES {
        let c = r.class(name);
        assert!(c.sent > 0, "{name}: {ctx}");
        assert_eq!(c.received, 0, "{name}: {ctx}");
        lost += c.lost + c.lost_at_close + c.undelivered_at_stop;
    }
    assert!(lost > 0, "{ctx}");
}

/// The ACL of [`LoadAuth::acl_file_text`] without its lines holding
/// `needle`.
fn acl_without(auth: &LoadAuth, needle: &str) -> String {
    let acl = auth.acl_file_text();
    assert!(acl.contains(needle), "{acl}");
    acl.lines()
        .filter(|l| !l.contains(needle))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn without_the_percent_u_line_nothing_is_delivered() {
    let auth = LoadAuth::default();
    let acl = acl_without(&auth, "%u");
    let (r, ctx) = run(auth, &acl, 2);
    assert_all_lost(&r, &ctx);
}

#[test]
fn without_the_percent_c_line_nothing_is_published() {
    let auth = LoadAuth::default();
    let acl = acl_without(&auth, "%c");
    let (r, ctx) = run(auth, &acl, 2);
    assert_all_lost(&r, &ctx);
}

#[test]
fn an_acl_letting_the_denied_topic_through_shows_leaks() {
    let auth = LoadAuth::default();
    let acl = acl_without(&auth, "deny") + &format!("pattern readwrite {}\n", auth.denied_topic);
    let (r, ctx) = run(auth, &acl, 2);
    assert!(r.denied_leaks > 0 && !r.auth_clean() && !r.clean(), "{ctx}");
    assert!(r.table().contains("leaks"), "{ctx}");
}

#[test]
fn a_wrong_password_shows_refused_connects() {
    let auth = LoadAuth::default();
    let acl = auth.acl_file_text();
    let pki = Pki::new();
    let (m, _files) = mosquitto(&auth, &acl, &pki);
    let wrong = LoadAuth {
        password: "not-the-password".into(),
        ..auth
    };
    let load = Load::start(options(&m, &pki, wrong));
    sleep(Duration::from_millis(1500));
    let r = load.stop();
    let ctx = format!("{}\nmosquitto log:\n{}", r.table(), m.log());
    assert!(r.auth_refused > 0 && r.ok == 0, "{ctx}");
    assert_eq!(r.auth_refused, r.other_error, "{ctx}");
    assert!(!r.auth_clean() && !r.clean(), "{ctx}");
}

#[test]
fn the_binary_runs_as_users_and_prints_its_acl() {
    let bin = emqx_testkit::bins::bin("emqx-load");
    let out = Command::new(&bin)
        .args(["--print-acl", "--denied-topic", "x/y"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let expected = LoadAuth {
        denied_topic: "x/y".into(),
        ..LoadAuth::default()
    };
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.starts_with(&expected.acl_file_text()), "{text}");
    assert!(text.contains("load-0 load-1 load-2 load-3"), "{text}");

    let auth = LoadAuth::default();
    let pki = Pki::new();
    let (m, _files) = mosquitto(&auth, &auth.acl_file_text(), &pki);
    let addr = m.addr.to_string();
    let out = Command::new(&bin)
        .args(["--addr", &addr, "--password", &auth.password])
        .args(["--duration", "1.5", "--json", "--rate", "20"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let ctx = format!(
        "{text}{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        m.log()
    );
    assert_eq!(out.status.code(), Some(0), "{ctx}");
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(v["auth"], true, "{ctx}");
    assert_eq!(
        (v["auth_refused"].as_u64(), v["denied_leaks"].as_u64()),
        (Some(0), Some(0)),
        "{ctx}"
    );
    assert!(v["denied_checks"].as_u64() > Some(0), "{ctx}");

    for bad in [
        &["--username-prefix", "a"][..],
        &["--denied-topic", "x"],
        &["--password", "p", "--denied-topic", "a/#"],
        &["--password", "p", "--username-prefix", "a/b"],
        &["--password", "p", "--users", "0"],
    ] {
        let out = Command::new(&bin)
            .args(["--addr", "127.0.0.1:1"])
            .args(bad)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {err}");
        assert!(out.stdout.is_empty(), "{bad:?}");
    }
}
