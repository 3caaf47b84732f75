//! Moving established connections between two event loops of this
//! process (the broker side of protocol 2, issue #12): the clients'
//! sockets and sessions continue on the importer with no reconnect, a
//! partial packet completes there, in-flight messages are acknowledged
//! there, no will fires at the move and it fires from the importer when
//! the client's connection dies afterwards. A thaw instead of go leaves
//! the exporter serving as before.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::time::Duration;

use emqx_handoff::broker::{Exported, Service};
use emqx_handoff::transfer::{self, Bounds, Receiver, Transfer, TransferError};
use emqx_handoff::Channel;
use emqx_mqtt::{read_packet, Level, Packet, ReasonCode, Will};
use emqx_refbroker::event_loop::ConnState;
use emqx_refbroker::snapshot::SCHEMA;
use emqx_refbroker::RefBroker;

const BOUNDS: Bounds = Bounds {
    max_conns: 100,
    max_bytes: 64 << 20,
};

fn broker(version: &str) -> RefBroker {
    RefBroker::start(
        version,
        100,
        Default::default(),
        Default::default(),
        Default::default(),
    )
    .unwrap()
}

fn pair() -> (Channel, Channel) {
    let (a, b) = Channel::pair().unwrap();
    b.set_timeout(Duration::from_secs(5)).unwrap();
    (a, b)
}

/// A client connected to `h` through a real socket pair.
fn client(h: &RefBroker, l: &TcpListener, id: &str, clean: bool, will: Option<Will>) -> TcpStream {
    let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let (stream, _) = l.accept().unwrap();
    h.serve("mqtt", stream);
    let connect = Packet::Connect {
        level: Level::V311,
        client_id: id.into(),
        keep_alive: 60,
        clean_session: clean,
        username: None,
        password: None,
        will,
        properties: Default::default(),
    };
    c.write_all(&connect.encode()).unwrap();
    assert!(matches!(
        next(&mut c),
        Packet::ConnAck {
            code: ReasonCode::SUCCESS,
            ..
        }
    ));
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
        properties: Default::default(),
    }
}

fn subscribe(c: &mut TcpStream, filter: &str, qos: u8) {
    send(c, Packet::subscribe(1, [(filter, qos)]));
    assert!(matches!(next(c), Packet::SubAck { .. }));
}

/// Freezes `old` and takes its whole state off the channel, as the new
/// broker would receive it, for the test to look into.
fn freeze(old: &RefBroker) -> (Exported, Transfer) {
    let (a, b) = pair();
    std::thread::scope(|s| {
        let exporting = s.spawn(|| {
            old.export(
                &a,
                SCHEMA,
                std::time::Instant::now() + Duration::from_secs(10),
            )
        });
        let state = transfer::recv(&b, &BOUNDS).unwrap();
        (exporting.join().unwrap().unwrap(), state)
    })
}

/// Each connection's state in `t`.
fn states(t: &Transfer) -> Vec<ConnState> {
    t.conns
        .iter()
        .map(|(_, b)| serde_json::from_slice(b).unwrap())
        .collect()
}

/// `new` imports `t` through a socketpair, within `bounds`.
fn import(new: &RefBroker, t: &Transfer, bounds: Bounds) -> Result<usize, TransferError> {
    let (a, b) = pair();
    std::thread::scope(|s| {
        s.spawn(|| {
            let conns: Vec<_> = t.conns.iter().map(|(fd, b)| (fd.as_fd(), &b[..])).collect();
            let _ = transfer::send(&a, &t.schema, &t.shared, &conns);
        });
        let mut rx = Receiver::begin(&b, &bounds)?;
        new.import(&mut rx)
    })
}

/// A new broker imports `t` (`n` connections), then `old` says go; the
/// new one stays frozen until its thaw.
fn import_then_go(old: &RefBroker, t: Transfer, n: usize) -> RefBroker {
    let new = broker("5.0.1");
    assert_eq!(import(&new, &t, BOUNDS).unwrap(), n);
    // The test's copies of the sockets go; the importer has its own.
    drop(t);
    assert_eq!(old.go(), n);
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
    let will = Will::new("wills/s", b"gone", 1, false);
    let mut s = client(&old, &l, "s", false, Some(will));
    subscribe(&mut s, "t", 1);
    let mut p = client(&old, &l, "p", true, None);
    subscribe(&mut p, "wills/#", 1);
    send(&mut p, publish("t", 1, Some(1), b"one"));
    assert_eq!(next(&mut p), Packet::puback(1));
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

    let (exported, frozen) = freeze(&old);
    assert_eq!(
        exported,
        Exported {
            conns: 2,
            left: 0,
            left_why: None
        }
    );
    let carried = states(&frozen);
    assert!(
        carried.iter().any(|c| c.inbuf == [0xC0]),
        "the partial packet is carried: {carried:?}"
    );
    // Frozen: the old broker answers nothing.
    send(&mut p, Packet::PingReq);
    quiet(&mut p);

    let new = import_then_go(&old, frozen, 2);
    // The importer serves them only from its thaw, after the exporter's
    // go: until then p's PINGREQ stays unanswered.
    quiet(&mut p);
    new.thaw();

    // The new broker answers the PINGREQ sent while frozen, completes
    // the half one, takes the late PUBACK and goes on with the next id.
    assert_eq!(next(&mut p), Packet::PingResp);
    s.write_all(&[0x00]).unwrap();
    assert_eq!(next(&mut s), Packet::PingResp);
    send(&mut s, Packet::puback(first));
    send(&mut p, publish("t", 1, Some(2), b"two"));
    assert_eq!(next(&mut p), Packet::puback(2));
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
    assert_eq!(old.connections(), 0, "the old broker holds nothing");
}

#[test]
fn a_thaw_leaves_the_old_broker_serving_as_before() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let old = broker("5.0.0");
    let mut s = client(&old, &l, "s", false, None);
    subscribe(&mut s, "t", 1);
    let (exported, frozen) = freeze(&old);
    assert_eq!(exported.conns, 1);
    send(&mut s, publish("t", 1, Some(5), b"x"));
    quiet(&mut s);
    // The importer refuses (a bound passes); the exporter thaws.
    let tight = Bounds {
        max_conns: 0,
        max_bytes: 1 << 20,
    };
    let refused = import(&broker("5.0.1"), &frozen, tight);
    assert!(
        matches!(refused, Err(TransferError::Bound(..))),
        "{refused:?}"
    );
    old.thaw();
    let got = [next(&mut s), next(&mut s)];
    assert!(got.contains(&Packet::puback(5)), "{got:?}");
    assert!(
        got.iter().any(|p| matches!(p, Packet::Publish { .. })),
        "{got:?}"
    );
}

/// A broker that implements none of protocol 2 cannot move: it says it
/// exports and imports nothing, and refuses both.
#[test]
fn a_broker_that_implements_nothing_cannot_move() {
    struct Drains;
    impl Service for Drains {
        fn serve(&self, _: &str, _: TcpStream) {}
        fn connections(&self) -> usize {
            0
        }
        fn close_all(&self) {}
    }
    assert!(Drains.schemas().imports.is_empty() && Drains.schemas().exports.is_empty());
    let (a, b) = pair();
    assert_eq!(
        Drains.export(&a, "x/1", std::time::Instant::now()),
        Err(emqx_handoff::broker::ExportError::Cannot)
    );
    transfer::send(&a, "x/1", b"", &[]).unwrap();
    let mut rx = Receiver::begin(&b, &BOUNDS).unwrap();
    assert!(matches!(
        Drains.import(&mut rx),
        Err(TransferError::Refused(_))
    ));
    // The reference broker refuses another schema.
    let (a, b) = pair();
    transfer::send(&a, "x/1", b"", &[]).unwrap();
    let mut rx = Receiver::begin(&b, &BOUNDS).unwrap();
    assert!(matches!(
        broker("5.0.1").import(&mut rx),
        Err(TransferError::Refused(_))
    ));
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
        assert_eq!(next(&mut p), Packet::puback(i + 1));
    }
    // s has read nothing: the kernel buffers are full, the rest queued.
    std::thread::sleep(Duration::from_millis(300));
    let (_, frozen) = freeze(&old);
    let queued: usize = states(&frozen).iter().map(|c| c.out.len()).sum();
    assert!(
        queued > 0,
        "nothing was left unsent: the test proves nothing"
    );
    let new = import_then_go(&old, frozen, 2);
    new.thaw();
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
