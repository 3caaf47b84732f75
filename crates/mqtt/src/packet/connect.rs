//! CONNECT, both ways: the one packet whose level is its own, read from
//! its protocol name and level byte rather than from the connection.

use super::encode::{put_binary, put_str};
use super::error::bad;
use super::properties::{at, Properties, WILL};
use super::read::Body;
use super::{Level, Packet, PacketError, Will, CONNECT};

impl Packet {
    /// Writes a CONNECT's body at its own level.
    pub(crate) fn encode_connect(&self, body: &mut Vec<u8>) {
        let Packet::Connect {
            level,
            client_id,
            keep_alive,
            clean_session,
            username,
            password,
            will,
            properties,
        } = self
        else {
            return;
        };
        put_str(body, level.protocol_name());
        body.push(level.byte());
        let mut cf = 0u8;
        if *clean_session {
            cf |= 0x02;
        }
        if let Some(w) = will {
            cf |= 0x04 | ((w.qos & 3) << 3) | if w.retain { 0x20 } else { 0 };
        }
        if password.is_some() {
            cf |= 0x40;
        }
        if username.is_some() {
            cf |= 0x80;
        }
        body.push(cf);
        body.extend_from_slice(&keep_alive.to_be_bytes());
        if level.is_v5() {
            properties.encode(at(CONNECT), body);
        }
        put_str(body, client_id);
        if let Some(w) = will {
            if level.is_v5() {
                w.properties.encode(WILL, body);
            }
            put_str(body, &w.topic);
            put_binary(body, &w.payload);
        }
        if let Some(u) = username {
            put_str(body, u);
        }
        if let Some(p) = password {
            put_binary(body, p);
        }
    }
}

/// The level a CONNECT asks for, checked against those the caller
/// accepts: an unknown protocol name is malformed, a level not accepted
/// is [`PacketError::UnsupportedVersion`].
fn connect_level(b: &mut Body<'_>, accept: &[Level]) -> Result<Level, PacketError> {
    let name = b.string()?;
    if name != "MQTT" && name != "MQIsdp" {
        return Err(bad(format!("protocol name {name:?}, not \"MQTT\"")));
    }
    let byte = b.u8()?;
    match Level::of_connect(&name, byte) {
        Some(level) if accept.contains(&level) => Ok(level),
        _ => Err(PacketError::UnsupportedVersion(byte)),
    }
}

/// Decodes a CONNECT body at whatever level in `accept` it names.
pub(crate) fn decode_connect(b: &mut Body<'_>, accept: &[Level]) -> Result<Packet, PacketError> {
    let level = connect_level(b, accept)?;
    let v5 = level.is_v5();
    let cf = b.u8()?;
    if cf & 0x01 != 0 {
        return Err(bad("reserved connect flag set"));
    }
    let will = cf & 0x04 != 0;
    let will_qos = (cf >> 3) & 3;
    let will_retain = cf & 0x20 != 0;
    if will && will_qos == 3 {
        return Err(bad("will at QoS 3"));
    }
    if !will && (will_qos != 0 || will_retain) {
        return Err(bad("will QoS or retain without a will"));
    }
    let has_user = cf & 0x80 != 0;
    let has_password = cf & 0x40 != 0;
    // MQTT 5 allows a password alone; 3.1.1 does not.
    if has_password && !has_user && !v5 {
        return Err(bad("password without a user name"));
    }
    let keep_alive = b.u16()?;
    let properties = if v5 {
        Properties::decode(b, at(CONNECT))?
    } else {
        Properties::default()
    };
    let client_id = b.string()?;
    let will = if will {
        let properties = if v5 {
            Properties::decode(b, WILL)?
        } else {
            Properties::default()
        };
        Some(Will {
            topic: b.string()?,
            payload: b.binary()?.to_vec(),
            qos: will_qos,
            retain: will_retain,
            properties,
        })
    } else {
        None
    };
    let username = if has_user { Some(b.string()?) } else { None };
    let password = if has_password {
        Some(b.binary()?.to_vec())
    } else {
        None
    };
    b.done()?;
    Ok(Packet::Connect {
        level,
        client_id,
        keep_alive,
        clean_session: cf & 0x02 != 0,
        username,
        password,
        will,
        properties,
    })
}
