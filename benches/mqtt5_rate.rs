//! MQTT 5 message rates, the reference broker against Debian's mosquitto
//! in the same run (printed, never asserted; ratios are ours /
//! mosquitto's, higher is better):
//! (a) fan-out: 1 publisher to BENCH_MQTT5_SUBS (default 50) MQTT 5
//!     subscribers, BENCH_MQTT5_FANOUT_MSGS (default 2,000) messages:
//!     deliveries per second;
//! (b) fan-in: BENCH_MQTT5_PUBS (default 20) MQTT 5 publishers, each
//!     BENCH_MQTT5_FANIN_MSGS (default 5,000) messages, to 1 subscriber:
//!     messages per second.
//! Every message is QoS 0 with two user properties and a message expiry
//! interval, BENCH_MQTT5_PAYLOAD (default 64) bytes of payload. The
//! clients are this process's threads on the workspace's codec over
//! std's TcpStream; a subscriber counts PUBLISH packets by their fixed
//! header and fully decodes one in 500 to check the properties arrived.
//! A rate is what arrived over the time from the first publish to the
//! last delivery; what did not arrive (QoS 0 may be dropped) is printed.
//! Needs a release build of the binaries (`cargo build --release
//! --workspace --bins`).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use emqx_mqtt::{decode_as, Level, Packet, Properties, ReasonCode};
use emqx_testkit::clients::Mosquitto;
use emqx_testkit::RefBroker;

/// A subscriber stops after this long without a message.
const QUIET: Duration = Duration::from_secs(2);

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// An MQTT 5 client, connected with a clean start.
fn connect(addr: SocketAddr, id: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let c = Packet::Connect {
        level: Level::V5,
        client_id: id.into(),
        keep_alive: 0,
        clean_session: true,
        username: None,
        password: None,
        will: None,
        properties: Properties::default(),
    };
    s.write_all(&c.encode_as(Level::V5)).unwrap();
    match emqx_mqtt::read_packet_as(&mut s, 1 << 20, Level::V5) {
        Ok(Some(Packet::ConnAck {
            code: ReasonCode::SUCCESS,
            ..
        })) => s,
        other => panic!("{id}: {other:?}"),
    }
}

/// An MQTT 5 subscriber of `filter` at QoS 0.
fn subscriber(addr: SocketAddr, id: &str, filter: &str) -> TcpStream {
    let mut s = connect(addr, id);
    let sub = Packet::subscribe(1, [(filter, 0)]);
    s.write_all(&sub.encode_as(Level::V5)).unwrap();
    match emqx_mqtt::read_packet_as(&mut s, 1 << 20, Level::V5) {
        Ok(Some(Packet::SubAck { .. })) => s,
        other => panic!("{id}: {other:?}"),
    }
}

/// Message `n` on `topic`: QoS 0, user properties, message expiry.
fn message(topic: &str, n: usize, payload: usize) -> Vec<u8> {
    Packet::Publish {
        topic: topic.into(),
        payload: vec![b'm'; payload],
        qos: 0,
        retain: false,
        dup: false,
        packet_id: None,
        properties: Properties {
            message_expiry_interval: Some(300),
            user_properties: vec![
                ("bench".into(), "mqtt5".into()),
                ("n".into(), n.to_string()),
            ],
            ..Properties::default()
        },
    }
    .encode_as(Level::V5)
}

/// Sends `count` messages on `topic`, 32 to a write.
fn publish(s: &mut TcpStream, topic: &str, count: usize, payload: usize) {
    let mut batch = Vec::new();
    for n in 0..count {
        batch.extend(message(topic, n, payload));
        if n % 32 == 31 || n + 1 == count {
            s.write_all(&batch).unwrap();
            batch.clear();
        }
    }
}

/// What a subscriber received: messages, how many of those decoded with
/// both properties, and when the last came.
struct Received {
    messages: usize,
    checked: usize,
    with_props: usize,
    last: Instant,
}

/// Counts PUBLISH packets on `s` until `want` or [`QUIET`].
fn receive(mut s: TcpStream, want: usize) -> Received {
    s.set_read_timeout(Some(QUIET)).unwrap();
    let mut r = Received {
        messages: 0,
        checked: 0,
        with_props: 0,
        last: Instant::now(),
    };
    let mut buf = vec![0u8; 256 * 1024];
    let (mut start, mut end) = (0, 0);
    while r.messages < want {
        if end == buf.len() {
            buf.copy_within(start..end, 0);
            (start, end) = (0, end - start);
        }
        match s.read(&mut buf[end..]) {
            Ok(0) => break,
            Ok(n) => end += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => panic!("subscriber: {e}"),
        }
        r.last = Instant::now();
        while let Some(len) = frame_len(&buf[start..end]) {
            if buf[start] >> 4 == 3 {
                if r.messages.is_multiple_of(500) {
                    r.checked += 1;
                    r.with_props += usize::from(has_props(&buf[start..start + len]));
                }
                r.messages += 1;
            }
            start += len;
        }
    }
    r
}

/// The length of the whole packet at the start of `b`, once all there.
fn frame_len(b: &[u8]) -> Option<usize> {
    let mut len = 0usize;
    for i in 1..5 {
        let byte = *b.get(i)?;
        len |= usize::from(byte & 0x7f) << (7 * (i - 1));
        if byte & 0x80 == 0 {
            return (b.len() >= i + 1 + len).then_some(i + 1 + len);
        }
    }
    panic!("a remaining length longer than 4 bytes from the broker")
}

fn has_props(packet: &[u8]) -> bool {
    matches!(
        decode_as(packet, 1 << 20, Level::V5),
        Ok(Some((Packet::Publish { properties: p, .. }, _)))
            if p.user_properties.len() == 2 && p.message_expiry_interval.is_some()
    )
}

/// A rate and what arrived of what was sent.
struct Rate {
    per_sec: f64,
    received: usize,
    sent: usize,
    props_ok: bool,
}

fn rate(began: Instant, got: &[Received], sent: usize) -> Rate {
    let last = got.iter().map(|r| r.last).max().unwrap_or(began);
    let received: usize = got.iter().map(|r| r.messages).sum();
    Rate {
        per_sec: received as f64 / (last - began).as_secs_f64().max(1e-6),
        received,
        sent,
        props_ok: got.iter().all(|r| r.checked == r.with_props),
    }
}

/// 1 publisher to `subs` subscribers of `msgs` messages.
fn fan_out(addr: SocketAddr, subs: usize, msgs: usize, payload: usize) -> Rate {
    let readers: Vec<_> = (0..subs)
        .map(|i| {
            let s = subscriber(addr, &format!("out-sub-{i}"), "bench5/out");
            std::thread::spawn(move || receive(s, msgs))
        })
        .collect();
    let mut p = connect(addr, "out-pub");
    let began = Instant::now();
    publish(&mut p, "bench5/out", msgs, payload);
    let got: Vec<Received> = readers.into_iter().map(|t| t.join().unwrap()).collect();
    rate(began, &got, subs * msgs)
}

/// `pubs` publishers of `msgs` messages each to 1 subscriber.
fn fan_in(addr: SocketAddr, pubs: usize, msgs: usize, payload: usize) -> Rate {
    let s = subscriber(addr, "in-sub", "bench5/in/+");
    let reader = std::thread::spawn(move || receive(s, pubs * msgs));
    let go = Arc::new(Barrier::new(pubs + 1));
    let writers: Vec<_> = (0..pubs)
        .map(|i| {
            let mut p = connect(addr, &format!("in-pub-{i}"));
            let go = Arc::clone(&go);
            std::thread::spawn(move || {
                go.wait();
                publish(&mut p, &format!("bench5/in/{i}"), msgs, payload);
                // Held open until the subscriber is done.
                p
            })
        })
        .collect();
    go.wait();
    let began = Instant::now();
    let got = reader.join().unwrap();
    drop(writers.into_iter().map(|t| t.join().unwrap()));
    rate(began, &[got], pubs * msgs)
}

fn measure(addr: SocketAddr) -> [Rate; 2] {
    let payload = env("BENCH_MQTT5_PAYLOAD", 64);
    let out = fan_out(
        addr,
        env("BENCH_MQTT5_SUBS", 50),
        env("BENCH_MQTT5_FANOUT_MSGS", 2000),
        payload,
    );
    let fin = fan_in(
        addr,
        env("BENCH_MQTT5_PUBS", 20),
        env("BENCH_MQTT5_FANIN_MSGS", 5000),
        payload,
    );
    [out, fin]
}

fn main() {
    let bin = emqx_testkit::bins::bin("emqx-refbroker");
    let ours = {
        let b = RefBroker::start_with(&bin, &[("EMQX_BROKER_VERSION", "5.0.0")]);
        measure(b.mqtt())
    };
    let theirs = {
        let m = Mosquitto::start();
        measure(m.addr)
    };
    println!(
        "MQTT 5, QoS 0, user properties and message expiry on every message: reference broker vs mosquitto 2.0.11"
    );
    println!(
        "{:<34} {:>12} {:>12} {:>7}",
        "", "refbroker", "mosquitto", "ratio"
    );
    let what = [
        format!(
            "fan-out deliveries/s (1 -> {})",
            env("BENCH_MQTT5_SUBS", 50)
        ),
        format!("fan-in messages/s ({} -> 1)", env("BENCH_MQTT5_PUBS", 20)),
    ];
    for (i, w) in what.iter().enumerate() {
        let (a, b) = (&ours[i], &theirs[i]);
        println!(
            "{w:<34} {:>12.0} {:>12.0} {:>7.2}",
            a.per_sec,
            b.per_sec,
            a.per_sec / b.per_sec.max(1e-9)
        );
        println!(
            "{:<34} {:>12} {:>12}",
            "  received of sent",
            format!("{}/{}", a.received, a.sent),
            format!("{}/{}", b.received, b.sent)
        );
        if !a.props_ok || !b.props_ok {
            println!(
                "  properties lost on the way: refbroker {}, mosquitto {}",
                !a.props_ok, !b.props_ok
            );
        }
    }
}
