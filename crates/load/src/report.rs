//! What a load run saw: counts per attempt class, CONNACK latency, message
//! accounting per client kind and QoS, what the persistent sessions found
//! on their reconnects (3.1.1 and MQTT 5 apart), versions seen, and with
//! authentication the credentials refused and the denied topic's probes;
//! as an aligned table or one JSON object.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use serde::Serialize;

use super::class::Class;
use super::stats::{ClassCounts, SessionStats, Stats};

/// CONNACK latency of every attempt (storm and persistent) that got one,
/// from just before connect() to CONNACK received, in milliseconds;
/// `None` without samples.
#[derive(Serialize, Debug, Clone, Default, PartialEq)]
pub struct Latency {
    /// CONNACKs measured (percentiles come from at most a million of them).
    pub samples: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

impl Latency {
    /// Nearest-rank percentiles of the samples (microseconds).
    pub fn from_samples(mut us: Vec<u64>, seen: u64) -> Latency {
        us.sort_unstable();
        let rank = |p: f64| -> Option<f64> {
            if us.is_empty() {
                return None;
            }
            // Nearest rank: the smallest value with at least p of the samples
            // at or below it.
            let n = us.len() as f64;
            let idx = ((p * n).ceil() as usize).clamp(1, us.len()) - 1;
            us.get(idx).map(|v| ms(*v))
        };
        Latency {
            samples: seen,
            p50_ms: rank(0.50),
            p99_ms: rank(0.99),
            max_ms: us.last().map(|v| ms(*v)),
        }
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// The messages of one class (client kind and QoS).
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct ClassReport {
    #[serde(flatten)]
    pub counts: ClassCounts,
    /// Nothing lost, duplicated beyond the QoS, out of order or misrouted
    /// (at MQTT 5: nor a property damaged, an expiry wrong, the Receive
    /// Maximum exceeded or an alias unresolved).
    pub clean: bool,
}

/// What the persistent-session clients found on their reconnects.
#[derive(Serialize, Debug, Clone, Default, PartialEq)]
pub struct SessionReport {
    /// Reconnects whose CONNACK said session present.
    pub resumed: u64,
    /// Reconnects that found no session: the broker lost it.
    pub lost: u64,
    /// Offline periods begun with DISCONNECT, and with the socket just
    /// closed.
    pub left_gracefully: u64,
    pub left_abruptly: u64,
}

impl SessionReport {
    fn from_stats(s: &SessionStats) -> SessionReport {
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        SessionReport {
            resumed: get(&s.resumed),
            lost: get(&s.lost),
            left_gracefully: get(&s.left_gracefully),
            left_abruptly: get(&s.left_abruptly),
        }
    }

    /// Its table rows, under `name`.
    fn rows(&self, name: &str) -> Vec<(String, String)> {
        vec![
            (format!("{name} resumed"), self.resumed.to_string()),
            ("  lost by broker".into(), self.lost.to_string()),
            (
                "  left gracefully/abruptly".into(),
                format!("{}/{}", self.left_gracefully, self.left_abruptly),
            ),
        ]
    }
}

/// The counts of a run, at its end or at a snapshot.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Report {
    /// Connection attempts finished (the sum of the five classes below).
    pub attempts: u64,
    pub ok: u64,
    /// ECONNREFUSED on connect.
    pub refused: u64,
    /// ECONNRESET/EPIPE before the attempt's own DISCONNECT.
    pub reset: u64,
    /// Connect, CONNACK or SUBACK/version not within the connect timeout.
    pub timed_out: u64,
    pub other_error: u64,
    /// The first distinct `other_error` messages.
    pub other_error_samples: Vec<String>,
    pub connack_latency: Latency,
    /// Connections past CONNACK now, and the most at once.
    pub held: u64,
    pub held_max: u64,
    /// Of the `ok` attempts, those over TLS.
    pub tls: u64,
    /// Of the `ok` attempts, those over WebSocket (ws or wss).
    pub websocket: u64,
    /// Established connections (CONNACK received) the broker closed.
    pub closed_by_broker: u64,
    /// Of them, closed with ECONNRESET/EPIPE.
    pub closed_by_reset: u64,
    /// The first distinct reasons of those closes.
    pub close_samples: Vec<String>,
    /// The clients connected with credentials ([`crate::LoadAuth`]) and
    /// probed the denied topic.
    pub auth: bool,
    /// CONNACKs refusing the credentials (3.1.1 codes 4 and 5, MQTT 5
    /// 0x86, 0x87, 0x8C); counted in `other_error` too.
    pub auth_refused: u64,
    /// Probes of the denied topic the broker answered as denied (a
    /// SUBACK failure, an MQTT 5 PUBACK 0x87).
    pub denied_checks: u64,
    /// The denied topic allowed: an MQTT 5 PUBACK success, a message on
    /// it delivered to any client, a SUBACK granting it when the broker
    /// must refuse it ([`crate::LoadAuth::refuse_subscribe`]).
    pub denied_leaks: u64,
    /// SUBACKs granting the denied topic where the broker checks each
    /// delivery instead (mosquitto 2.0): no leak.
    pub denied_subscribed: u64,
    /// Per class with clients ("live-qos0" ... "session-qos2",
    /// "v5-session-qos1" ... "v5-shared-qos2").
    pub messages: BTreeMap<String, ClassReport>,
    pub sessions: SessionReport,
    /// The MQTT 5 sessions' reconnects.
    pub v5_sessions: SessionReport,
    /// Version payload → storm connections that saw it.
    pub versions_seen: BTreeMap<String, u64>,
    pub elapsed_s: f64,
}

impl Report {
    /// Reads the counters.
    pub(super) fn from_stats(s: &Stats, elapsed_s: f64) -> Report {
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let (ok, refused, reset, timed_out, other_error) = (
            get(&s.ok),
            get(&s.refused),
            get(&s.reset),
            get(&s.timed_out),
            get(&s.other_error),
        );
        let lat = s.latencies();
        let messages = Class::ALL
            .iter()
            .map(|c| (c.name(), s.class(*c).counts()))
            .filter(|(_, n)| n.clients > 0 || n.misrouted > 0)
            .map(|(name, counts)| {
                let clean = counts.clean();
                (name, ClassReport { counts, clean })
            })
            .collect();
        let gauge = |a: &std::sync::atomic::AtomicI64| {
            u64::try_from(a.load(Ordering::Relaxed)).unwrap_or(0)
        };
        Report {
            attempts: ok + refused + reset + timed_out + other_error,
            ok,
            refused,
            reset,
            timed_out,
            other_error,
            other_error_samples: s.error_samples(),
            connack_latency: Latency::from_samples(lat.samples_us, lat.seen),
            held: gauge(&s.held),
            held_max: gauge(&s.held_max),
            tls: get(&s.tls_connects),
            websocket: get(&s.ws_connects),
            closed_by_broker: get(&s.closed_by_broker),
            closed_by_reset: get(&s.closed_by_reset),
            close_samples: s.close_reasons(),
            auth: s.auth.load(Ordering::Relaxed),
            auth_refused: get(&s.auth_refused),
            denied_checks: get(&s.denied_checks),
            denied_leaks: get(&s.denied_leaks),
            denied_subscribed: get(&s.denied_subscribed),
            messages,
            sessions: SessionReport::from_stats(&s.sessions),
            v5_sessions: SessionReport::from_stats(&s.v5_sessions),
            versions_seen: s.versions(),
            elapsed_s: (elapsed_s * 1000.0).round() / 1000.0,
        }
    }

    /// No connection refused, reset or timed out.
    pub fn connections_clean(&self) -> bool {
        self.refused == 0 && self.reset == 0 && self.timed_out == 0
    }

    /// No message lost, duplicated beyond its QoS, out of order or
    /// misrouted, in any class.
    pub fn messages_clean(&self) -> bool {
        self.messages.values().all(|c| c.clean)
    }

    /// No credentials refused, nothing of the denied topic allowed, and
    /// with auth at least one probe answered as denied.
    pub fn auth_clean(&self) -> bool {
        self.auth_refused == 0 && self.denied_leaks == 0 && (!self.auth || self.denied_checks > 0)
    }

    /// All three of the above.
    pub fn clean(&self) -> bool {
        self.connections_clean() && self.messages_clean() && self.auth_clean()
    }

    /// The counts of one class ("live-qos1"...), zero when it had no
    /// clients.
    pub fn class(&self, name: &str) -> ClassCounts {
        self.messages
            .get(name)
            .map(|c| c.counts.clone())
            .unwrap_or_default()
    }

    /// One JSON object.
    pub fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":{:?}}}", e.to_string()))
    }

    /// An aligned human table.
    pub fn table(&self) -> String {
        let opt = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.3}"));
        let lat = &self.connack_latency;
        let mut rows: Vec<(String, String)> = vec![
            ("attempts".into(), self.attempts.to_string()),
            ("  ok".into(), self.ok.to_string()),
            ("  refused".into(), self.refused.to_string()),
            ("  reset".into(), self.reset.to_string()),
            ("  timed out".into(), self.timed_out.to_string()),
            ("  other error".into(), self.other_error.to_string()),
            ("  of ok, over TLS".into(), self.tls.to_string()),
            ("  of ok, over WebSocket".into(), self.websocket.to_string()),
            ("connack latency samples".into(), lat.samples.to_string()),
            ("  p50 ms".into(), opt(lat.p50_ms)),
            ("  p99 ms".into(), opt(lat.p99_ms)),
            ("  max ms".into(), opt(lat.max_ms)),
            (
                "held (max)".into(),
                format!("{} ({})", self.held, self.held_max),
            ),
            ("closed by broker".into(), self.closed_by_broker.to_string()),
            ("  by reset".into(), self.closed_by_reset.to_string()),
        ];
        if self.auth || self.auth_refused + self.denied_leaks > 0 {
            rows.extend(self.auth_rows());
        }
        if self.messages.keys().any(|k| k.starts_with("session")) {
            rows.extend(self.sessions.rows("sessions"));
        }
        if self.messages.keys().any(|k| k.starts_with("v5-session")) {
            rows.extend(self.v5_sessions.rows("v5 sessions"));
        }
        if self.versions_seen.is_empty() {
            rows.push(("versions seen".into(), "-".into()));
        }
        for (v, n) in &self.versions_seen {
            rows.push((format!("version {v}"), n.to_string()));
        }
        rows.push(("elapsed s".into(), format!("{:.3}", self.elapsed_s)));
        rows.push((
            "clean".into(),
            if self.clean() { "yes" } else { "NO" }.into(),
        ));
        let lw = rows
            .iter()
            .map(|(l, _)| l.chars().count())
            .max()
            .unwrap_or(0);
        let vw = rows
            .iter()
            .map(|(_, v)| v.chars().count())
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for (l, v) in &rows {
            let _ = writeln!(out, "{l:<lw$}  {v:>vw$}");
        }
        out.push_str(&self.message_table());
        for e in &self.other_error_samples {
            let _ = writeln!(out, "error: {e}");
        }
        for c in &self.close_samples {
            let _ = writeln!(out, "close: {c}");
        }
        out
    }
}

impl Report {
    /// The rows of a run with credentials.
    fn auth_rows(&self) -> Vec<(String, String)> {
        [
            ("auth refused", self.auth_refused),
            ("denied checks", self.denied_checks),
            ("  leaks", self.denied_leaks),
            ("  subscribed", self.denied_subscribed),
        ]
        .into_iter()
        .map(|(l, v)| (l.to_string(), v.to_string()))
        .collect()
    }

    /// One row per message class, one column per count.
    fn message_table(&self) -> String {
        if self.messages.is_empty() {
            return String::new();
        }
        let v5 = self.messages.keys().any(|k| k.starts_with("v5"));
        let mut head = vec![
            "messages",
            "clients",
            "sent",
            "acked",
            "received",
            "lost",
            "dups",
            "beyond",
            "order",
            "dup-flag",
            "lost@close",
            "unacked@close",
            "undeliv@stop",
            "unacked@stop",
            "misrouted",
        ];
        if v5 {
            head.extend(["props", "expiry", "rcv-max", "alias-err", "alias-sent"]);
        }
        head.push("clean");
        let mut rows: Vec<Vec<String>> = vec![head.iter().map(|h| h.to_string()).collect()];
        for (name, c) in &self.messages {
            let n = &c.counts;
            let mut nums = vec![
                n.clients,
                n.sent,
                n.acked,
                n.received,
                n.lost,
                n.duplicates,
                n.dup_beyond_qos,
                n.out_of_order,
                n.redelivered,
                n.lost_at_close,
                n.unacked_at_close,
                n.undelivered_at_stop,
                n.unacked_at_stop,
                n.misrouted,
            ];
            if v5 {
                nums.extend([
                    n.props_damaged,
                    n.expiry_bad,
                    n.receive_max_exceeded,
                    n.alias_errors,
                    n.alias_sent,
                ]);
            }
            let mut row = vec![name.clone()];
            row.extend(nums.iter().map(u64::to_string));
            row.push(if c.clean { "yes" } else { "NO" }.into());
            rows.push(row);
        }
        let widths: Vec<usize> = (0..head.len())
            .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for r in &rows {
            let cells: Vec<String> = r
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(i, (v, w))| {
                    if i == 0 {
                        format!("{v:<w$}")
                    } else {
                        format!("{v:>w$}")
                    }
                })
                .collect();
            let _ = writeln!(out, "{}", cells.join(" "));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    //! Percentiles, a clean table and JSON, and what makes a report
    //! unclean.

    use super::*;
    use crate::stats::Outcome;

    #[test]
    fn nearest_rank_percentiles() {
        let l = Latency::from_samples((1..=100).map(|v| v * 1000).collect(), 100);
        assert_eq!(l.p50_ms, Some(50.0));
        assert_eq!(l.p99_ms, Some(99.0));
        assert_eq!(l.max_ms, Some(100.0));
        let one = Latency::from_samples(vec![1500], 1);
        assert_eq!((one.p50_ms, one.p99_ms), (Some(1.5), Some(1.5)));
        assert_eq!(Latency::from_samples(vec![], 0).p50_ms, None);
    }

    #[test]
    fn clean_table_and_json() {
        let s = Stats::default();
        s.record(&Outcome::Ok);
        s.version_seen("5.0.0");
        let r = Report::from_stats(&s, 1.0);
        assert!(r.clean());
        assert_eq!(r.attempts, 1);
        let v: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        assert_eq!(v["versions_seen"]["5.0.0"], 1);
        assert!(v["connack_latency"]["p50_ms"].is_null());
        let t = r.table();
        let widths: Vec<usize> = t.lines().map(|l| l.chars().count()).collect();
        assert!(widths.windows(2).all(|w| w[0] == w[1]), "{t}");
        assert!(!t.contains("messages"), "no class, no message table: {t}");
        s.record(&Outcome::Refused);
        s.record(&Outcome::Other("boom".into()));
        let r = Report::from_stats(&s, 1.0);
        assert!(!r.clean());
        assert!(r.table().contains("error: boom"));
    }

    #[test]
    fn a_lost_message_makes_its_class_and_the_report_unclean() {
        use std::sync::atomic::Ordering::Relaxed;
        let s = Stats::default();
        s.record(&Outcome::Ok);
        let c = s.class(Class::session(2));
        c.clients.fetch_add(1, Relaxed);
        c.sent.fetch_add(3, Relaxed);
        let r = Report::from_stats(&s, 1.0);
        assert!(r.clean() && r.messages["session-qos2"].clean);
        c.lost.fetch_add(1, Relaxed);
        let r = Report::from_stats(&s, 1.0);
        assert!(r.connections_clean() && !r.messages_clean() && !r.clean());
        assert_eq!(r.class("session-qos2").lost, 1);
        assert_eq!(r.class("live-qos0"), ClassCounts::default());
        let t = r.table();
        let row = t.lines().find(|l| l.starts_with("session-qos2")).unwrap();
        assert!(row.ends_with(" NO"), "{t}");
        let head = t.lines().find(|l| l.starts_with("messages")).unwrap();
        assert_eq!(head.len(), row.len(), "{t}");
        let v: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        assert_eq!(v["messages"]["session-qos2"]["lost"], 1);
        assert_eq!(v["messages"]["session-qos2"]["clean"], false);
    }
}
