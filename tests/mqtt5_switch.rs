//! MQTT 5 connections at a switch, until their session state moves
//! (issue #22): `refbroker/2` carries no MQTT 5 session, so an MQTT 5
//! connection stays on the old broker and drains, the helper's report
//! says why, and the client is told so (DISCONNECT 0x8B, server shutting
//! down); the MQTT 3.1.1 connections of the same switch move as before.
//! Never a 5 session imported as 3.1.1.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use emqx_mqtt::{decode_as, Level, Packet, ReasonCode};
use emqx_testkit::mqtt_client::MqttClient;
use emqx_testkit::BrokerHost;

/// An MQTT 5 client with a session that outlives its connection.
fn v5_client(addr: std::net::SocketAddr, id: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut connect = Packet::connect(id, false, 60);
    if let Packet::Connect {
        level, properties, ..
    } = &mut connect
    {
        *level = Level::V5;
        properties.session_expiry_interval = Some(300);
    }
    s.write_all(&connect.encode_as(Level::V5)).unwrap();
    match recv(&mut s) {
        Some(Packet::ConnAck { code, .. }) => assert_eq!(code, ReasonCode::SUCCESS),
        other => panic!("{other:?}"),
    }
    s
}

/// The next MQTT 5 packet, or none at the end of the stream.
fn recv(s: &mut TcpStream) -> Option<Packet> {
    let mut buf = Vec::new();
    loop {
        if let Ok(Some((p, _))) = decode_as(&buf, 1 << 20, Level::V5) {
            return Some(p);
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[test]
fn an_mqtt5_connection_drains_with_its_reason_and_311_ones_move() {
    let b = BrokerHost::running("");
    let addr = b.addrs()[0];
    let mut v5 = v5_client(addr, "five");
    let mut old = MqttClient::connect(addr, "three", 60);
    let (out, err, code) = b.emqx(&["upgrade", "5.0.1"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        err.contains("1 connections moved with their sessions"),
        "{err}"
    );
    assert!(
        err.contains("refbroker/2 carries no MQTT 5 session"),
        "the report says why: {err}"
    );
    // The 3.1.1 client goes on, on the new broker.
    old.send(&Packet::PingReq);
    assert_eq!(old.recv(), Packet::PingResp);
    // The 5 client is told, then closed, at the end of the drain.
    match recv(&mut v5) {
        Some(Packet::Disconnect { reason, .. }) => {
            assert_eq!(reason, ReasonCode::SERVER_SHUTTING_DOWN)
        }
        other => panic!("{other:?}"),
    }
    assert!(recv(&mut v5).is_none());
}
