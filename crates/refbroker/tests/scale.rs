//! 10,000 persistent sessions with one subscription each on the reference
//! broker: one publish reaches every one of them, and the broker's thread
//! count is the same at 10 connections and at 10,000.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use emqx_mqtt::{read_packet, Packet, ReasonCode};
use emqx_testkit::RefBroker;

const CLIENTS: usize = 10_000;

fn threads(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap()
}

/// CONNECT (clean_session=0) and SUBSCRIBE sent together; CONNACK and
/// SUBACK checked.
fn subscriber(addr: std::net::SocketAddr, n: usize) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut bytes = Packet::connect(format!("scale-{n}"), false, 0).encode();
    bytes.extend(Packet::subscribe(1, [("scale/all", 1)]).encode());
    s.write_all(&bytes).unwrap();
    assert!(matches!(
        read_packet(&mut s, 1 << 20).unwrap(),
        Some(Packet::ConnAck {
            code: ReasonCode::SUCCESS,
            ..
        })
    ));
    assert!(matches!(
        read_packet(&mut s, 1 << 20).unwrap(),
        Some(Packet::SubAck { .. })
    ));
    s
}

#[test]
fn ten_thousand_sessions_one_publish_flat_thread_count() {
    // The test holds the clients' fds: the hard limit is 20,000 here.
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    assert!(
        hard >= 12_000,
        "this test needs 12,000 fds, the hard limit is {hard}"
    );
    let b = RefBroker::start();
    let addr = b.addrs[0];
    let pid = b.child.id();
    let mut clients: Vec<TcpStream> = (0..10).map(|n| subscriber(addr, n)).collect();
    let at_10 = threads(pid);
    let started = Instant::now();
    clients.extend((10..CLIENTS).map(|n| subscriber(addr, n)));
    let connect_time = started.elapsed();
    let at_10k = threads(pid);
    assert_eq!(
        at_10, at_10k,
        "threads at 10 connections: {at_10}, at {CLIENTS}: {at_10k}"
    );
    let mut publisher = TcpStream::connect(addr).unwrap();
    let mut bytes = Packet::connect("scale-pub", true, 0).encode();
    bytes.extend(
        Packet::Publish {
            topic: "scale/all".into(),
            payload: b"to everyone".to_vec(),
            qos: 1,
            retain: false,
            dup: false,
            packet_id: Some(1),
            properties: Default::default(),
        }
        .encode(),
    );
    publisher.write_all(&bytes).unwrap();
    let sent = Instant::now();
    for (n, c) in clients.iter_mut().enumerate() {
        match read_packet(c, 1 << 20).unwrap() {
            Some(Packet::Publish { payload, qos, .. }) => {
                assert_eq!((&payload[..], qos), (&b"to everyone"[..], 1), "client {n}")
            }
            other => panic!("client {n} got {other:?}"),
        }
    }
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().to_string()))
        .unwrap();
    eprintln!(
        "{CLIENTS} sessions connected in {:.1} s; one publish reached all in {:.0} ms; broker threads {at_10k}, RSS {rss}",
        connect_time.as_secs_f64(),
        sent.elapsed().as_secs_f64() * 1000.0
    );
}
