//! MQTT 5 properties: every malformed case with the reason code the
//! specification names (0x81 for an identifier not valid in the packet,
//! unknown, of the wrong type or past the property length; 0x82 for a
//! duplicate or a forbidden value; 0x94 for a Topic Alias of 0), and the
//! properties that may repeat.

use super::*;

/// A QoS 0 PUBLISH at 5 to "t" with these property bytes and payload "p".
fn publish(props: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 1, b't'];
    body.extend(block(props));
    body.push(b'p');
    wire(0x30, &body)
}

/// A CONNECT at 5 with these property bytes (client "c", no will).
fn connect(props: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 30];
    body.extend(block(props));
    body.extend([0, 1, b'c']);
    wire(0x10, &body)
}

/// A CONNECT at 5 with a will whose properties are these bytes.
fn connect_will(will_props: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 5, 0x06, 0, 30, 0, 0, 1, b'c'];
    body.extend(block(will_props));
    body.extend([0, 1, b'w', 0, 1, b'x']);
    wire(0x10, &body)
}

/// A CONNACK at 5 with these property bytes.
fn connack(props: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 0];
    body.extend(block(props));
    wire(0x20, &body)
}

/// A SUBSCRIBE at 5 of "a" at QoS 1 with these property bytes.
fn subscribe(props: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 1];
    body.extend(block(props));
    body.extend([0, 1, b'a', 1]);
    wire(0x82, &body)
}

/// Each case decodes (at 5) to an error with its reason code.
fn check(cases: &[(&str, Vec<u8>, u8)]) {
    for (what, bytes, want) in cases {
        assert_eq!(code5(bytes), *want, "{what}: {bytes:02x?}");
    }
}

#[test]
fn properties_not_valid_in_the_packet_unknown_or_mistyped_are_malformed() {
    check(&[
        // Not valid in the packet (§2.2.2.2).
        (
            "Session Expiry in PUBLISH",
            publish(&[0x11, 0, 0, 0, 1]),
            0x81,
        ),
        ("Topic Alias in CONNECT", connect(&[0x23, 0, 1]), 0x81),
        ("Will Delay in CONNECT", connect(&[0x18, 0, 0, 0, 1]), 0x81),
        ("Topic Alias in a will", connect_will(&[0x23, 0, 1]), 0x81),
        (
            "Reason String in PUBLISH",
            publish(&[0x1f, 0, 1, b'r']),
            0x81,
        ),
        ("Maximum QoS in CONNECT", connect(&[0x24, 0]), 0x81),
        // Unknown identifiers.
        ("identifier 0x00", publish(&[0x00, 0]), 0x81),
        ("identifier 0x7f", publish(&[0x7f, 0]), 0x81),
        ("identifier 0x0a", publish(&[0x0a, 0]), 0x81),
        // The wrong type or length.
        (
            "Content Type not UTF-8",
            publish(&[0x03, 0, 2, 0xc3, 0x28]),
            0x81,
        ),
        ("Content Type with U+0000", publish(&[0x03, 0, 1, 0]), 0x81),
        ("Message Expiry of 2 bytes", publish(&[0x02, 0, 1]), 0x81),
        ("string past the block", publish(&[0x08, 0, 9, b'a']), 0x81),
        (
            "user property half a pair",
            publish(&[0x26, 0, 1, b'k']),
            0x81,
        ),
        (
            "5-byte subscription id",
            subscribe(&[0x0b, 0x80, 0x80, 0x80, 0x80, 1]),
            0x81,
        ),
        // A property length past the packet.
        (
            "property length past the packet",
            wire(0x30, &[0, 1, b't', 9, 0x02]),
            0x81,
        ),
        (
            "5-byte property length",
            wire(0x30, &[0, 1, b't', 0x80, 0x80, 0x80, 0x80, 1]),
            0x81,
        ),
    ]);
}

#[test]
fn properties_included_twice_where_once_is_allowed_are_protocol_errors() {
    check(&[
        (
            "Message Expiry twice",
            publish(&[0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 2]),
            0x82,
        ),
        (
            "Content Type twice",
            publish(&[0x03, 0, 0, 0x03, 0, 0]),
            0x82,
        ),
        (
            "Topic Alias twice",
            publish(&[0x23, 0, 1, 0x23, 0, 2]),
            0x82,
        ),
        (
            "Session Expiry twice",
            connect(&[0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 1]),
            0x82,
        ),
        (
            "Receive Maximum twice",
            connect(&[0x21, 0, 1, 0x21, 0, 1]),
            0x82,
        ),
        (
            "Will Delay twice",
            connect_will(&[0x18, 0, 0, 0, 1, 0x18, 0, 0, 0, 1]),
            0x82,
        ),
        (
            "Subscription Identifier twice in SUBSCRIBE",
            subscribe(&[0x0b, 1, 0x0b, 2]),
            0x82,
        ),
    ]);
}

#[test]
fn values_the_specification_forbids_are_protocol_errors() {
    check(&[
        (
            "Subscription Identifier 0 in SUBSCRIBE",
            subscribe(&[0x0b, 0]),
            0x82,
        ),
        (
            "Subscription Identifier 0 in PUBLISH",
            publish(&[0x0b, 0]),
            0x82,
        ),
        ("Topic Alias 0", publish(&[0x23, 0, 0]), 0x94),
        ("Receive Maximum 0 in CONNECT", connect(&[0x21, 0, 0]), 0x82),
        ("Receive Maximum 0 in CONNACK", connack(&[0x21, 0, 0]), 0x82),
        (
            "Maximum Packet Size 0 in CONNECT",
            connect(&[0x27, 0, 0, 0, 0]),
            0x82,
        ),
        (
            "Maximum Packet Size 0 in CONNACK",
            connack(&[0x27, 0, 0, 0, 0]),
            0x82,
        ),
        ("Request Problem Information 2", connect(&[0x17, 2]), 0x82),
        ("Request Response Information 2", connect(&[0x19, 2]), 0x82),
        ("Maximum QoS 2", connack(&[0x24, 2]), 0x82),
        ("Retain Available 2", connack(&[0x25, 2]), 0x82),
        (
            "Wildcard Subscription Available 2",
            connack(&[0x28, 2]),
            0x82,
        ),
        (
            "Subscription Identifiers Available 2",
            connack(&[0x29, 2]),
            0x82,
        ),
        ("Shared Subscription Available 2", connack(&[0x2a, 2]), 0x82),
        (
            "Authentication Data alone",
            connect(&[0x16, 0, 1, b'd']),
            0x82,
        ),
    ]);
}

#[test]
fn the_errors_say_what_is_wrong() {
    let e = decode5(&publish(&[0x11, 0, 0, 0, 1])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "malformed packet: Session Expiry Interval in PUBLISH"
    );
    let e = decode5(&publish(&[0x23, 0, 0])).unwrap_err();
    assert!(matches!(
        &e,
        PacketError::Protocol { code, .. } if *code == ReasonCode::TOPIC_ALIAS_INVALID
    ));
    assert_eq!(
        e.to_string(),
        "protocol error (0x94 Topic Alias invalid): Topic Alias of 0"
    );
    let e = decode5(&connect(&[0x21, 0, 1, 0x21, 0, 1])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "protocol error: Receive Maximum included more than once"
    );
}

#[test]
fn user_properties_and_publish_subscription_identifiers_repeat_in_order() {
    let p = decode5(&publish(&[
        0x26, 0, 1, b'k', 0, 1, b'1', // k=1
        0x0b, 7, // subscription 7
        0x26, 0, 1, b'k', 0, 1, b'2', // k=2 again
        0x0b, 0xff, 0xff, 0xff, 0x7f, // subscription 268,435,455
        0x26, 0, 1, b'a', 0, 0, // a=""
    ]))
    .unwrap();
    let Packet::Publish { properties, .. } = p else {
        panic!("{p:?}")
    };
    assert_eq!(
        properties.user_properties,
        [("k", "1"), ("k", "2"), ("a", "")].map(|(k, v)| (k.to_string(), v.to_string()))
    );
    assert_eq!(
        properties.subscription_identifiers,
        [7, MAX_REMAINING as u32]
    );
}

#[test]
fn every_property_is_read_where_it_is_allowed() {
    let p = decode5(&connect(&[
        0x11, 0, 0, 0x0e, 0x10, // session expiry 3600
        0x21, 0, 10, // receive maximum
        0x27, 0, 1, 0, 0, // maximum packet size 65536
        0x22, 0, 5, // topic alias maximum
        0x19, 1, 0x17, 0, // request response / problem information
        0x15, 0, 1, b'm', 0x16, 0, 1, b'd', // authentication
    ]))
    .unwrap();
    let Packet::Connect { properties: c, .. } = p else {
        panic!("{p:?}")
    };
    assert_eq!(c.session_expiry_interval, Some(3600));
    assert_eq!(c.receive_maximum, Some(10));
    assert_eq!(c.maximum_packet_size, Some(65536));
    assert_eq!(c.topic_alias_maximum, Some(5));
    assert_eq!(c.request_response_information, Some(true));
    assert_eq!(c.request_problem_information, Some(false));
    assert_eq!(c.authentication_method.as_deref(), Some("m"));
    assert_eq!(c.authentication_data.as_deref(), Some(&b"d"[..]));
    let p = decode5(&connack(&[
        0x24, 1, 0x25, 0, 0x28, 1, 0x29, 0, 0x2a, 1, // capabilities
        0x12, 0, 2, b'i', b'd', 0x13, 0, 60, // assigned id, server keep alive
        0x1a, 0, 1, b'r', 0x1c, 0, 1, b's', 0x1f, 0, 2, b'o', b'k',
    ]))
    .unwrap();
    let Packet::ConnAck { properties: a, .. } = p else {
        panic!("{p:?}")
    };
    assert_eq!(a.maximum_qos, Some(1));
    assert_eq!(a.retain_available, Some(false));
    assert_eq!(a.wildcard_subscription_available, Some(true));
    assert_eq!(a.subscription_identifier_available, Some(false));
    assert_eq!(a.shared_subscription_available, Some(true));
    assert_eq!(a.assigned_client_identifier.as_deref(), Some("id"));
    assert_eq!(a.server_keep_alive, Some(60));
    assert_eq!(a.response_information.as_deref(), Some("r"));
    assert_eq!(a.server_reference.as_deref(), Some("s"));
    assert_eq!(a.reason_string.as_deref(), Some("ok"));
}

#[test]
fn the_encoder_writes_only_what_a_packet_may_carry() {
    let everything = Properties {
        topic_alias: Some(3),
        session_expiry_interval: Some(9),
        reason_string: Some("why".into()),
        user_properties: vec![("k".into(), "v".into())],
        ..Properties::default()
    };
    let ack = Packet::PubAck {
        packet_id: 1,
        reason: ReasonCode::SUCCESS,
        properties: everything.clone(),
    };
    let got = decode5(&ack.encode_as(Level::V5)).unwrap();
    let Packet::PubAck { properties, .. } = got else {
        panic!("{got:?}")
    };
    assert_eq!(properties, only_at(&everything, properties::at(PUBACK)));
    assert_eq!(properties.reason_string.as_deref(), Some("why"));
    assert_eq!(properties.topic_alias, None);
    assert_eq!(properties.session_expiry_interval, None);
    // Nothing allowed left: the short form.
    let bare = Packet::PubAck {
        packet_id: 1,
        reason: ReasonCode::SUCCESS,
        properties: Properties {
            topic_alias: Some(3),
            ..Properties::default()
        },
    };
    assert_eq!(bare.encode_as(Level::V5), [0x40, 2, 0, 1]);
}
