//! The reference broker as a process, driven over real sockets by the
//! testkit's minimal client on the crate's MQTT codec: CONNECT, pub/sub at QoS 0 and 1,
//! retained messages (its version among them), UNSUBSCRIBE, PINGREQ,
//! keep-alive, protocol errors, takeover, both listeners, and the binary's
//! arguments and release tree.
#![cfg(target_os = "linux")]

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use emqx_mqtt::{Packet, ReasonCode};
use emqx_testkit::{free_port, MqttClient as Client, RefBroker as Broker};

const BIN: &str = env!("CARGO_BIN_EXE_emqx-refbroker");

#[test]
fn the_version_is_retained_and_both_listeners_serve() {
    let b = Broker::start();
    for addr in [b.mqtt(), b.alt()] {
        let mut c = Client::connect(addr, &format!("v-{}", addr.port()), 60);
        assert_eq!(c.subscribe(&[("#", 1)]), vec![1]);
        c.quiet(); // "#" does not match "$SYS/..."
        assert_eq!(c.subscribe(&[("$SYS/broker/version", 1)]), vec![1]);
        let (topic, payload, qos, retain, _) = c.message();
        assert_eq!(topic, "$SYS/broker/version");
        assert_eq!(payload, b"5.0.0");
        assert_eq!((qos, retain), (0, true));
    }
    // Clients cannot overwrite it.
    let mut p = b.client("intruder");
    p.publish("$SYS/broker/version", b"6.6.6", 1, true);
    let mut c = b.client("late");
    c.subscribe(&[("$SYS/#", 0)]);
    assert_eq!(c.message().1, b"5.0.0");
    let log = b.log();
    assert!(log.contains("emqx-refbroker[5.0.0]: "), "{log}");
    assert!(log.contains("client \"v-"), "{log}");
    assert!(
        log.contains("PUBLISH to \"$SYS/broker/version\" not authorized"),
        "{log}"
    );
}

#[test]
fn publishes_reach_subscribers_at_the_lower_qos() {
    let b = Broker::start();
    let mut sub = b.client("sub");
    let mut sub0 = Client::connect(b.alt(), "sub0", 60);
    let mut publisher = b.client("pub");
    // Overlapping filters deliver once, at the highest QoS (never above
    // the message's); an invalid filter fails alone.
    assert_eq!(
        sub.subscribe(&[("t/+", 2), ("t/#", 0), ("a/#/b", 1)]),
        vec![2, 0, 0x80]
    );
    assert_eq!(sub0.subscribe(&[("t/a", 0)]), vec![0]);

    publisher.publish("t/a", b"zero", 0, false);
    assert_eq!(
        sub.message(),
        ("t/a".into(), b"zero".to_vec(), 0, false, None)
    );
    assert_eq!(
        sub0.message(),
        ("t/a".into(), b"zero".to_vec(), 0, false, None)
    );

    publisher.publish("t/a", b"one", 1, false);
    let (topic, payload, qos, retain, id1) = sub.message();
    assert_eq!(
        (topic.as_str(), &payload[..], qos, retain),
        ("t/a", &b"one"[..], 1, false)
    );
    let id1 = id1.unwrap();
    sub.send(&Packet::puback(id1));
    // The QoS 0 subscriber gets it at QoS 0.
    assert_eq!(
        sub0.message(),
        ("t/a".into(), b"one".to_vec(), 0, false, None)
    );

    // A fresh packet id per delivery; an unacknowledged one is not resent.
    publisher.publish("t/b", b"two", 1, true);
    let (_, payload, qos, retain, id2) = sub.message();
    assert_eq!((&payload[..], qos, retain), (&b"two"[..], 1, false));
    assert_ne!(id2, Some(id1));
    sub.quiet();
    sub0.quiet();
    publisher.quiet();
}

#[test]
fn retained_messages_reach_late_subscribers_until_cleared() {
    let b = Broker::start();
    let mut p = b.client("p");
    p.publish("r/1", b"hello", 1, true);
    p.publish("r/2", b"zero", 0, true);
    p.publish("r/2", b"world", 0, true);
    p.send(&Packet::PingReq);
    assert_eq!(p.recv(), Packet::PingResp); // the QoS 0 ones are in

    let mut late = b.client("late");
    assert_eq!(late.subscribe(&[("r/1", 1)]), vec![1]);
    assert_eq!(late.message().0, "r/1");
    let mut wild = b.client("wild");
    assert_eq!(wild.subscribe(&[("r/+", 1)]), vec![1]);
    let mut got = [wild.message(), wild.message()];
    got.sort();
    assert_eq!(got[0].1, b"hello");
    assert_eq!((got[0].2, got[0].3), (1, true));
    assert!(got[0].4.is_some());
    assert_eq!(got[1].1, b"world");
    assert_eq!((got[1].2, got[1].3), (0, true));
    wild.quiet();

    // An empty retained payload clears; subscribers still get it, unretained.
    p.publish("r/1", b"", 1, true);
    let (topic, payload, _, retain, _) = late.message();
    assert_eq!((topic.as_str(), payload.len(), retain), ("r/1", 0, false));
    let mut later = b.client("later");
    assert_eq!(later.subscribe(&[("r/#", 1)]), vec![1]);
    assert_eq!(later.message().1, b"world");
    later.quiet();
}

#[test]
fn unsubscribe_stops_delivery() {
    let b = Broker::start();
    let mut sub = b.client("sub");
    let mut p = b.client("p");
    sub.subscribe(&[("u/x", 1), ("u/y", 0)]);
    p.publish("u/x", b"1", 1, false);
    assert_eq!(sub.message().1, b"1");
    sub.send(&Packet::unsubscribe(
        77,
        vec!["u/x".into(), "never/subscribed".into()],
    ));
    assert_eq!(sub.recv(), Packet::unsuback(77));
    p.publish("u/x", b"2", 1, false);
    p.publish("u/y", b"3", 1, false);
    assert_eq!(sub.message().1, b"3");
    sub.quiet();
}

#[test]
fn pingreq_gets_pingresp_and_disconnect_closes() {
    let b = Broker::start();
    let mut c = b.client("pinger");
    for _ in 0..3 {
        c.send(&Packet::PingReq);
        assert_eq!(c.recv(), Packet::PingResp);
    }
    c.send(&Packet::disconnect());
    assert!(c.closed() < Duration::from_secs(2));
}

#[test]
fn keep_alive_expiry_closes_a_silent_client() {
    let b = Broker::start();
    let mut silent = Client::connect(b.mqtt(), "silent", 1);
    let closed_after = silent.closed();
    assert!(
        closed_after >= Duration::from_millis(1200) && closed_after <= Duration::from_millis(2500),
        "closed after {closed_after:?}"
    );
    let log = b.log();
    assert!(
        log.contains("client \"silent\" keep-alive expired (no packet within 1.5 × 1 s)"),
        "{log}"
    );
    // A client that pings within its keep-alive stays.
    let mut pinger = Client::connect(b.mqtt(), "pinger", 1);
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(2500) {
        std::thread::sleep(Duration::from_millis(500));
        pinger.send(&Packet::PingReq);
        assert_eq!(pinger.recv(), Packet::PingResp);
    }
}

#[test]
fn garbage_closes_only_that_connection() {
    let b = Broker::start();
    let mut sub = b.client("sub");
    sub.subscribe(&[("g", 1)]);
    // A connected client sends a 5-byte remaining length.
    let mut bad = b.client("bad");
    bad.stream.write_all(&[0xff; 8]).unwrap();
    assert!(bad.closed() < Duration::from_secs(2));
    // A fresh connection starts with something other than CONNECT.
    let mut raw = Client::raw(b.alt());
    raw.stream.write_all(b"\x47\x00garbage\r\n").unwrap();
    assert!(raw.closed() < Duration::from_secs(2));
    // Others serve on.
    let mut p = Client::connect(b.alt(), "p", 60);
    p.publish("g", b"still here", 1, false);
    assert_eq!(sub.message().1, b"still here");
    let log = b.log();
    assert!(log.contains("client \"bad\" malformed packet"), "{log}");
    assert!(log.contains("not CONNECT"), "{log}");
}

#[test]
fn protocol_errors_close_the_connection() {
    let b = Broker::start();
    // A second CONNECT.
    let mut c = b.client("twice");
    c.send(&Packet::connect("twice", true, 60));
    c.closed();
    // A server's packet from a client.
    let mut c = b.client("server");
    c.send(&Packet::PingResp);
    c.closed();
    // A wildcard topic name.
    let mut c = b.client("wild");
    c.publish("a/+", b"x", 0, false);
    c.closed();
    // An MQTT 3.1 (level 3) client gets CONNACK 1.
    let mut c = Client::raw(b.mqtt());
    let mut connect = Packet::connect("old", true, 60).encode();
    connect[8] = 3;
    c.stream.write_all(&connect).unwrap();
    assert_eq!(c.recv(), Packet::connack(false, ReasonCode(1)));
    c.closed();
    // An empty client id: generated with a clean session, else CONNACK 2.
    let mut c = Client::connect(b.mqtt(), "", 60);
    c.send(&Packet::PingReq);
    assert_eq!(c.recv(), Packet::PingResp);
    let mut c = Client::raw(b.mqtt());
    c.send(&Packet::connect("", false, 60));
    assert_eq!(c.recv(), Packet::connack(false, ReasonCode(2)));
    c.closed();
    // A packet over 1 MiB.
    let mut c = b.client("big");
    c.stream.write_all(&[0x30, 0x81, 0x80, 0x40]).unwrap();
    c.closed();
    let log = b.log();
    for want in [
        "a second CONNECT",
        "invalid topic",
        "protocol level 3",
        "CONNACK 2",
        "too large",
    ] {
        assert!(log.contains(want), "{want}: {log}");
    }
}

#[test]
fn a_client_id_in_use_is_taken_over() {
    let b = Broker::start();
    let mut first = b.client("same");
    first.subscribe(&[("x", 0)]);
    let mut second = Client::connect(b.alt(), "same", 60);
    assert!(first.closed() < Duration::from_secs(2));
    second.send(&Packet::PingReq);
    assert_eq!(second.recv(), Packet::PingResp);
    // The old connection's subscriptions went with it.
    let mut p = b.client("p");
    p.publish("x", b"1", 1, false);
    second.quiet();
    assert!(
        b.log().contains("client \"same\" connected again"),
        "{}",
        b.log()
    );
}

#[test]
fn only_the_foreground_argument_is_accepted() {
    let out = Command::new(BIN)
        .arg("console")
        .env("EMQX_BROKER_VERSION", "5.0.0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("console"), "{err}");
    let out = Command::new(BIN)
        .arg("foreground")
        .env("EMQX_BROKER_VERSION", "5.0.0")
        .env("EMQX_DRAIN_SECS", "soon")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("EMQX_DRAIN_SECS"));
}

/// A release tree holding the broker as `bin/emqx`.
fn tree(root: &Path, versions: &[&str], refbroker_toml: Option<&str>) -> String {
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::create_dir_all(root.join("releases")).unwrap();
    let exe = root.join("bin/emqx");
    // The running binary finds its tree from the path it was started by.
    if fs::hard_link(BIN, &exe).is_err() {
        fs::copy(BIN, &exe).unwrap();
    }
    for v in versions {
        fs::create_dir_all(root.join("releases").join(v)).unwrap();
    }
    if let Some(text) = refbroker_toml {
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("etc/refbroker.toml"), text).unwrap();
    }
    exe.display().to_string()
}

#[test]
fn the_version_comes_from_the_release_tree() {
    let root = tempfile::tempdir().unwrap();
    let exe = tree(root.path(), &["5.0.1"], Some("ready_delay_ms = 10\n"));
    let b = Broker::start_with(Path::new(&exe), &[]);
    let mut c = b.client("v");
    c.subscribe(&[("$SYS/broker/version", 0)]);
    assert_eq!(c.message().1, b"5.0.1");

    for (versions, toml, code, want) in [
        (&["5.0.1", "5.0.2"][..], None, 2, "several release folders"),
        (&[][..], None, 2, "no release folder"),
        (
            &["5.0.1"][..],
            Some("fail = \"exit-at-once\""),
            3,
            "exit at once",
        ),
        (
            &["5.0.1"][..],
            Some("fail = \"bogus\""),
            2,
            "refbroker.toml",
        ),
    ] {
        let root = tempfile::tempdir().unwrap();
        let exe = tree(root.path(), versions, toml);
        let out = Command::new(&exe)
            .arg("foreground")
            .env_remove("EMQX_BROKER_VERSION")
            .env("EMQX_LISTENERS", format!("mqtt=127.0.0.1:{}", free_port()))
            .env("EMQX_RUNTIME_DIR", root.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{versions:?} {toml:?}: {err}"
        );
        assert!(err.contains(want), "{want}: {err}");
    }
}

#[test]
fn by_default_a_connection_logs_nothing_and_a_summary_line_comes() {
    let bin = emqx_testkit::bins::bin("emqx-refbroker");
    let b = Broker::start_with(
        &bin,
        &[
            ("EMQX_BROKER_VERSION", "5.0.0"),
            ("EMQX_LOG_SUMMARY_SECS", "1"),
        ],
    );
    let mut sub = b.client("quiet-sub");
    sub.subscribe(&[("q", 1)]);
    let mut p = b.client("quiet-pub");
    for _ in 0..3 {
        p.publish("q", b"m", 1, false);
        assert_eq!(sub.message().1, b"m");
    }
    let mut bad = b.client("quiet-bad");
    bad.stream.write_all(&[0xff; 8]).unwrap();
    bad.closed();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !b.log().contains("messages/s in") {
        assert!(Instant::now() < deadline, "no summary line: {}", b.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = b.log();
    assert!(
        !log.contains("quiet-"),
        "a per-connection line at info: {log}"
    );
    assert!(log.contains("connections, 2 sessions"), "{log}");
}
