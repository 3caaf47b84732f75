//! MQTT 5 sessions at a switch (issue #22): they move in `refbroker/3`
//! with every piece of their state. paho-mqtt MQTT 5 clients (session
//! expiry, topic aliases both ways, receive maximum 2 at QoS 1 and 2, a
//! shared subscription, user properties) through 50 switches under the
//! load harness; timers continuing across a move (a delayed will, an
//! offline session's expiry, a queued message's expiry); and a downgrade
//! to a release that imports only `refbroker/1`, where the 3.1.1
//! sessions move and the MQTT 5 ones drain with the reason printed and
//! DISCONNECT 0x8B, never imported as 3.1.1.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use emqx_load::{Load, LoadOptions};
use emqx_mqtt::{decode_as, Level, Packet, Properties, ReasonCode, Will};
use emqx_testkit::mqtt_client::MqttClient;
use emqx_testkit::BrokerHost;

mod clients;

use clients::{switch_back_and_forth, Paho, SESSIONS5};

/// An MQTT 5 client `id` whose session lives `expiry` seconds after its
/// connection, with `will`; and whether its session was there.
fn v5_client(addr: SocketAddr, id: &str, expiry: u32, will: Option<Will>) -> (TcpStream, bool) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let connect = Packet::Connect {
        level: Level::V5,
        client_id: id.into(),
        keep_alive: 60,
        clean_session: false,
        username: None,
        password: None,
        will,
        properties: Properties {
            session_expiry_interval: Some(expiry),
            ..Properties::default()
        },
    };
    s.write_all(&connect.encode_as(Level::V5)).unwrap();
    match recv(&mut s) {
        Some(Packet::ConnAck {
            code,
            session_present,
            ..
        }) => {
            assert_eq!(code, ReasonCode::SUCCESS);
            (s, session_present)
        }
        other => panic!("{other:?}"),
    }
}

/// The next MQTT 5 packet, or none at the end of the stream (or after
/// the read timeout).
fn recv(s: &mut TcpStream) -> Option<Packet> {
    let mut buf = Vec::new();
    loop {
        if let Ok(Some((p, n))) = decode_as(&buf, 1 << 20, Level::V5) {
            assert_eq!(n, buf.len(), "one packet at a time here");
            return Some(p);
        }
        let mut byte = [0u8; 1];
        match s.read(&mut byte) {
            Ok(0) | Err(_) => return None,
            Ok(_) => buf.push(byte[0]),
        }
    }
}

fn send(s: &mut TcpStream, p: &Packet) {
    s.write_all(&p.encode_as(Level::V5)).unwrap();
}

fn subscribe(s: &mut TcpStream, filter: &str) {
    send(s, &Packet::subscribe(1, [(filter, 1)]));
    assert!(matches!(recv(s), Some(Packet::SubAck { .. })));
}

fn publish(s: &mut TcpStream, topic: &str, id: u16, expiry: u32) {
    let p = Packet::Publish {
        topic: topic.into(),
        payload: format!("expires in {expiry}").into_bytes(),
        qos: 1,
        retain: false,
        dup: false,
        packet_id: Some(id),
        properties: Properties {
            message_expiry_interval: Some(expiry),
            ..Properties::default()
        },
    };
    send(s, &p);
    assert!(matches!(recv(s), Some(Packet::PubAck { .. })));
}

fn upgrade(b: &BrokerHost, args: &[&str]) -> String {
    let (out, err, code) = b.emqx(args);
    assert_eq!(code, Some(0), "{out}{err}\nlog:\n{}", b.log_text());
    err
}

#[test]
fn paho_mqtt5_sessions_keep_their_state_through_fifty_switches() {
    let b = BrokerHost::running("");
    let load = Load::start(LoadOptions::moving(b.addrs()));
    let paho = Paho::run(SESSIONS5, b.ports[0], 30, None);
    switch_back_and_forth(&b, 50);
    std::thread::sleep(Duration::from_millis(300));
    let got = paho.stop();
    let report = load.stop();
    println!("paho MQTT 5: {got}\n{}", report.table());
    let n = |k: &str| got[k].as_u64().unwrap();
    assert!(n("acked") > 0 && n("acked") == n("sent"), "{got}");
    // Two subscribers get both publishers' messages; the group gets the
    // third publisher's once between them.
    assert!(n("received") >= n("acked") * 5 / 3, "{got}");
    for k in [
        "lost",
        "dup",
        "out_of_order",
        "damaged",
        "sub_id",
        "alias",
        "receive_max",
    ] {
        assert_eq!(n(k), 0, "{k}: {got}");
    }
    for (client, d) in got["disconnects"].as_object().unwrap() {
        assert_eq!(d.as_u64(), Some(0), "{client} was disconnected: {got}");
    }
    for (client, c) in got["connects"].as_object().unwrap() {
        assert_eq!(c.as_u64(), Some(1), "{client} connected again: {got}");
    }
    for (member, m) in got["group_split"].as_object().unwrap() {
        assert!(
            m.as_u64() > Some(0),
            "{member} of the group got none: {got}"
        );
    }
    assert!(report.clean(), "{}", report.table());
    assert_eq!(report.closed_by_broker, 0, "{}", report.table());
}

/// Seconds since `t0`, for the messages.
fn at(t0: Instant) -> f64 {
    t0.elapsed().as_secs_f64()
}

#[test]
fn timers_continue_across_a_move() {
    let b = BrokerHost::running("");
    let addr = b.addrs()[0];
    let (mut watcher, _) = v5_client(addr, "watcher", 60, None);
    subscribe(&mut watcher, "timers/will");
    // Offline sessions of 10 s, and a queue holding a message of 10 s and
    // one of 3 s.
    let (mut probe_early, _) = v5_client(addr, "early", 10, None);
    let (mut probe_late, _) = v5_client(addr, "late", 10, None);
    let (mut queue, _) = v5_client(addr, "queue", 60, None);
    let (mut queue_late, _) = v5_client(addr, "queue-late", 60, None);
    subscribe(&mut queue, "timers/q");
    subscribe(&mut queue_late, "timers/q");
    let (mut publisher, _) = v5_client(addr, "publisher", 0, None);
    let t0 = Instant::now();
    for s in [
        &mut probe_early,
        &mut probe_late,
        &mut queue,
        &mut queue_late,
    ] {
        send(s, &Packet::disconnect());
    }
    publish(&mut publisher, "timers/q", 1, 10);
    publish(&mut publisher, "timers/q", 2, 3);
    // A will of 5 s whose client dies 3 s before the switch.
    let mut will = Will::new("timers/will", b"late", 1, false);
    will.properties.will_delay_interval = Some(5);
    let (dying, _) = v5_client(addr, "dying", 60, Some(will));
    std::thread::sleep(Duration::from_secs(3) - t0.elapsed().min(Duration::from_secs(3)));
    drop(dying);
    std::thread::sleep(Duration::from_secs(6) - t0.elapsed().min(Duration::from_secs(6)));
    let err = upgrade(&b, &["upgrade", "5.0.1"]);
    let switched = at(t0);
    assert!(
        err.contains(" 2 connections moved with their sessions"),
        "{err}"
    );
    assert_eq!(b.version_seen(0), "5.0.1");
    // The queued message of 10 s, 6 s old: delivered with 4 s left; the
    // one of 3 s not at all.
    let (mut queue, present) = v5_client(addr, "queue", 60, None);
    assert!(present);
    match recv(&mut queue) {
        Some(Packet::Publish {
            payload,
            properties,
            packet_id: Some(id),
            ..
        }) => {
            assert_eq!(payload, b"expires in 10", "at {:.1} s", at(t0));
            let left = properties.message_expiry_interval.unwrap();
            assert!((3..=4).contains(&left), "{left} s left at {:.1} s", at(t0));
            send(&mut queue, &Packet::puback(id));
        }
        other => panic!("{other:?}"),
    }
    queue
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    assert_eq!(recv(&mut queue), None, "the expired message never comes");
    // The will, once, from the new broker, about 2 s after the switch.
    match recv(&mut watcher) {
        Some(Packet::Publish {
            topic, packet_id, ..
        }) => {
            let when = at(t0);
            assert_eq!(topic, "timers/will");
            assert!(
                (7.5..9.9).contains(&when),
                "the will came at {when:.1} s (switch at {switched:.1} s)"
            );
            send(&mut watcher, &Packet::puback(packet_id.unwrap()));
        }
        other => panic!("no will: {other:?}"),
    }
    // Sessions of 10 s, 6 s old at the switch: there 2.5 s after, gone
    // 5.5 s after.
    std::thread::sleep(Duration::from_millis(8_500).saturating_sub(t0.elapsed()));
    assert!(v5_client(addr, "early", 10, None).1, "at {:.1} s", at(t0));
    std::thread::sleep(Duration::from_millis(11_500).saturating_sub(t0.elapsed()));
    assert!(!v5_client(addr, "late", 10, None).1, "at {:.1} s", at(t0));
    let (mut late_queue, present) = v5_client(addr, "queue-late", 60, None);
    assert!(present);
    late_queue
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    assert_eq!(recv(&mut late_queue), None, "expired while queued");
    watcher
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    assert_eq!(recv(&mut watcher), None, "the will came once");
}

#[test]
fn a_release_importing_only_refbroker_1_drains_mqtt5_with_the_reason() {
    let mut b = BrokerHost::new("");
    b.drop_broker_release("5.0.0", true, "imports = [\"refbroker/1\"]\n");
    b.drop_broker_release("5.0.1", false, "");
    let (_, err, code) = b.emqx(&["install", "5.0.0"]);
    assert_eq!(code, Some(0), "{err}");
    b.start();
    let addr = b.addrs()[0];
    upgrade(&b, &["upgrade", "5.0.1"]);
    let (mut v5, _) = v5_client(addr, "five", 300, None);
    let mut old = MqttClient::connect(addr, "three", 60);
    let err = upgrade(&b, &["downgrade", "5.0.0"]);
    assert!(
        err.contains("1 connections moved with their sessions"),
        "{err}"
    );
    assert!(
        err.contains("refbroker/1 carries no MQTT 5 session"),
        "the report says why: {err}"
    );
    // The 3.1.1 client goes on, on the old release.
    old.send(&Packet::PingReq);
    assert_eq!(old.recv(), Packet::PingResp);
    assert_eq!(b.version_seen(0), "5.0.0");
    // The 5 client is told, then closed, at the end of the drain.
    match recv(&mut v5) {
        Some(Packet::Disconnect { reason, .. }) => {
            assert_eq!(reason, ReasonCode::SERVER_SHUTTING_DOWN)
        }
        other => panic!("{other:?}"),
    }
    assert!(recv(&mut v5).is_none());
}
