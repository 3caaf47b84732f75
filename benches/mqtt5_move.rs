//! The move pause per session for MQTT 5 sessions against MQTT 3.1.1
//! ones in the same run (printed, not asserted). N clients on broker
//! 5.0.0, each subscribed to three filters (one shared); the MQTT 5 ones
//! with a session expiry, a subscription identifier on two filters, a
//! topic alias they set and one the broker set towards them (each
//! published once to its own topic); then one `upgrade` and the pause
//! (freeze to go) read off the helper's report. Every connection must
//! move. BENCH_MQTT5_SESSIONS=1000,5000 (default) picks N. Runs as root
//! (brokers run as a test user).

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use emqx_mqtt::{decode_as, Level, Packet, Properties, SubOptions};
use emqx_testkit::BrokerHost;

#[allow(dead_code)]
mod common;

use common::number_after;

/// Reads `n` packets of `level` from `c` (the acks of what was sent).
fn read_n(c: &mut TcpStream, n: usize, level: Level) {
    let mut buf = Vec::new();
    let mut got = 0;
    while got < n {
        while let Ok(Some((_, used))) = decode_as(&buf, 1 << 16, level) {
            buf.drain(..used);
            got += 1;
        }
        if got >= n {
            break;
        }
        let mut chunk = [0u8; 4096];
        match std::io::Read::read(c, &mut chunk) {
            Ok(0) | Err(_) => panic!("the broker closed a bench client"),
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
        }
    }
}

/// Client `i` at `level`, connected with its subscriptions and aliases.
fn client(addr: SocketAddr, i: usize, level: Level) -> TcpStream {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let v5 = level.is_v5();
    let mut connect = Packet::connect(format!("{level:?}-{i}"), false, 600);
    if let Packet::Connect {
        level: l,
        properties,
        ..
    } = &mut connect
    {
        *l = level;
        if v5 {
            properties.session_expiry_interval = Some(3600);
            properties.topic_alias_maximum = Some(4);
            properties.receive_maximum = Some(16);
        }
    }
    let own = format!("bench5/{level:?}/{i}");
    let filters = [own.as_str(), "bench5/all/+", "$share/g/bench5/shared"];
    let mut bytes = connect.encode_as(level);
    for (k, f) in filters.iter().enumerate() {
        let sub = Packet::Subscribe {
            packet_id: k as u16 + 1,
            filters: vec![(f.to_string(), SubOptions::qos(1))],
            properties: Properties {
                subscription_identifiers: match v5 && k < 2 {
                    true => vec![k as u32 + 1],
                    false => vec![],
                },
                ..Properties::default()
            },
        };
        bytes.extend(sub.encode_as(level));
    }
    // To its own topic: the broker sets an alias towards it, and it one
    // towards the broker.
    let publish = Packet::Publish {
        topic: own.clone(),
        payload: b"x".to_vec(),
        qos: 0,
        retain: false,
        dup: false,
        packet_id: None,
        properties: Properties {
            topic_alias: v5.then_some(1),
            user_properties: match v5 {
                true => vec![("bench".into(), "5".into())],
                false => vec![],
            },
            ..Properties::default()
        },
    };
    bytes.extend(publish.encode_as(level));
    c.write_all(&bytes).unwrap();
    // CONNACK, three SUBACKs, its own message.
    read_n(&mut c, 5, level);
    c
}

/// One upgrade with `n` clients at `level`: the pause in ms.
fn pause(n: usize, level: Level) -> f64 {
    let b = BrokerHost::running("");
    let addr = b.addrs()[0];
    let clients: Vec<TcpStream> = (0..n).map(|i| client(addr, i, level)).collect();
    let (out, err, code) = b.emqx(&["upgrade", "5.0.1"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        err.contains(&format!(" {n} connections moved with their sessions")),
        "{err}"
    );
    drop(clients);
    number_after(&err, "(pause ").unwrap_or(f64::NAN)
}

fn main() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
    let sizes: Vec<usize> = std::env::var("BENCH_MQTT5_SESSIONS")
        .unwrap_or_else(|_| "1000,5000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    println!("the move pause: MQTT 5 sessions (expiry, identifiers, aliases both ways, a shared subscription) vs. MQTT 3.1.1 ones");
    println!(
        "{:>6} {:>12} {:>12} {:>14} {:>14} {:>8}",
        "N", "3.1.1 ms", "5 ms", "3.1.1 us/sess", "5 us/sess", "5/3.1.1"
    );
    for n in sizes {
        let old = pause(n, Level::V311);
        let new = pause(n, Level::V5);
        let per = |ms: f64| ms * 1000.0 / n as f64;
        println!(
            "{n:>6} {old:>12.1} {new:>12.1} {:>14.1} {:>14.1} {:>8.2}",
            per(old),
            per(new),
            new / old
        );
    }
}
