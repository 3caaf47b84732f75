//! MQTT 5 state through an export and an import (`refbroker/3`): a broker
//! rebuilt from another's state is the same broker, its timers (message
//! and session expiry, will delay) continuing where they were; topic
//! aliases both ways, subscription options and identifiers, shared
//! groups' turns, will and message properties all carried. An older
//! schema carries none of it: it leaves it out, and refuses it.

use std::time::{Duration, Instant};

use emqx_mqtt::{Level, Packet, Properties, SubOptions, Will};
use serde_json::Value;

use crate::broker::{Broker, End, Step};
use crate::broker_tests::{connect, Recorder};
use crate::snapshot::{ClientState, ImportError, Schema, SharedState};

fn props(user: &str, expiry: Option<u32>) -> Properties {
    Properties {
        user_properties: vec![("k".into(), user.into())],
        content_type: Some("text/plain".into()),
        message_expiry_interval: expiry,
        ..Properties::default()
    }
}

/// Connection `conn` of MQTT 5 client `id`, its session living `expiry`
/// seconds, taking 4 topic aliases and 2 deliveries at once.
fn open5(b: &mut Broker, w: &mut Recorder, conn: usize, id: &str, expiry: u32, will: Option<Will>) {
    w.v5.insert(conn);
    b.opened(conn, "mqtt", None);
    let connect = Packet::Connect {
        level: Level::V5,
        client_id: id.into(),
        keep_alive: 0,
        clean_session: false,
        username: None,
        password: None,
        will,
        properties: Properties {
            session_expiry_interval: Some(expiry),
            topic_alias_maximum: Some(4),
            receive_maximum: Some(2),
            ..Properties::default()
        },
    };
    let step = b.packet(conn, connect, w);
    assert_eq!(
        step,
        Step::Connected {
            keep_alive: 0,
            level: Level::V5
        }
    );
    w.take(conn);
}

fn sub(b: &mut Broker, w: &mut Recorder, conn: usize, filter: &str, options: u8, id: Option<u32>) {
    let p = Packet::Subscribe {
        packet_id: 1,
        filters: vec![(filter.into(), SubOptions::from_byte(options).unwrap())],
        properties: Properties {
            subscription_identifiers: id.into_iter().collect(),
            ..Properties::default()
        },
    };
    assert_eq!(b.packet(conn, p, w), Step::Go);
    w.take(conn);
}

fn pub5(topic: &str, alias: Option<u16>, qos: u8, id: u16, retain: bool, p: Properties) -> Packet {
    Packet::Publish {
        topic: topic.into(),
        payload: b"m5".to_vec(),
        qos,
        retain,
        dup: false,
        packet_id: (qos > 0).then_some(id),
        properties: Properties {
            topic_alias: alias,
            ..p
        },
    }
}

/// A broker with every piece of MQTT 5 state: a connected subscriber
/// with options, an identifier, a shared subscription, aliases set
/// towards it and a delayed will; an offline MQTT 5 session with a
/// queued message that expires; a delayed will waiting; a publisher
/// with an alias it set; a retained message with properties and expiry;
/// a 3.1.1 member of the shared group.
fn busy5() -> (Broker, Recorder) {
    let (mut b, mut w) = (Broker::new("5.0.0", "$SYS/v", 10), Recorder::default());
    let mut will = Will::new("wills/sub5", b"gone", 1, false);
    will.properties = Properties {
        will_delay_interval: Some(30),
        ..props("w", Some(40))
    };
    open5(&mut b, &mut w, 1, "sub5", 300, Some(will));
    // QoS 2, no local, retain as published, retain handling 1; id 7.
    sub(&mut b, &mut w, 1, "t/#", 0x02 | 0x04 | 0x08 | 0x10, Some(7));
    sub(&mut b, &mut w, 1, "$share/g/s/#", 1, None);
    open5(&mut b, &mut w, 2, "off5", 100, None);
    sub(&mut b, &mut w, 2, "t/#", 1, None);
    b.closed(2, &End::Disconnect, &mut w);
    let mut late = Will::new("wills/gone5", b"late", 1, false);
    late.properties.will_delay_interval = Some(60);
    open5(&mut b, &mut w, 4, "gone5", 300, Some(late));
    b.closed(4, &End::Eof, &mut w);
    b.opened(5, "mqtt", None);
    b.packet(5, connect("old", false, None), &mut w);
    b.packet(5, Packet::subscribe(1, [("$share/g/s/#", 1)]), &mut w);
    open5(&mut b, &mut w, 3, "pub5", 0, None);
    b.packet(
        3,
        pub5("t/a", Some(1), 1, 1, false, props("a", Some(50))),
        &mut w,
    );
    b.packet(3, pub5("s/x", None, 1, 2, false, props("s", None)), &mut w);
    b.packet(
        3,
        pub5("r", None, 0, 0, true, props("r", Some(100))),
        &mut w,
    );
    w.sent.clear();
    (b, w)
}

/// Everything `b` hands over in `schema`, through its serialized form.
fn snapshot(
    b: &Broker,
    conns: &[usize],
    schema: Schema,
) -> (SharedState, Vec<(usize, ClientState)>) {
    let shared = b.export_shared(schema);
    let clients: Vec<_> = conns
        .iter()
        .map(|c| (*c, b.export_client(*c, schema, &mut 0).unwrap()))
        .collect();
    serde_json::from_slice(&serde_json::to_vec(&(&shared, &clients)).unwrap()).unwrap()
}

fn import(state: &(SharedState, Vec<(usize, ClientState)>)) -> Broker {
    let mut b = Broker::new("5.0.1", "$SYS/v", 10);
    b.import_shared(&state.0, Schema::Mqtt5).unwrap();
    for (conn, c) in &state.1 {
        b.import_client(*conn, c, Schema::Mqtt5).unwrap();
    }
    b.imported();
    b
}

/// `v` with every monotonic-clock deadline replaced by 0, after checking
/// each is within 5 ms of the same one in `like` (a round trip through
/// two clock readings may move one by a millisecond).
fn without_deadlines(v: &mut Value, like: &Value) {
    match (v, like) {
        (Value::Object(m), Value::Object(l)) => {
            for (k, x) in m.iter_mut() {
                let deadline = ["expires_at", "offline_since", "due"].contains(&k.as_str());
                match (deadline, x.as_u64(), l.get(k).and_then(Value::as_u64)) {
                    (true, Some(a), Some(b)) => {
                        assert!(a.abs_diff(b) <= 5, "{k}: {a} vs {b}");
                        *x = Value::from(0);
                    }
                    _ => without_deadlines(x, l.get(k).unwrap_or(&Value::Null)),
                }
            }
        }
        (Value::Array(a), Value::Array(l)) => {
            for (x, y) in a.iter_mut().zip(l) {
                without_deadlines(x, y);
            }
        }
        _ => {}
    }
}

fn same(
    a: &(SharedState, Vec<(usize, ClientState)>),
    b: &(SharedState, Vec<(usize, ClientState)>),
) {
    let (mut a, mut b) = (
        serde_json::to_value(a).unwrap(),
        serde_json::to_value(b).unwrap(),
    );
    let a0 = a.clone();
    without_deadlines(&mut b, &a0);
    without_deadlines(&mut a, &a0);
    assert_eq!(a, b);
}

#[test]
fn mqtt5_state_round_trips_and_answers_the_same() {
    let (a, _) = busy5();
    let state = snapshot(&a, &[1, 3, 5], Schema::Mqtt5);
    assert_eq!(state.0.offline.len(), 2, "off5 and gone5");
    assert_eq!(state.0.wills.len(), 1, "{:?}", state.0.wills);
    assert_eq!(state.0.groups[0].members, ["sub5", "old"]);
    let off = &state.0.offline.iter().find(|s| s.id == "off5").unwrap();
    assert!(off.queue[0].expires_at.is_some() && off.queue[0].props.is_some());
    let sub5 = state.1[0].1.session.as_ref().unwrap();
    assert_eq!(sub5.v5.as_ref().unwrap().sub_ids, [("t/#".to_string(), 7)]);
    assert_eq!(
        sub5.v5.as_ref().unwrap().aliases,
        ["t/a", "s/x"],
        "aliases set towards it (a shared message too)"
    );
    assert_eq!(
        state.1[1].1.aliases,
        [(1, "t/a".to_string())],
        "one the publisher set"
    );
    let b = import(&state);
    same(&snapshot(&b, &[1, 3, 5], Schema::Mqtt5), &state);
    let (mut a, mut b) = (a, b);
    let drive = |x: &mut Broker| {
        let mut w = Recorder::default();
        w.v5.extend([1, 3, 6]);
        // The publisher's alias, set before the move, used after it.
        x.packet(
            3,
            pub5("", Some(1), 1, 3, false, props("b", Some(50))),
            &mut w,
        );
        x.packet(
            3,
            pub5("s/y", None, 0, 0, false, Properties::default()),
            &mut w,
        );
        x.packet(1, Packet::puback(1), &mut w);
        // off5 comes back: its queue, with the expiry left.
        open5(x, &mut w, 6, "off5", 100, None);
        x.closed(1, &End::Eof, &mut w);
        w
    };
    let (wa, wb) = (drive(&mut a), drive(&mut b));
    assert!(wa.sent.get(&1).is_some_and(|p| !p.is_empty()));
    assert_eq!(wa.sent, wb.sent, "the same answers to the same packets");
    let by_alias = wb.sent[&1].iter().any(|p| {
        matches!(p, Packet::Publish { topic, properties, .. } if topic.is_empty() && properties.topic_alias == Some(1))
    });
    assert!(
        by_alias,
        "the alias set towards sub5 before the move: {:?}",
        wb.sent[&1]
    );
}

#[test]
fn timers_continue_from_where_they_were() {
    let (a, _) = busy5();
    let b = import(&snapshot(&a, &[1, 3, 5], Schema::Mqtt5));
    let close =
        |x: Instant, y: Instant| x.max(y).duration_since(x.min(y)) <= Duration::from_millis(5);
    let since = |x: &Broker| x.sessions["off5"].offline_since.unwrap();
    assert!(close(since(&a), since(&b)), "session expiry");
    assert!(
        close(a.pending_wills[0].1, b.pending_wills[0].1),
        "will delay"
    );
    let expires = |x: &Broker| {
        x.sessions["off5"].queue[0]
            .props
            .as_ref()
            .unwrap()
            .expires
            .unwrap()
            .0
    };
    assert!(close(expires(&a), expires(&b)), "message expiry");
    // The imported will fires when it is due, not before.
    let mut b = b;
    let mut w = Recorder::default();
    b.expire(b.pending_wills[0].1 - Duration::from_millis(10), &mut w);
    assert_eq!(b.pending_wills.len(), 1);
    let due = b.pending_wills[0].1;
    b.expire(due, &mut w);
    assert!(b.pending_wills.is_empty());
}

#[test]
fn older_schemas_leave_mqtt5_state_out_and_refuse_it() {
    let (a, _) = busy5();
    let old = snapshot(&a, &[5], Schema::Tls);
    assert!(old.0.offline.is_empty(), "off5 stays: {:?}", old.0.offline);
    assert!(old.0.wills.is_empty() && old.0.groups.is_empty());
    assert!(old
        .0
        .retained
        .iter()
        .all(|m| m.props.is_none() && m.expires_at.is_none()));
    let v = serde_json::to_value(&old.1[0].1).unwrap();
    assert_eq!(
        v.get("level"),
        None,
        "a 3.1.1 client reads as refbroker/2 always did"
    );
    let new = snapshot(&a, &[1, 5], Schema::Mqtt5);
    let mut b = Broker::new("5.0.1", "$SYS/v", 10);
    let refused = |r: Result<(), ImportError>| matches!(r, Err(ImportError::Invalid(_)));
    assert!(
        refused(b.import_shared(&new.0, Schema::Tls)),
        "wills and groups"
    );
    assert!(
        refused(b.import_client(1, &new.1[0].1, Schema::Tls)),
        "a level 5 client"
    );
    assert!(
        b.sessions.is_empty() && b.clients.is_empty(),
        "nothing imported"
    );
}

#[test]
fn mqtt5_state_out_of_bounds_is_refused_and_changes_nothing() {
    let (a, _) = busy5();
    let (_, clients) = snapshot(&a, &[1, 3], Schema::Mqtt5);
    let (sub5, pub5) = (&clients[0].1, &clients[1].1);
    type Edit = fn(&mut ClientState);
    let edits: [(&str, Edit); 7] = [
        ("alias 0", |c| c.aliases[0].0 = 0),
        ("alias past 16", |c| c.aliases[0].0 = 17),
        ("level 6", |c| c.level = 6),
        ("receive maximum 0", |c| {
            c.session.as_mut().unwrap().v5.as_mut().unwrap().receive_max = 0
        }),
        ("aliases past the client's", |c| {
            let v5 = c.session.as_mut().unwrap().v5.as_mut().unwrap();
            v5.aliases = vec!["a".into(); usize::from(v5.alias_max) + 1];
        }),
        ("an identifier without its subscription", |c| {
            c.session
                .as_mut()
                .unwrap()
                .v5
                .as_mut()
                .unwrap()
                .sub_ids
                .push(("x".into(), 1))
        }),
        ("a deadline past any interval", |c| {
            c.session.as_mut().unwrap().inflight[0].1 =
                match &c.session.as_ref().unwrap().inflight[0].1 {
                    crate::snapshot::InflightData::Sent(m) => {
                        crate::snapshot::InflightData::Sent(crate::snapshot::MessageData {
                            expires_at: Some(u64::MAX),
                            ..m.clone()
                        })
                    }
                    other => other.clone(),
                }
        }),
    ];
    for (what, edit) in edits {
        let mut c = if what.starts_with("alias ") {
            pub5.clone()
        } else {
            sub5.clone()
        };
        edit(&mut c);
        let mut b = Broker::new("5.0.1", "$SYS/v", 10);
        let r = b.import_client(1, &c, Schema::Mqtt5);
        assert!(matches!(r, Err(ImportError::Invalid(_))), "{what}: {r:?}");
        assert!(
            b.sessions.is_empty() && b.clients.is_empty(),
            "{what}: nothing imported"
        );
    }
}
