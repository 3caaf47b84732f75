//! The MQTT 5 checks can fail: a tiny fake broker in the test (one
//! thread per connection, one shared subscription group of one) that
//! strips user properties, or writes QoS 1 deliveries three at a time
//! whatever the client's Receive Maximum of 2, is counted in the report;
//! one that names topics by alias towards the client is resolved cleanly.

use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread::{self, sleep};
use std::time::Duration;

use emqx_load::{Load, LoadOptions, Report, V5Load};
use emqx_mqtt::{read_packet_as, Level, Packet, Properties, ReasonCode};

/// What the fake broker gets wrong (or does that a broker may).
#[derive(Debug, Clone, Copy, Default)]
struct Faults {
    /// Forwards messages without their user properties.
    strip_props: bool,
    /// Writes deliveries in batches of this many (0 or 1: one by one).
    burst: usize,
    /// Names a delivery's topic by alias once it has set one up.
    alias_out: bool,
}

/// A subscriber's side of the fake: its socket, packet ids, what waits
/// for the rest of a burst, its alias.
struct Out {
    stream: TcpStream,
    next_id: u16,
    batch: Vec<u8>,
    in_batch: usize,
    alias_set: bool,
}

type Subs = Arc<Mutex<Vec<(String, Arc<Mutex<Out>>)>>>;

/// Starts the fake on a free loopback port; its threads end with the
/// test process.
fn fake(faults: Faults) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let subs: Subs = Arc::default();
    thread::spawn(move || {
        for s in l.incoming().flatten() {
            let subs = Arc::clone(&subs);
            thread::spawn(move || serve(s, &subs, faults));
        }
    });
    addr
}

fn send(out: &Mutex<Out>, p: &Packet) {
    let mut o = out.lock().unwrap();
    let _ = o.stream.write_all(&p.encode_as(Level::V5));
}

/// One connection, until it closes.
fn serve(stream: TcpStream, subs: &Subs, f: Faults) {
    let _ = stream.set_nodelay(true);
    let mut r = stream.try_clone().unwrap();
    let out = Arc::new(Mutex::new(Out {
        stream,
        next_id: 0,
        batch: Vec::new(),
        in_batch: 0,
        alias_set: false,
    }));
    let mut aliases: HashMap<u16, String> = HashMap::new();
    while let Ok(Some(p)) = read_packet_as(&mut r, 1 << 20, Level::V5) {
        match p {
            Packet::Connect { .. } => {
                let mut ack = Packet::connack(false, ReasonCode::SUCCESS);
                if let Packet::ConnAck { properties, .. } = &mut ack {
                    properties.topic_alias_maximum = Some(10);
                    properties.receive_maximum = Some(100);
                }
                send(&out, &ack);
            }
            Packet::Subscribe {
                packet_id, filters, ..
            } => subscribe(&out, subs, packet_id, filters.into_iter().map(|f| f.0)),
            Packet::Publish {
                topic,
                payload,
                qos,
                packet_id,
                properties,
                ..
            } => {
                let topic = match (topic.is_empty(), properties.topic_alias) {
                    (true, Some(a)) => aliases.get(&a).cloned().unwrap_or_default(),
                    (false, Some(a)) => {
                        aliases.insert(a, topic.clone());
                        topic
                    }
                    _ => topic,
                };
                match (qos, packet_id) {
                    (1, Some(id)) => send(&out, &Packet::puback(id)),
                    (2, Some(id)) => send(&out, &Packet::pubrec(id)),
                    _ => {}
                }
                forward(subs, &topic, &payload, qos, properties, f);
            }
            Packet::PubRel { packet_id, .. } => send(&out, &Packet::pubcomp(packet_id)),
            Packet::PubRec { packet_id, .. } => send(&out, &Packet::pubrel(packet_id)),
            Packet::PingReq => send(&out, &Packet::PingResp),
            Packet::Disconnect { .. } => break,
            _ => {}
        }
    }
    subs.lock().unwrap().retain(|(_, o)| !Arc::ptr_eq(o, &out));
}

/// SUBACK, the retained version, and the subscriptions kept (a
/// `$share/GROUP/` prefix dropped: each group has one member here).
fn subscribe(out: &Arc<Mutex<Out>>, subs: &Subs, id: u16, filters: impl Iterator<Item = String>) {
    let mut codes = Vec::new();
    for filter in filters {
        codes.push(ReasonCode::GRANTED_QOS_2);
        let topic = match filter.strip_prefix("$share/") {
            Some(rest) => rest.split_once('/').map_or(rest, |(_, t)| t).to_string(),
            None => filter,
        };
        subs.lock().unwrap().push((topic, Arc::clone(out)));
    }
    send(out, &Packet::suback(id, codes));
    send(
        out,
        &Packet::publish("$SYS/broker/version", "fake 1.0", 0, true, 0),
    );
}

/// Delivers a message to every subscriber of `topic`, at its QoS.
fn forward(subs: &Subs, topic: &str, payload: &[u8], qos: u8, mut props: Properties, f: Faults) {
    props.topic_alias = None;
    if f.strip_props {
        props.user_properties.clear();
    }
    let subs = subs.lock().unwrap();
    for (_, out) in subs.iter().filter(|(t, _)| t == topic) {
        let mut o = out.lock().unwrap();
        o.next_id = o.next_id.wrapping_add(1).max(1);
        let mut p = Packet::publish(topic, payload.to_vec(), qos, false, o.next_id);
        if let Packet::Publish {
            properties, topic, ..
        } = &mut p
        {
            *properties = props.clone();
            if f.alias_out {
                properties.topic_alias = Some(3);
                if o.alias_set {
                    topic.clear();
                }
                o.alias_set = true;
            }
        }
        let bytes = p.encode_as(Level::V5);
        o.batch.extend_from_slice(&bytes);
        o.in_batch += 1;
        if o.in_batch >= f.burst.max(1) {
            let batch = std::mem::take(&mut o.batch);
            let _ = o.stream.write_all(&batch);
            o.in_batch = 0;
        }
    }
}

/// One shared group of one at `qos` against the fake, for 1.5 s.
fn run(faults: Faults, qos: u8) -> Report {
    let addr = fake(faults);
    let load = Load::start(LoadOptions {
        addrs: vec![addr],
        persistent: 0,
        sessions: 0,
        idle: 0,
        storm: 0,
        publish_rate: 50.0,
        connect_timeout: Duration::from_secs(2),
        v5: V5Load {
            shared_qos: vec![qos],
            group: 1,
            ..V5Load::off()
        },
        ..LoadOptions::default()
    });
    sleep(Duration::from_millis(1500));
    let r = load.stop();
    println!("{faults:?}\n{}", r.table());
    r
}

#[test]
fn a_broker_stripping_user_properties_is_counted() {
    let r = run(
        Faults {
            strip_props: true,
            ..Faults::default()
        },
        1,
    );
    let c = r.class("v5-shared-qos1");
    let ctx = r.table();
    assert!(c.received > 20, "{ctx}");
    assert_eq!(c.props_damaged, c.received, "{ctx}");
    assert_eq!((c.expiry_bad, c.receive_max_exceeded), (0, 0), "{ctx}");
    assert!(!r.messages["v5-shared-qos1"].clean && !r.clean(), "{ctx}");
    assert!(r.table().contains("props"), "{ctx}");
}

#[test]
fn a_broker_ignoring_the_receive_maximum_is_counted() {
    let r = run(
        Faults {
            burst: 3,
            ..Faults::default()
        },
        1,
    );
    let c = r.class("v5-shared-qos1");
    let ctx = r.table();
    assert!(c.received > 20, "{ctx}");
    // Every batch of three: the third came with two unacknowledged.
    assert!(c.receive_max_exceeded >= c.received / 3 - 1, "{ctx}");
    assert_eq!(c.props_damaged, 0, "{ctx}");
    assert!(!r.clean(), "{ctx}");
}

/// The same fake writing one by one but naming topics by alias: the
/// client resolves them and the run is clean, at QoS 0, 1 and 2.
#[test]
fn aliases_from_the_broker_are_resolved() {
    for qos in [0, 1, 2] {
        let r = run(
            Faults {
                alias_out: true,
                ..Faults::default()
            },
            qos,
        );
        let name = format!("v5-shared-qos{qos}");
        let c = r.class(&name);
        let ctx = r.table();
        assert!(c.received > 20 && c.alias_sent > 20, "{ctx}");
        assert_eq!(c.alias_errors + c.misrouted + c.lost, 0, "{ctx}");
        assert!(r.messages[&name].clean, "{ctx}");
    }
}
