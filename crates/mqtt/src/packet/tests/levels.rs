//! Levels: a CONNECT names its own (3.1, 3.1.1 or 5), the 3.1.1-only
//! entry points refuse the others, 3.1.1 leaves out what only 5 carries;
//! and reason codes' names and lists.

use super::*;

fn user(k: &str, v: &str) -> Properties {
    Properties {
        user_properties: vec![(k.into(), v.into())],
        ..Properties::default()
    }
}

/// A CONNECT at `level` with a password and no user name.
fn connect_at(level: Level, password: Option<Vec<u8>>) -> Packet {
    Packet::Connect {
        level,
        client_id: "id".into(),
        keep_alive: 9,
        clean_session: true,
        username: None,
        password,
        will: None,
        properties: Properties::default(),
    }
}

#[test]
fn a_connect_names_its_own_level() {
    let c = |level: Level| connect_at(level, None);
    for level in Level::ALL {
        let bytes = c(level).encode_as(Level::V311);
        // Whatever level the decoder is told: the CONNECT's own.
        for told in Level::ALL {
            assert_eq!(
                decode_as(&bytes, 100, told).unwrap(),
                Some((c(level), bytes.len()))
            );
        }
        let frame = read_frame(&mut &bytes[..], 100).unwrap().unwrap();
        assert_eq!(frame.connect_level(), Some(level.byte()));
        // The 3.1.1-only entry points refuse every other level.
        match decode(&bytes, 100) {
            Ok(Some((p, _))) => assert_eq!((level, p), (Level::V311, c(level))),
            Err(e) => {
                assert!(
                    matches!(e, PacketError::UnsupportedVersion(b) if b == level.byte()),
                    "{e}"
                );
                assert_eq!(
                    e.reason_code(),
                    Some(ReasonCode::UNSUPPORTED_PROTOCOL_VERSION)
                );
            }
            Ok(None) => panic!("incomplete"),
        }
    }
    assert_eq!(&c(Level::V31).encode()[2..10], b"\0\x06MQIsdp");
    // A password without a user name: MQTT 5 only.
    let alone = |level| connect_at(level, Some(b"p".to_vec()));
    round_at(&alone(Level::V5), Level::V5);
    let e = decode_as(&alone(Level::V311).encode(), 100, Level::V311).unwrap_err();
    assert_eq!(e.reason_code(), Some(ReasonCode::MALFORMED_PACKET));
}

#[test]
fn at_3_1_1_what_only_5_can_carry_is_left_out() {
    let full = Packet::PubAck {
        packet_id: 3,
        reason: ReasonCode::QUOTA_EXCEEDED,
        properties: user("k", "v"),
    };
    assert_eq!(full.encode(), Packet::puback(3).encode());
    let d = Packet::Disconnect {
        reason: ReasonCode::SERVER_SHUTTING_DOWN,
        properties: user("k", "v"),
    };
    assert_eq!(d.encode(), [0xe0, 0]);
    let u = Packet::UnsubAck {
        packet_id: 3,
        codes: vec![ReasonCode(0x11)],
        properties: user("k", "v"),
    };
    assert_eq!(u.encode(), Packet::unsuback(3).encode());
    let opts = SubOptions {
        qos: 1,
        no_local: true,
        retain_as_published: true,
        retain_handling: RetainHandling::Never,
    };
    let s = Packet::Subscribe {
        packet_id: 3,
        filters: vec![("a".into(), opts)],
        properties: user("k", "v"),
    };
    assert_eq!(s.encode(), Packet::subscribe(3, [("a", 1)]).encode());
    let p = Packet::Publish {
        topic: "t".into(),
        payload: b"x".to_vec(),
        qos: 1,
        retain: false,
        dup: false,
        packet_id: Some(3),
        properties: user("k", "v"),
    };
    assert_eq!(p.encode(), Packet::publish("t", "x", 1, false, 3).encode());
    // And a 3.1.1 reader refuses what only 5 has.
    assert!(decode(
        &Packet::Auth {
            reason: ReasonCode::SUCCESS,
            properties: Properties::default()
        }
        .encode(),
        100
    )
    .is_err());
    assert!(
        decode(&wire(0x40, &[0, 1, 0x10]), 100).is_err(),
        "a PUBACK with a reason code"
    );
}

#[test]
fn reason_codes_have_their_names() {
    assert_eq!(
        ReasonCode::SESSION_TAKEN_OVER.to_string(),
        "0x8e Session taken over"
    );
    assert_eq!(ReasonCode(0x03).name(), "unknown");
    assert!(ReasonCode::MALFORMED_PACKET.is_error() && !ReasonCode::GRANTED_QOS_2.is_error());
    assert_eq!(ReasonCode::granted(7), ReasonCode::GRANTED_QOS_2);
    assert_eq!(ReasonCode::BAD_USER_NAME_OR_PASSWORD.v3_connack(), 4);
    assert_eq!(ReasonCode::UNSUPPORTED_PROTOCOL_VERSION.v3_connack(), 1);
    assert!(ReasonCode::TOPIC_ALIAS_INVALID.allowed_in(DISCONNECT));
    assert!(!ReasonCode::TOPIC_ALIAS_INVALID.allowed_in(PUBACK));
}
