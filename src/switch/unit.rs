//! The switch through systemd: record the plan, `ReloadUnit`, wait for the
//! job, and check what actually runs before trusting its result.

use std::path::Path;
use std::time::Instant;

use semver::Version;

use super::{Pending, RunningBroker, SwitchReport, Switcher};
use crate::systemd::{short_name, BusError, ServiceManager, UnitStatus};
use crate::Error;

/// How long a reload's outcome waits for some broker to answer.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

/// Switches the broker of an active unit by asking systemd to reload it.
pub struct UnitSwitch {
    manager: Box<dyn ServiceManager>,
    unit: String,
    timeout: std::time::Duration,
    /// Finds the running broker (its handoff socket) and its release.
    probe: Box<dyn Switcher>,
}

impl UnitSwitch {
    /// A switcher for `unit`, waiting at most `timeout` for each job.
    pub fn new(
        manager: Box<dyn ServiceManager>,
        unit: &str,
        timeout: std::time::Duration,
        probe: Box<dyn Switcher>,
    ) -> UnitSwitch {
        UnitSwitch {
            manager,
            unit: unit.to_string(),
            timeout,
            probe,
        }
    }

    fn status(&self) -> Result<UnitStatus, UnitFailure> {
        match self.manager.unit(&self.unit)? {
            Some(s) if s.is_running() => Ok(s),
            Some(s) => Err(UnitFailure::NotRunning {
                unit: self.unit.clone(),
                active: s.active_state,
                load: s.load_state,
            }),
            None => Err(UnitFailure::NotLoaded(self.unit.clone())),
        }
    }

    /// The broker that answers now; when none does, asked again for up
    /// to [`SETTLE`]: a broker just past its commit, whose unit helper
    /// died, may be slow to answer on a loaded host.
    fn answering(&self) -> Option<RunningBroker> {
        let until = Instant::now() + SETTLE;
        loop {
            let running = self.probe.probe().ok().flatten();
            if running.is_some() || Instant::now() >= until {
                return running;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

impl Switcher for UnitSwitch {
    fn probe(&self) -> Result<Option<RunningBroker>, Error> {
        self.probe.probe()
    }

    fn records_first(&self) -> bool {
        true
    }

    fn in_flight(&self) -> bool {
        self.status().is_ok_and(|s| s.active_state == "reloading")
    }

    fn switch(
        &self,
        _broker: &RunningBroker,
        version: &Version,
        _tree: &Path,
        _pending: &mut dyn Pending,
    ) -> Result<SwitchReport, Error> {
        let fail = Error::switching(version);
        let began = Instant::now();
        let before = self.status().map_err(&fail)?;
        // An error of the call itself (D-Bus after the job) is judged by
        // what runs too: the reload may well have happened.
        let outcome = self.manager.reload(&self.unit, self.timeout);
        // Its job may still run then: judge once it has ended.
        if outcome.is_err() {
            let until = began + self.timeout;
            while Instant::now() < until && self.in_flight() {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        let took = began.elapsed();
        // Kill or delay only.
        let _ = emqx_handoff::faults::step("helper::reloaded");
        // What runs now decides, not the job's word alone: a reload killed
        // after its commit did switch, a `done` that left the old release
        // running did not.
        let running = self.answering();
        let after = self.status().ok();
        let runs_target = running
            .as_ref()
            .is_some_and(|b| b.version == version.to_string());
        let new_pid = after.as_ref().map(|s| s.main_pid).unwrap_or(0);
        // The unit's helper said how the move went in the status text.
        let moved = after
            .as_ref()
            .and_then(|s| super::announce::moved_from_status(&s.status_text, new_pid));
        if runs_target {
            let warning = match &outcome {
                Ok(o) if o.is_done() => None,
                Ok(o) => Some(o.explain(&self.unit)),
                Err(e) => Some(e.to_string()),
            }
            .map(|why| format!("{why}, yet the broker runs {version} now"));
            return Ok(SwitchReport {
                old_pid: before.main_pid,
                new_pid,
                draining: 0,
                moved,
                drain_reason: None,
                helper: took,
                start: took,
                warning,
                via_unit: Some(self.unit.clone()),
                unfinished: false,
            });
        }
        let outcome = outcome.map_err(|e| fail(e.into()))?;
        let serving = match running {
            Some(b) => Serving::Release(b.version),
            None => Serving::Unanswered,
        };
        Err(fail(if outcome.is_done() {
            UnitFailure::ReloadedOld {
                unit: self.unit.clone(),
                serving,
            }
        } else {
            UnitFailure::Job {
                explained: outcome.explain(&self.unit),
                serving,
            }
        }))
    }
}

/// What runs after a reload that did not switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Serving {
    /// A broker of this release answers.
    Release(String),
    /// No broker answers its handoff socket.
    Unanswered,
}

impl std::fmt::Display for Serving {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Serving::Release(v) => write!(f, "the broker still runs {v}"),
            Serving::Unanswered => f.write_str("no broker answers its handoff socket now"),
        }
    }
}

/// Why a switch through systemd did not happen.
#[derive(Debug, thiserror::Error)]
pub enum UnitFailure {
    /// systemd could not be asked.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// The unit runs no broker.
    #[error("{unit} is {active} ({load}), no longer running")]
    NotRunning {
        /// The unit.
        unit: String,
        /// Its active state.
        active: String,
        /// Its load state.
        load: String,
    },
    /// systemd does not know the unit.
    #[error("{0} is not loaded")]
    NotLoaded(String),
    /// The reload job succeeded, yet the old release runs.
    #[error(
        "systemd reloaded {unit} but {serving}; see 'journalctl -u {}'",
        short_name(unit)
    )]
    ReloadedOld {
        /// The unit.
        unit: String,
        /// What runs.
        serving: Serving,
    },
    /// The reload job did not succeed.
    #[error("{explained} ({serving})")]
    Job {
        /// The job's outcome, explained.
        explained: String,
        /// What runs.
        serving: Serving,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::systemd::JobOutcome;
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::time::Duration;

    /// A fake systemd whose reload runs `effect` on the fake broker.
    struct FakeManager {
        outcome: JobOutcome,
        broker: Rc<RefCell<String>>,
        effect: Option<String>,
        pid: Rc<RefCell<u32>>,
    }

    impl ServiceManager for FakeManager {
        fn unit(&self, _: &str) -> Result<Option<UnitStatus>, BusError> {
            Ok(Some(UnitStatus {
                load_state: "loaded".into(),
                active_state: "active".into(),
                main_pid: *self.pid.borrow(),
                status_text: String::new(),
            }))
        }
        fn reload(&self, _: &str, _: Duration) -> Result<JobOutcome, BusError> {
            if let Some(v) = &self.effect {
                *self.broker.borrow_mut() = v.clone();
                *self.pid.borrow_mut() += 1;
            }
            Ok(self.outcome.clone())
        }
    }

    struct FakeProbe(Rc<RefCell<String>>);

    impl Switcher for FakeProbe {
        fn probe(&self) -> Result<Option<RunningBroker>, Error> {
            Ok(Some(RunningBroker {
                socket: "/run/emqx/handoff.sock".into(),
                pid: 1,
                start: None,
                version: self.0.borrow().clone(),
            }))
        }
        fn switch(
            &self,
            _: &RunningBroker,
            _: &Version,
            _: &Path,
            _: &mut dyn Pending,
        ) -> Result<SwitchReport, Error> {
            unreachable!("the unit switch never switches directly")
        }
    }

    fn run(outcome: JobOutcome, effect: Option<&str>) -> Result<SwitchReport, Error> {
        // Not Send: the fakes share state through Rc; UnitSwitch needs no Send.
        let broker = Rc::new(RefCell::new("5.0.0".to_string()));
        let manager = FakeManager {
            outcome,
            broker: Rc::clone(&broker),
            effect: effect.map(str::to_string),
            pid: Rc::new(RefCell::new(100)),
        };
        let s = UnitSwitch::new(
            Box::new(manager),
            "emqx.service",
            Duration::from_secs(1),
            Box::new(FakeProbe(Rc::clone(&broker))),
        );
        let b = s.probe().unwrap().unwrap();
        s.switch(
            &b,
            &Version::new(5, 0, 1),
            Path::new("/nonexistent"),
            &mut super::super::NoRecord,
        )
    }

    #[test]
    fn done_and_switched_reports_the_new_main_pid() {
        let r = run(JobOutcome::Done, Some("5.0.1")).unwrap();
        assert_eq!((r.old_pid, r.new_pid), (100, 101));
        assert_eq!(r.warning, None);
    }

    /// The typed reason of a failed switch.
    fn failure(e: &Error) -> &UnitFailure {
        match e {
            Error::Switch { reason, .. } => reason
                .downcast_ref::<UnitFailure>()
                .unwrap_or_else(|| panic!("not a unit failure: {e}")),
            other => panic!("not a switch error: {other}"),
        }
    }

    #[test]
    fn failed_job_with_the_old_broker_serving_is_an_error_naming_the_journal() {
        let e = run(JobOutcome::Failed, None).unwrap_err();
        assert!(
            matches!(failure(&e), UnitFailure::Job { serving, .. } if *serving == Serving::Release("5.0.0".into())),
            "{e}"
        );
        assert!(e.to_string().contains("journalctl -u emqx"), "{e}");
    }

    #[test]
    fn done_job_that_left_the_old_release_running_is_an_error_naming_the_journal() {
        let e = run(JobOutcome::Done, None).unwrap_err();
        assert!(
            matches!(failure(&e), UnitFailure::ReloadedOld { serving, .. } if *serving == Serving::Release("5.0.0".into())),
            "{e}"
        );
        assert!(e.to_string().contains("journalctl -u emqx"), "{e}");
    }

    #[test]
    fn failed_job_after_the_switch_happened_is_a_warning() {
        let r = run(JobOutcome::Failed, Some("5.0.1")).unwrap();
        assert!(r.warning.unwrap().contains("runs 5.0.1 now"));
    }
}
