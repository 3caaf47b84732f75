//! Listeners are polled by the broker's one event loop: the thread count
//! is the same with one plain listener as with four plain and four TLS
//! ones, and every one of them serves (a plain CONNECT on the plain ones,
//! a TLS handshake on the TLS ones).

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use emqx_mqtt::Packet;
use emqx_testkit::{bins, free_port, MqttClient, Pki};

/// The broker with `listeners` (`(kind, port)`), once each accepts.
fn broker(listeners: &[(&str, u16)], pki: &Pki, dir: &std::path::Path) -> Child {
    let spec: Vec<String> = listeners
        .iter()
        .enumerate()
        .map(|(i, (kind, port))| format!("l{i}={kind}://127.0.0.1:{port}"))
        .collect();
    let server = pki.server();
    let mut child = Command::new(bins::bin("emqx-refbroker"))
        .arg("foreground")
        .env("EMQX_BROKER_VERSION", "5.0.0")
        .env("EMQX_LISTENERS", spec.join(","))
        .env("EMQX_SSL_CERTFILE", &server.cert)
        .env("EMQX_SSL_KEYFILE", &server.key)
        .env("EMQX_RUNTIME_DIR", dir)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .env_remove("EMQX_HANDOFF_SOCKET")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    for (_, port) in listeners {
        let addr = SocketAddr::from(([127, 0, 0, 1], *port));
        while TcpStream::connect(addr).is_err() {
            assert!(child.try_wait().unwrap().is_none(), "the broker exited");
            assert!(Instant::now() < deadline, "listener {port} not up");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    child
}

fn threads(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

#[test]
fn the_thread_count_does_not_grow_with_listeners_of_either_kind() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let one = [("tcp", free_port())];
    let mut a = broker(&one, &pki, dir.path());
    std::thread::sleep(Duration::from_millis(300));
    let with_one = threads(a.id());
    a.kill().unwrap();
    a.wait().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let eight: Vec<(&str, u16)> = (0..8)
        .map(|i| (if i % 2 == 0 { "tcp" } else { "ssl" }, free_port()))
        .collect();
    let mut b = broker(&eight, &pki, dir.path());
    std::thread::sleep(Duration::from_millis(300));
    let with_eight = threads(b.id());
    // Each listener serves its kind: MQTT bytes on a TLS one are closed.
    for (kind, port) in &eight {
        let addr = SocketAddr::from(([127, 0, 0, 1], *port));
        if *kind == "tcp" {
            let mut c = MqttClient::connect(addr, "t", 60);
            c.send(&Packet::PingReq);
            assert_eq!(c.recv(), Packet::PingResp);
        } else {
            let mut c = MqttClient::raw(addr);
            c.send(&Packet::connect("t", true, 60));
            assert!(
                c.closed() < Duration::from_secs(5),
                "MQTT on TLS port {port}"
            );
        }
    }
    b.kill().unwrap();
    b.wait().unwrap();
    println!("broker threads: {with_one} with 1 listener, {with_eight} with 8 (4 TLS)");
    assert_eq!(with_one, with_eight);
}
