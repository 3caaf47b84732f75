//! The MQTT 5 classes of the load harness against the reference broker
//! and Debian's mosquitto on loopback, with the same assertions: every
//! class has traffic, nothing is lost or duplicated beyond its QoS, no
//! user property is damaged, no expiry is wrong, the Receive Maximum of 2
//! is never exceeded, every topic alias resolves, and every session
//! returns to find its session present.

use std::net::SocketAddr;
use std::thread::sleep;
use std::time::Duration;

use emqx_load::{Load, LoadOptions, Report};
use emqx_testkit::clients::Mosquitto;
use emqx_testkit::RefBroker;

const CLASSES: [&str; 5] = [
    "v5-session-qos1",
    "v5-session-qos2",
    "v5-shared-qos0",
    "v5-shared-qos1",
    "v5-shared-qos2",
];

/// Only the MQTT 5 clients ([`LoadOptions::with_v5`]), sessions cycling
/// quickly so they leave and return several times in a few seconds.
fn options(addrs: Vec<SocketAddr>) -> LoadOptions {
    LoadOptions {
        addrs,
        persistent: 0,
        sessions: 0,
        idle: 0,
        storm: 0,
        publish_rate: 50.0,
        session_online: Duration::from_millis(600),
        session_offline: Duration::from_millis(150),
        connect_timeout: Duration::from_secs(2),
        ..LoadOptions::default()
    }
    .with_v5()
}

/// Runs the v5 load for four seconds against `addrs`.
fn run(addrs: Vec<SocketAddr>) -> Report {
    let load = Load::start(options(addrs));
    sleep(Duration::from_secs(4));
    let r = load.stop();
    println!("{}", r.table());
    r
}

/// What a correct MQTT 5 broker must give. `receive_max_allowance`: the
/// Receive Maximum violations tolerated per session resumed, in the
/// session classes only (0 but for a broker with a known bug, see the
/// mosquitto test).
fn assert_v5_clean(r: &Report, ctx: &str, receive_max_allowance: u64) {
    assert!(r.connections_clean(), "{ctx}");
    assert_eq!((r.other_error, r.ok), (0, r.attempts), "{ctx}");
    assert_eq!(r.closed_by_broker, 0, "{ctx}");
    for name in CLASSES {
        let c = r.class(name);
        let ctx = format!("{name}: {ctx}");
        assert!(c.clients > 0 && c.sent >= 50 && c.received > 0, "{ctx}");
        assert_eq!(c.lost + c.undelivered_at_stop, 0, "{ctx}");
        assert_eq!(c.unacked_at_close + c.unacked_at_stop, 0, "{ctx}");
        assert_eq!(c.in_flight, 0, "{ctx}");
        // What a ring's publisher (or a group's) sent before its
        // subscriber's first SUBACK had nobody to go to: excused, a few
        // per client at most.
        assert!(c.lost_at_close <= 3 * c.clients, "{ctx}");
        assert_eq!(c.received + c.lost_at_close, c.sent, "{ctx}");
        assert_eq!(c.dup_beyond_qos + c.out_of_order + c.misrouted, 0, "{ctx}");
        assert_eq!((c.props_damaged, c.expiry_bad), (0, 0), "{ctx}");
        assert_eq!(c.alias_errors, 0, "{ctx}");
        let allowed = match name.starts_with("v5-session") {
            true => receive_max_allowance * r.v5_sessions.resumed,
            false => 0,
        };
        assert!(c.receive_max_exceeded <= allowed, "{ctx}");
        // The topic alias set up by the first PUBLISH of a connection
        // carried all the others.
        assert!(c.alias_sent * 10 >= c.sent * 8, "{ctx}");
    }
    let s = &r.v5_sessions;
    assert!(s.left_gracefully > 0 && s.left_abruptly > 0, "{ctx}");
    assert_eq!(s.lost, 0, "every return found its session: {ctx}");
    assert!(
        s.resumed + 4 >= s.left_gracefully + s.left_abruptly,
        "{ctx}"
    );
    // Abrupt leaves left deliveries unacknowledged: they came again.
    for name in ["v5-session-qos1", "v5-session-qos2"] {
        assert!(r.class(name).redelivered > 0, "{name}: {ctx}");
    }
}

#[test]
fn v5_classes_are_clean_on_the_reference_broker() {
    let mut broker = RefBroker::start();
    let r = run(broker.addrs.to_vec());
    let log = broker.log();
    broker.kill();
    let ctx = format!("{}\n{}\nbroker {log}", r.table(), r.json());
    assert_v5_clean(&r, &ctx, 0);
    assert!(r.clean(), "{ctx}");
    let json: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
    assert_eq!(json["messages"]["v5-shared-qos1"]["props_damaged"], 0);
    assert_eq!(json["messages"]["v5-shared-qos1"]["clean"], true);
}

/// The same load against mosquitto 2.0.11: the accounting is not fitted
/// to the reference broker, except in one place. Mosquitto 2.0.11 has a
/// known Receive Maximum bug (upstream issue #2306, as the project notes
/// it; the upstream text was not checked here). It shows when a
/// session resumes: within about a millisecond of the CONNACK it writes
/// every message queued while the client was away (not DUP, never sent
/// before), whatever the client's Receive Maximum of 2. That is counted
/// as `receive_max_exceeded` (about 40 per session class in 4 s, 6
/// resumes per client). It is tolerated here, and only here: at most
/// [`MOSQUITTO_RECEIVE_MAX_ALLOWANCE`] per session resumed, in the
/// session classes (what one offline period and the mute before an
/// abrupt leave queue at 50 messages a second), never in the shared
/// classes, which have no resumes. It is printed. The reference broker's
/// test allows none.
#[test]
fn v5_classes_are_clean_on_mosquitto() {
    let m = Mosquitto::start();
    let r = run(vec![m.addr]);
    let ctx = format!("mosquitto:\n{}\n{}", r.table(), r.json());
    let exceeded: u64 = CLASSES
        .iter()
        .map(|c| r.class(c).receive_max_exceeded)
        .sum();
    println!("mosquitto: Receive Maximum exceeded {exceeded} times");
    assert_v5_clean(&r, &ctx, MOSQUITTO_RECEIVE_MAX_ALLOWANCE);
}

/// Receive Maximum violations tolerated of mosquitto 2.0.11 per session
/// resumed (see [`v5_classes_are_clean_on_mosquitto`]).
const MOSQUITTO_RECEIVE_MAX_ALLOWANCE: u64 = 20;
