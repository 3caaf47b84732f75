//! Round trips at every level as properties: what `encode_as` writes,
//! `decode_as` gives back (both decoders agree, nothing is decoded before
//! the last byte); random and mutated bytes never panic at 5.

use super::*;
use proptest::collection::vec;
use proptest::option::of;
use proptest::prelude::*;

use properties::{at, Place, WILL};

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9/+#$é ]{0,12}"
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..12)
}

fn id() -> impl Strategy<Value = u16> {
    1u16..
}

/// Any properties with values the specification allows.
fn any_properties() -> impl Strategy<Value = Properties> {
    let publish = (
        of(any::<u8>()),
        of(any::<u32>()),
        of(text()),
        of(text()),
        of(bytes()),
        vec(1..=MAX_REMAINING as u32, 0..3),
        of(1u16..),
        vec((text(), text()), 0..3),
    );
    let connect = (
        of(any::<u32>()),
        of(text()),
        of(bytes()),
        of(any::<bool>()),
        of(any::<u32>()),
        of(any::<bool>()),
        of(1u16..),
        of(any::<u16>()),
        of(1u32..),
    );
    let connack = (
        of(text()),
        of(any::<u16>()),
        of(text()),
        of(text()),
        of(text()),
        of(0u8..2),
        [
            of(any::<bool>()),
            of(any::<bool>()),
            of(any::<bool>()),
            of(any::<bool>()),
        ],
    );
    (publish, connect, connack).prop_map(|(p, c, a)| Properties {
        payload_format_indicator: p.0,
        message_expiry_interval: p.1,
        content_type: p.2,
        response_topic: p.3,
        correlation_data: p.4,
        subscription_identifiers: p.5,
        topic_alias: p.6,
        user_properties: p.7,
        session_expiry_interval: c.0,
        authentication_method: c.1,
        authentication_data: c.2,
        request_problem_information: c.3,
        will_delay_interval: c.4,
        request_response_information: c.5,
        receive_maximum: c.6,
        topic_alias_maximum: c.7,
        maximum_packet_size: c.8,
        assigned_client_identifier: a.0,
        server_keep_alive: a.1,
        response_information: a.2,
        server_reference: a.3,
        reason_string: a.4,
        maximum_qos: a.5,
        retain_available: a.6[0],
        wildcard_subscription_available: a.6[1],
        subscription_identifier_available: a.6[2],
        shared_subscription_available: a.6[3],
    })
}

/// Properties a packet at `place` may carry, as the decoder accepts them.
fn properties(place: Place) -> impl Strategy<Value = Properties> {
    any_properties().prop_map(move |mut p| {
        if p.authentication_data.is_some() && p.authentication_method.is_none() {
            p.authentication_method = Some("m".into());
        }
        if place == at(SUBSCRIBE) {
            p.subscription_identifiers.truncate(1);
        }
        only_at(&p, place)
    })
}

/// A reason code from `kind`'s list.
fn reason(kind: u8) -> impl Strategy<Value = ReasonCode> {
    any::<u8>()
        .prop_map(ReasonCode)
        .prop_filter("allowed", move |c| c.allowed_in(kind))
}

fn sub_options() -> impl Strategy<Value = SubOptions> {
    (0u8..3, any::<bool>(), any::<bool>(), 0u8..3).prop_map(|(qos, nl, rap, rh)| SubOptions {
        qos,
        no_local: nl,
        retain_as_published: rap,
        retain_handling: RetainHandling::from_byte(rh).unwrap_or_default(),
    })
}

fn connect5() -> impl Strategy<Value = Packet> {
    let will = (text(), bytes(), 0u8..3, any::<bool>(), properties(WILL));
    (
        (text(), any::<u16>(), any::<bool>(), of(text()), of(bytes())),
        of(will),
        properties(at(CONNECT)),
    )
        .prop_map(
            |((client_id, keep_alive, clean, username, password), will, properties)| {
                Packet::Connect {
                    level: Level::V5,
                    client_id,
                    keep_alive,
                    clean_session: clean,
                    username,
                    password,
                    will: will.map(|(topic, payload, qos, retain, properties)| Will {
                        topic,
                        payload,
                        qos,
                        retain,
                        properties,
                    }),
                    properties,
                }
            },
        )
}

fn publish5() -> impl Strategy<Value = Packet> {
    let head = (text(), bytes(), 0u8..3, any::<bool>(), any::<bool>(), id());
    (head, properties(at(PUBLISH))).prop_map(
        |((topic, payload, qos, retain, dup, id), properties)| {
            // An empty topic needs an alias.
            let topic = if topic.is_empty() && properties.topic_alias.is_none() {
                "t".into()
            } else {
                topic
            };
            Packet::Publish {
                topic,
                payload,
                qos,
                retain,
                dup: dup && qos > 0,
                packet_id: (qos > 0).then_some(id),
                properties,
            }
        },
    )
}

/// An acknowledgement of type `kind` at 5.
fn ack5(kind: u8) -> impl Strategy<Value = Packet> {
    (id(), reason(kind), properties(at(kind))).prop_map(move |(packet_id, reason, properties)| {
        match kind {
            PUBACK => Packet::PubAck {
                packet_id,
                reason,
                properties,
            },
            PUBREC => Packet::PubRec {
                packet_id,
                reason,
                properties,
            },
            PUBREL => Packet::PubRel {
                packet_id,
                reason,
                properties,
            },
            _ => Packet::PubComp {
                packet_id,
                reason,
                properties,
            },
        }
    })
}

/// Any packet of MQTT 5.
fn any_packet5() -> impl Strategy<Value = Packet> {
    let connack = (any::<bool>(), reason(CONNACK), properties(at(CONNACK))).prop_map(
        |(sp, code, properties)| Packet::ConnAck {
            session_present: sp && !code.is_error(),
            code,
            properties,
        },
    );
    let subscribe = (
        id(),
        vec((text(), sub_options()), 1..4),
        properties(at(SUBSCRIBE)),
    )
        .prop_map(|(packet_id, filters, properties)| Packet::Subscribe {
            packet_id,
            filters,
            properties,
        });
    let suback = (id(), vec(reason(SUBACK), 1..4), properties(at(SUBACK))).prop_map(
        |(packet_id, codes, properties)| Packet::SubAck {
            packet_id,
            codes,
            properties,
        },
    );
    let unsubscribe = (id(), vec(text(), 1..4), properties(at(UNSUBSCRIBE))).prop_map(
        |(packet_id, filters, properties)| Packet::Unsubscribe {
            packet_id,
            filters,
            properties,
        },
    );
    let unsuback = (id(), vec(reason(UNSUBACK), 1..4), properties(at(UNSUBACK))).prop_map(
        |(packet_id, codes, properties)| Packet::UnsubAck {
            packet_id,
            codes,
            properties,
        },
    );
    let disconnect = (reason(DISCONNECT), properties(at(DISCONNECT)))
        .prop_map(|(reason, properties)| Packet::Disconnect { reason, properties });
    let auth = (reason(AUTH), properties(at(AUTH)))
        .prop_map(|(reason, properties)| Packet::Auth { reason, properties });
    prop_oneof![
        connect5(),
        connack,
        publish5(),
        ack5(PUBACK),
        ack5(PUBREC),
        ack5(PUBREL),
        ack5(PUBCOMP),
        subscribe,
        suback,
        unsubscribe,
        unsuback,
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        disconnect,
        auth,
    ]
}

/// A packet and the level it is exchanged at: 3.1 and 3.1.1 packets are
/// the 3.1.1 model (a CONNECT at the level), 5 the whole model.
fn any_exchange() -> impl Strategy<Value = (Level, Packet)> {
    prop_oneof![
        (
            prop_oneof![Just(Level::V31), Just(Level::V311)],
            super::v311::any_packet()
        )
            .prop_map(|(level, p)| match p {
                Packet::Connect {
                    client_id,
                    keep_alive,
                    clean_session,
                    username,
                    password,
                    will,
                    properties,
                    ..
                } => {
                    let c = Packet::Connect {
                        level,
                        client_id,
                        keep_alive,
                        clean_session,
                        username,
                        password,
                        will,
                        properties,
                    };
                    (level, c)
                }
                p => (level, p),
            }),
        any_packet5().prop_map(|p| (Level::V5, p)),
    ]
}

proptest! {
    #[test]
    fn every_packet_round_trips_at_its_level((level, p) in any_exchange()) {
        let bytes = round_at(&p, level);
        prop_assert_eq!(read_packet_as(&mut &bytes[..], 1 << 20, level).unwrap(), Some(p.clone()));
        for cut in 0..bytes.len() {
            prop_assert!(decode_as(&bytes[..cut], 1 << 20, level).unwrap().is_none());
        }
        let mut two = bytes.clone();
        two.extend_from_slice(&Packet::PingReq.encode_as(level));
        prop_assert_eq!(decode_as(&two, 1 << 20, level).unwrap(), Some((p, bytes.len())));
    }

    #[test]
    fn random_bytes_never_panic_at_5(bytes in vec(any::<u8>(), 0..64)) {
        let streamed = read_packet_as(&mut &bytes[..], 1 << 10, Level::V5);
        match decode_as(&bytes, 1 << 10, Level::V5) {
            Ok(Some((p, _))) => prop_assert_eq!(streamed.unwrap(), Some(p)),
            Ok(None) => prop_assert!(!matches!(streamed, Ok(Some(_)))),
            Err(e) => prop_assert!(streamed.is_err() && e.reason_code().is_some()),
        }
    }

    #[test]
    fn mutated_packets_never_panic_at_5(
        p in any_packet5(),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = p.encode_as(Level::V5);
        for (at, xor) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= xor;
        }
        if let Ok(Some((back, n))) = decode_as(&bytes, 1 << 20, Level::V5) {
            // Whatever decodes encodes to what was read (up to short forms
            // and the order of properties).
            let again = back.encode_as(Level::V5);
            prop_assert_eq!(decode_as(&again, 1 << 20, Level::V5).unwrap(), Some((back, again.len())));
            prop_assert!(n <= bytes.len());
        }
    }
}
