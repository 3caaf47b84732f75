//! The messages of one publishing client: its outgoing stream (QoS 0, 1
//! or 2 with the packet ids in flight), the stream it subscribes to, and
//! the receiver's QoS 2 state. A persistent session keeps all of it across
//! reconnects; a clean session gives it up at every close. At MQTT 5 a
//! client may only publish, or only receive (a shared subscription's
//! member), and its PUBLISH packets carry the properties of [`crate::v5`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use emqx_mqtt::{Packet, Properties};

use crate::class::Class;
use crate::conn::Conn;
use crate::ledger::Ledger;

/// Most messages in flight per client; publishing pauses above.
const MAX_IN_FLIGHT: usize = 1000;
/// Bytes queued on the socket past which publishing pauses.
const MAX_BACKLOG: usize = 256 * 1024;
/// Behind schedule by more than this, the schedule restarts from now
/// instead of bursting.
const MAX_LAG: Duration = Duration::from_secs(1);
/// Most messages one wake publishes (catching up on a late schedule).
const BURST: usize = 64;

/// An acknowledgement from the broker that does not fit the message it
/// acknowledges: a protocol error of the broker's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckError {
    /// PUBACK or PUBREC (`ack`) for a message of another QoS.
    WrongQos { ack: &'static str, qos: u8 },
    /// PUBCOMP for this packet id before its PUBREC.
    CompBeforeRec(u16),
}

impl fmt::Display for AckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AckError::WrongQos { ack, qos } => write!(f, "{ack} for a QoS {qos} message"),
            AckError::CompBeforeRec(id) => write!(f, "PUBCOMP before PUBREC for packet {id}"),
        }
    }
}

impl std::error::Error for AckError {}

/// One message in flight.
struct Flight {
    packet_id: u16,
    /// QoS 2: PUBREC received, PUBREL sent.
    released: bool,
}

/// A publisher and subscriber pair of streams.
pub struct Traffic {
    pub class: Class,
    /// The stream this client publishes on, and its topic.
    out: usize,
    topic_out: String,
    /// The stream delivered to this client (None: it only publishes).
    pub input: Option<usize>,
    /// The topic of `input`.
    topic_in: Option<String>,
    /// The shared subscription group it receives its input in.
    share: Option<String>,
    /// MQTT 5: whether its topic alias is set up on this connection
    /// (None: the broker takes no alias, or the client is not MQTT 5).
    alias: Option<bool>,
    /// Most messages in flight now (the broker's Receive Maximum at 5).
    max_in_flight: usize,
    /// Prefix of every topic of the run (`<run id>/`).
    prefix: String,
    period: Option<Duration>,
    next_pub: Instant,
    next_id: u16,
    flight: BTreeMap<u64, Flight>,
    by_id: HashMap<u16, u64>,
    /// QoS 2 receiver: packet ids PUBREC'd and awaiting PUBREL, with the
    /// message (stream, seq) each carried.
    awaiting_rel: HashMap<u16, (usize, u64)>,
}

/// The topic of stream `s` in the run named `prefix`.
pub fn topic(prefix: &str, s: usize) -> String {
    format!("{prefix}{s}")
}

impl Traffic {
    pub fn new(class: Class, out: usize, input: Option<usize>, prefix: &str, rate: f64) -> Traffic {
        let period = (rate.is_finite() && rate > 0.0)
            .then(|| Duration::from_secs_f64((1.0 / rate).max(1e-6)));
        Traffic {
            class,
            out,
            topic_out: topic(prefix, out),
            input,
            topic_in: input.map(|i| topic(prefix, i)),
            share: None,
            alias: None,
            max_in_flight: MAX_IN_FLIGHT,
            prefix: prefix.to_string(),
            period,
            next_pub: Instant::now(),
            next_id: 0,
            flight: BTreeMap::new(),
            by_id: HashMap::new(),
            awaiting_rel: HashMap::new(),
        }
    }

    /// Receives its input in shared subscription `group`.
    pub fn shared(mut self, group: String) -> Traffic {
        self.share = Some(group);
        self
    }

    /// Whether it receives in a shared subscription.
    pub fn is_shared(&self) -> bool {
        self.share.is_some()
    }

    /// The stream it publishes on (a shared group's members: the one
    /// they receive).
    pub fn out(&self) -> usize {
        self.out
    }

    /// Names its topics otherwise than [`topic`] does: each still begins
    /// with the run's prefix and the stream's number, then a `/`.
    pub fn set_topics(&mut self, out: String, input: Option<String>) {
        self.topic_out = out;
        self.topic_in = input;
    }

    /// The filter this client subscribes to, if it receives.
    pub fn filter(&self) -> Option<(String, u8)> {
        let t = self.topic_in.clone()?;
        let f = match &self.share {
            Some(group) => format!("$share/{group}/{t}"),
            None => t,
        };
        Some((f, self.class.qos))
    }

    /// A new MQTT 5 connection: the broker takes `alias_max` topic
    /// aliases and `receive_max` messages in flight.
    pub fn v5_limits(&mut self, alias_max: u16, receive_max: u16) {
        self.alias = (alias_max >= crate::v5::OUR_ALIAS).then_some(false);
        self.max_in_flight = MAX_IN_FLIGHT.min(usize::from(receive_max.max(1)));
    }

    /// Parses a delivery: its stream (from the topic's level after the
    /// run's prefix) and sequence number (the payload); `usize::MAX` and
    /// 0 when not ours.
    pub fn parse(&self, topic: &str, payload: &[u8]) -> (usize, u64) {
        let stream = topic
            .strip_prefix(&self.prefix)
            .and_then(|s| s.split('/').next())
            .and_then(|s| s.parse::<usize>().ok())
            .unwrap_or(usize::MAX);
        let seq = std::str::from_utf8(payload)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
        (stream, seq)
    }

    /// When the next message is due (None: not publishing).
    pub fn next_publish(&self) -> Option<Instant> {
        self.period.map(|_| self.next_pub)
    }

    /// Starts the schedule afresh (a new connection).
    pub fn restart_schedule(&mut self, now: Instant) {
        self.next_pub = now;
    }

    /// The PUBLISH of message `seq`; at MQTT 5 with its properties, and
    /// once the topic alias is set up with an empty topic.
    fn publish_packet(&mut self, seq: u64, packet_id: Option<u16>, dup: bool) -> Packet {
        let (mut topic, mut properties) = (self.topic_out.clone(), Properties::default());
        if self.class.is_v5() {
            properties = crate::v5::publish_properties(self.out, seq);
            if let Some(ready) = self.alias {
                properties.topic_alias = Some(crate::v5::OUR_ALIAS);
                self.alias = Some(true);
                if ready {
                    topic.clear();
                }
            }
        }
        Packet::Publish {
            topic,
            payload: seq.to_string().into_bytes(),
            qos: self.class.qos,
            retain: false,
            dup,
            packet_id,
            properties,
        }
    }

    /// Queues a PUBLISH, counting those that name their topic by alias
    /// alone.
    fn send_publish(&mut self, conn: &mut Conn, ledger: &Ledger, p: &Packet) {
        if let Packet::Publish { topic, .. } = p {
            if topic.is_empty() {
                ledger
                    .class_stats(self.class)
                    .alias_sent
                    .fetch_add(1, Relaxed);
            }
        }
        conn.send(p);
    }

    fn free_id(&mut self) -> u16 {
        loop {
            self.next_id = self.next_id.wrapping_add(1);
            if self.next_id != 0 && !self.by_id.contains_key(&self.next_id) {
                return self.next_id;
            }
        }
    }

    /// Publishes what is due by `now`.
    pub fn publish_due(&mut self, now: Instant, conn: &mut Conn, ledger: &mut Ledger) {
        let Some(period) = self.period else { return };
        for _ in 0..BURST {
            if now < self.next_pub {
                return;
            }
            self.next_pub = if now.duration_since(self.next_pub) > MAX_LAG {
                now + period
            } else {
                self.next_pub + period
            };
            self.publish_one(conn, ledger);
        }
    }

    /// Publishes the next message, unless too much is in flight or queued
    /// (or this client does not publish).
    pub fn publish_one(&mut self, conn: &mut Conn, ledger: &mut Ledger) {
        if self.period.is_none()
            || self.flight.len() >= self.max_in_flight
            || conn.backlog() > MAX_BACKLOG
        {
            return;
        }
        let seq = ledger.publish(self.out);
        if self.class.qos == 0 {
            let p = self.publish_packet(seq, None, false);
            self.send_publish(conn, ledger, &p);
            ledger.acked(self.out, seq);
            return;
        }
        let id = self.free_id();
        self.flight.insert(
            seq,
            Flight {
                packet_id: id,
                released: false,
            },
        );
        self.by_id.insert(id, seq);
        let p = self.publish_packet(seq, Some(id), false);
        self.send_publish(conn, ledger, &p);
    }

    /// PUBACK (QoS 1). An unknown packet id is ignored (an ack of a
    /// message resent after the first ack was lost).
    pub fn puback(&mut self, id: u16, ledger: &mut Ledger) -> Result<(), AckError> {
        if self.class.qos != 1 {
            return Err(self.wrong_qos("PUBACK"));
        }
        if let Some(seq) = self.by_id.remove(&id) {
            self.flight.remove(&seq);
            ledger.acked(self.out, seq);
        }
        Ok(())
    }

    /// PUBREC (QoS 2): the broker owns the message; release it.
    pub fn pubrec(
        &mut self,
        id: u16,
        conn: &mut Conn,
        ledger: &mut Ledger,
    ) -> Result<(), AckError> {
        if self.class.qos != 2 {
            return Err(self.wrong_qos("PUBREC"));
        }
        let Some(&seq) = self.by_id.get(&id) else {
            return Ok(());
        };
        if let Some(f) = self.flight.get_mut(&seq) {
            f.released = true;
            ledger.acked(self.out, seq);
        }
        conn.send(&Packet::pubrel(id));
        Ok(())
    }

    /// PUBCOMP (QoS 2): the packet id is free again. Before PUBREC it is
    /// a protocol error.
    pub fn pubcomp(&mut self, id: u16) -> Result<(), AckError> {
        let Some(&seq) = self.by_id.get(&id) else {
            return Ok(());
        };
        if self.flight.get(&seq).is_some_and(|f| !f.released) {
            return Err(AckError::CompBeforeRec(id));
        }
        self.by_id.remove(&id);
        self.flight.remove(&seq);
        Ok(())
    }

    fn wrong_qos(&self, ack: &'static str) -> AckError {
        AckError::WrongQos {
            ack,
            qos: self.class.qos,
        }
    }

    /// PUBREL from the broker: the QoS 2 delivery is complete.
    pub fn pubrel(&mut self, id: u16, conn: &mut Conn) {
        self.awaiting_rel.remove(&id);
        conn.send(&Packet::pubcomp(id));
    }

    /// A PUBLISH from the broker. `answer` is false after our own
    /// DISCONNECT (no more packets may follow it): the broker redelivers
    /// what is not acknowledged.
    #[allow(clippy::too_many_arguments)]
    pub fn deliver(
        &mut self,
        me: usize,
        topic: &str,
        payload: &[u8],
        qos: u8,
        dup: bool,
        packet_id: Option<u16>,
        answer: Option<&mut Conn>,
        ledger: &mut Ledger,
    ) {
        let (stream, seq) = self.parse(topic, payload);
        let again = match (qos, packet_id) {
            // The same packet id and message before PUBREL: a protocol
            // retransmission, not a second delivery.
            (2, Some(id)) => self.awaiting_rel.insert(id, (stream, seq)) == Some((stream, seq)),
            _ => false,
        };
        if again {
            ledger.redelivered(stream);
        } else {
            ledger.delivered(stream, seq, me, dup);
        }
        if let (Some(conn), Some(id)) = (answer, packet_id) {
            match qos {
                1 => conn.send(&Packet::puback(id)),
                2 => conn.send(&Packet::pubrec(id)),
                _ => {}
            }
        }
    }

    /// A resumed session: resends what is in flight, in order (PUBLISH
    /// with DUP, or PUBREL once PUBREC came).
    pub fn resend(&mut self, conn: &mut Conn, ledger: &Ledger) {
        let flight: Vec<(u64, u16, bool)> = self
            .flight
            .iter()
            .map(|(seq, f)| (*seq, f.packet_id, f.released))
            .collect();
        for (seq, id, released) in flight {
            if released {
                conn.send(&Packet::pubrel(id));
            } else {
                let p = self.publish_packet(seq, Some(id), true);
                self.send_publish(conn, ledger, &p);
            }
        }
    }

    /// The broker had no session for this client: the receiver's QoS 2
    /// state is void, and so are QoS 2 messages it never PUBREC'd (sending
    /// them again could deliver twice). Those PUBREC'd are released again
    /// (the broker answers PUBCOMP) but may never be delivered now: they
    /// are excused. QoS 1 is resent as usual.
    pub fn session_lost(&mut self, ledger: &mut Ledger) {
        self.awaiting_rel.clear();
        if self.class.qos != 2 {
            return;
        }
        let out = self.out;
        self.flight.retain(|seq, f| {
            if f.released {
                ledger.excuse(out, *seq);
            } else {
                ledger.abandon(out, *seq);
                self.by_id.remove(&f.packet_id);
            }
            f.released
        });
    }

    /// A clean session ended: everything in flight is given up, and what
    /// was sent to this client and not received is excused.
    pub fn clean_end(&mut self, ledger: &mut Ledger) {
        for seq in self.flight.keys() {
            ledger.abandon(self.out, *seq);
        }
        self.flight.clear();
        self.by_id.clear();
        self.awaiting_rel.clear();
        if let Some(input) = self.input {
            ledger.excuse_sent(input);
        }
    }

    /// Messages of this client still in flight.
    pub fn in_flight(&self) -> usize {
        self.flight.len()
    }
}

#[cfg(test)]
mod tests {
    //! The broker's acknowledgements that do not fit, as the report
    //! prints them.

    use super::*;

    #[test]
    fn ack_errors_print_as_protocol_errors() {
        let e = AckError::WrongQos {
            ack: "PUBACK",
            qos: 2,
        };
        assert_eq!(e.to_string(), "PUBACK for a QoS 2 message");
        assert_eq!(
            AckError::CompBeforeRec(7).to_string(),
            "PUBCOMP before PUBREC for packet 7"
        );
    }

    #[test]
    fn topics_named_with_identities_still_parse() {
        let mut t = Traffic::new(Class::live(1), 3, Some(3), "run/", 0.0);
        assert_eq!(t.filter(), Some(("run/3".into(), 1)));
        t.set_topics(
            "run/3/run-p0/load-0".into(),
            Some("run/3/run-p0/load-0".into()),
        );
        assert_eq!(t.filter(), Some(("run/3/run-p0/load-0".into(), 1)));
        assert_eq!(t.parse("run/3/run-p0/load-0", b"7"), (3, 7));
        assert_eq!(t.parse("run/3", b"8"), (3, 8));
        assert_eq!(t.parse("other/3/x/y", b"8").0, usize::MAX);
    }

    #[test]
    fn an_ack_of_the_wrong_qos_is_refused() {
        let mut t = Traffic::new(Class::live(2), 0, Some(0), "run/", 0.0);
        let mut ledger = Ledger::new(std::sync::Arc::default());
        assert_eq!(
            t.puback(1, &mut ledger),
            Err(AckError::WrongQos {
                ack: "PUBACK",
                qos: 2
            })
        );
        assert_eq!(t.pubcomp(1), Ok(()), "an unknown packet id is ignored");
    }
}
