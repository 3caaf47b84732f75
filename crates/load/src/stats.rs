//! Counters shared by the event loop and the readers of snapshots: the
//! class every connection attempt ends in, and per message class what was
//! sent, acknowledged, delivered, lost, duplicated and out of order.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

use crate::class::Class;

/// How many distinct `other_error` messages the report keeps.
pub const ERROR_SAMPLES: usize = 5;

/// Latency samples kept exactly; beyond this a uniform reservoir is kept.
pub const LATENCY_RESERVOIR: usize = 1_000_000;

/// The one class every connection attempt ends in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Connected, CONNACK 0, SUBACK and the retained version received.
    Ok,
    /// `ECONNREFUSED` on connect.
    Refused,
    /// `ECONNRESET`/`EPIPE` before the attempt's own DISCONNECT.
    Reset,
    /// Connect, CONNACK or SUBACK/version not within the connect timeout.
    TimedOut,
    /// Anything else, with its message.
    Other(String),
}

/// Classifies an I/O error seen during an attempt.
pub fn classify_io(context: &str, e: &std::io::Error) -> Outcome {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::ConnectionRefused => Outcome::Refused,
        ErrorKind::ConnectionReset | ErrorKind::BrokenPipe => Outcome::Reset,
        ErrorKind::TimedOut | ErrorKind::WouldBlock => Outcome::TimedOut,
        _ => Outcome::Other(format!("{context}: {e}")),
    }
}

/// Every counter of a run; one instance shared by all threads.
#[derive(Default)]
pub struct Stats {
    pub ok: AtomicU64,
    pub refused: AtomicU64,
    pub reset: AtomicU64,
    pub timed_out: AtomicU64,
    pub other_error: AtomicU64,
    pub closed_by_broker: AtomicU64,
    pub closed_by_reset: AtomicU64,
    /// Connections past CONNACK right now.
    pub held: AtomicI64,
    /// Most connections held at once.
    pub held_max: AtomicI64,
    /// Connections over TLS that got their CONNACK.
    pub tls_connects: AtomicU64,
    /// Connections over WebSocket (ws or wss) that got their CONNACK.
    pub ws_connects: AtomicU64,
    /// The run connects with credentials and probes the denied topic.
    pub auth: AtomicBool,
    /// CONNACKs refusing the credentials (also in `other_error`).
    pub auth_refused: AtomicU64,
    /// Probes the broker answered as denied.
    pub denied_checks: AtomicU64,
    /// The denied topic allowed: an MQTT 5 PUBACK success, a delivery, a
    /// SUBACK granting it where it must not.
    pub denied_leaks: AtomicU64,
    /// SUBACKs granting the denied topic where that is no leak.
    pub denied_subscribed: AtomicU64,
    classes: [ClassStats; Class::COUNT],
    pub sessions: SessionStats,
    /// The MQTT 5 sessions' reconnects, apart from the 3.1.1 ones.
    pub v5_sessions: SessionStats,
    errors: Mutex<Vec<String>>,
    close_reasons: Mutex<Vec<String>>,
    versions: Mutex<BTreeMap<String, u64>>,
    latencies: Mutex<Reservoir>,
}

/// CONNACK latencies in microseconds: all of them up to
/// [`LATENCY_RESERVOIR`], then a uniform sample of that size.
#[derive(Default)]
struct Reservoir {
    samples: Vec<u64>,
    seen: u64,
    rng: u64,
}

impl Reservoir {
    fn add(&mut self, us: u64) {
        self.seen += 1;
        if self.samples.len() < LATENCY_RESERVOIR {
            self.samples.push(us);
            return;
        }
        // xorshift64: good enough to pick a slot uniformly.
        if self.rng == 0 {
            self.rng = 0x9E37_79B9_7F4A_7C15;
        }
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let slot = self.rng % self.seen;
        if let Ok(slot) = usize::try_from(slot) {
            if slot < self.samples.len() {
                self.samples[slot] = us;
            }
        }
    }
}

/// A copy of the latency samples with the count of all seen.
pub struct Latencies {
    pub samples_us: Vec<u64>,
    pub seen: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking load thread must not hide the counts of the others.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Keeps `msg` if it is new and fewer than [`ERROR_SAMPLES`] are kept.
fn keep_sample(samples: &Mutex<Vec<String>>, msg: &str) {
    let mut samples = lock(samples);
    if samples.len() < ERROR_SAMPLES && !samples.iter().any(|e| e == msg) {
        samples.push(msg.to_string());
    }
}

impl Stats {
    /// Records the class of one finished attempt.
    pub fn record(&self, outcome: &Outcome) {
        let counter = match outcome {
            Outcome::Ok => &self.ok,
            Outcome::Refused => &self.refused,
            Outcome::Reset => &self.reset,
            Outcome::TimedOut => &self.timed_out,
            Outcome::Other(msg) => {
                keep_sample(&self.errors, msg);
                &self.other_error
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Records that the broker closed an established connection.
    pub fn closed(&self, reset: bool, reason: &str) {
        self.closed_by_broker.fetch_add(1, Ordering::Relaxed);
        if reset {
            self.closed_by_reset.fetch_add(1, Ordering::Relaxed);
        }
        keep_sample(&self.close_reasons, reason);
    }

    pub fn close_reasons(&self) -> Vec<String> {
        lock(&self.close_reasons).clone()
    }

    /// Records one CONNACK latency.
    pub fn connack_latency(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        lock(&self.latencies).add(us);
    }

    /// Records the version a storm connection saw.
    pub fn version_seen(&self, version: &str) {
        *lock(&self.versions).entry(version.to_string()).or_insert(0) += 1;
    }

    pub fn error_samples(&self) -> Vec<String> {
        lock(&self.errors).clone()
    }

    pub fn versions(&self) -> BTreeMap<String, u64> {
        lock(&self.versions).clone()
    }

    pub fn latencies(&self) -> Latencies {
        let r = lock(&self.latencies);
        Latencies {
            samples_us: r.samples.clone(),
            seen: r.seen,
        }
    }

    /// The counters of one message class.
    pub fn class(&self, class: Class) -> &ClassStats {
        &self.classes[class.index()]
    }

    /// One more (or one fewer) connection past CONNACK.
    pub fn hold(&self, delta: i64) {
        let now = self.held.fetch_add(delta, Ordering::Relaxed) + delta;
        self.held_max.fetch_max(now, Ordering::Relaxed);
    }
}

/// Message counters of one [`Class`].
#[derive(Default)]
pub struct ClassStats {
    /// Clients of this class (publishers).
    pub clients: AtomicU64,
    pub sent: AtomicU64,
    /// Taken by the broker: PUBACK, PUBREC, or written for QoS 0.
    pub acked: AtomicU64,
    /// Delivered to the subscriber, first copies only.
    pub received: AtomicU64,
    /// Further copies of a message already delivered.
    pub duplicates: AtomicU64,
    /// Of them, at QoS 0 or 2, where MQTT allows none.
    pub dup_beyond_qos: AtomicU64,
    /// Deliveries carrying the DUP flag.
    pub redelivered: AtomicU64,
    /// First deliveries older than one already delivered (per publisher).
    pub out_of_order: AtomicU64,
    /// Deliveries of an unknown message or to the wrong client.
    pub misrouted: AtomicU64,
    /// Sent, not yet acknowledged.
    pub in_flight: AtomicI64,
    /// Given up unacknowledged when the publisher's session ended.
    pub unacked_at_close: AtomicU64,
    /// Taken by the broker, not delivered, and the subscriber's session
    /// ended (clean session closed, or persistent session gone).
    pub lost_at_close: AtomicU64,
    /// Taken by the broker, the subscriber connected, not delivered by the
    /// end of the run's drain.
    pub lost: AtomicU64,
    /// Taken by the broker, the subscriber not connected at the end.
    pub undelivered_at_stop: AtomicU64,
    /// Still unacknowledged at the end.
    pub unacked_at_stop: AtomicU64,
    /// MQTT 5: deliveries whose user properties were not the ones sent.
    pub props_damaged: AtomicU64,
    /// MQTT 5: deliveries without a Message Expiry Interval, or with one
    /// above the one sent.
    pub expiry_bad: AtomicU64,
    /// MQTT 5: QoS 1/2 deliveries beyond the client's Receive Maximum.
    pub receive_max_exceeded: AtomicU64,
    /// MQTT 5: deliveries with a topic alias never set, or out of range.
    pub alias_errors: AtomicU64,
    /// MQTT 5: PUBLISH packets sent with an empty topic and an alias.
    pub alias_sent: AtomicU64,
}

/// A plain copy of [`ClassStats`].
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ClassCounts {
    pub clients: u64,
    pub sent: u64,
    pub acked: u64,
    pub received: u64,
    pub duplicates: u64,
    pub dup_beyond_qos: u64,
    pub redelivered: u64,
    pub out_of_order: u64,
    pub misrouted: u64,
    pub in_flight: i64,
    pub unacked_at_close: u64,
    pub lost_at_close: u64,
    pub lost: u64,
    pub undelivered_at_stop: u64,
    pub unacked_at_stop: u64,
    pub props_damaged: u64,
    pub expiry_bad: u64,
    pub receive_max_exceeded: u64,
    pub alias_errors: u64,
    pub alias_sent: u64,
}

impl ClassStats {
    pub fn counts(&self) -> ClassCounts {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ClassCounts {
            clients: g(&self.clients),
            sent: g(&self.sent),
            acked: g(&self.acked),
            received: g(&self.received),
            duplicates: g(&self.duplicates),
            dup_beyond_qos: g(&self.dup_beyond_qos),
            redelivered: g(&self.redelivered),
            out_of_order: g(&self.out_of_order),
            misrouted: g(&self.misrouted),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            unacked_at_close: g(&self.unacked_at_close),
            lost_at_close: g(&self.lost_at_close),
            lost: g(&self.lost),
            undelivered_at_stop: g(&self.undelivered_at_stop),
            unacked_at_stop: g(&self.unacked_at_stop),
            props_damaged: g(&self.props_damaged),
            expiry_bad: g(&self.expiry_bad),
            receive_max_exceeded: g(&self.receive_max_exceeded),
            alias_errors: g(&self.alias_errors),
            alias_sent: g(&self.alias_sent),
        }
    }
}

impl ClassCounts {
    /// Nothing lost, duplicated beyond the QoS, out of order or
    /// misrouted; at MQTT 5 no property damaged, expiry wrong, Receive
    /// Maximum exceeded or alias unresolved either.
    pub fn clean(&self) -> bool {
        self.lost + self.dup_beyond_qos + self.out_of_order + self.misrouted == 0
            && self.v5_failures() == 0
    }

    /// The MQTT 5 failures: properties damaged, expiry wrong, Receive
    /// Maximum exceeded, aliases unresolved.
    pub fn v5_failures(&self) -> u64 {
        self.props_damaged + self.expiry_bad + self.receive_max_exceeded + self.alias_errors
    }
}

/// What the persistent-session clients saw on their reconnects.
#[derive(Default)]
pub struct SessionStats {
    /// Reconnects whose CONNACK said session present.
    pub resumed: AtomicU64,
    /// Reconnects that found no session (the broker lost it).
    pub lost: AtomicU64,
    /// Offline periods that began with DISCONNECT.
    pub left_gracefully: AtomicU64,
    /// Offline periods that began with the socket just closed.
    pub left_abruptly: AtomicU64,
}

#[cfg(test)]
mod tests {
    //! Error samples, I/O error classes, the latency reservoir's bound.

    use super::*;

    #[test]
    fn errors_keep_first_distinct_messages() {
        let s = Stats::default();
        for i in 0..10 {
            s.record(&Outcome::Other(format!("e{}", i % 7)));
            s.record(&Outcome::Other("e0".into()));
        }
        assert_eq!(s.error_samples(), vec!["e0", "e1", "e2", "e3", "e4"]);
        assert_eq!(s.other_error.load(Ordering::Relaxed), 20);
    }

    #[test]
    fn io_errors_are_classified() {
        use std::io::{Error, ErrorKind};
        let c = |k| classify_io("x", &Error::from(k));
        assert_eq!(c(ErrorKind::ConnectionRefused), Outcome::Refused);
        assert_eq!(c(ErrorKind::ConnectionReset), Outcome::Reset);
        assert_eq!(c(ErrorKind::BrokenPipe), Outcome::Reset);
        assert_eq!(c(ErrorKind::WouldBlock), Outcome::TimedOut);
        assert_eq!(c(ErrorKind::TimedOut), Outcome::TimedOut);
        assert!(matches!(c(ErrorKind::AddrNotAvailable), Outcome::Other(_)));
    }

    #[test]
    fn reservoir_keeps_a_bounded_sample() {
        let mut r = Reservoir::default();
        for i in 0..(LATENCY_RESERVOIR as u64 + 10) {
            r.add(i);
        }
        assert_eq!(r.samples.len(), LATENCY_RESERVOIR);
        assert_eq!(r.seen, LATENCY_RESERVOIR as u64 + 10);
    }
}
