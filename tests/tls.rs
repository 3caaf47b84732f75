//! TLS sessions move at every switch, socket, MQTT session and TLS state
//! together (design.md, "Moving TLS sessions"), seen by clients this
//! project did not write: paho-mqtt over TLS 1.2 and 1.3 through 50
//! switches under the load harness (itself half TLS), `mosquitto_sub
//! --cafile` through 10, a mutual-TLS client keeping its certificate's
//! identity. The awkward moments (half a record at the freeze, megabytes
//! queued for a client that reads nothing, a key update right after a
//! move) use the project's own s2n client, which can stop anywhere. A
//! switch to the same release rotates the certificate; a key that does
//! not match fails it and changes nothing. Runs as root: brokers run as
//! a real non-root test user.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use emqx_load::{ClientFiles, Load, LoadOptions, LoadTls};
use emqx_mqtt::Packet;
use emqx_testkit::procfs::status;
use emqx_testkit::tls_client::{client_config, TlsClient};
use emqx_testkit::{BrokerHost, MqttClient};
use emqx_tls::{Engine, Side};

mod clients;

use clients::{assert_paho_clean, mosquitto_sub_through_ten_switches, switch_back_and_forth, Paho};

/// The move tests' load with every other client on the TLS listener.
fn tls_load(b: &BrokerHost) -> Load {
    let tls = b.tls.as_ref().unwrap();
    Load::start(LoadOptions {
        tls: Some(LoadTls {
            addr: b.tls_addr().unwrap(),
            files: ClientFiles {
                ca: tls.pki.ca(),
                identity: None,
            },
            every: false,
        }),
        ..LoadOptions::moving(b.addrs())
    })
}

/// A TLS client of the project's own engine, connected as `id` with a
/// persistent session: it can write part of a record, stop reading, or
/// update its keys when told.
fn tls_client(b: &BrokerHost, id: &str) -> TlsClient {
    let config = client_config(&b.tls.as_ref().unwrap().pki.ca());
    TlsClient::connect(b.tls_addr().unwrap(), &config, id, false)
        .unwrap()
        .0
}

/// The PUBACK of `id` and the client's own message back (it subscribed
/// to the topic), in either order, and nothing else.
fn expect_ack_and_echo(c: &mut TlsClient, id: u16, payload: &[u8]) {
    let mut got = [c.recv().unwrap(), c.recv().unwrap()];
    got.sort_by_key(|p| matches!(p, Packet::Publish { .. }));
    assert_eq!(got[0], Packet::puback(id));
    assert!(
        matches!(&got[1], Packet::Publish { payload: p, .. } if p == payload),
        "{got:?}"
    );
}

fn publish(topic: &str, id: u16, payload: Vec<u8>) -> Packet {
    Packet::Publish {
        topic: topic.into(),
        payload,
        qos: 1,
        retain: false,
        dup: false,
        packet_id: Some(id),
        properties: Default::default(),
    }
}

/// One switch that must move connections.
fn switch(b: &BrokerHost, to: &str) -> String {
    let cmd = if to == "5.0.1" {
        "upgrade"
    } else {
        "downgrade"
    };
    let (out, err, code) = b.emqx(&[cmd, to]);
    assert_eq!(code, Some(0), "{out}{err}\n{}", b.log_text());
    assert!(
        err.contains("connections moved with their sessions"),
        "{err}"
    );
    err
}

#[test]
fn paho_over_tls_1_2_and_1_3_stays_connected_through_fifty_switches() {
    let b = BrokerHost::running_tls("");
    let load = tls_load(&b);
    let tls = b.tls.as_ref().unwrap();
    let paho = Paho::start(tls.port, 50, Some(&tls.pki.ca()));
    switch_back_and_forth(&b, 50);
    std::thread::sleep(Duration::from_millis(300));
    let got = paho.stop();
    let report = load.stop();
    println!("paho: {got}\n{}", report.table());
    assert_paho_clean(&got);
    assert_eq!(got["tls"]["sub-q1"], "TLSv1.2", "{got}");
    assert_eq!(got["tls"]["pub-q1"], "TLSv1.2", "{got}");
    assert_eq!(got["tls"]["sub-q2"], "TLSv1.3", "{got}");
    assert!(report.tls > 0, "{}", report.table());
    assert!(report.clean(), "{}", report.table());
    assert_eq!(report.closed_by_broker, 0, "{}", report.table());
    assert_eq!(report.sessions.lost, 0, "{}", report.table());
}

#[test]
fn mosquitto_sub_over_tls_stays_connected_through_ten_switches() {
    let b = BrokerHost::running_tls("");
    let tls = b.tls.as_ref().unwrap();
    let ca = tls.pki.ca().display().to_string();
    mosquitto_sub_through_ten_switches(&b, tls.port, &["--cafile", &ca]);
}

#[test]
fn a_mutual_tls_client_moves_with_its_identity_and_one_without_a_certificate_is_still_refused() {
    let mut b = BrokerHost::new("");
    b.with_tls();
    for (k, v) in [
        ("EMQX_SSL_VERIFY", "verify_peer"),
        ("EMQX_SSL_FAIL_IF_NO_PEER_CERT", "true"),
        ("EMQX_SSL_PEER_CERT_AS_USERNAME", "cn"),
        ("EMQX_LOG_LEVEL", "debug"),
    ] {
        b.env.push((k.into(), v.into()));
    }
    b.drop_broker_release("5.0.0", true, "");
    b.drop_broker_release("5.0.1", false, "");
    assert_eq!(b.emqx(&["install", "5.0.0"]).2, Some(0));
    b.start();
    let tls = b.tls.as_ref().unwrap();
    let client = tls.pki.client();
    let (ca, cert, key) = (
        tls.pki.ca().display().to_string(),
        client.cert.display().to_string(),
        client.key.display().to_string(),
    );
    let with_cert = ["--cafile", &ca, "--cert", &cert, "--key", &key];
    mosquitto_sub_through_ten_switches(&b, tls.port, &with_cert);
    // The last broker took the connection over with its certificate's
    // name, never from a CONNECT of its own, restored into a TLS
    // connection it made before the move.
    let log = b.log_text();
    assert!(
        log.contains("TLS connections made ahead of the move: 1 (1 established"),
        "{log}"
    );
    assert!(
        log.contains("moved-sub\" moved in over TLS, certificate CN \"device-1\""),
        "{log}"
    );
    let port = tls.port.to_string();
    let anonymous = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port, "--cafile", &ca])
        .args(["-t", "x", "-m", "no certificate"])
        .output()
        .unwrap();
    assert!(
        !anonymous.status.success(),
        "a client without a certificate got in"
    );
}

/// Half a TLS record written before the freeze, the rest after: the new
/// broker gets the whole PUBLISH, acks it and delivers it, once.
#[test]
fn half_a_record_at_the_freeze_is_delivered_whole_once_by_the_new_broker() {
    let b = BrokerHost::running_tls("");
    let mut c = tls_client(&b, "half-record");
    c.subscribe("half/t").unwrap();
    let wire = c.encrypt(&publish("half/t", 7, b"split".to_vec())).unwrap();
    let half = wire.len() / 2;
    c.stream.write_all(&wire[..half]).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    switch(&b, "5.0.1");
    c.stream.write_all(&wire[half..]).unwrap();
    expect_ack_and_echo(&mut c, 7, b"split");
    // Nothing more: a ping's answer is the next packet.
    c.send(&Packet::PingReq).unwrap();
    assert_eq!(c.recv().unwrap(), Packet::PingResp);
    assert_eq!(b.version_seen(0), "5.0.1");
}

/// A client that reads nothing while megabytes wait for it: all of it
/// moves (ciphertext and queue), and it then reads every message once,
/// in order.
#[test]
fn megabytes_queued_for_a_client_that_reads_nothing_arrive_once_in_order() {
    const N: usize = 800;
    let mut b = BrokerHost::new("");
    b.with_tls();
    b.env.push(("EMQX_MAX_QUEUED".into(), "5000".into()));
    b.drop_broker_release("5.0.0", true, "");
    b.drop_broker_release("5.0.1", false, "");
    assert_eq!(b.emqx(&["install", "5.0.0"]).2, Some(0));
    b.start();
    let mut slow = tls_client(&b, "slow-reader");
    slow.subscribe("slow/t").unwrap();
    let mut publisher = MqttClient::connect(b.addrs()[0], "slow-publisher", 600);
    for i in 0..N {
        let mut payload = format!("{i:06}").into_bytes();
        payload.resize(4096, b'.');
        publisher.publish("slow/t", &payload, 1, false);
    }
    std::thread::sleep(Duration::from_millis(300));
    switch(&b, "5.0.1");
    let mut seen = Vec::new();
    while seen.len() < N {
        match slow.recv().unwrap() {
            Packet::Publish {
                payload, packet_id, ..
            } => {
                seen.push(String::from_utf8_lossy(&payload[..6]).into_owned());
                if let Some(id) = packet_id {
                    slow.send(&Packet::puback(id)).unwrap();
                }
            }
            other => panic!("{other:?}"),
        }
    }
    let want: Vec<String> = (0..N).map(|i| format!("{i:06}")).collect();
    assert_eq!(seen, want, "every message once, in order");
    slow.send(&Packet::PingReq).unwrap();
    assert_eq!(slow.recv().unwrap(), Packet::PingResp, "and nothing more");
}

/// A TLS 1.3 key update right after a move: the new broker follows it.
#[test]
fn a_key_update_right_after_a_move_is_followed() {
    let b = BrokerHost::running_tls("");
    let mut c = tls_client(&b, "key-update");
    c.subscribe("ku/t").unwrap();
    switch(&b, "5.0.1");
    c.engine.key_update().unwrap();
    c.send(&publish("ku/t", 9, b"after".to_vec())).unwrap();
    expect_ack_and_echo(&mut c, 9, b"after");
    switch(&b, "5.0.0");
    c.send(&Packet::PingReq).unwrap();
    assert_eq!(
        c.recv().unwrap(),
        Packet::PingResp,
        "and through the next switch"
    );
}

/// The serial of the certificate a new TLS connection is shown.
fn serial_seen(b: &BrokerHost) -> String {
    let tls = b.tls.as_ref().unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect 127.0.0.1:{} -CAfile {} </dev/null 2>/dev/null | openssl x509 -noout -serial",
            tls.port,
            tls.pki.ca().display()
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_reload_rotates_the_certificate_and_a_mismatched_key_changes_nothing() {
    let b = BrokerHost::running_tls("");
    let load = tls_load(&b);
    let mut c = tls_client(&b, "rotation");
    c.subscribe("rot/t").unwrap();
    assert_eq!(serial_seen(&b), "serial=1001");
    let pki = &b.tls.as_ref().unwrap().pki;
    pki.issue("server", "localhost", 4098, true);
    let (out, err, code) = b.emqx(&["reload"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        err.contains("connections moved with their sessions"),
        "{err}"
    );
    assert_eq!(
        serial_seen(&b),
        "serial=1002",
        "new connections: the new certificate"
    );
    // A key of no certificate: the new broker cannot start, the switch
    // fails in one line, the broker that serves keeps its certificate.
    let stray = pki.stray_key("stray");
    std::fs::copy(&stray, pki.server().key).unwrap();
    let before = b.host.state();
    let (out, err, code) = b.emqx(&["reload"]);
    assert_eq!(code, Some(5), "{out}{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("the new broker exited with code 2"), "{err}");
    assert!(err.contains("its own line says why, in /"), "{err}");
    // The broker's own line says why (in its log, or the journal).
    let why = format!(
        "does not match the certificate {}",
        pki.server().cert.display()
    );
    assert!(b.log_text().contains(&why), "{}", b.log_text());
    assert_eq!(b.host.state(), before);
    assert_eq!(serial_seen(&b), "serial=1002");
    c.send(&publish("rot/t", 3, b"still here".to_vec()))
        .unwrap();
    expect_ack_and_echo(&mut c, 3, b"still here");
    let report = load.stop();
    println!("{}", report.table());
    assert!(report.tls > 0 && report.clean(), "{}", report.table());
    assert_eq!(report.closed_by_broker, 0, "{}", report.table());
}

/// Waits until the broker closes `s` (EOF or reset), at most `bound`.
fn closed_within(s: &mut TcpStream, bound: Duration) -> bool {
    s.set_read_timeout(Some(bound)).unwrap();
    let mut buf = [0u8; 4096];
    let until = Instant::now() + bound;
    while Instant::now() < until {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return true,
            Ok(_) => {}
        }
    }
    false
}

#[test]
fn bad_input_on_the_tls_port_is_closed_and_everyone_else_is_served() {
    let b = BrokerHost::running_tls("");
    let addr: SocketAddr = b.tls_addr().unwrap();
    let pid = b.broker_pid();
    // Plain MQTT on the TLS port.
    let mut plain = TcpStream::connect(addr).unwrap();
    plain
        .write_all(&Packet::connect("plain", true, 60).encode())
        .unwrap();
    assert!(
        closed_within(&mut plain, Duration::from_secs(5)),
        "plain MQTT"
    );
    // Garbage after a good handshake.
    let mut c = tls_client(&b, "garbage");
    c.stream.write_all(&[0x17, 0x03, 0x03, 0x00, 0x20]).unwrap();
    c.stream.write_all(&[0xAB; 32]).unwrap();
    assert!(
        closed_within(&mut c.stream, Duration::from_secs(5)),
        "garbage"
    );
    // 1,000 half-open handshakes: a truncated ClientHello each.
    let config = client_config(&b.tls.as_ref().unwrap().pki.ca());
    let mut hello = Engine::new(&config, Side::Client, Some("localhost")).unwrap();
    hello.process(&mut Vec::new()).unwrap();
    let mut wire = Vec::new();
    hello.write_to(&mut wire).unwrap();
    let half_open = || -> Vec<TcpStream> {
        (0..1000)
            .map(|_| {
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(&wire[..wire.len() / 2]).unwrap();
                s
            })
            .collect()
    };
    let baseline = status(pid, "VmRSS:");
    let mut first = half_open();
    std::thread::sleep(Duration::from_millis(500));
    let peak = status(pid, "VmRSS:");
    // Everyone else is served meanwhile, on both kinds of listener.
    assert_eq!(b.version_seen(0), "5.0.0");
    let mut probe = tls_client(&b, "probe");
    probe.send(&Packet::PingReq).unwrap();
    assert_eq!(probe.recv().unwrap(), Packet::PingResp);
    // The CONNECT deadline (10 s) closes every one of them.
    for s in &mut first {
        assert!(closed_within(s, Duration::from_secs(15)), "half-open");
    }
    drop(first);
    std::thread::sleep(Duration::from_millis(1500));
    let after = status(pid, "VmRSS:");
    // What they held is the broker's allocator's again: a second round
    // of as many (closed by the clients this time) takes no more.
    let second = half_open();
    std::thread::sleep(Duration::from_millis(500));
    drop(second);
    std::thread::sleep(Duration::from_millis(1500));
    let again = status(pid, "VmRSS:");
    println!(
        "broker RSS KiB: {baseline} before, {peak} with 1,000 half-open handshakes, \
         {after} once they were closed, {again} after 1,000 more"
    );
    assert!(
        again <= after + after / 10,
        "memory did not return for reuse: {baseline} -> {peak} -> {after} -> {again} KiB"
    );
    probe.send(&Packet::PingReq).unwrap();
    assert_eq!(probe.recv().unwrap(), Packet::PingResp);
}
