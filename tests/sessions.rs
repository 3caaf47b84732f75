//! Established MQTT sessions move with their sockets at every switch
//! (protocol 2), seen by clients this project did not write: paho-mqtt
//! persistent sessions through 50 switches under the load harness, and
//! `mosquitto_sub -c` through 10. Runs as root: brokers run as a real
//! non-root test user.

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use emqx_load::{Load, LoadOptions};
use emqx_testkit::BrokerHost;

mod clients;

use clients::{assert_paho_clean, mosquitto_sub_through_ten_switches, switch_back_and_forth, Paho};

#[test]
fn paho_persistent_sessions_stay_connected_through_fifty_switches() {
    let b = BrokerHost::running("");
    let load = Load::start(LoadOptions {
        addrs: b.addrs(),
        persistent: 4,
        publish_rate: 20.0,
        storm: 1,
        connect_timeout: Duration::from_secs(3),
        ..LoadOptions::default()
    });
    let paho = Paho::start(b.ports[0], 50, None);
    switch_back_and_forth(&b, 50);
    std::thread::sleep(Duration::from_millis(300));
    let got = paho.stop();
    let report = load.stop();
    println!("paho: {got}\n{}", report.table());
    assert_paho_clean(&got);
    assert!(report.clean(), "{}", report.table());
    assert_eq!(report.closed_by_broker, 0, "{}", report.table());
    assert_eq!(report.sessions.lost, 0, "{}", report.table());
}

#[test]
fn mosquitto_sub_stays_connected_through_ten_switches() {
    let b = BrokerHost::running("");
    mosquitto_sub_through_ten_switches(&b, b.ports[0], &[]);
}

/// 10,000 persistent sessions (the most one test process holds here with
/// the broker's 10,000 fds beside) moved in one switch: every client is
/// still connected afterwards and receives on the subscription it made
/// before.
#[test]
fn ten_thousand_persistent_sessions_move_in_one_switch() {
    use emqx_mqtt::{read_packet, Packet, ReasonCode};
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    use std::net::TcpStream;
    const N: usize = 10_000;
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    let b = BrokerHost::running("");
    let addr = b.addrs()[0];
    let mut clients = Vec::with_capacity(N);
    for i in 0..N {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut hello = Packet::connect(format!("scale-{i}"), false, 600).encode();
        hello.extend(Packet::subscribe(1, [("scale/all", 1)]).encode());
        c.write_all(&hello).unwrap();
        clients.push(c);
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let acks = [read_packet(c, 1024), read_packet(c, 1024)];
        assert!(
            matches!(
                acks[0],
                Ok(Some(Packet::ConnAck {
                    code: ReasonCode::SUCCESS,
                    ..
                }))
            ) && matches!(acks[1], Ok(Some(Packet::SubAck { .. }))),
            "client {i}: {acks:?}"
        );
    }
    let (_, err, code) = b.emqx(&["upgrade", "5.0.1"]);
    assert_eq!(code, Some(0), "{err}");
    println!("{}", err.trim());
    assert!(
        err.contains(&format!(" {N} connections moved with their sessions")),
        "{err}"
    );
    let sent = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &b.ports[0].to_string()])
        .args(["-q", "1", "-t", "scale/all", "-m", "after"])
        .status()
        .unwrap();
    assert!(sent.success());
    for (i, c) in clients.iter_mut().enumerate() {
        match read_packet(c, 1024) {
            Ok(Some(Packet::Publish {
                topic,
                payload,
                packet_id: Some(id),
                ..
            })) => {
                assert_eq!((topic.as_str(), &payload[..]), ("scale/all", &b"after"[..]));
                c.write_all(&Packet::puback(id).encode()).unwrap();
            }
            other => panic!("client {i} after the move: {other:?}"),
        }
    }
    assert_eq!(b.version_seen(0), "5.0.1");
}
