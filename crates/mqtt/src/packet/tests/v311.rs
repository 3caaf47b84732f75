//! MQTT 3.1.1 as it always was: round trips, malformed input, and
//! properties of the codec through the 3.1.1-only entry points.

use super::super::*;
use proptest::prelude::*;
use std::io;

fn read(bytes: &[u8]) -> Result<Option<Packet>, PacketError> {
    read_packet(&mut &bytes[..], 1 << 20)
}

fn round(p: Packet) {
    let bytes = p.encode();
    assert_eq!(read(&bytes).unwrap().as_ref(), Some(&p), "{bytes:02x?}");
    assert_eq!(decode(&bytes, 1 << 20).unwrap(), Some((p, bytes.len())));
}

#[test]
fn every_packet_round_trips() {
    round(Packet::Connect {
        level: Level::V311,
        client_id: "c1".into(),
        keep_alive: 30,
        clean_session: true,
        username: Some("u".into()),
        password: Some(b"p".to_vec()),
        will: None,
        properties: Properties::default(),
    });
    round(Packet::Connect {
        level: Level::V311,
        client_id: String::new(),
        keep_alive: 0,
        clean_session: false,
        username: None,
        password: None,
        will: None,
        properties: Properties::default(),
    });
    round(Packet::connack(true, ReasonCode(0)));
    round(Packet::connack(false, ReasonCode(5)));
    round(Packet::Publish {
        topic: "a/b".into(),
        payload: b"x".to_vec(),
        qos: 1,
        retain: true,
        dup: true,
        packet_id: Some(7),
        properties: Properties::default(),
    });
    round(Packet::Publish {
        topic: "a".into(),
        payload: vec![0; 200],
        qos: 2,
        retain: false,
        dup: false,
        packet_id: Some(65535),
        properties: Properties::default(),
    });
    round(Packet::Publish {
        topic: "ünïcödé/$x".into(),
        payload: vec![],
        qos: 0,
        retain: false,
        dup: false,
        packet_id: None,
        properties: Properties::default(),
    });
    round(Packet::puback(7));
    round(Packet::pubrec(8));
    round(Packet::pubrel(9));
    round(Packet::pubcomp(10));
    round(Packet::Connect {
        level: Level::V311,
        client_id: "w".into(),
        keep_alive: 5,
        clean_session: false,
        username: None,
        password: None,
        will: Some(Will {
            topic: "t/w".into(),
            payload: vec![0, 1, 2],
            qos: 2,
            retain: false,
            properties: Properties::default(),
        }),
        properties: Properties::default(),
    });
    round(Packet::subscribe(1, [("a/#", 1), ("$SYS/+", 0), ("x", 2)]));
    round(Packet::suback(
        1,
        [1, 0x80, 0, 2].into_iter().map(ReasonCode).collect(),
    ));
    round(Packet::unsubscribe(2, vec!["a/#".into(), "b".into()]));
    round(Packet::unsuback(2));
    round(Packet::PingReq);
    round(Packet::PingResp);
    round(Packet::disconnect());
}

#[test]
fn remaining_length_uses_up_to_four_bytes() {
    let bounds = [(3, 1), (127, 1), (128, 2), (16_383, 2), (16_384, 3)];
    for (remaining, len_bytes) in bounds.into_iter().chain([(2_097_151, 3), (2_097_152, 4)]) {
        let n = remaining - 3; // topic "t" takes 3 bytes
        let p = Packet::Publish {
            topic: "t".into(),
            payload: vec![7; n],
            qos: 0,
            retain: false,
            dup: false,
            packet_id: None,
            properties: Properties::default(),
        };
        let bytes = p.encode();
        assert_eq!(bytes.len(), 1 + len_bytes + 3 + n, "payload {n}");
        assert_eq!(read_packet(&mut &bytes[..], 4 << 20).unwrap(), Some(p));
    }
}

/// A CONNECT with the given flags byte and payload.
fn connect_with(level: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', level, flags, 0, 30];
    body.extend_from_slice(payload);
    let mut out = vec![0x10, body.len() as u8];
    out.extend_from_slice(&body);
    out
}

#[test]
fn a_will_is_kept_with_its_flags() {
    // Client id "c", will topic "w", will message "bye", user "u".
    let payload = [0, 1, b'c', 0, 1, b'w', 0, 3, b'b', b'y', b'e', 0, 1, b'u'];
    let p = read(&connect_with(4, 0x80 | 0x20 | 0x08 | 0x04 | 0x02, &payload))
        .unwrap()
        .unwrap();
    assert_eq!(
        p,
        Packet::Connect {
            level: Level::V311,
            client_id: "c".into(),
            keep_alive: 30,
            clean_session: true,
            username: Some("u".into()),
            password: None,
            will: Some(Will {
                topic: "w".into(),
                payload: b"bye".to_vec(),
                qos: 1,
                retain: true,
                properties: Properties::default(),
            }),
            properties: Properties::default(),
        }
    );
}

#[test]
fn malformed_input_is_refused() {
    let c = [0, 1, b'c'];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("5-byte varint", vec![0x10, 0x80, 0x80, 0x80, 0x80, 0x01]),
        ("truncated topic", vec![0x30, 0x05, 0x00, 0x09]),
        ("truncated body", vec![0x30, 0x05, 0x00, 0x01, b'a']),
        ("truncated varint", vec![0x30, 0x80]),
        ("header only", vec![0x30]),
        ("SUBSCRIBE flags 0", vec![0x80, 0x06, 0, 1, 0, 1, b'a', 0]),
        ("UNSUBSCRIBE flags 0", vec![0xa0, 0x05, 0, 1, 0, 1, b'a']),
        ("PUBLISH QoS 3", vec![0x36, 0x03, 0x00, 0x01, b'a']),
        ("DUP at QoS 0", vec![0x38, 0x03, 0x00, 0x01, b'a']),
        ("packet id 0", vec![0x32, 0x05, 0, 1, b'a', 0, 0]),
        ("PUBACK id 0", vec![0x40, 0x02, 0, 0]),
        ("PINGREQ with a body", vec![0xc0, 0x01, 0x00]),
        ("PINGREQ flags", vec![0xc1, 0x00]),
        ("type 15", vec![0xf0, 0x00]),
        ("type 0", vec![0x00, 0x00]),
        ("PUBREL with flags 0", vec![0x60, 0x02, 0, 1]),
        ("PUBREC with flags 2", vec![0x52, 0x02, 0, 1]),
        ("PUBCOMP without an id", vec![0x70, 0x00]),
        ("SUBSCRIBE without filters", vec![0x82, 0x02, 0x00, 0x01]),
        ("SUBSCRIBE QoS 3", vec![0x82, 0x06, 0, 1, 0, 1, b'a', 3]),
        ("SUBACK code 3", vec![0x90, 0x03, 0, 1, 3]),
        ("CONNACK code 6", vec![0x20, 0x02, 0, 6]),
        ("not UTF-8", vec![0x30, 0x04, 0, 2, 0xc3, 0x28]),
        ("U+0000", vec![0x30, 0x04, 0, 2, b'a', 0]),
        ("level 3", connect_with(3, 0x02, &c)),
        ("level 5", connect_with(5, 0x02, &c)),
        ("reserved connect flag", connect_with(4, 0x03, &c)),
        (
            "will QoS 3",
            connect_with(4, 0x1c, &[0, 1, b'c', 0, 1, b'w', 0, 0]),
        ),
        ("will retain, no will", connect_with(4, 0x22, &c)),
        (
            "password, no user",
            connect_with(4, 0x42, &[0, 1, b'c', 0, 1, b'p']),
        ),
        ("trailing bytes", connect_with(4, 0x02, &[0, 1, b'c', 9])),
    ];
    for (what, bytes) in &cases {
        assert!(read(bytes).is_err(), "accepted {what}: {bytes:02x?}");
        assert!(
            !matches!(decode(bytes, 1 << 20), Ok(Some(_))),
            "decode accepted {what}"
        );
    }
    assert!(matches!(
        read(&[0x30, 0x05, 0, 1]),
        Err(PacketError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof
    ));
    assert!(matches!(
        read_packet(&mut &[0x30u8, 0x7f][..], 10),
        Err(PacketError::TooLarge(127))
    ));
    assert!(matches!(
        decode(&[0x30u8, 0x7f], 10),
        Err(PacketError::TooLarge(127))
    ));
    assert!(read(&[]).unwrap().is_none());
}

#[test]
fn the_level_of_a_refused_connect_is_told() {
    let c = [0, 1, b'c'];
    let frame = read_frame(&mut &connect_with(3, 0x02, &c)[..], 100)
        .unwrap()
        .unwrap();
    assert!(frame.decode().is_err());
    assert_eq!(frame.connect_level(), Some(3));
    let ok = read_frame(&mut &connect_with(4, 0x02, &c)[..], 100)
        .unwrap()
        .unwrap();
    assert_eq!(ok.connect_level(), Some(4));
    let ping = read_frame(&mut &[0xc0u8, 0][..], 100).unwrap().unwrap();
    assert_eq!(ping.connect_level(), None);
}

#[test]
fn long_strings_are_cut_on_a_character_boundary() {
    let topic = "é".repeat(40_000); // 80,000 bytes
    let bytes = Packet::Publish {
        topic,
        payload: b"p".to_vec(),
        qos: 0,
        retain: false,
        dup: false,
        packet_id: None,
        properties: Properties::default(),
    }
    .encode();
    match read(&bytes).unwrap() {
        Some(Packet::Publish { topic, payload, .. }) => {
            assert_eq!(topic.len(), 65_534);
            assert_eq!(payload, b"p");
        }
        other => panic!("{other:?}"),
    }
}

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9/+#$é ]{0,40}"
}

fn id() -> impl Strategy<Value = u16> {
    1u16..
}

pub(super) fn any_packet() -> impl Strategy<Value = Packet> {
    let connect = (
        text(),
        any::<u16>(),
        any::<bool>(),
        proptest::option::of((
            text(),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
        )),
        proptest::option::of((
            text(),
            proptest::collection::vec(any::<u8>(), 0..20),
            0u8..3,
            any::<bool>(),
        )),
    )
        .prop_map(|(client_id, keep_alive, clean_session, user, will)| {
            let (username, password) = match user {
                Some((u, p)) => (Some(u), p),
                None => (None, None),
            };
            Packet::Connect {
                level: Level::V311,
                client_id,
                keep_alive,
                clean_session,
                username,
                password,
                will: will
                    .map(|(topic, payload, qos, retain)| Will::new(topic, payload, qos, retain)),
                properties: Properties::default(),
            }
        });
    let publish = (
        text(),
        proptest::collection::vec(any::<u8>(), 0..300),
        0u8..3,
        any::<bool>(),
        any::<bool>(),
        id(),
    )
        .prop_map(|(topic, payload, qos, retain, dup, id)| Packet::Publish {
            topic,
            payload,
            qos,
            retain,
            dup: dup && qos > 0,
            packet_id: (qos > 0).then_some(id),
            properties: Properties::default(),
        });
    prop_oneof![
        connect,
        (any::<bool>(), 0u8..6)
            .prop_map(|(session_present, code)| Packet::connack(session_present, ReasonCode(code))),
        publish,
        id().prop_map(Packet::puback),
        id().prop_map(Packet::pubrec),
        id().prop_map(Packet::pubrel),
        id().prop_map(Packet::pubcomp),
        (id(), proptest::collection::vec((text(), 0u8..3), 1..5))
            .prop_map(|(packet_id, filters)| Packet::subscribe(packet_id, filters)),
        (
            id(),
            proptest::collection::vec(prop_oneof![Just(0u8), Just(1), Just(2), Just(0x80)], 1..5)
        )
            .prop_map(|(packet_id, codes)| Packet::suback(
                packet_id,
                codes.into_iter().map(ReasonCode).collect()
            )),
        (id(), proptest::collection::vec(text(), 1..5))
            .prop_map(|(packet_id, filters)| Packet::unsubscribe(packet_id, filters)),
        id().prop_map(Packet::unsuback),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        Just(Packet::disconnect()),
    ]
}

proptest! {
    #[test]
    fn every_packet_round_trips_property(p in any_packet()) {
        let bytes = p.encode();
        prop_assert_eq!(read(&bytes).unwrap(), Some(p.clone()));
        // A buffer decoder sees nothing until the last byte arrives.
        for cut in 0..bytes.len() {
            prop_assert!(decode(&bytes[..cut], 1 << 20).unwrap().is_none());
        }
        let mut two = bytes.clone();
        two.extend_from_slice(&Packet::PingReq.encode());
        prop_assert_eq!(decode(&two, 1 << 20).unwrap(), Some((p, bytes.len())));
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = read_packet(&mut &bytes[..], 1 << 10);
        let _ = decode(&bytes, 1 << 10);
    }

    #[test]
    fn reading_agrees_with_decoding(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let streamed = read_packet(&mut &bytes[..], 1 << 10);
        match decode(&bytes, 1 << 10) {
            Ok(Some((p, _))) => prop_assert_eq!(streamed.unwrap(), Some(p)),
            Ok(None) => prop_assert!(!matches!(streamed, Ok(Some(_)))),
            Err(_) => prop_assert!(streamed.is_err()),
        }
    }
}
