//! Which way an administrator's switch goes: through systemd when the
//! broker's unit is active, directly otherwise (containers, the demo).

use std::path::Path;

use semver::Version;

use super::{Handoff, Pending, Restart, RunningBroker, SwitchReport, Switcher, UnitSwitch};
use crate::config::{Config, Strategy};
use crate::systemd::{short_name, ServiceManager, SystemBus};
use crate::Error;

/// The switcher for `install`/`upgrade`/`downgrade`, and one line saying
/// which path it takes (shown with `-v`).
pub fn admin_switcher(config: &Config) -> (Box<dyn Switcher>, String) {
    let unit = &config.unit;
    let (why, guard) = match SystemBus::connect() {
        Err(e) => (e.to_string(), true),
        Ok(bus) => match bus.unit(unit) {
            Ok(Some(s)) if s.is_running() && config.strategy == Strategy::Restart => {
                let line = format!("{unit} is active and strategy = \"restart\"");
                let refusal = Refusal::Always(format!(
                    "strategy = \"restart\" cannot switch a broker systemd runs ({unit} is active): 'systemctl stop {0}', run this command again, then 'systemctl start {0}'",
                    short_name(unit)
                ));
                return (guarded(config, refusal), line);
            }
            Ok(Some(s)) if s.is_running() => {
                let line = format!(
                    "{unit} is {} (main pid {}): switching through systemd (ReloadUnit; its ExecReload runs 'emqx-relup reload')",
                    s.active_state, s.main_pid
                );
                let switch = UnitSwitch::new(Box::new(bus), unit, job_wait(config), direct(config));
                return (Box::new(switch), line);
            }
            // Nothing of the unit runs: a direct switch cannot confuse systemd.
            Ok(Some(s)) if matches!(s.active_state.as_str(), "inactive" | "failed") => {
                (format!("{unit} is {}", s.active_state), false)
            }
            Ok(Some(s)) => (
                format!("{unit} is {} (main pid {})", s.active_state, s.main_pid),
                true,
            ),
            Ok(None) => (format!("{unit} is not loaded"), false),
            Err(e) => (e.to_string(), true),
        },
    };
    let line = format!("{why}: switching directly ({:?} strategy)", config.strategy);
    if guard {
        return (guarded(config, Refusal::InUnit(unit.clone())), line);
    }
    (direct(config), line)
}

/// How long to wait for systemd's reload job: at least what the switch
/// inside it may take (it extends the unit's timeout that far), so that an
/// unanswered wait means systemd is stuck, not that the switch is slow.
fn job_wait(config: &Config) -> std::time::Duration {
    let bound = super::handoff::bound(config) + std::time::Duration::from_secs(30);
    config.job_timeout().max(bound)
}

/// The direct switcher of the configured strategy.
pub fn direct(config: &Config) -> Box<dyn Switcher> {
    match config.strategy {
        Strategy::Handoff => Box::new(Handoff::new(config.clone())),
        Strategy::Restart => Box::new(Restart::new(config.clone())),
    }
}

/// When a direct switch must not happen.
enum Refusal {
    /// Never, with this reason.
    Always(String),
    /// When the broker runs inside this unit but systemd could not be
    /// asked: switching behind its back would let it stop the unit once
    /// the old main process exits.
    InUnit(String),
}

/// The direct switcher, refusing what `refusal` names (probing still works,
/// so that a host without a running broker only records).
fn guarded(config: &Config, refusal: Refusal) -> Box<dyn Switcher> {
    Box::new(Guarded {
        inner: direct(config),
        refusal,
    })
}

struct Guarded {
    inner: Box<dyn Switcher>,
    refusal: Refusal,
}

impl Switcher for Guarded {
    fn probe(&self) -> Result<Option<RunningBroker>, Error> {
        self.inner.probe()
    }

    fn switch(
        &self,
        broker: &RunningBroker,
        version: &Version,
        tree: &Path,
        pending: &mut dyn Pending,
    ) -> Result<SwitchReport, Error> {
        let reason = match &self.refusal {
            Refusal::Always(reason) => Some(reason.clone()),
            Refusal::InUnit(unit) if in_unit(broker.pid, unit) => Some(format!(
                "the broker (pid {}) runs inside {unit}, but systemd could not be asked over D-Bus (is dbus running? 'systemctl status dbus'); fix that and run this command again",
                broker.pid
            )),
            Refusal::InUnit(_) => None,
        };
        match reason {
            Some(reason) => Err(Error::switching(version)(reason)),
            None => self.inner.switch(broker, version, tree, pending),
        }
    }
}

/// Whether `pid`'s cgroup is the unit's.
fn in_unit(pid: u32, unit: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map(|text| cgroup_is_unit(&text, unit))
        .unwrap_or(false)
}

/// Whether a `/proc/PID/cgroup` text names `unit` as the process's cgroup.
fn cgroup_is_unit(text: &str, unit: &str) -> bool {
    text.lines().any(|l| {
        l.rsplit(':')
            .next()
            .is_some_and(|path| path.split('/').any(|part| part == unit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_lines_name_the_unit() {
        assert!(cgroup_is_unit(
            "0::/system.slice/emqx.service\n",
            "emqx.service"
        ));
        assert!(cgroup_is_unit(
            "1:name=systemd:/system.slice/emqx.service\n",
            "emqx.service"
        ));
        assert!(!cgroup_is_unit(
            "0::/user.slice/user-0.slice/session-1.scope\n",
            "emqx.service"
        ));
        assert!(!cgroup_is_unit(
            "0::/system.slice/emqx.service.d\n",
            "emqx.service"
        ));
    }
}
