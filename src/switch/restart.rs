//! The fallback for a broker without a handoff socket: stop it, then start
//! the new release, which binds the listeners itself. Connections are
//! refused while no process listens: this is the cost the handoff avoids,
//! and the baseline of the switch benchmark.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use semver::Version;

use super::{child, generations, pidfile, RunningBroker, SwitchReport, Switcher};
use crate::config::Config;
use crate::{privs, Error};

/// Stop-then-start switcher.
#[derive(Debug, Clone)]
pub struct Restart {
    config: Config,
}

impl Restart {
    /// A restart switcher configured by `config`.
    pub fn new(config: Config) -> Self {
        Restart { config }
    }
}

impl Switcher for Restart {
    fn probe(&self) -> Result<Option<RunningBroker>, Error> {
        Ok(
            pidfile::running(&self.config.runtime_dir).map(|(pid, version)| RunningBroker {
                socket: self.config.runtime_dir.join("broker.pid"),
                pid,
                version,
            }),
        )
    }

    fn switch(
        &self,
        broker: &RunningBroker,
        version: &Version,
        tree: &Path,
    ) -> Result<SwitchReport, Error> {
        let fail = |reason: String| Error::Switch {
            version: version.to_string(),
            reason,
        };
        let config = &self.config;
        let user = privs::lookup(&config.user).map_err(&fail)?;
        let began = Instant::now();
        let pid = Pid::from_raw(broker.pid as i32);
        kill(pid, Signal::SIGTERM)
            .map_err(|e| fail(format!("stopping pid {}: {e}", broker.pid)))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while generations::alive(broker.pid) {
            if Instant::now() > deadline {
                let _ = kill(pid, Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let env = vec![
            (
                "EMQX_RUNTIME_DIR".into(),
                config.runtime_dir.display().to_string(),
            ),
            ("EMQX_RELUP_VERSION".into(), version.to_string()),
        ];
        let child::Launched { child: new, lease, spawned_at, start } = child::launch(config, &user, tree, &[], env, None)
            .map_err(|why| {
                fail(format!(
                    "the old broker was stopped and the new one did not come up ({why:?}); no broker runs now: start it again ('emqx-relup start')"
                ))
            })?;
        let _ = lease.confirm();
        let _ = pidfile::record(&config.runtime_dir, new.id(), &version.to_string());
        Ok(SwitchReport {
            old_pid: broker.pid,
            new_pid: new.id(),
            draining: 0,
            helper: spawned_at - began,
            start,
            warning: None,
            via_unit: None,
        })
    }
}
