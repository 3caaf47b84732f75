//! MQTT 5 packets: every packet round trips with its properties, the
//! short forms of the acknowledgements, DISCONNECT and AUTH, the
//! subscription option bits, the packet-level errors with their reason
//! codes.

use super::*;

fn user(k: &str, v: &str) -> Properties {
    Properties {
        user_properties: vec![(k.into(), v.into())],
        ..Properties::default()
    }
}

fn connect5() -> Packet {
    Packet::Connect {
        level: Level::V5,
        client_id: "c5".into(),
        keep_alive: 30,
        clean_session: true,
        username: None,
        password: Some(b"token".to_vec()),
        will: Some(Will {
            topic: "w".into(),
            payload: b"bye".to_vec(),
            qos: 1,
            retain: true,
            properties: Properties {
                will_delay_interval: Some(5),
                message_expiry_interval: Some(60),
                content_type: Some("text/plain".into()),
                ..user("wk", "wv")
            },
        }),
        properties: Properties {
            session_expiry_interval: Some(300),
            receive_maximum: Some(2),
            topic_alias_maximum: Some(8),
            ..user("k", "v")
        },
    }
}

fn reason(c: u8) -> Properties {
    Properties {
        reason_string: Some(format!("reason {c}")),
        ..Properties::default()
    }
}

const ID: u16 = 7;

#[test]
/// With properties, a will's, and a PUBLISH by topic alias.
fn connect_connack_and_publish_round_trip_at_5() {
    for p in [
        connect5(),
        Packet::ConnAck {
            session_present: false,
            code: ReasonCode::NOT_AUTHORIZED,
            properties: reason(0x87),
        },
        Packet::Publish {
            topic: String::new(),
            payload: b"aliased".to_vec(),
            qos: 2,
            retain: false,
            dup: true,
            packet_id: Some(ID),
            properties: Properties {
                topic_alias: Some(1),
                payload_format_indicator: Some(1),
                response_topic: Some("re/ply".into()),
                correlation_data: Some(vec![0, 1, 2]),
                subscription_identifiers: vec![1, 99],
                ..user("k", "v")
            },
        },
    ] {
        round_at(&p, Level::V5);
    }
}

#[test]
/// Reason codes with and without properties.
fn acknowledgements_round_trip_at_5() {
    for p in [
        Packet::PubAck {
            packet_id: ID,
            reason: ReasonCode::NO_MATCHING_SUBSCRIBERS,
            properties: reason(0x10),
        },
        Packet::PubRec {
            packet_id: ID,
            reason: ReasonCode::QUOTA_EXCEEDED,
            properties: user("a", "b"),
        },
        Packet::PubRel {
            packet_id: ID,
            reason: ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
            properties: Properties::default(),
        },
        Packet::PubComp {
            packet_id: ID,
            reason: ReasonCode::SUCCESS,
            properties: reason(0),
        },
    ] {
        round_at(&p, Level::V5);
    }
}

#[test]
/// Subscription options, identifiers, reason codes per filter.
fn subscriptions_round_trip_at_5() {
    for p in [
        Packet::Subscribe {
            packet_id: ID,
            filters: vec![
                (
                    "a/#".into(),
                    SubOptions {
                        qos: 2,
                        no_local: true,
                        retain_as_published: true,
                        retain_handling: RetainHandling::Never,
                    },
                ),
                (
                    "$share/g/b".into(),
                    SubOptions {
                        retain_handling: RetainHandling::OnNewSubscription,
                        ..SubOptions::qos(1)
                    },
                ),
            ],
            properties: Properties {
                subscription_identifiers: vec![42],
                ..user("s", "1")
            },
        },
        Packet::SubAck {
            packet_id: ID,
            codes: vec![
                ReasonCode::GRANTED_QOS_2,
                ReasonCode::SHARED_SUBSCRIPTIONS_NOT_SUPPORTED,
            ],
            properties: reason(0x9e),
        },
        Packet::Unsubscribe {
            packet_id: ID,
            filters: vec!["a/#".into()],
            properties: user("u", ""),
        },
        Packet::UnsubAck {
            packet_id: ID,
            codes: vec![ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED],
            properties: reason(0x11),
        },
    ] {
        round_at(&p, Level::V5);
    }
}

#[test]
/// DISCONNECT both ways, AUTH.
fn ping_disconnect_and_auth_round_trip_at_5() {
    for p in [
        Packet::PingReq,
        Packet::PingResp,
        Packet::Disconnect {
            reason: ReasonCode::SESSION_TAKEN_OVER,
            properties: Properties {
                server_reference: Some("elsewhere".into()),
                ..reason(0x8e)
            },
        },
        Packet::Disconnect {
            reason: ReasonCode::DISCONNECT_WITH_WILL,
            properties: Properties {
                session_expiry_interval: Some(0),
                ..Properties::default()
            },
        },
        Packet::Auth {
            reason: ReasonCode::CONTINUE_AUTHENTICATION,
            properties: Properties {
                authentication_method: Some("SCRAM-SHA-1".into()),
                authentication_data: Some(b"nonce".to_vec()),
                ..Properties::default()
            },
        },
    ] {
        round_at(&p, Level::V5);
    }
}

#[test]
fn acknowledgements_disconnect_and_auth_have_short_forms() {
    // Remaining length 2: success, no properties; 3: a reason code alone.
    let short: Vec<(Vec<u8>, Packet)> = vec![
        (vec![0x40, 2, 0, 9], Packet::puback(9)),
        (vec![0x50, 2, 0, 9], Packet::pubrec(9)),
        (vec![0x62, 2, 0, 9], Packet::pubrel(9)),
        (vec![0x70, 2, 0, 9], Packet::pubcomp(9)),
        (
            vec![0x40, 3, 0, 9, 0x10],
            Packet::PubAck {
                packet_id: 9,
                reason: ReasonCode(0x10),
                properties: Properties::default(),
            },
        ),
        (
            vec![0x62, 3, 0, 9, 0x92],
            Packet::PubRel {
                packet_id: 9,
                reason: ReasonCode(0x92),
                properties: Properties::default(),
            },
        ),
        (vec![0xe0, 0], Packet::disconnect()),
        (
            vec![0xe0, 1, 0x8d],
            Packet::Disconnect {
                reason: ReasonCode::KEEP_ALIVE_TIMEOUT,
                properties: Properties::default(),
            },
        ),
        (
            vec![0xf0, 0],
            Packet::Auth {
                reason: ReasonCode::SUCCESS,
                properties: Properties::default(),
            },
        ),
    ];
    for (bytes, p) in short {
        assert_eq!(decode5(&bytes).unwrap(), p, "{bytes:02x?}");
        assert_eq!(p.encode_as(Level::V5), bytes, "{p:?}");
    }
    // An empty property block after the reason code is the same packet.
    assert_eq!(
        decode5(&[0x40, 4, 0, 9, 0x10, 0]).unwrap(),
        decode5(&[0x40, 3, 0, 9, 0x10]).unwrap()
    );
    assert_eq!(decode5(&[0xe0, 2, 0, 0]).unwrap(), Packet::disconnect());
    // With properties: reason code, property length, properties.
    let p = Packet::PubAck {
        packet_id: 9,
        reason: ReasonCode::SUCCESS,
        properties: user("k", "v"),
    };
    assert_eq!(
        p.encode_as(Level::V5),
        [0x40, 11, 0, 9, 0, 7, 0x26, 0, 1, b'k', 0, 1, b'v']
    );
}

#[test]
fn every_subscription_options_byte_is_read_or_refused_as_the_spec_says() {
    for o in 0..=255u8 {
        let bytes = wire(0x82, &[0, 1, 0, 0, 1, b'a', o]);
        let want = if o & 0xc0 != 0 {
            Some(0x81) // reserved bits: malformed (MQTT-3.8.3-5)
        } else if o & 3 == 3 || (o >> 4) & 3 == 3 {
            Some(0x82) // QoS 3, retain handling 3: Protocol Error
        } else {
            None
        };
        match (want, decode5(&bytes)) {
            (Some(code), Err(e)) => assert_eq!(e.reason_code(), Some(ReasonCode(code)), "{o:#04x}"),
            (None, Ok(Packet::Subscribe { filters, .. })) => {
                let opts = filters[0].1;
                assert_eq!(opts.byte(), o);
                assert_eq!(opts.qos, o & 3);
                assert_eq!(opts.no_local, o & 0x04 != 0);
                assert_eq!(opts.retain_as_published, o & 0x08 != 0);
                assert_eq!(opts.retain_handling.byte(), (o >> 4) & 3);
            }
            (want, got) => panic!("{o:#04x}: wanted {want:?}, got {got:?}"),
        }
    }
}

/// Each case decodes (at 5) to an error with its reason code.
fn check(cases: &[(&str, Vec<u8>, u8)]) {
    for (what, bytes, want) in cases {
        assert_eq!(code5(bytes), *want, "{what}: {bytes:02x?}");
    }
}

#[test]
fn packets_breaking_protocol_rules_at_5_are_protocol_errors() {
    check(&[
        (
            "PUBLISH without topic or alias",
            wire(0x30, &[0, 0, 0, b'p']),
            0x82,
        ),
        ("SUBSCRIBE without filters", wire(0x82, &[0, 1, 0]), 0x82),
        ("UNSUBSCRIBE without filters", wire(0xa2, &[0, 1, 0]), 0x82),
        ("PUBACK reason 0x04", wire(0x40, &[0, 1, 0x04]), 0x82),
        ("PUBREL reason 0x10", wire(0x62, &[0, 1, 0x10]), 0x82),
        ("PUBCOMP reason 0x80", wire(0x70, &[0, 1, 0x80]), 0x82),
        ("DISCONNECT reason 0x05", wire(0xe0, &[0x05]), 0x82),
        ("AUTH reason 0x01", wire(0xf0, &[0x01]), 0x82),
        ("CONNACK reason 0x01", wire(0x20, &[0, 0x01, 0]), 0x82),
        (
            "CONNACK refusing with a session",
            wire(0x20, &[1, 0x87, 0]),
            0x82,
        ),
        ("SUBACK code 0x03", wire(0x90, &[0, 1, 0, 0x03]), 0x82),
        ("UNSUBACK code 0x04", wire(0xb0, &[0, 1, 0, 0x04]), 0x82),
    ]);
}

#[test]
fn malformed_fixed_headers_and_fields_at_5_are_malformed() {
    check(&[
        ("PUBLISH QoS 3", wire(0x36, &[0, 1, b't', 0]), 0x81),
        ("CONNACK reserved flags", wire(0x20, &[2, 0, 0]), 0x81),
        ("SUBACK without codes", wire(0x90, &[0, 1, 0]), 0x81),
        ("UNSUBACK without codes", wire(0xb0, &[0, 1, 0]), 0x81),
        ("DUP at QoS 0", wire(0x38, &[0, 1, b't', 0]), 0x81),
        (
            "packet identifier 0",
            wire(0x32, &[0, 1, b't', 0, 0, 0]),
            0x81,
        ),
        ("PUBREL flags 0", wire(0x60, &[0, 1]), 0x81),
        ("AUTH flags 1", wire(0xf1, &[]), 0x81),
        ("reserved type 0", wire(0x00, &[]), 0x81),
        (
            "trailing bytes after DISCONNECT",
            wire(0xe0, &[0, 0, 9]),
            0x81,
        ),
    ]);
}

#[test]
fn connects_at_levels_not_spoken_or_malformed_get_their_reason_codes() {
    let connect = |name: &[u8], level: u8, flags: u8, rest: &[u8]| {
        let mut body = vec![0, name.len() as u8];
        body.extend_from_slice(name);
        body.extend([level, flags, 0, 30]);
        body.extend_from_slice(rest);
        wire(0x10, &body)
    };
    check(&[
        (
            "CONNECT level 6",
            connect(b"MQTT", 6, 2, &[0, 0, 1, b'c']),
            0x84,
        ),
        (
            "CONNECT MQTT level 3",
            connect(b"MQTT", 3, 2, &[0, 1, b'c']),
            0x84,
        ),
        (
            "CONNECT MQIsdp level 4",
            connect(b"MQIsdp", 4, 2, &[0, 1, b'c']),
            0x84,
        ),
        (
            "CONNECT protocol HTTP",
            connect(b"HTTP", 5, 2, &[0, 0, 1, b'c']),
            0x81,
        ),
        (
            "CONNECT reserved flag",
            connect(b"MQTT", 5, 3, &[0, 0, 1, b'c']),
            0x81,
        ),
        (
            "CONNECT will QoS 3",
            connect(b"MQTT", 5, 0x1e, &[0, 0, 1, b'c', 0, 0, 1, b'w', 0, 0]),
            0x81,
        ),
        (
            "CONNECT will retain without will",
            connect(b"MQTT", 5, 0x22, &[0, 0, 1, b'c']),
            0x81,
        ),
        (
            "CONNECT without its property length",
            connect(b"MQTT", 5, 2, &[]),
            0x81,
        ),
    ]);
}

#[test]
fn too_large_answers_0x95_and_io_errors_nothing() {
    let e = decode_as(&[0x30, 0x7f], 10, Level::V5).unwrap_err();
    assert_eq!(e.reason_code(), Some(ReasonCode::PACKET_TOO_LARGE));
    let e = read_packet_as(&mut &[0x30u8][..], 10, Level::V5).unwrap_err();
    assert_eq!(e.reason_code(), None, "an I/O error answers nothing");
}
