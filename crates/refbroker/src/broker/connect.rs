//! CONNECT at every level: client identifiers (assigned at MQTT 5),
//! takeover, session present, the session's expiry (3.1.1's clean session
//! flag is expiry 0 or never; MQTT 5's interval, clean start apart), what
//! the client says it can take (receive maximum, maximum packet size), the
//! CONNACK (with the server's capabilities at 5), the policy's answer,
//! and enhanced authentication, which this broker refuses (0x8C).

use std::rc::Rc;

use emqx_mqtt::{topic, Level, Packet, Properties, ReasonCode};

use super::{shown, Broker, End, Step, Wire};
use crate::session::{OutAliases, Session};

/// Session expiry that never ends (3.1.1 without clean session).
pub const NEVER: u32 = u32::MAX;
/// The largest packet a client may send, fixed header included (what
/// the event loop reads: a remaining length up to [`crate::MAX_PACKET`],
/// after one type byte and the three bytes that length takes).
pub const MAX_PACKET_SIZE: u32 = crate::MAX_PACKET as u32 + 4;
/// The most topic aliases a client may set (MQTT 5).
pub const TOPIC_ALIAS_MAX: u16 = 16;

impl Broker {
    pub(super) fn connect(&mut self, conn: usize, connect: Packet, wire: &mut dyn Wire) -> Step {
        if let Some(refused) = screen(conn, &connect, wire) {
            return refused;
        }
        let Packet::Connect {
            level,
            client_id,
            keep_alive,
            clean_session,
            will,
            properties,
            username,
            password,
        } = connect
        else {
            return Step::End(End::Error("not a CONNECT".into()));
        };
        // The login after the client id, as mosquitto checks them.
        let (login, decision) = self.log_in(conn, username, password);
        if !decision.is_allowed() {
            let code = ReasonCode(decision.v5_reason_code());
            nack(conn, level, code, wire);
            let why = format!("login refused by the policy ({decision:?})");
            return Step::End(End::Refused(code, why));
        }
        let assigned = client_id.is_empty();
        let id: Rc<str> = match assigned {
            true => format!("refbroker-{}-{conn}", std::process::id()).into(),
            false => client_id.into(),
        };
        let expiry = match level {
            Level::V5 => properties.session_expiry_interval.unwrap_or(0),
            _ if clean_session => 0,
            _ => NEVER,
        };
        self.take_over(conn, &id, wire);
        self.will_back(&id, clean_session, wire);
        if clean_session {
            self.discard(&id);
        }
        let present = self.sessions.contains_key(&id);
        self.attach(
            conn,
            &id,
            level,
            expiry,
            &properties,
            login.username.clone(),
        );
        if let Some(c) = self.clients.get_mut(&conn) {
            c.id = Some(Rc::clone(&id));
            c.will = will.map(Box::new);
            c.level = level;
            c.login = login;
        }
        let mut ack = Packet::connack(present, ReasonCode::SUCCESS);
        if let (Level::V5, Packet::ConnAck { properties, .. }) = (level, &mut ack) {
            *properties = capabilities(assigned.then(|| id.to_string()));
        }
        wire.send(conn, &ack.encode_as(level));
        self.debug(format_args!(
            "client {id:?} connected ({level:?}) on {} (keep-alive {keep_alive} s{})",
            self.client_where(conn),
            if present { ", session resumed" } else { "" }
        ));
        if present {
            self.resume(&id, conn, wire);
        }
        Step::Connected { keep_alive, level }
    }

    /// Session `id` (made now if there is none) runs on `conn` at
    /// `level`, for `user`, with what this CONNECT says it can take.
    fn attach(
        &mut self,
        conn: usize,
        id: &Rc<str>,
        level: Level,
        expiry: u32,
        properties: &Properties,
        user: Option<Rc<str>>,
    ) {
        let session = self
            .sessions
            .entry(Rc::clone(id))
            .or_insert_with(|| Box::new(Session::new(expiry == 0)));
        session.expiry = expiry;
        session.offline_since = None;
        session.conn = Some(conn);
        session.level = level;
        session.username = user;
        session.receive_max = properties.receive_maximum.unwrap_or(u16::MAX);
        session.max_packet = properties.maximum_packet_size;
        // A new network connection: no alias is set on it yet.
        session.out_aliases = OutAliases::new(match level {
            Level::V5 => properties.topic_alias_maximum.unwrap_or(0),
            _ => 0,
        });
    }

    /// Takeover: the connection holding `id` ends first (its will, its
    /// clean session), then `conn` takes what is left.
    fn take_over(&mut self, conn: usize, id: &Rc<str>, wire: &mut dyn Wire) {
        if let Some(old) = self.sessions.get(id).and_then(|s| s.conn) {
            self.debug(format_args!(
                "client {id:?} connected again from {}: closing its connection from {}",
                shown(self.clients.get(&conn).and_then(|c| c.peer)),
                shown(self.clients.get(&old).and_then(|c| c.peer))
            ));
            self.closed(old, &End::TakenOver, wire);
            wire.close(old);
        }
    }

    /// "on LISTENER from PEER" of connection `conn`.
    fn client_where(&self, conn: usize) -> String {
        let client = self.clients.get(&conn);
        format!(
            "{} from {}",
            client.map_or_else(|| "?".into(), |c| c.listener.to_string()),
            shown(client.and_then(|c| c.peer))
        )
    }
}

/// What an MQTT 5 CONNACK says the server can do: everything, QoS 2
/// included (no Maximum QoS), topic aliases from the client up to
/// [`TOPIC_ALIAS_MAX`] (towards the client, as many as it allows, at most
/// [`crate::session::OUT_ALIAS_CAP`]).
fn capabilities(assigned: Option<String>) -> Properties {
    Properties {
        assigned_client_identifier: assigned,
        retain_available: Some(true),
        wildcard_subscription_available: Some(true),
        subscription_identifier_available: Some(true),
        shared_subscription_available: Some(true),
        topic_alias_maximum: Some(TOPIC_ALIAS_MAX),
        receive_maximum: Some(crate::session::MAX_INFLIGHT as u16),
        // What the event loop takes: a remaining length up to
        // MAX_PACKET, plus the fixed header (MQTT 5 §3.2.2.3.6: without
        // it, a client may send any size).
        maximum_packet_size: Some(MAX_PACKET_SIZE),
        ..Properties::default()
    }
}

/// A refused CONNECT's CONNACK, with the code at `level` (3.1.1 knows
/// fewer).
fn nack(conn: usize, level: Level, code: ReasonCode, wire: &mut dyn Wire) {
    let ack = match level {
        Level::V5 => Packet::connack(false, code),
        _ => Packet::connack(false, ReasonCode(code.v3_connack())),
    };
    wire.send(conn, &ack.encode_as(level));
}

/// What a CONNECT must pass before its login is asked: no enhanced
/// authentication, a valid will topic, and at 3.1.1 a client id unless
/// the session is clean. The refusal (its CONNACK sent), if any.
fn screen(conn: usize, connect: &Packet, wire: &mut dyn Wire) -> Option<Step> {
    let Packet::Connect {
        level,
        client_id,
        clean_session,
        will,
        properties,
        ..
    } = connect
    else {
        return None;
    };
    let refuse = |code: ReasonCode, why: String, wire: &mut dyn Wire| {
        nack(conn, *level, code, wire);
        Some(Step::End(End::Violation(code, why)))
    };
    if properties.authentication_method.is_some() {
        let why = "enhanced authentication (AUTH) is not supported (CONNACK 0x8C)";
        return refuse(ReasonCode::BAD_AUTHENTICATION_METHOD, why.into(), wire);
    }
    if let Some(w) = will.as_ref().filter(|w| !topic::valid_topic(&w.topic)) {
        let why = format!("a will on invalid topic {:?}", w.topic);
        return refuse(ReasonCode::TOPIC_NAME_INVALID, why, wire);
    }
    if client_id.is_empty() && !clean_session && !level.is_v5() {
        wire.send(conn, &Packet::connack(false, ReasonCode(2)).encode());
        let why = "refused an empty client id without a clean session (CONNACK 2)";
        return Some(Step::End(End::Error(why.into())));
    }
    None
}
