//! WebSocket connections moved between two brokers of one process
//! (issue #24), at the awkward moments the issue names: an MQTT packet
//! split over three frames with the move between them, a ping frame sent
//! while frozen, and a client in the middle of its HTTP upgrade request
//! at the freeze. Each goes on with the new broker, nothing reset. And
//! what a WebSocket connection's keep-alive counts: MQTT, not pings.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::time::Duration;

use emqx_handoff::broker::Service;
use emqx_handoff::transfer::{self, Bounds, Receiver};
use emqx_handoff::Channel;
use emqx_mqtt::{decode_as, Level, Packet};
use emqx_refbroker::event_loop::Listening;
use emqx_refbroker::settings::ListenerKind;
use emqx_refbroker::snapshot::SCHEMA_WEBSOCKET;
use emqx_refbroker::RefBroker;
use emqx_ws::frames::{self, Control, Reader, Side};
use emqx_ws::handshake::{client_check, client_request};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const MASK: Option<[u8; 4]> = Some([1, 2, 3, 4]);

fn broker(version: &str) -> RefBroker {
    let kinds = HashMap::from([("ws".to_string(), ListenerKind::Ws)]);
    let listening = Listening::new(kinds, None);
    RefBroker::start(
        version,
        100,
        Default::default(),
        listening,
        Default::default(),
    )
    .unwrap()
}

/// A WebSocket client: its socket and what it has read of the server's
/// frames.
struct Ws {
    s: TcpStream,
    reader: Reader,
    data: Vec<u8>,
    controls: Vec<Control>,
}

impl Ws {
    /// Connected to `h` through `l`, the upgrade request not sent.
    fn raw(h: &RefBroker, l: &TcpListener) -> Ws {
        let s = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let (stream, _) = l.accept().unwrap();
        h.serve("ws", stream);
        Ws {
            s,
            reader: Reader::default(),
            data: Vec::new(),
            controls: Vec::new(),
        }
    }

    /// Reads the 101 answer to a request already sent.
    fn upgraded(&mut self) {
        let mut got = Vec::new();
        let n = loop {
            let mut b = [0u8; 512];
            let k = self.s.read(&mut b).unwrap();
            assert!(k > 0, "closed during the upgrade");
            got.extend_from_slice(&b[..k]);
            if let Some(n) = client_check(&got, KEY).unwrap() {
                break n;
            }
        };
        self.feed(&got[n..]);
    }

    /// Upgraded and logged in as `id` (MQTT 5).
    fn connect(h: &RefBroker, l: &TcpListener, id: &str) -> Ws {
        let mut c = Ws::raw(h, l);
        c.s.write_all(&client_request("x", "/mqtt", KEY)).unwrap();
        c.upgraded();
        c.send(&Packet::connect(id, true, 60).encode());
        assert!(matches!(c.packet(), Packet::ConnAck { .. }));
        c
    }

    fn feed(&mut self, bytes: &[u8]) {
        self.reader
            .feed(
                Side::Client,
                bytes,
                1 << 20,
                &mut self.data,
                &mut self.controls,
            )
            .unwrap();
    }

    /// Sends `mqtt` in one masked binary frame.
    fn send(&mut self, mqtt: &[u8]) {
        let mut f = Vec::new();
        frames::binary(mqtt, MASK, &mut f);
        self.s.write_all(&f).unwrap();
    }

    /// The next MQTT packet from the server.
    fn packet(&mut self) -> Packet {
        loop {
            if let Ok(Some((p, n))) = decode_as(&self.data, 1 << 20, Level::V311) {
                self.data.drain(..n);
                return p;
            }
            let mut b = [0u8; 4096];
            let k = self.s.read(&mut b).unwrap();
            assert!(k > 0, "closed");
            self.feed(&b[..k]);
        }
    }
}

/// `old` exports everything to a new broker, which imports it; `old`
/// says go; the new one is thawed.
fn switch(old: &RefBroker, n: usize) -> RefBroker {
    let (a, b) = Channel::pair().unwrap();
    b.set_timeout(Duration::from_secs(5)).unwrap();
    let state = std::thread::scope(|s| {
        let exporting = s.spawn(|| {
            old.export(
                &a,
                SCHEMA_WEBSOCKET,
                std::time::Instant::now() + Duration::from_secs(10),
            )
        });
        let bounds = Bounds {
            max_conns: 100,
            max_bytes: 64 << 20,
        };
        let state = transfer::recv(&b, &bounds).unwrap();
        assert_eq!(exporting.join().unwrap().unwrap().conns, n);
        state
    });
    let new = broker("5.0.1");
    let (a, b) = Channel::pair().unwrap();
    b.set_timeout(Duration::from_secs(5)).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            let conns: Vec<_> = state
                .conns
                .iter()
                .map(|(fd, b)| (fd.as_fd(), &b[..]))
                .collect();
            let _ = transfer::send(&a, &state.schema, &state.shared, &conns);
        });
        let bounds = Bounds {
            max_conns: 100,
            max_bytes: 64 << 20,
        };
        let mut rx = Receiver::begin(&b, &bounds).unwrap();
        assert_eq!(new.import(&mut rx).unwrap(), n);
    });
    drop(state);
    assert_eq!(old.go(), n);
    new.thaw();
    new
}

#[test]
fn websocket_connections_move_mid_frame_mid_upgrade_and_with_a_ping_pending() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let old = broker("5.0.0");
    let mut sub = Ws::connect(&old, &l, "sub");
    sub.send(&Packet::subscribe(1, [("t", 1)]).encode());
    assert!(matches!(sub.packet(), Packet::SubAck { .. }));
    let mut publisher = Ws::connect(&old, &l, "pub");
    // A PUBLISH in three frames: the first whole and half the second
    // before the move.
    let publish = Packet::publish("t", b"split", 1, false, 7).encode();
    let parts = [&publish[..3], &publish[3..6], &publish[6..]];
    let mut second = Vec::new();
    frames::binary(parts[1], MASK, &mut second);
    let mut first = Vec::new();
    frames::binary(parts[0], MASK, &mut first);
    first.extend_from_slice(&second[..3]);
    publisher.s.write_all(&first).unwrap();
    // Half a ping frame from the subscriber.
    let mut ping = Vec::new();
    frames::ping(b"are you there", MASK, &mut ping);
    sub.s.write_all(&ping[..4]).unwrap();
    // A client half through its upgrade request.
    let mut late = Ws::raw(&old, &l);
    let request = client_request("x", "/mqtt", KEY);
    late.s.write_all(&request[..40]).unwrap();
    std::thread::sleep(Duration::from_millis(200));

    let new = switch(&old, 3);
    // The rest of the second frame, and the third.
    let mut rest = second[3..].to_vec();
    frames::binary(parts[2], MASK, &mut rest);
    publisher.s.write_all(&rest).unwrap();
    assert_eq!(publisher.packet(), Packet::puback(7));
    sub.s.write_all(&ping[4..]).unwrap();
    match sub.packet() {
        Packet::Publish { payload, .. } => assert_eq!(payload, b"split"),
        other => panic!("{other:?}"),
    }
    // The pong, from the new broker.
    while sub.controls.is_empty() {
        let mut b = [0u8; 256];
        let k = sub.s.read(&mut b).unwrap();
        assert!(k > 0, "closed");
        sub.feed(&b[..k]);
    }
    assert_eq!(sub.controls, [Control::Pong(b"are you there".to_vec())]);
    late.s.write_all(&request[40..]).unwrap();
    late.upgraded();
    late.send(&Packet::connect("late", true, 60).encode());
    assert!(matches!(late.packet(), Packet::ConnAck { .. }));
    assert_eq!(old.connections(), 0);
    assert_eq!(new.connections(), 3);
}

impl Ws {
    /// Reads what came (50 ms at most): whether the server closed.
    fn closed(&mut self) -> bool {
        self.s
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let mut b = [0u8; 4096];
        match self.s.read(&mut b) {
            Ok(0) => true,
            Ok(k) => {
                let bytes = b[..k].to_vec();
                self.feed(&bytes);
                self.controls.iter().any(|c| matches!(c, Control::Close(_)))
            }
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

/// WebSocket pings are not MQTT activity (as in EMQX): a client that
/// sends nothing but pings is closed after 1.5 keep-alive intervals,
/// its pings answered meanwhile; one sending PINGREQ stays.
#[test]
fn websocket_pings_do_not_keep_the_mqtt_keep_alive() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let h = broker("5.0.0");
    let login = |id: &str| {
        let mut c = Ws::raw(&h, &l);
        c.s.write_all(&client_request("x", "/mqtt", KEY)).unwrap();
        c.upgraded();
        c.send(&Packet::connect(id, true, 1).encode());
        assert!(matches!(c.packet(), Packet::ConnAck { .. }));
        c
    };
    let (mut pinging, mut alive) = (login("pinging"), login("alive"));
    let mut closed_after = None;
    for i in 0..10 {
        if closed_after.is_none() {
            let mut ping = Vec::new();
            frames::ping(b"p", MASK, &mut ping);
            let _ = pinging.s.write_all(&ping);
            if pinging.closed() {
                closed_after = Some(i);
            }
        }
        alive.send(&Packet::PingReq.encode());
        assert_eq!(alive.packet(), Packet::PingResp, "after {i} PINGREQs");
        std::thread::sleep(Duration::from_millis(300));
    }
    // Keep-alive 1 s: closed 1.5 s after the CONNECT, about 5 pings in.
    assert!(closed_after.is_some(), "pings kept the keep-alive");
    let pongs = pinging
        .controls
        .iter()
        .filter(|c| matches!(c, Control::Pong(_)))
        .count();
    assert!(pongs >= 1, "{closed_after:?} {:?}", pinging.controls);
}
