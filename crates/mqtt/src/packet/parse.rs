//! Decoding one packet's body at a level, with every rule a receiver must
//! enforce checked; each failure is a [`PacketError`] carrying the reason
//! code MQTT 5 names for it.

use super::connect::decode_connect;
use super::error::{bad, protocol};
use super::properties::{at, Properties};
use super::read::Body;
use super::{
    name_of, Level, Packet, PacketError, ReasonCode, SubOptions, AUTH, CONNACK, CONNECT,
    DISCONNECT, PINGREQ, PINGRESP, PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL, SUBACK, SUBSCRIBE,
    UNSUBACK, UNSUBSCRIBE,
};

/// How to decode: the connection's level, and the levels a CONNECT may
/// ask for.
#[derive(Clone, Copy)]
pub(crate) struct Ctx<'a> {
    pub level: Level,
    pub connect: &'a [Level],
}

pub(crate) fn decode_body(header: u8, body: &[u8], cx: Ctx<'_>) -> Result<Packet, PacketError> {
    let (kind, flags) = (header >> 4, header & 0x0f);
    // PUBLISH's flags are its own; PUBREL, SUBSCRIBE and UNSUBSCRIBE have
    // 0010, the others 0000.
    let want = match kind {
        PUBREL | SUBSCRIBE | UNSUBSCRIBE => 2,
        _ => 0,
    };
    if kind != PUBLISH && flags != want {
        return Err(bad(format!(
            "{} with flags {flags:#06b} (must be {want:#06b})",
            name_of(kind)
        )));
    }
    let mut b = Body::new(body);
    let v5 = cx.level.is_v5();
    let packet = match kind {
        CONNECT => decode_connect(&mut b, cx.connect)?,
        CONNACK => decode_connack(&mut b, v5)?,
        PUBLISH => return decode_publish(&mut b, flags, v5),
        PUBACK..=PUBCOMP => decode_ack(&mut b, kind, v5)?,
        SUBSCRIBE => decode_subscribe(&mut b, v5)?,
        SUBACK => decode_suback(&mut b, v5)?,
        UNSUBSCRIBE => {
            let packet_id = b.packet_id()?;
            let properties = properties(&mut b, UNSUBSCRIBE, v5)?;
            let mut filters = Vec::new();
            while !b.is_empty() {
                filters.push(b.string()?);
            }
            if filters.is_empty() {
                return Err(protocol("UNSUBSCRIBE without filters"));
            }
            Packet::Unsubscribe {
                packet_id,
                filters,
                properties,
            }
        }
        UNSUBACK => decode_unsuback(&mut b, v5)?,
        PINGREQ => Packet::PingReq,
        PINGRESP => Packet::PingResp,
        DISCONNECT if v5 => {
            let (reason, properties) = reason_and_properties(&mut b, DISCONNECT)?;
            Packet::Disconnect { reason, properties }
        }
        DISCONNECT => Packet::disconnect(),
        AUTH if v5 => {
            let (reason, properties) = reason_and_properties(&mut b, AUTH)?;
            Packet::Auth { reason, properties }
        }
        other => return Err(bad(format!("packet type {other}"))),
    };
    b.done()?;
    Ok(packet)
}

/// The properties of packet type `kind` at 5, none before.
fn properties(b: &mut Body<'_>, kind: u8, v5: bool) -> Result<Properties, PacketError> {
    if v5 {
        Properties::decode(b, at(kind))
    } else {
        Ok(Properties::default())
    }
}

/// A reason code packet type `kind` may carry.
fn reason(b: &mut Body<'_>, kind: u8) -> Result<ReasonCode, PacketError> {
    let code = ReasonCode(b.u8()?);
    if !code.allowed_in(kind) {
        return Err(protocol(format!(
            "{} with reason code {:#04x}",
            name_of(kind),
            code.0
        )));
    }
    Ok(code)
}

/// The optional tail of an acknowledgement, DISCONNECT or AUTH at 5:
/// absent means success without properties, a reason code alone means no
/// properties.
fn reason_and_properties(
    b: &mut Body<'_>,
    kind: u8,
) -> Result<(ReasonCode, Properties), PacketError> {
    if b.is_empty() {
        return Ok((ReasonCode::SUCCESS, Properties::default()));
    }
    let code = reason(b, kind)?;
    if b.is_empty() {
        return Ok((code, Properties::default()));
    }
    Ok((code, Properties::decode(b, at(kind))?))
}

fn decode_connack(b: &mut Body<'_>, v5: bool) -> Result<Packet, PacketError> {
    let ack = b.u8()?;
    if ack & 0xfe != 0 {
        return Err(bad("CONNACK reserved flags set"));
    }
    let session_present = ack & 1 != 0;
    let code = if v5 {
        let code = reason(b, CONNACK)?;
        if session_present && code.is_error() {
            return Err(protocol("CONNACK refusing with a session present"));
        }
        code
    } else {
        match b.u8()? {
            code @ 0..=5 => ReasonCode(code),
            code => return Err(bad(format!("CONNACK return code {code}"))),
        }
    };
    Ok(Packet::ConnAck {
        session_present,
        code,
        properties: properties(b, CONNACK, v5)?,
    })
}

fn decode_publish(b: &mut Body<'_>, flags: u8, v5: bool) -> Result<Packet, PacketError> {
    let qos = (flags >> 1) & 3;
    if qos == 3 {
        return Err(bad("PUBLISH at QoS 3"));
    }
    let dup = flags & 8 != 0;
    if dup && qos == 0 {
        return Err(bad("PUBLISH with DUP at QoS 0"));
    }
    let topic = b.string()?;
    let packet_id = if qos > 0 { Some(b.packet_id()?) } else { None };
    let properties = properties(b, PUBLISH, v5)?;
    if v5 && topic.is_empty() && properties.topic_alias.is_none() {
        return Err(protocol("PUBLISH without a topic name or a topic alias"));
    }
    Ok(Packet::Publish {
        topic,
        payload: b.rest().to_vec(),
        qos,
        retain: flags & 1 != 0,
        dup,
        packet_id,
        properties,
    })
}

fn decode_ack(b: &mut Body<'_>, kind: u8, v5: bool) -> Result<Packet, PacketError> {
    let packet_id = b.packet_id()?;
    let (reason, properties) = if v5 {
        reason_and_properties(b, kind)?
    } else {
        (ReasonCode::SUCCESS, Properties::default())
    };
    Ok(match kind {
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
    })
}

fn decode_subscribe(b: &mut Body<'_>, v5: bool) -> Result<Packet, PacketError> {
    let packet_id = b.packet_id()?;
    let properties = properties(b, SUBSCRIBE, v5)?;
    let mut filters = Vec::new();
    while !b.is_empty() {
        let f = b.string()?;
        let o = b.u8()?;
        filters.push((f, sub_options(o, v5)?));
    }
    if filters.is_empty() {
        return Err(protocol("SUBSCRIBE without filters"));
    }
    Ok(Packet::Subscribe {
        packet_id,
        filters,
        properties,
    })
}

/// A subscription options byte: before 5 the QoS alone (anything else is
/// malformed); at 5 reserved bits are malformed, a QoS or retain
/// handling of 3 a Protocol Error (§3.8.3.1).
fn sub_options(o: u8, v5: bool) -> Result<SubOptions, PacketError> {
    if !v5 {
        if o > 2 {
            return Err(bad(format!("SUBSCRIBE options byte {o:#04x}")));
        }
        return Ok(SubOptions::qos(o));
    }
    if o & 0xc0 != 0 {
        return Err(bad(format!(
            "subscription options {o:#04x}: reserved bits set"
        )));
    }
    if o & 3 == 3 {
        return Err(protocol("subscription at QoS 3"));
    }
    SubOptions::from_byte(o).ok_or_else(|| protocol("retain handling 3"))
}

fn decode_suback(b: &mut Body<'_>, v5: bool) -> Result<Packet, PacketError> {
    let packet_id = b.packet_id()?;
    let properties = properties(b, SUBACK, v5)?;
    let codes: Vec<ReasonCode> = b.rest().iter().map(|c| ReasonCode(*c)).collect();
    if codes.is_empty() {
        return Err(bad("SUBACK without return codes"));
    }
    let ok = |c: &ReasonCode| {
        if v5 {
            c.allowed_in(SUBACK)
        } else {
            matches!(c.0, 0 | 1 | 2 | 0x80)
        }
    };
    if let Some(c) = codes.iter().find(|c| !ok(c)) {
        let what = format!("SUBACK return code {:#04x}", c.0);
        return Err(if v5 { protocol(what) } else { bad(what) });
    }
    Ok(Packet::SubAck {
        packet_id,
        codes,
        properties,
    })
}

fn decode_unsuback(b: &mut Body<'_>, v5: bool) -> Result<Packet, PacketError> {
    let packet_id = b.packet_id()?;
    if !v5 {
        return Ok(Packet::unsuback(packet_id));
    }
    let properties = properties(b, UNSUBACK, v5)?;
    let mut codes = Vec::new();
    while !b.is_empty() {
        codes.push(reason(b, UNSUBACK)?);
    }
    if codes.is_empty() {
        return Err(bad("UNSUBACK without reason codes"));
    }
    Ok(Packet::UnsubAck {
        packet_id,
        codes,
        properties,
    })
}
