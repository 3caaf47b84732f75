//! The messages of one publishing client: its outgoing stream (QoS 0, 1
//! or 2 with the packet ids in flight), the stream it subscribes to, and
//! the receiver's QoS 2 state. A persistent session keeps all of it across
//! reconnects; a clean session gives it up at every close.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
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
    /// The stream delivered to this client.
    pub input: usize,
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
    pub fn new(class: Class, out: usize, input: usize, prefix: &str, rate: f64) -> Traffic {
        let period = (rate.is_finite() && rate > 0.0)
            .then(|| Duration::from_secs_f64((1.0 / rate).max(1e-6)));
        Traffic {
            class,
            out,
            topic_out: topic(prefix, out),
            input,
            prefix: prefix.to_string(),
            period,
            next_pub: Instant::now(),
            next_id: 0,
            flight: BTreeMap::new(),
            by_id: HashMap::new(),
            awaiting_rel: HashMap::new(),
        }
    }

    /// The filter this client subscribes to.
    pub fn filter(&self) -> (String, u8) {
        (topic(&self.prefix, self.input), self.class.qos)
    }

    /// When the next message is due (None: not publishing).
    pub fn next_publish(&self) -> Option<Instant> {
        self.period.map(|_| self.next_pub)
    }

    /// Starts the schedule afresh (a new connection).
    pub fn restart_schedule(&mut self, now: Instant) {
        self.next_pub = now;
    }

    fn publish_packet(&self, seq: u64, packet_id: Option<u16>, dup: bool) -> Packet {
        Packet::Publish {
            topic: self.topic_out.clone(),
            payload: seq.to_string().into_bytes(),
            qos: self.class.qos,
            retain: false,
            dup,
            packet_id,
            properties: Properties::default(),
        }
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
            || self.flight.len() >= MAX_IN_FLIGHT
            || conn.backlog() > MAX_BACKLOG
        {
            return;
        }
        let seq = ledger.publish(self.out);
        if self.class.qos == 0 {
            conn.send(&self.publish_packet(seq, None, false));
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
        conn.send(&self.publish_packet(seq, Some(id), false));
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
        let stream = topic
            .strip_prefix(&self.prefix)
            .and_then(|s| s.parse::<usize>().ok())
            .unwrap_or(usize::MAX);
        let seq = std::str::from_utf8(payload)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
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
    pub fn resend(&mut self, conn: &mut Conn) {
        for (seq, f) in &self.flight {
            if f.released {
                conn.send(&Packet::pubrel(f.packet_id));
            } else {
                conn.send(&self.publish_packet(*seq, Some(f.packet_id), true));
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
        ledger.excuse_sent(self.input);
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
    fn an_ack_of_the_wrong_qos_is_refused() {
        let mut t = Traffic::new(Class::live(2), 0, 0, "run/", 0.0);
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
