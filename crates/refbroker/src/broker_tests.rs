//! The state machine alone, through a recording [`Wire`]: QoS 2 exactly
//! once, a persistent session's queue and redelivery, QoS 0 dropped for
//! a client offline or reading too slowly, wills and takeover.

use std::collections::HashMap;

use emqx_mqtt::{Level, Packet, ReasonCode, Will};

use crate::broker::{Broker, End, Step, Wire, QOS0_BACKLOG};

#[derive(Default)]
pub(crate) struct Recorder {
    pub(crate) sent: HashMap<usize, Vec<Packet>>,
    pub(crate) closed: Vec<usize>,
    /// Bytes each connection has unsent, as the test sets them (none
    /// unless set).
    pub(crate) backlog: HashMap<usize, usize>,
    /// Connections that speak MQTT 5 (decoded as such).
    pub(crate) v5: std::collections::HashSet<usize>,
}

impl Wire for Recorder {
    fn backlog(&self, conn: usize) -> usize {
        self.backlog.get(&conn).copied().unwrap_or(0)
    }
    fn send(&mut self, conn: usize, bytes: &[u8]) {
        let level = match self.v5.contains(&conn) {
            true => Level::V5,
            false => Level::V311,
        };
        let (p, _) = emqx_mqtt::decode_as(bytes, 1 << 20, level)
            .unwrap()
            .unwrap();
        self.sent.entry(conn).or_default().push(p);
    }
    fn close(&mut self, conn: usize) {
        self.closed.push(conn);
    }
}

impl Recorder {
    pub(crate) fn take(&mut self, conn: usize) -> Vec<Packet> {
        self.sent.remove(&conn).unwrap_or_default()
    }
}

pub(crate) fn connect(id: &str, clean: bool, will: Option<Will>) -> Packet {
    Packet::Connect {
        level: Level::V311,
        client_id: id.into(),
        keep_alive: 0,
        clean_session: clean,
        username: None,
        password: None,
        will,
        properties: Default::default(),
    }
}

pub(crate) fn publish(topic: &str, qos: u8, id: Option<u16>) -> Packet {
    Packet::Publish {
        topic: topic.into(),
        payload: b"m".to_vec(),
        qos,
        retain: false,
        dup: false,
        packet_id: id,
        properties: Default::default(),
    }
}

pub(crate) fn open(b: &mut Broker, w: &mut Recorder, conn: usize, id: &str, clean: bool) -> bool {
    b.opened(conn, "mqtt", None);
    assert_eq!(
        b.packet(conn, connect(id, clean, None), w),
        Step::Connected {
            keep_alive: 0,
            level: emqx_mqtt::Level::V311
        }
    );
    match w.take(conn).as_slice() {
        [Packet::ConnAck {
            session_present,
            code: ReasonCode::SUCCESS,
            ..
        }] => *session_present,
        other => panic!("{other:?}"),
    }
}

pub(crate) fn subscribe(b: &mut Broker, w: &mut Recorder, conn: usize, filter: &str, qos: u8) {
    let p = Packet::subscribe(1, [(filter, qos)]);
    assert_eq!(b.packet(conn, p, w), Step::Go);
    w.take(conn);
}

/// Before its CONNECT a connection may send nothing else: refused on the
/// type alone (as the event loop asks), and decoded.
#[test]
fn the_first_packet_must_be_connect() {
    let (mut b, mut w) = (Broker::new("5.0.0", "$SYS/v", 10), Recorder::default());
    b.opened(1, "mqtt", None);
    let refused = |e: Result<(), End>| matches!(e, Err(End::Error(m)) if m == "first packet of type 3, not CONNECT");
    assert!(refused(b.admits(1, 3)));
    assert_eq!(b.admits(1, 1), Ok(()));
    assert_eq!(
        b.packet(1, publish("t", 0, None), &mut w),
        Step::End(End::Error("first packet PUBLISH, not CONNECT".into()))
    );
    open(&mut b, &mut w, 2, "c", true);
    assert_eq!(b.admits(2, 3), Ok(()), "connected: anything");
}

#[test]
fn a_qos2_duplicate_is_acknowledged_not_routed() {
    let (mut b, mut w) = (Broker::new("5.0.0", "$SYS/v", 10), Recorder::default());
    open(&mut b, &mut w, 1, "sub", true);
    subscribe(&mut b, &mut w, 1, "t", 2);
    open(&mut b, &mut w, 2, "pub", true);
    for _ in 0..2 {
        b.packet(2, publish("t", 2, Some(7)), &mut w);
        assert_eq!(w.take(2), vec![Packet::pubrec(7)]);
    }
    let got = w.take(1);
    assert_eq!(got.len(), 1, "one delivery: {got:?}");
    b.packet(2, Packet::pubrel(7), &mut w);
    assert_eq!(w.take(2), vec![Packet::pubcomp(7)]);
    // The subscriber's side: PUBREC -> PUBREL, PUBCOMP ends it.
    let Packet::Publish {
        packet_id: Some(id),
        ..
    } = got[0]
    else {
        panic!("{got:?}")
    };
    b.packet(1, Packet::pubrec(id), &mut w);
    assert_eq!(w.take(1), vec![Packet::pubrel(id)]);
    b.packet(1, Packet::pubcomp(id), &mut w);
    assert!(w.take(1).is_empty());
}

/// A message on `q` whose payload names it.
fn on_q(qos: u8, id: Option<u16>, payload: &str) -> Packet {
    Packet::Publish {
        topic: "q".into(),
        payload: payload.into(),
        qos,
        retain: false,
        dup: false,
        packet_id: id,
        properties: Default::default(),
    }
}

#[test]
fn an_offline_session_queues_and_redelivers_in_flight_with_dup() {
    let (mut b, mut w) = (Broker::new("5.0.0", "$SYS/v", 2), Recorder::default());
    assert!(!open(&mut b, &mut w, 1, "p", false));
    subscribe(&mut b, &mut w, 1, "q", 1);
    open(&mut b, &mut w, 2, "pub", true);
    b.packet(2, on_q(1, Some(1), "in flight"), &mut w);
    assert_eq!(w.take(1).len(), 1, "sent, never acknowledged");
    b.closed(1, &End::Eof, &mut w);
    // Offline: a QoS 0 message first (it would take a place in the
    // queue), then four QoS 1 messages for a queue of two.
    b.packet(2, on_q(0, None, "qos 0"), &mut w);
    for i in 2..6 {
        b.packet(2, on_q(1, Some(i), &format!("qos 1 #{i}")), &mut w);
    }
    // Back: the unacknowledged one again with DUP, then the queue (the
    // first 2 of the 4), and the QoS 0 one published offline is gone.
    b.opened(3, "mqtt", None);
    b.packet(3, connect("p", false, None), &mut w);
    let got = w.take(3);
    assert_eq!(got[0], Packet::connack(true, ReasonCode::SUCCESS));
    let delivered: Vec<(u8, bool, String)> = got[1..]
        .iter()
        .map(|p| match p {
            Packet::Publish {
                qos, dup, payload, ..
            } => (*qos, *dup, String::from_utf8_lossy(payload).into_owned()),
            other => panic!("{other:?}"),
        })
        .collect();
    let want = [
        (true, "in flight"),
        (false, "qos 1 #2"),
        (false, "qos 1 #3"),
    ];
    let want: Vec<(u8, bool, String)> = want.iter().map(|(d, m)| (1, *d, m.to_string())).collect();
    assert_eq!(delivered, want, "no QoS 0 message: {got:?}");
    assert_eq!(b.sessions["p"].dropped, 3, "the QoS 0 one and 2 QoS 1");
}

/// A client with [`QOS0_BACKLOG`] bytes unsent gets no QoS 0 message
/// (dropped and counted); QoS 1 still goes out.
#[test]
fn qos0_is_dropped_for_a_client_that_reads_too_slowly() {
    let (mut b, mut w) = (Broker::new("5.0.0", "$SYS/v", 10), Recorder::default());
    open(&mut b, &mut w, 1, "slow", true);
    subscribe(&mut b, &mut w, 1, "t", 1);
    open(&mut b, &mut w, 2, "pub", true);
    w.backlog.insert(1, QOS0_BACKLOG - 1);
    b.packet(2, publish("t", 0, None), &mut w);
    assert_eq!(w.take(1).len(), 1, "below the bound: sent");
    w.backlog.insert(1, QOS0_BACKLOG);
    b.packet(2, publish("t", 0, None), &mut w);
    assert_eq!(w.take(1), vec![], "at the bound: dropped");
    assert_eq!(b.sessions["slow"].dropped, 1);
    b.packet(2, publish("t", 1, Some(1)), &mut w);
    match w.take(1).as_slice() {
        [Packet::Publish { qos: 1, .. }] => {}
        other => panic!("QoS 1 is not dropped: {other:?}"),
    }
}

#[test]
fn wills_follow_abnormal_closes_and_takeovers_not_disconnect() {
    let (mut b, mut w) = (Broker::new("5.0.0", "$SYS/v", 10), Recorder::default());
    open(&mut b, &mut w, 1, "watch", true);
    subscribe(&mut b, &mut w, 1, "will", 0);
    let will = Some(Will::new("will", b"gone", 0, false));
    for (conn, end) in [(2, End::Eof), (3, End::Disconnect), (4, End::Shutdown)] {
        b.opened(conn, "mqtt", None);
        b.packet(
            conn,
            connect(&format!("c{conn}"), true, will.clone()),
            &mut w,
        );
        b.closed(conn, &end, &mut w);
    }
    assert_eq!(w.take(1).len(), 1, "only the end of stream publishes it");
    // A takeover closes the old connection and publishes its will.
    b.opened(5, "mqtt", None);
    b.packet(5, connect("same", true, will.clone()), &mut w);
    b.opened(6, "mqtt", None);
    b.packet(6, connect("same", true, None), &mut w);
    assert_eq!(w.closed, vec![5]);
    assert_eq!(w.take(1).len(), 1);
}

/// MQTT-3.8.3-4: an MQTT 5 SUBSCRIBE with no local on a shared
/// subscription is a protocol error (DISCONNECT 0x82); on another filter
/// it is fine.
#[test]
fn no_local_on_a_shared_subscription_is_a_protocol_error() {
    let (mut b, mut w) = (Broker::new("5.0.0", "$SYS/v", 10), Recorder::default());
    w.v5.insert(1);
    b.opened(1, "mqtt", None);
    let mut hello = connect("five", true, None);
    if let Packet::Connect { level, .. } = &mut hello {
        *level = Level::V5;
    }
    b.packet(1, hello, &mut w);
    let sub = |filter: &str| Packet::Subscribe {
        packet_id: 1,
        filters: vec![(
            filter.into(),
            emqx_mqtt::SubOptions {
                no_local: true,
                ..emqx_mqtt::SubOptions::qos(1)
            },
        )],
        properties: Default::default(),
    };
    assert_eq!(b.packet(1, sub("t/#"), &mut w), Step::Go);
    match b.packet(1, sub("$share/g/t/#"), &mut w) {
        Step::End(End::Violation(code, _)) => assert_eq!(code, ReasonCode::PROTOCOL_ERROR),
        other => panic!("{other:?}"),
    }
}
