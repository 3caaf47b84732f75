//! Export and import of the broker's state: a broker rebuilt from another's
//! snapshot is the same broker (same state, same answers to the same
//! packets), importing sends nothing and fires no will, and state with a
//! field this broker does not know is refused.

use emqx_mqtt::{Packet, Will};
use serde_json::{json, Value};

use crate::broker::{Broker, End};
use crate::broker_tests::{connect, open, publish, subscribe, Recorder};
use crate::event_loop::{decode_shared, ConnState};
use crate::snapshot::{ClientState, ImportError, Schema, SharedState};

/// The schema these tests move in: this broker's newest.
const NEW: Schema = Schema::WebSocket;
use crate::transport::Kind;

/// A broker with a bit of everything: a retained message, an offline
/// session with a queue, a connected persistent session with a will,
/// QoS 2 in flight both ways (one PUBREC'd), QoS 1 in flight.
fn busy() -> (Broker, Recorder) {
    let (mut b, mut w) = (Broker::new("5.0.0", "$SYS/v", 10), Recorder::default());
    b.opened(1, "mqtt", None);
    let will = Will::new("wills/sub", b"gone", 1, false);
    b.packet(1, connect("sub", false, Some(will)), &mut w);
    w.take(1);
    subscribe(&mut b, &mut w, 1, "t/#", 2);
    subscribe(&mut b, &mut w, 1, "x", 1);
    assert!(!open(&mut b, &mut w, 2, "off", false));
    subscribe(&mut b, &mut w, 2, "t/#", 1);
    b.closed(2, &End::Disconnect, &mut w);
    open(&mut b, &mut w, 3, "pub", true);
    subscribe(&mut b, &mut w, 3, "wills/#", 1);
    b.packet(3, publish("t/1", 2, Some(1)), &mut w);
    b.packet(3, publish("t/2", 2, Some(2)), &mut w);
    b.packet(3, publish("x", 1, Some(3)), &mut w);
    let retained = Packet::Publish {
        topic: "r".into(),
        payload: b"kept".to_vec(),
        qos: 0,
        retain: true,
        dup: false,
        packet_id: None,
        properties: Default::default(),
    };
    b.packet(3, retained, &mut w);
    // The subscriber PUBRECs the first QoS 2 delivery only, and has sent
    // a QoS 2 message of its own (packet 9) awaiting PUBREL.
    let first = w
        .take(1)
        .iter()
        .find_map(|p| match p {
            Packet::Publish {
                qos: 2,
                packet_id: Some(id),
                ..
            } => Some(*id),
            _ => None,
        })
        .unwrap();
    b.packet(1, Packet::pubrec(first), &mut w);
    b.packet(1, publish("y", 2, Some(9)), &mut w);
    w.sent.clear();
    (b, w)
}

/// Everything `b` would hand over, through its serialized form.
fn snapshot(b: &Broker, conns: &[usize]) -> (SharedState, Vec<(usize, ClientState)>) {
    let shared = b.export_shared(NEW);
    let clients: Vec<(usize, ClientState)> = conns
        .iter()
        .map(|c| (*c, b.export_client(*c, NEW, &mut 0).unwrap()))
        .collect();
    let bytes = serde_json::to_vec(&(&shared, &clients)).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn import(state: &(SharedState, Vec<(usize, ClientState)>)) -> Broker {
    let mut b = Broker::new("5.0.1", "$SYS/v", 10);
    b.import_shared(&state.0, NEW).unwrap();
    for (conn, c) in &state.1 {
        b.import_client(*conn, c, NEW).unwrap();
    }
    b
}

/// The same packets to both brokers; what each sent, per connection.
fn drive(b: &mut Broker) -> Recorder {
    let mut w = Recorder::default();
    b.packet(1, Packet::pubrel(9), &mut w);
    b.packet(3, publish("t/3", 1, Some(4)), &mut w);
    b.packet(1, Packet::puback(3), &mut w);
    b.opened(4, "mqtt", None);
    b.packet(4, connect("late", true, None), &mut w);
    b.packet(4, Packet::subscribe(1, [("r", 0)]), &mut w);
    b.packet(4, connect("off", false, None), &mut w);
    b.opened(5, "mqtt", None);
    b.packet(5, connect("off", false, None), &mut w);
    // The moved subscriber's connection dies: its will goes out now.
    b.closed(1, &End::Eof, &mut w);
    w
}

#[test]
fn an_imported_broker_is_the_same_broker() {
    let (a, _) = busy();
    let state = snapshot(&a, &[1, 3]);
    assert_eq!(state.0.offline.len(), 1, "{state:?}");
    assert_eq!(
        state.0.retained.len(),
        1,
        "$SYS topics stay behind: {state:?}"
    );
    let sub = state.1[0].1.session.as_ref().unwrap();
    assert_eq!(sub.awaiting_rel, vec![9]);
    assert_eq!(sub.inflight.len(), 3, "{sub:?}");
    let b = import(&state);
    assert_eq!(snapshot(&b, &[1, 3]), state, "the state round-trips");
    let (mut a, mut b) = (a, b);
    let (wa, wb) = (drive(&mut a), drive(&mut b));
    assert!(!wa.sent.is_empty());
    assert_eq!(wa.sent, wb.sent, "the same answers to the same packets");
    assert_eq!(wa.closed, wb.closed);
    let will = wb.sent[&3]
        .iter()
        .filter(|p| matches!(p, Packet::Publish { topic, .. } if topic == "wills/sub"));
    assert_eq!(will.count(), 1, "the will fires once, after the move");
}

#[test]
fn importing_sends_nothing_and_fires_no_will() {
    let (a, _) = busy();
    let state = snapshot(&a, &[1, 3]);
    let mut b = import(&state);
    let mut w = Recorder::default();
    // Nothing was sent by the import; a clean DISCONNECT still fires none.
    b.closed(1, &End::Disconnect, &mut w);
    assert!(w.sent.is_empty(), "{:?}", w.sent);
}

#[test]
fn an_import_past_a_bound_or_invalid_changes_nothing() {
    let (a, _) = busy();
    let (shared, clients) = snapshot(&a, &[1, 3]);
    // "off" queued the two QoS 2 messages (at its QoS 1) while away.
    assert_eq!(shared.offline[0].queue.len(), 2);
    let mut small = Broker::new("5.0.1", "$SYS/v", 1);
    let before = small.export_shared(NEW);
    let e = small.import_shared(&shared, NEW);
    assert_eq!(e, Err(ImportError::Bound("queued messages", 2, 1)));
    assert_eq!(small.export_shared(NEW), before, "nothing imported");
    let mut b = Broker::new("5.0.1", "$SYS/v", 10);
    let twice = SharedState {
        offline: vec![shared.offline[0].clone(), shared.offline[0].clone()],
        retained: vec![],
        ..SharedState::default()
    };
    assert!(matches!(
        b.import_shared(&twice, NEW),
        Err(ImportError::Invalid(_))
    ));
    let mut qos0 = shared.clone();
    qos0.offline[0].queue[0].qos = 0;
    assert!(matches!(
        b.import_shared(&qos0, NEW),
        Err(ImportError::Invalid(_))
    ));
    assert!(b.export_shared(NEW).offline.is_empty(), "nothing imported");
    let mut bad = clients[0].1.clone();
    if let Some(s) = bad.session.as_mut() {
        s.subs.push(("a/#/b".into(), 1));
    }
    assert!(matches!(
        b.import_client(1, &bad, NEW),
        Err(ImportError::Invalid(_))
    ));
    assert!(
        b.export_client(1, NEW, &mut 0).is_none(),
        "nothing imported"
    );
    b.import_client(1, &clients[0].1, NEW).unwrap();
    assert!(
        b.import_client(1, &clients[0].1, NEW).is_err(),
        "a connection twice"
    );
}

/// `value` with `field` added to the object at `path`.
fn with_field(value: &Value, path: &str, field: &str) -> Vec<u8> {
    let mut v = value.clone();
    let object = v.pointer_mut(path).and_then(Value::as_object_mut);
    let object = object.unwrap_or_else(|| panic!("no object at {path:?} in {value}"));
    object.insert(field.into(), json!("websocket"));
    serde_json::to_vec(&v).unwrap()
}

/// A moved connection, or the shared state, with a field this broker
/// does not know, at the top or nested (what a newer exporter would
/// add, e.g. for a WebSocket connection), is refused on import: never
/// read as the plain state this broker knows. So is a transport it does
/// not know, and a TLS connection in the schema of plain ones.
#[test]
fn a_field_this_broker_does_not_know_is_refused_on_import() {
    let (a, _) = busy();
    let conn = ConnState {
        client: a.export_client(1, NEW, &mut 0).unwrap(),
        inbuf: vec![0xC0],
        out: vec![0xD0, 0],
        connected: true,
        keep_alive: 60,
        idle_ms: 5,
        transport: Kind::Tcp,
        tls: None,
        ws: None,
    };
    let decode_in = |schema: Schema, bytes: &[u8]| ConnState::decode(schema, &mut bytes.to_vec());
    let decode = |bytes: &[u8]| decode_in(Schema::Tls, bytes);
    let conn_value = serde_json::to_value(&conn).unwrap();
    assert_eq!(conn_value.get("transport"), None, "TCP is left unsaid");
    // A WebSocket connection in a schema before refbroker/5 is refused.
    let mut ws_value = conn_value.clone();
    ws_value["transport"] = json!("ws");
    let ws_bytes = serde_json::to_vec(&ws_value).unwrap();
    assert!(matches!(
        decode_in(Schema::Login, &ws_bytes),
        Err(ImportError::Invalid(_))
    ));
    assert_eq!(decode(&serde_json::to_vec(&conn_value).unwrap()), Ok(conn));
    let shared = a.export_shared(NEW);
    let shared_value = serde_json::to_value(&shared).unwrap();
    assert_eq!(
        decode_shared(&serde_json::to_vec(&shared_value).unwrap(), NEW),
        Ok(shared)
    );
    let unknown = |r: Result<(), ImportError>| matches!(r, Err(ImportError::Invalid(m)) if m.contains("unknown field `quic`"));
    for path in [
        "",
        "/client",
        "/client/session",
        "/client/session/inflight/1/1/Sent",
        "/client/will",
    ] {
        let bytes = with_field(&conn_value, path, "quic");
        assert!(unknown(decode(&bytes).map(drop)), "connection {path:?}");
    }
    for path in ["", "/retained/0", "/offline/0", "/offline/0/queue/0"] {
        let bytes = with_field(&shared_value, path, "quic");
        assert!(
            unknown(decode_shared(&bytes, NEW).map(drop)),
            "shared {path:?}"
        );
    }
    let mut tls = conn_value.clone();
    tls["transport"] = json!("tls");
    let refused = decode(&serde_json::to_vec(&tls).unwrap());
    assert!(
        matches!(&refused, Err(ImportError::Invalid(m)) if m.contains("unknown variant `tls`")),
        "{refused:?}"
    );
    // A TLS connection (even one missing its state) is no refbroker/1
    // connection.
    let mut ssl = conn_value.clone();
    ssl["transport"] = json!("ssl");
    let refused = decode_in(Schema::Tcp, &serde_json::to_vec(&ssl).unwrap());
    assert!(
        matches!(&refused, Err(ImportError::Invalid(m)) if m.contains("carries plain TCP only")),
        "{refused:?}"
    );
    assert!(decode_in(Schema::Tcp, &serde_json::to_vec(&conn_value).unwrap()).is_ok());
}
