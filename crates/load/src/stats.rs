//! Counters shared by every load thread, and the classes a connection
//! attempt can end in.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

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
    pub qos1_sent: AtomicU64,
    pub qos1_acked: AtomicU64,
    pub qos1_received: AtomicU64,
    /// Sent and not yet acknowledged on live connections.
    pub in_flight: AtomicI64,
    pub unacked_at_close: AtomicU64,
    pub unacked_at_stop: AtomicU64,
    pub closed_by_broker: AtomicU64,
    pub closed_by_reset: AtomicU64,
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

    /// Moves `n` messages from in flight to a "lost" counter.
    pub fn lose_in_flight(&self, n: usize, into: &AtomicU64) {
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        into.fetch_add(n, Ordering::Relaxed);
        self.in_flight
            .fetch_sub(i64::try_from(n).unwrap_or(i64::MAX), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
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
