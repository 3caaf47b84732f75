//! Bad MQTT 5 input, fuzz-style on stable Rust (issue #22): valid MQTT 5
//! packets (CONNECT with properties, PUBLISH with properties and topic
//! aliases, SUBSCRIBE with options, acknowledgements, DISCONNECT, AUTH)
//! mutated in their property blocks and in their bytes (`fuzz5/gen.rs`),
//! fed to the decoder and to a live reference broker.
//!
//! The decoder must never panic, its buffer and stream entry points must
//! agree, and a case with one mutation whose effect the specification
//! settles must get the spec's reason code (`fuzz5/spec.rs`).
//!
//! The broker, one connection per case, after a valid MQTT 5 CONNECT or
//! instead of one: every connection ends within a bound after our end of
//! stream; after CONNECT a DISCONNECT, when sent, names the reason code
//! the decoder gives for the same bytes; before CONNECT only a close or a
//! refusing CONNACK; a good client is served throughout; and the same
//! cases run twice do not grow its memory the second time (VmRSS), nor
//! its fds. `MQTT5_FUZZ_CASES` sets the cases per pass (default 4000).
//! The broker's 0x95 (Packet too large) is checked on its own. Run with
//! `cargo test --test mqtt5_fuzz` after `cargo build --workspace --bins`.

mod fuzz5;

use std::cell::RefCell;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use emqx_mqtt::{decode_as, read_packet_as, Level, Packet, ReasonCode};
use emqx_testkit::procfs::{fds, status};
use emqx_testkit::RefBroker;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use fuzz5::gen::{case, connect, session_packet, Case, MAX_PACKET};
use fuzz5::live::{judge_connected, judge_first, probe, read_one, verdict, Tally};
use fuzz5::spec::expected;

/// Any case: a mutated CONNECT (a connection's first packet) or a
/// mutated packet of an established session.
fn any_case() -> impl Strategy<Value = (bool, Case)> {
    prop_oneof![
        1 => case((0u8..50, any::<bool>()).prop_map(|(n, user)| {
            connect(&format!("fuzz-first-{n}"), user.then_some("fuzzer"))
        }))
        .prop_map(|c| (false, c)),
        3 => case(session_packet()).prop_map(|c| (true, c)),
    ]
}

proptest! {
    #![proptest_config(Config { cases: 3000, ..Config::default() })]

    #[test]
    fn the_decoder_never_panics_and_its_entry_points_agree((connected, c) in any_case()) {
        let bytes = c.bytes();
        let level = if connected { Level::V5 } else { Level::V311 };
        let buffered = decode_as(&bytes, MAX_PACKET, level);
        let streamed = read_packet_as(&mut &bytes[..], MAX_PACKET, level);
        match &buffered {
            Ok(Some((p, n))) => {
                prop_assert!(*n <= bytes.len());
                prop_assert_eq!(streamed.as_ref().ok().cloned().flatten(), Some(p.clone()));
            }
            // Incomplete: the stream ends inside the packet.
            Ok(None) => prop_assert!(streamed.is_err()),
            Err(e) => {
                let code = e.reason_code();
                prop_assert!(code.is_some(), "a buffer decode failed on I/O: {e}");
                let s = streamed.as_ref().err().and_then(|e| e.reason_code());
                prop_assert_eq!(s, code, "stream and buffer disagree on {:02x?}", bytes);
            }
        }
        // Every prefix decodes to nothing yet, or to the same error.
        for cut in 0..bytes.len() {
            let _ = decode_as(&bytes[..cut], MAX_PACKET, level);
        }
    }

    #[test]
    fn mutations_the_spec_settles_get_its_reason_code((connected, c) in any_case()) {
        let Some(want) = expected(&c) else { return Ok(()) };
        let level = if connected { Level::V5 } else { Level::V311 };
        let bytes = c.bytes();
        let got = decode_as(&bytes, MAX_PACKET, level);
        match want {
            None => prop_assert!(
                matches!(&got, Ok(Some((_, n))) if *n == bytes.len()),
                "{c:?}: valid, got {got:?}"
            ),
            Some(code) => prop_assert_eq!(
                got.as_ref().err().and_then(|e| e.reason_code()),
                Some(ReasonCode(code)),
                "{:?}: {:02x?} decoded as {:?}", c, bytes, got
            ),
        }
    }
}

/// A client that must be served throughout: subscribed to its own topic
/// at QoS 1, it publishes there and must get its PUBACK and its message.
struct Good {
    s: TcpStream,
    n: u16,
}

impl Good {
    const TOPIC: &'static str = "fuzz-good/echo";

    fn connect(addr: SocketAddr) -> Good {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let id = "fuzz-good-client-7f3a9c";
        let connect = fuzz5::live::connect5(id, 0);
        s.write_all(&connect.encode_as(Level::V5)).unwrap();
        assert!(matches!(read_one(&mut s), Packet::ConnAck { code, .. } if code.0 == 0));
        let sub = Packet::subscribe(1, [(Good::TOPIC, 1)]);
        s.write_all(&sub.encode_as(Level::V5)).unwrap();
        assert!(matches!(read_one(&mut s), Packet::SubAck { .. }));
        Good { s, n: 1 }
    }

    /// One round trip; panics on a DISCONNECT, a close or a timeout.
    fn check(&mut self, when: &str) {
        self.n = self.n % 60_000 + 1;
        let payload = format!("good {}", self.n);
        let p = Packet::publish(Good::TOPIC, payload.clone(), 1, false, self.n);
        self.s.write_all(&p.encode_as(Level::V5)).unwrap();
        let (mut acked, mut got) = (false, false);
        while !(acked && got) {
            match read_one(&mut self.s) {
                Packet::PubAck { packet_id, .. } if packet_id == self.n => acked = true,
                Packet::Publish {
                    payload: m,
                    packet_id,
                    ..
                } => {
                    if let Some(id) = packet_id {
                        let ack = Packet::puback(id).encode_as(Level::V5);
                        self.s.write_all(&ack).unwrap();
                    }
                    got |= m == payload.as_bytes();
                }
                other => panic!("the good client got {other:?} {when}"),
            }
        }
    }
}

/// One pass of the live cases (the same cases every pass: a fixed seed).
fn pass(addr: SocketAddr, cases: u32, good: &RefCell<Good>, tally: &RefCell<Tally>) {
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 64,
        ..Config::default()
    };
    let rng = TestRng::deterministic_rng(RngAlgorithm::ChaCha);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let count = RefCell::new(0u64);
    let result = runner.run(&any_case(), |(connected, c)| {
        let n = {
            let mut n = count.borrow_mut();
            *n += 1;
            *n
        };
        let bytes = c.bytes();
        let id = format!("fuzz-{}", n % 64);
        let answer = probe(addr, &id, connected, &bytes);
        let mut t = tally.borrow_mut();
        if connected {
            judge_connected(&bytes, &answer, &mut t);
        } else {
            judge_first(&bytes, &answer, &mut t);
        }
        if n.is_multiple_of(50) {
            good.borrow_mut().check(&format!("after case {n}"));
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Waits (bounded) until the broker holds at most `want` fds.
fn settled_fds(pid: u32, want: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    while fds(pid) > want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    fds(pid)
}

#[test]
fn refbroker_survives_mutated_v5_packets() {
    let bin = emqx_testkit::bins::bin("emqx-refbroker");
    let mut b = RefBroker::start_with(&bin, &[("EMQX_BROKER_VERSION", "5.0.0")]);
    let pid = b.child.id();
    let cases: u32 = std::env::var("MQTT5_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4000);
    let good = RefCell::new(Good::connect(b.mqtt()));
    let idle_fds = fds(pid);
    let tally = RefCell::new(Tally::default());
    let began = Instant::now();
    // Warm-up: whatever the cases leave behind (retained messages of
    // mutated topics...) is there after the first pass.
    pass(b.mqtt(), cases, &good, &tally);
    let fds_warm = settled_fds(pid, idle_fds);
    let rss_warm = status(pid, "VmRSS:");
    pass(b.mqtt(), cases, &good, &tally);
    let fds_after = settled_fds(pid, idle_fds);
    let rss_after = status(pid, "VmRSS:");
    good.borrow_mut().check("at the end");
    let t = *tally.borrow();
    eprintln!(
        "{} bad connections in {:.1} s; VmRSS {rss_warm} KiB after the warm-up, {rss_after} KiB after; fds {idle_fds} idle, {fds_warm}, {fds_after}; {t:?}",
        2 * cases,
        began.elapsed().as_secs_f64()
    );
    assert!(b.child.try_wait().unwrap().is_none(), "broker exited");
    assert!(
        rss_after <= rss_warm + 4096,
        "VmRSS grew from {rss_warm} KiB to {rss_after} KiB over {cases} bad connections"
    );
    assert!(
        fds_after <= idle_fds + 2,
        "fds: {idle_fds} idle, {fds_after} after"
    );
    assert!(t.refused_first > 0 && t.disconnect_same_code > 0, "{t:?}");
    b.kill();
}

/// A connected MQTT 5 client of `b` and its CONNACK's properties.
fn client5(b: &RefBroker, id: &str) -> (TcpStream, emqx_mqtt::Properties) {
    let mut s = TcpStream::connect(b.mqtt()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let c = fuzz5::live::connect5(id, 0);
    s.write_all(&c.encode_as(Level::V5)).unwrap();
    match read_one(&mut s) {
        Packet::ConnAck {
            code: ReasonCode::SUCCESS,
            properties,
            ..
        } => (s, properties),
        other => panic!("{other:?}"),
    }
}

/// A PUBLISH of remaining length `remaining`, sent from a thread (the
/// broker may stop reading), then a PINGREQ; the broker's answer.
fn publish_of_size(s: &mut TcpStream, remaining: usize) -> Vec<Packet> {
    let head = Packet::publish("fuzz/big", Vec::new(), 0, false, 0).encode_as(Level::V5);
    // Topic and an empty property block; the payload makes up the rest.
    let mut bytes = vec![0x30];
    bytes.extend(fuzz5::gen::varint(remaining));
    let start = bytes.len();
    bytes.extend_from_slice(&head[2..]);
    bytes.resize(start + remaining, b'x');
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&bytes);
        let _ = w.write_all(&Packet::PingReq.encode_as(Level::V5));
    });
    let mut got = Vec::new();
    loop {
        match read_packet_as(s, MAX_PACKET, Level::V5) {
            Ok(Some(p @ Packet::PingResp)) => {
                got.push(p);
                break;
            }
            Ok(Some(p)) => got.push(p),
            Ok(None) => break,
            Err(e) if got.is_empty() => panic!("no answer to a PUBLISH of {remaining} bytes: {e}"),
            Err(_) => break,
        }
    }
    writer.join().unwrap();
    got
}

#[test]
fn refbroker_disconnects_0x95_for_a_publish_over_its_maximum() {
    let bin = emqx_testkit::bins::bin("emqx-refbroker");
    let b = RefBroker::start_with(&bin, &[("EMQX_BROKER_VERSION", "5.0.0")]);
    let (mut s, _) = client5(&b, "big-sender");
    let got = publish_of_size(&mut s, MAX_PACKET + 1);
    assert_eq!(
        got,
        [Packet::disconnect_with(ReasonCode::PACKET_TOO_LARGE)],
        "a PUBLISH whose remaining length is past 1 MiB"
    );
    // One just within the bound is taken.
    let (mut s, _) = client5(&b, "fits");
    assert_eq!(publish_of_size(&mut s, MAX_PACKET), [Packet::PingResp]);
    let v = verdict(&[0x30, 0x81, 0x80, 0x40, 0], Level::V5);
    assert_eq!(v.error, Some(0x95), "the decoder agrees: {v:?}");
}

/// MQTT 5 §3.2.2.3.6: without a Maximum Packet Size in the CONNACK "there
/// is no limit on the packet size imposed beyond the limitations in the
/// protocol"; a server that refuses packets over a size must say so, or
/// a conforming client is disconnected with 0x95 for a packet it was
/// allowed to send.
#[test]
fn refbroker_announces_the_maximum_packet_size_it_enforces() {
    let bin = emqx_testkit::bins::bin("emqx-refbroker");
    let b = RefBroker::start_with(&bin, &[("EMQX_BROKER_VERSION", "5.0.0")]);
    let (_, props) = client5(&b, "asks");
    let max = props.maximum_packet_size;
    assert!(
        max.is_some_and(|m| m as usize <= MAX_PACKET + 4),
        "CONNACK says Maximum Packet Size {max:?}, but a PUBLISH of {} bytes in all gets DISCONNECT 0x95; CONNACK properties: {props:?}",
        MAX_PACKET + 5
    );
}
