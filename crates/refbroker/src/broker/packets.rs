//! The packets of a connected client: PUBLISH (topic aliases, what its
//! properties carry, the ACL's write check, the acknowledgement's reason
//! code), the QoS 2
//! handshake both ways, SUBSCRIBE, UNSUBSCRIBE, PINGREQ and DISCONNECT
//! (MQTT 5: its reason, a new session expiry); AUTH is refused.

use std::rc::Rc;

use emqx_auth::Access;
use emqx_mqtt::{topic, Level, Packet, ReasonCode};

use super::{Broker, End, Step, Wire};
use crate::session::{Message, Props};

impl Broker {
    /// A packet of connected client `id`.
    pub(super) fn session_packet(
        &mut self,
        conn: usize,
        id: &Rc<str>,
        packet: Packet,
        wire: &mut dyn Wire,
    ) -> Step {
        let level = self.clients.get(&conn).map_or(Level::V311, |c| c.level);
        let send = |wire: &mut dyn Wire, p: &Packet| wire.send(conn, &p.encode_as(level));
        match packet {
            Packet::Publish {
                topic: name,
                payload,
                qos,
                retain,
                packet_id,
                properties,
                ..
            } => {
                let name = match self.aliased(conn, name, properties.topic_alias) {
                    Ok(name) => name,
                    Err(end) => return Step::End(end),
                };
                if !properties.subscription_identifiers.is_empty() {
                    return Step::End(End::Violation(
                        ReasonCode::PROTOCOL_ERROR,
                        "a subscription identifier in a client's PUBLISH".into(),
                    ));
                }
                let message = Message {
                    topic: name,
                    payload: payload.into(),
                    qos,
                    retain,
                    props: Props::of(properties),
                };
                return self.publish(conn, id, message, packet_id.unwrap_or(0), wire);
            }
            Packet::PubRel { packet_id, .. } => {
                let known = self
                    .sessions
                    .get_mut(id)
                    .is_some_and(|s| s.awaiting_rel.remove(&packet_id));
                let reason = match known {
                    true => ReasonCode::SUCCESS,
                    false => ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
                };
                send(wire, &Packet::pubcomp(packet_id).with_reason(reason));
            }
            Packet::PubAck { packet_id, .. } => self.acked(id, packet_id, false, wire),
            Packet::PubComp { packet_id, .. } => self.acked(id, packet_id, true, wire),
            Packet::PubRec { packet_id, .. } => {
                if self
                    .sessions
                    .get_mut(id)
                    .is_some_and(|s| s.received(packet_id))
                {
                    send(wire, &Packet::pubrel(packet_id));
                }
            }
            Packet::Subscribe {
                packet_id,
                filters,
                properties,
            } => {
                // MQTT-3.8.3-4: no local on a shared subscription.
                let shared_no_local = filters
                    .iter()
                    .any(|(f, o)| o.no_local && f.starts_with(crate::router::shared::PREFIX));
                if shared_no_local && level.is_v5() {
                    return Step::End(End::Violation(
                        ReasonCode::PROTOCOL_ERROR,
                        "no local on a shared subscription".into(),
                    ));
                }
                let sub_id = properties.subscription_identifiers.first().copied();
                self.subscribe(conn, id, packet_id, filters, sub_id, wire)
            }
            Packet::Unsubscribe {
                packet_id, filters, ..
            } => {
                let mut codes = Vec::with_capacity(filters.len());
                for f in &filters {
                    self.router.unsubscribe(id, f);
                    let had = self.sessions.get_mut(id).is_some_and(|s| s.unsubscribe(f));
                    codes.push(match had {
                        true => ReasonCode::SUCCESS,
                        false => ReasonCode::NO_SUBSCRIPTION_EXISTED,
                    });
                }
                send(wire, &Packet::unsuback(packet_id).with_codes(codes));
            }
            Packet::PingReq => send(wire, &Packet::PingResp),
            Packet::Disconnect { reason, properties } => {
                return self.disconnected(id, reason, properties.session_expiry_interval)
            }
            Packet::Connect { .. } => return Step::End(End::Error("a second CONNECT".into())),
            Packet::Auth { .. } => {
                return Step::End(End::Violation(
                    ReasonCode::PROTOCOL_ERROR,
                    "AUTH without enhanced authentication".into(),
                ))
            }
            other => {
                return Step::End(End::Error(format!(
                    "a server's packet from a client: {}",
                    other.name()
                )))
            }
        }
        Step::Go
    }

    /// The topic of a PUBLISH on `conn` with `name` and perhaps `alias`
    /// (MQTT 5 topic aliases: a name with an alias sets it, an empty name
    /// uses it; an alias is of one connection only).
    fn aliased(&mut self, conn: usize, name: String, alias: Option<u16>) -> Result<Rc<str>, End> {
        let Some(alias) = alias else {
            return Ok(name.as_str().into());
        };
        if alias == 0 || alias > super::connect::TOPIC_ALIAS_MAX {
            return Err(End::Violation(
                ReasonCode::TOPIC_ALIAS_INVALID,
                format!(
                    "topic alias {alias}, above the maximum {}",
                    super::connect::TOPIC_ALIAS_MAX
                ),
            ));
        }
        let Some(c) = self.clients.get_mut(&conn) else {
            return Err(End::Error("a PUBLISH from a connection gone".into()));
        };
        if name.is_empty() {
            return c
                .aliases
                .iter()
                .find(|(a, _)| *a == alias)
                .map(|(_, t)| Rc::clone(t))
                .ok_or_else(|| {
                    End::Violation(
                        ReasonCode::PROTOCOL_ERROR,
                        format!("topic alias {alias} never set"),
                    )
                });
        }
        let topic: Rc<str> = name.as_str().into();
        c.aliases.retain(|(a, _)| *a != alias);
        c.aliases.push((alias, Rc::clone(&topic)));
        Ok(topic)
    }

    /// A DISCONNECT from client `id` (MQTT 5: with `reason`, perhaps a new
    /// session expiry).
    fn disconnected(&mut self, id: &Rc<str>, reason: ReasonCode, expiry: Option<u32>) -> Step {
        if let (Some(secs), Some(s)) = (expiry, self.sessions.get_mut(id)) {
            // MQTT-3.14.2-2: not from 0 to more.
            if s.expiry == 0 && secs > 0 {
                return Step::End(End::Violation(
                    ReasonCode::PROTOCOL_ERROR,
                    "a session expiry set at DISCONNECT after 0 at CONNECT".into(),
                ));
            }
            s.expiry = secs;
        }
        match reason {
            ReasonCode::DISCONNECT_WITH_WILL => Step::End(End::DisconnectWithWill),
            _ => Step::End(End::Disconnect),
        }
    }

    /// A PUBLISH from client `id`: routed (once for QoS 2: a duplicate
    /// packet id awaiting PUBREL is not routed again), retained if asked,
    /// acknowledged at its QoS.
    fn publish(
        &mut self,
        conn: usize,
        id: &Rc<str>,
        message: Message,
        packet_id: u16,
        wire: &mut dyn Wire,
    ) -> Step {
        let name = &message.topic;
        if !topic::valid_topic(name) {
            return Step::End(End::Error(format!("PUBLISH to invalid topic {name:?}")));
        }
        let qos = message.qos;
        let level = self.clients.get(&conn).map_or(Level::V311, |c| c.level);
        let user = self.sessions.get(id).and_then(|s| s.username.clone());
        let allowed = self.may(id, user.as_deref(), name, Access::Write);
        if !allowed && level.is_v5() {
            // Refused in its acknowledgement; a QoS 2 exchange ends there.
            self.debug(format_args!(
                "{}: PUBLISH to {name:?} not authorized",
                self.who(conn)
            ));
            ack(
                conn,
                qos,
                packet_id,
                ReasonCode::NOT_AUTHORIZED,
                level,
                wire,
            );
            return Step::Go;
        }
        let duplicate = qos == 2
            && !self
                .sessions
                .get_mut(id)
                .is_some_and(|s| s.awaiting_rel.insert(packet_id));
        if qos == 2
            && !duplicate
            && self
                .sessions
                .get(id)
                .is_some_and(|s| s.awaiting_rel.len() > crate::session::MAX_INFLIGHT)
        {
            return Step::End(End::Violation(
                ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
                format!(
                    "more than {} QoS 2 messages awaiting PUBREL",
                    crate::session::MAX_INFLIGHT
                ),
            ));
        }
        let mut matched = true;
        if !allowed {
            // MQTT 3.1.1 has no way to say so: acknowledged, dropped.
            self.debug(format_args!(
                "{}: PUBLISH to {name:?} not authorized (acknowledged, dropped)",
                self.who(conn)
            ));
        } else if name.starts_with("$SYS/") {
            self.debug(format_args!(
                "{}: PUBLISH to {name:?} ignored ($SYS is the broker's)",
                self.who(conn)
            ));
        } else if !duplicate {
            self.traffic.published += 1;
            if message.retain {
                self.router.retain(&message);
            }
            matched = self.route(message, Some(id), wire) > 0;
        }
        let reason = match matched {
            true => ReasonCode::SUCCESS,
            false => ReasonCode::NO_MATCHING_SUBSCRIBERS,
        };
        ack(conn, qos, packet_id, reason, level, wire);
        Step::Go
    }
}

/// The acknowledgement of a PUBLISH at `qos` (none at 0).
fn ack(
    conn: usize,
    qos: u8,
    packet_id: u16,
    reason: ReasonCode,
    level: Level,
    wire: &mut dyn Wire,
) {
    let packet = match qos {
        1 => Packet::puback(packet_id),
        2 => Packet::pubrec(packet_id),
        _ => return,
    };
    wire.send(conn, &packet.with_reason(reason).encode_as(level));
}
