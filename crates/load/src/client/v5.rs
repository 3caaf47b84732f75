//! What an MQTT 5 load client does beyond a 3.1.1 one: its CONNECT, the
//! limits its CONNACK sets, aliases resolved and the Receive Maximum
//! checked on every PUBLISH from the broker, each message's properties
//! checked, and a DISCONNECT that ends its session at the run's end.

use emqx_mqtt::{Level, Packet, Properties};

use super::{Client, Ctx, Kind, KEEP_ALIVE};
use crate::stats::SessionStats;
use crate::v5::{self, V5Conn, V5Error};
use crate::LoadAuth;

impl Client {
    /// Whether it speaks MQTT 5.
    pub(super) fn is_v5(&self) -> bool {
        self.traffic.as_ref().is_some_and(|t| t.class.is_v5())
            || self.probe.as_ref().is_some_and(|p| p.v5)
    }

    /// The protocol level of its connections.
    pub(super) fn level(&self) -> Level {
        match self.is_v5() {
            true => Level::V5,
            false => Level::V311,
        }
    }

    /// Its CONNECT: at 5 a session asks for Clean Start only until it
    /// has subscribed (after that it expects its session back); with
    /// `auth`, with its username and the password.
    pub(super) fn connect_packet(&self, auth: Option<&LoadAuth>) -> Packet {
        let session = self.kind == Kind::Session;
        let mut p = if self.is_v5() {
            let expiry = if session { v5::SESSION_EXPIRY } else { 0 };
            let clean = !session || !self.subscribed;
            v5::connect(self.client_id(), clean, expiry, KEEP_ALIVE)
        } else {
            Packet::connect(self.client_id(), !session, KEEP_ALIVE)
        };
        if let Some(auth) = auth {
            crate::auth::sign(&mut p, auth, self.user);
        }
        p
    }

    /// The counters of its kind of session (3.1.1 or 5).
    pub(super) fn session_stats<'a>(&self, cx: &Ctx<'a>) -> &'a SessionStats {
        match self.is_v5() {
            true => &cx.stats.v5_sessions,
            false => &cx.stats.sessions,
        }
    }

    /// CONNACK (success) with `p`: the broker's limits for this
    /// connection.
    pub(super) fn v5_connack(&mut self, p: &Properties) {
        if !self.is_v5() {
            return;
        }
        let c = V5Conn::new(p);
        if let Some(t) = self.traffic.as_mut() {
            t.v5_limits(c.alias_max, c.receive_max);
        }
        self.v5 = Some(c);
    }

    /// Counts a broker's MQTT 5 failure in this client's class.
    fn v5_count(&self, cx: &Ctx, e: &V5Error) {
        let Some(t) = self.traffic.as_ref() else {
            return;
        };
        let c = cx.stats.class(t.class);
        let counter = match e {
            V5Error::AliasUnknown(_) | V5Error::AliasOutOfRange(_) | V5Error::NoTopic => {
                &c.alias_errors
            }
            V5Error::ReceiveMaxExceeded(_) => &c.receive_max_exceeded,
            V5Error::PropsDamaged => &c.props_damaged,
            V5Error::ExpiryBad(_) => &c.expiry_bad,
        };
        counter.fetch_add(1, super::relaxed());
    }

    /// A packet from the broker, before anything else sees it: a PUBLISH
    /// gets its topic from its alias, and counts against the Receive
    /// Maximum. One whose topic cannot be known is acknowledged and
    /// dropped (None): counted as an alias error, and lost.
    pub(super) fn v5_inbound(&mut self, cx: &Ctx, p: Packet) -> Option<Packet> {
        let Packet::Publish {
            topic,
            payload,
            qos,
            retain,
            dup,
            packet_id,
            properties,
        } = p
        else {
            return Some(p);
        };
        let Some(v5) = self.v5.as_mut() else {
            return Some(Packet::Publish {
                topic,
                payload,
                qos,
                retain,
                dup,
                packet_id,
                properties,
            });
        };
        let counted = match packet_id.filter(|_| qos > 0) {
            Some(id) => v5.received(id),
            None => Ok(()),
        };
        let resolved = v5.resolve(topic, properties.topic_alias);
        if let Err(e) = &counted {
            self.v5_count(cx, e);
        }
        let topic = match resolved {
            Ok(topic) => topic,
            Err(e) => {
                self.v5_count(cx, &e);
                self.ack_dropped(qos, packet_id);
                return None;
            }
        };
        Some(Packet::Publish {
            topic,
            payload,
            qos,
            retain,
            dup,
            packet_id,
            properties,
        })
    }

    /// Acknowledges a PUBLISH whose topic is unknown.
    fn ack_dropped(&mut self, qos: u8, packet_id: Option<u16>) {
        let (Some(conn), Some(id)) = (self.conn.as_mut(), packet_id) else {
            return;
        };
        match qos {
            1 => {
                conn.send(&Packet::puback(id));
                self.v5_acked(id);
            }
            2 => conn.send(&Packet::pubrec(id)),
            _ => {}
        }
    }

    /// Checks the properties of a delivery of ours (MQTT 5 only).
    pub(super) fn v5_check(&self, cx: &Ctx, topic: &str, payload: &[u8], p: &Properties) {
        let Some(t) = self.traffic.as_ref().filter(|t| t.class.is_v5()) else {
            return;
        };
        let (stream, seq) = t.parse(topic, payload);
        for e in v5::check_delivery(p, stream, seq) {
            self.v5_count(cx, &e);
        }
    }

    /// The last acknowledgement of delivery `id` (PUBACK, PUBCOMP) is
    /// queued.
    pub(super) fn v5_acked(&mut self, id: u16) {
        if let Some(v5) = self.v5.as_mut() {
            v5.ack_queued(id);
        }
    }

    /// Everything queued on the connection is written.
    pub(super) fn v5_flushed(&mut self) {
        if let Some(v5) = self.v5.as_mut() {
            v5.flushed();
        }
    }

    /// The DISCONNECT at the run's end: at 5 it ends the session too
    /// (Session Expiry Interval 0), so the broker keeps nothing.
    pub(super) fn goodbye(&self) -> Packet {
        let mut p = Packet::disconnect();
        if let (true, Packet::Disconnect { properties, .. }) = (self.is_v5(), &mut p) {
            properties.session_expiry_interval = Some(0);
        }
        p
    }
}
