//! The result of a systemd job, and what the operator is told about it.

use std::time::Duration;

/// How systemd's reload job of the broker's unit ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    /// `done`: `ExecReload` succeeded.
    Done,
    /// `failed`: `ExecReload` failed (or was killed).
    Failed,
    /// `timeout`: systemd's own job timeout passed.
    Timeout,
    /// `canceled`: another job replaced it (a stop or restart).
    Canceled,
    /// `dependency`, `skipped`, `invalid`...
    Other(String),
    /// No `JobRemoved` arrived within the helper's wait.
    NoAnswer(Duration),
}

impl JobOutcome {
    /// The outcome named by `JobRemoved`'s result argument.
    pub fn from_result(result: &str) -> JobOutcome {
        match result {
            "done" => JobOutcome::Done,
            "failed" => JobOutcome::Failed,
            "timeout" => JobOutcome::Timeout,
            "canceled" => JobOutcome::Canceled,
            other => JobOutcome::Other(other.to_string()),
        }
    }

    /// Whether the reload ran to its end.
    pub fn is_done(&self) -> bool {
        *self == JobOutcome::Done
    }

    /// One line for the operator, pointing at the unit's journal.
    pub fn explain(&self, unit: &str) -> String {
        let journal = format!("see 'journalctl -u {}'", short_name(unit));
        match self {
            JobOutcome::Done => format!("systemd reloaded {unit}"),
            JobOutcome::Failed => format!("systemd's reload of {unit} failed; {journal}"),
            JobOutcome::Timeout => {
                format!("systemd's reload of {unit} hit the unit's timeout (TimeoutStartSec=); {journal}")
            }
            JobOutcome::Canceled => format!(
                "systemd's reload of {unit} was canceled by another job (a stop or restart?); {journal}"
            ),
            JobOutcome::Other(r) => format!("systemd's reload of {unit} ended '{r}'; {journal}"),
            JobOutcome::NoAnswer(t) => format!(
                "systemd's reload of {unit} did not finish within {:.0} s (job_timeout_secs); it may still be running: check 'systemctl status {}' and {journal}",
                t.as_secs_f64(),
                short_name(unit)
            ),
        }
    }
}

/// `emqx.service` -> `emqx`, as operators type it.
pub fn short_name(unit: &str) -> &str {
    unit.strip_suffix(".service").unwrap_or(unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_points_at_the_journal() {
        for r in ["failed", "timeout", "canceled", "dependency", "skipped"] {
            let o = JobOutcome::from_result(r);
            assert!(!o.is_done());
            let text = o.explain("emqx.service");
            assert!(text.contains("journalctl -u emqx'"), "{text}");
            assert!(!text.contains('\n'));
        }
        let slow = JobOutcome::NoAnswer(Duration::from_secs(120)).explain("emqx.service");
        assert!(
            slow.contains("120 s") && slow.contains("journalctl -u emqx"),
            "{slow}"
        );
        assert!(JobOutcome::from_result("done").is_done());
        assert_eq!(short_name("broker.service"), "broker");
        assert_eq!(short_name("emqx"), "emqx");
    }
}
