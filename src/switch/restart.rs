//! The fallback for a broker without a handoff socket: stop it, then start
//! the new release, which binds the listeners itself. Connections are
//! refused while no process listens: this is the cost the handoff avoids,
//! and the baseline of the switch benchmark.

use std::path::Path;
use std::time::{Duration, Instant};

use emqx_handoff::env;
use semver::Version;

use super::process::{self, Expect};
use super::{child, pidfile, RunningBroker, SwitchReport, Switcher};
use crate::config::Config;
use crate::{Error, Serving};

/// How long the old broker has to exit after SIGTERM, before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long a SIGKILLed broker may take to go.
const KILL_WAIT: Duration = Duration::from_secs(5);

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
        let recorded =
            pidfile::running(&self.config.runtime_dir).map_err(|e| Error::Broker(e.into()))?;
        Ok(recorded.map(|r| RunningBroker {
            socket: self.config.runtime_dir.join("broker.pid"),
            pid: r.pid,
            version: r.version,
            start: r.start,
        }))
    }

    fn switch(
        &self,
        broker: &RunningBroker,
        version: &Version,
        tree: &Path,
        pending: &mut dyn super::Pending,
    ) -> Result<SwitchReport, Error> {
        let fail = Error::switching(version);
        let config = &self.config;
        let user = config.service_user().map_err(Error::switching(version))?;
        let began = Instant::now();
        // broker.pid is the service user's to write: signal only a process
        // proved to be the recorded broker, through a pidfd.
        let expect = Expect {
            uid: user.uid,
            store: tree.parent(),
        };
        let Some(old_start) = broker.start else {
            return Err(fail(format!(
                "{} records no start time (an older emqx-relup wrote it), so pid {} cannot be proved to be the broker; nothing was stopped: restart the broker once ('emqx-relup start') and switch again",
                broker.socket.display(),
                broker.pid
            )));
        };
        let old = process::verify(broker.pid, Some(old_start), expect).map_err(|why| {
            fail(format!(
                "{} does not name a running broker of this store: {why}; nothing was stopped",
                broker.socket.display()
            ))
        })?;
        old.stop(STOP_GRACE, KILL_WAIT)
            .map_err(|why| fail(format!("{why}; the new release was not started")))?;
        let env = vec![
            (
                env::RUNTIME_DIR_ENV.into(),
                config.runtime_dir.display().to_string(),
            ),
            (env::VERSION_ENV.into(), version.to_string()),
        ];
        let child::Launched {
            child: new,
            lease,
            spawned_at,
            start,
        } = child::launch(config, user, tree, &[], env, None, None).map_err(|why| {
            Error::switch(
                version,
                format!("the old broker was stopped and the new one did not come up ({why:?})"),
                Serving::Nothing,
            )
        })?;
        let record = super::intent::Intent::new(
            &version.to_string(),
            &broker.version,
            super::intent::SwitchPath::Direct {
                old: super::intent::Proc {
                    pid: broker.pid,
                    start: old_start,
                },
                new: super::intent::Proc {
                    pid: new.id(),
                    start: process::start_time(new.id()).unwrap_or(0),
                },
                socket: String::new(),
            },
        );
        let recorded = pending.record(&record);
        let _ = lease.confirm();
        let warning = recorded
            .err()
            .map(|e| format!("the switch could not be recorded ({e}); it happened all the same"));
        let _ = pidfile::record(&config.runtime_dir, new.id(), &version.to_string());
        Ok(SwitchReport {
            old_pid: broker.pid,
            new_pid: new.id(),
            draining: 0,
            moved: None,
            drain_reason: None,
            helper: spawned_at - began,
            start,
            warning,
            via_unit: None,
            unfinished: false,
        })
    }
}
