//! Moving established connections between two event loops of this
//! process (the broker side of protocol 2, issue #12): the clients'
//! sockets and sessions continue on the importer with no reconnect, a
//! partial packet completes there, in-flight messages are acknowledged
//! there, no will fires at the move and it fires from the importer when
//! the client's connection dies afterwards. A thaw instead of go leaves
//! the exporter serving as before.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use emqx_handoff::transfer::Bounds;
use emqx_handoff::Channel;
use emqx_mqtt::{read_packet, Packet, Will};
use emqx_refbroker::broker::Broker;
use emqx_refbroker::event_loop::{self, Cmd, Frozen, Handle, ReceiveError};

/// `frozen` through a SOCK_SEQPACKET socketpair, as between two brokers.
fn through_a_socketpair(frozen: Frozen, bounds: Bounds) -> Result<Frozen, ReceiveError> {
    let (a, b) = Channel::pair().unwrap();
    b.set_timeout(Duration::from_secs(5)).unwrap();
    std::thread::scope(|s| {
        s.spawn(move || {
            let _ = frozen.send(&a);
            // Our copies of the sockets close here; the receiver has its own.
        });
        Frozen::recv(&b, &bounds)
    })
}

const BOUNDS: Bounds = Bounds {
    max_conns: 100,
    max_bytes: 1 << 20,
};

fn broker(version: &str) -> Handle {
    let v = version.to_string();
    event_loop::start(move || Broker::new(&v, "$SYS/broker/version", 100)).unwrap()
}

/// A client connected to `h` through a real socket pair.
fn client(h: &Handle, l: &TcpListener, id: &str, clean: bool, will: Option<Will>) -> TcpStream {
    let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let (stream, _) = l.accept().unwrap();
    assert!(h.send(Cmd::Serve {
        listener: "mqtt".into(),
        stream
    }));
    let connect = Packet::Connect {
        client_id: id.into(),
        keep_alive: 60,
        clean_session: clean,
        username: None,
        password: None,
        will,
    };
    c.write_all(&connect.encode()).unwrap();
    assert!(matches!(next(&mut c), Packet::ConnAck { code: 0, .. }));
    c
}

fn next(c: &mut TcpStream) -> Packet {
    read_packet(c, 1 << 20).unwrap().unwrap()
}

fn send(c: &mut TcpStream, p: Packet) {
    c.write_all(&p.encode()).unwrap();
}

fn publish(topic: &str, qos: u8, id: Option<u16>, payload: &[u8]) -> Packet {
    Packet::Publish {
        topic: topic.into(),
        payload: payload.to_vec(),
        qos,
        retain: false,
        dup: false,
        packet_id: id,
    }
}

fn subscribe(c: &mut TcpStream, filter: &str, qos: u8) {
    send(
        c,
        Packet::Subscribe {
            packet_id: 1,
            filters: vec![(filter.into(), qos)],
        },
    );
    assert!(matches!(next(c), Packet::SubAck { .. }));
}

fn freeze(h: &Handle) -> Frozen {
    let (tx, rx) = mpsc::channel();
    assert!(h.send(Cmd::Freeze(tx)));
    rx.recv_timeout(Duration::from_secs(5)).unwrap()
}

/// A new loop imports `frozen` (`n` connections), then `old` says go; the
/// new loop stays frozen until its thaw.
fn import_then_go(old: &Handle, frozen: Frozen, n: usize) -> Handle {
    let new = broker("5.0.1");
    let (tx, rx) = mpsc::channel();
    assert!(new.send(Cmd::Import(frozen, tx)));
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), Ok(n));
    let (tx, rx) = mpsc::channel();
    assert!(old.send(Cmd::Go(tx)));
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), n);
    new
}

/// Nothing arrives on `c` for a little while.
fn quiet(c: &mut TcpStream) {
    c.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut b = [0u8; 1];
    match c.read(&mut b) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("expected silence, got {other:?}"),
    }
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
}

#[test]
fn connections_and_sessions_move_without_a_reconnect() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let old = broker("5.0.0");
    let will = Will {
        topic: "wills/s".into(),
        payload: b"gone".to_vec(),
        qos: 1,
        retain: false,
    };
    let mut s = client(&old, &l, "s", false, Some(will));
    subscribe(&mut s, "t", 1);
    let mut p = client(&old, &l, "p", true, None);
    subscribe(&mut p, "wills/#", 1);
    send(&mut p, publish("t", 1, Some(1), b"one"));
    assert_eq!(next(&mut p), Packet::PubAck { packet_id: 1 });
    let Packet::Publish {
        packet_id: Some(first),
        ..
    } = next(&mut s)
    else {
        panic!()
    };
    // Not acknowledged yet, and half a PINGREQ on the wire.
    s.write_all(&[0xC0]).unwrap();
    std::thread::sleep(Duration::from_millis(200));

    let frozen = freeze(&old);
    assert_eq!((frozen.conns.len(), frozen.left), (2, 0), "{frozen:?}");
    let state = frozen.conns.iter().find(|m| m.state.inbuf == [0xC0]);
    assert!(state.is_some(), "the partial packet is carried: {frozen:?}");
    // Frozen: the old broker answers nothing.
    send(&mut p, Packet::PingReq);
    quiet(&mut p);

    let frozen = through_a_socketpair(frozen, BOUNDS).unwrap();
    let new = import_then_go(&old, frozen, 2);
    // The importer serves them only from its thaw, after the exporter's
    // go: until then p's PINGREQ stays unanswered.
    quiet(&mut p);
    assert!(new.send(Cmd::Thaw));

    // The new broker answers the PINGREQ sent while frozen, completes
    // the half one, takes the late PUBACK and goes on with the next id.
    assert_eq!(next(&mut p), Packet::PingResp);
    s.write_all(&[0x00]).unwrap();
    assert_eq!(next(&mut s), Packet::PingResp);
    send(&mut s, Packet::PubAck { packet_id: first });
    send(&mut p, publish("t", 1, Some(2), b"two"));
    assert_eq!(next(&mut p), Packet::PubAck { packet_id: 2 });
    match next(&mut s) {
        Packet::Publish {
            payload,
            packet_id: Some(id),
            dup: false,
            ..
        } => {
            assert_eq!(payload, b"two");
            assert_ne!(id, first);
        }
        other => panic!("{other:?}"),
    }
    // No will at the move; one, from the new broker, when s dies.
    quiet(&mut p);
    drop(s);
    match next(&mut p) {
        Packet::Publish { topic, payload, .. } => {
            assert_eq!((topic.as_str(), &payload[..]), ("wills/s", &b"gone"[..]))
        }
        other => panic!("{other:?}"),
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        old.live.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the old broker holds nothing"
    );
}

#[test]
fn a_thaw_leaves_the_old_broker_serving_as_before() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let old = broker("5.0.0");
    let mut s = client(&old, &l, "s", false, None);
    subscribe(&mut s, "t", 1);
    let frozen = freeze(&old);
    assert_eq!(frozen.conns.len(), 1);
    send(&mut s, publish("t", 1, Some(5), b"x"));
    quiet(&mut s);
    // The importer refuses (a bound passes); the exporter thaws.
    let tight = Bounds {
        max_conns: 0,
        max_bytes: 1 << 20,
    };
    let refused = through_a_socketpair(frozen, tight);
    assert!(
        matches!(refused, Err(ReceiveError::Transfer(_))),
        "{refused:?}"
    );
    assert!(old.send(Cmd::Thaw));
    let got = [next(&mut s), next(&mut s)];
    assert!(got.contains(&Packet::PubAck { packet_id: 5 }), "{got:?}");
    assert!(
        got.iter().any(|p| matches!(p, Packet::Publish { .. })),
        "{got:?}"
    );
}

/// The same move through the library's `Service` API, as the handoff
/// server will drive it; a broker that implements none of it cannot move.
#[test]
fn the_service_api_moves_connections_and_defaults_to_none() {
    use emqx_handoff::broker::Service;
    use emqx_refbroker::RefBroker;
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let (old, new) = (
        RefBroker::start("5.0.0", 100, Default::default()).unwrap(),
        RefBroker::start("5.0.1", 100, Default::default()).unwrap(),
    );
    assert_eq!(old.schemas().exports, vec!["refbroker/1".to_string()]);
    let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    old.serve("mqtt", l.accept().unwrap().0);
    send(&mut c, Packet::connect("svc", false, 30));
    assert!(matches!(next(&mut c), Packet::ConnAck { code: 0, .. }));
    subscribe(&mut c, "t", 2);
    let export = old.freeze().unwrap();
    assert_eq!(
        (export.schema.as_str(), export.conns.len()),
        ("refbroker/1", 1)
    );
    let (a, b) = Channel::pair().unwrap();
    b.set_timeout(Duration::from_secs(5)).unwrap();
    let state = std::thread::scope(|s| {
        s.spawn(move || export.send(&a).unwrap());
        emqx_handoff::transfer::recv(&b, &BOUNDS).unwrap()
    });
    assert_eq!(new.import(state), Ok(1));
    assert_eq!(old.go(), 1);
    new.thaw();
    send(&mut c, publish("t", 2, Some(3), b"q2"));
    let got = [next(&mut c), next(&mut c)];
    assert!(got.contains(&Packet::PubRec { packet_id: 3 }), "{got:?}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!((old.connections(), new.connections()), (0, 1));

    struct Drains;
    impl Service for Drains {
        fn serve(&self, _: &str, _: TcpStream) {}
        fn connections(&self) -> usize {
            0
        }
        fn close_all(&self) {}
    }
    assert!(Drains.freeze().is_none() && Drains.schemas().imports.is_empty());
    let empty = emqx_handoff::transfer::Transfer {
        schema: "x/1".into(),
        shared: vec![],
        conns: vec![],
    };
    assert!(Drains.import(empty).is_err());
}

/// Bytes the exporter had queued and not yet written (its client reads
/// slowly) are written by the importer, every message once and in order.
#[test]
fn unsent_output_is_written_by_the_importer() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let old = broker("5.0.0");
    let mut s = client(&old, &l, "slow", true, None);
    subscribe(&mut s, "big", 1);
    let mut p = client(&old, &l, "p", true, None);
    let payload = vec![7u8; 200 * 1024];
    for i in 0..60u16 {
        send(&mut p, publish("big", 1, Some(i + 1), &payload));
        assert_eq!(next(&mut p), Packet::PubAck { packet_id: i + 1 });
    }
    // s has read nothing: the kernel buffers are full, the rest queued.
    std::thread::sleep(Duration::from_millis(300));
    let frozen = freeze(&old);
    let queued: usize = frozen.conns.iter().map(|m| m.state.out.len()).sum();
    assert!(
        queued > 0,
        "nothing was left unsent: the test proves nothing"
    );
    let frozen = through_a_socketpair(
        frozen,
        Bounds {
            max_conns: 100,
            max_bytes: 64 << 20,
        },
    )
    .unwrap();
    let new = import_then_go(&old, frozen, 2);
    assert!(new.send(Cmd::Thaw));
    // Every delivery arrives once; the in-flight window (64) holds them all.
    let mut ids = Vec::new();
    for _ in 0..60 {
        match next(&mut s) {
            Packet::Publish {
                packet_id: Some(id),
                payload: got,
                dup: false,
                ..
            } => {
                assert_eq!(got.len(), payload.len());
                ids.push(id);
            }
            other => panic!("{other:?}"),
        }
    }
    let mut sorted = ids.clone();
    sorted.dedup();
    assert_eq!(sorted.len(), 60, "no delivery twice: {ids:?}");
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in order: {ids:?}");
    quiet(&mut s);
}
