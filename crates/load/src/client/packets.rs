//! What a client does with each packet from the broker: CONNACK, SUBACK
//! and the version during an attempt, then deliveries and acknowledgements
//! (at MQTT 5 after [`Client::v5_inbound`], and each delivery's properties
//! checked), a probe's answers apart ([`Client::probe_answer`]).

use std::time::Duration;

use emqx_mqtt::{Packet, ReasonCode};

use super::why::Why;
use super::{relaxed, Client, Ctx, Kind, Phase, SUBSCRIBE_ID};
use crate::conn::Io;
use crate::stats::{classify_io, Outcome};
use crate::VERSION_TOPIC;

impl Client {
    pub(super) fn on_packet(&mut self, cx: &mut Ctx, p: Packet) -> Result<(), Why> {
        let Some(p) = self
            .v5_inbound(cx, p)
            .and_then(|p| self.probe_answer(cx, p))
        else {
            return Ok(());
        };
        match (&mut self.phase, p) {
            (
                Phase::ConnAck,
                Packet::ConnAck {
                    session_present,
                    code,
                    properties,
                },
            ) => {
                cx.stats
                    .connack_latency(cx.now.duration_since(self.started));
                if code != ReasonCode::SUCCESS {
                    if crate::auth::refused_for_auth(self.level(), code) {
                        cx.stats.auth_refused.fetch_add(1, relaxed());
                    }
                    return Err(Why::Protocol(format!("CONNACK return code {}", code.0)));
                }
                self.hold(cx, true);
                self.v5_connack(&properties);
                self.connected(cx, session_present);
                Ok(())
            }
            (Phase::ConnAck, other) => Err(Why::Protocol(format!(
                "expected CONNACK, got {}",
                other.name()
            ))),
            (
                Phase::SubAck { subacked, .. },
                Packet::SubAck {
                    packet_id, codes, ..
                },
            ) if packet_id == SUBSCRIBE_ID => {
                if let Some(bad) = codes.iter().find(|c| c.0 > 2) {
                    return Err(Why::Protocol(format!(
                        "SUBACK refused a filter (code {:#04x})",
                        bad.0
                    )));
                }
                *subacked = true;
                self.maybe_established(cx);
                Ok(())
            }
            (Phase::SubAck { version, .. }, Packet::Publish { topic, payload, .. })
                if topic == VERSION_TOPIC =>
            {
                *version = Some(String::from_utf8_lossy(&payload).into_owned());
                self.maybe_established(cx);
                Ok(())
            }
            (
                Phase::SubAck { .. } | Phase::Running | Phase::Closing { .. },
                p @ Packet::Publish { .. },
            ) => {
                self.on_publish(cx, p);
                Ok(())
            }
            (_, Packet::PingResp) => Ok(()),
            (_, Packet::Disconnect { reason, properties }) => Err(Why::Protocol(format!(
                "DISCONNECT from the broker, reason {:#04x}{}",
                reason.0,
                properties
                    .reason_string
                    .map_or_else(String::new, |r| format!(": {r}"))
            ))),
            (Phase::SubAck { .. } | Phase::Running | Phase::Closing { .. }, p) => {
                self.on_ack(cx, p)
            }
            (_, other) => Err(Why::Protocol(format!("unexpected {}", other.name()))),
        }
    }

    /// A delivery once CONNACK came: checked (MQTT 5), counted when it
    /// is ours, acknowledged unless the client withholds its acks.
    fn on_publish(&mut self, cx: &mut Ctx, p: Packet) {
        let Packet::Publish {
            topic,
            payload,
            qos,
            dup,
            packet_id,
            properties,
            ..
        } = p
        else {
            return;
        };
        let answer = self.answering(cx);
        let denied = self.denied_delivery(cx, &topic);
        let ours = topic != VERSION_TOPIC && !denied;
        if ours {
            self.v5_check(cx, &topic, &payload, &properties);
        }
        if !answer && self.phase == Phase::Running {
            self.withheld = true;
        }
        let ours = self.traffic.as_mut().filter(|_| ours);
        let conn = self.conn.as_mut().filter(|_| answer);
        match (ours, conn) {
            (Some(t), conn) => t.deliver(
                self.slot, &topic, &payload, qos, dup, packet_id, conn, cx.ledger,
            ),
            // A later version announcement, a client without traffic,
            // or a denied message: acknowledged, not counted here.
            (None, Some(conn)) => match (qos, packet_id) {
                (1, Some(id)) => conn.send(&Packet::puback(id)),
                (2, Some(id)) => conn.send(&Packet::pubrec(id)),
                _ => {}
            },
            (None, None) => {}
        }
        if let (true, 1, Some(id)) = (answer, qos, packet_id) {
            self.v5_acked(id);
        }
    }

    /// An acknowledgement (or PUBREL) once CONNACK came.
    fn on_ack(&mut self, cx: &mut Ctx, p: Packet) -> Result<(), Why> {
        // After our DISCONNECT nothing may be sent: PUBREC and PUBREL
        // wait for the session's return; acks that need no answer still
        // count.
        let closing = matches!(self.phase, Phase::Closing { .. });
        let (Some(t), Some(conn)) = (self.traffic.as_mut(), self.conn.as_mut()) else {
            return Err(Why::Protocol(format!("unexpected {}", p.name())));
        };
        match p {
            Packet::PubAck { packet_id, .. } => t.puback(packet_id, cx.ledger)?,
            Packet::PubComp { packet_id, .. } => t.pubcomp(packet_id)?,
            Packet::PubRec { .. } | Packet::PubRel { .. } if closing => {}
            Packet::PubRec { packet_id, .. } => t.pubrec(packet_id, conn, cx.ledger)?,
            Packet::PubRel { packet_id, .. } => {
                t.pubrel(packet_id, conn);
                self.v5_acked(packet_id);
            }
            other => return Err(Why::Protocol(format!("unexpected {}", other.name()))),
        }
        Ok(())
    }

    /// CONNACK 0 arrived.
    fn connected(&mut self, cx: &mut Ctx, session_present: bool) {
        if self.conn.as_ref().is_some_and(|c| c.is_tls()) {
            cx.stats.tls_connects.fetch_add(1, relaxed());
        }
        if self.conn.as_ref().is_some_and(|c| c.is_ws()) {
            cx.stats.ws_connects.fetch_add(1, relaxed());
        }
        if self.kind == Kind::Session {
            if session_present && self.subscribed {
                self.session_stats(cx).resumed.fetch_add(1, relaxed());
                cx.stats.record(&Outcome::Ok);
                self.run(cx);
                return;
            }
            if self.subscribed {
                self.session_stats(cx).lost.fetch_add(1, relaxed());
                if let Some(t) = self.traffic.as_mut() {
                    t.session_lost(cx.ledger);
                }
                self.subscribed = false;
                self.excuse_at_suback = true;
            }
            // Not subscribed yet (a first connection, or one whose
            // SUBSCRIBE never got its SUBACK): subscribe, present or not.
        }
        if self.kind == Kind::Idle {
            cx.stats.record(&Outcome::Ok);
            self.run(cx);
            return;
        }
        let mut filters: Vec<(String, u8)> =
            self.traffic.iter().filter_map(|t| t.filter()).collect();
        filters.push((VERSION_TOPIC.to_string(), 0));
        if let Some(conn) = self.conn.as_mut() {
            conn.send(&Packet::subscribe(SUBSCRIBE_ID, filters));
        }
        self.phase = Phase::SubAck {
            subacked: false,
            version: None,
        };
    }

    /// SUBACK and the version both arrived: the attempt succeeded.
    fn maybe_established(&mut self, cx: &mut Ctx) {
        let Phase::SubAck {
            subacked: true,
            version: Some(version),
        } = &self.phase
        else {
            return;
        };
        if self.kind != Kind::Storm {
            cx.stats.record(&Outcome::Ok);
            self.subscribed = true;
            if self.excuse_at_suback {
                self.excuse_at_suback = false;
                if let Some(input) = self.traffic.as_ref().and_then(|t| t.input) {
                    cx.ledger.excuse_sent(input);
                }
            }
            self.run(cx);
            return;
        }
        cx.stats.version_seen(version);
        let outcome = match self.conn.as_mut() {
            Some(conn) => {
                conn.send(&Packet::disconnect());
                match conn.flush() {
                    Io::Failed(e) => classify_io("writing DISCONNECT", &e),
                    _ => Outcome::Ok,
                }
            }
            None => Outcome::Ok,
        };
        cx.stats.record(&outcome);
        self.close(cx, if cx.stopping { None } else { Some(cx.now) });
    }

    /// Enters the established state.
    pub(super) fn run(&mut self, cx: &mut Ctx) {
        self.phase = Phase::Running;
        self.last_write = cx.now;
        if let Some(p) = self.probe.as_mut() {
            p.restart(cx.now);
        }
        if self.kind == Kind::Session {
            let ms = cx.opts.session_online.as_millis() as u64;
            // Spread the sessions' cycles: between 0.5 and 1.5 times the
            // period, fixed per client.
            let jitter = (self.slot as u64).wrapping_mul(2_654_435_761) % (ms + 1);
            self.online_until = Some(cx.now + Duration::from_millis(ms / 2 + jitter));
        }
        if let (Some(t), Some(conn)) = (self.traffic.as_mut(), self.conn.as_mut()) {
            if self.kind == Kind::Session {
                t.resend(conn, cx.ledger);
            }
            t.restart_schedule(cx.now);
        }
        self.flush(cx);
    }
}
