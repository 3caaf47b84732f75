//! Moving a running broker to another release, the one switch step that the
//! release operations call: take the listeners over the handoff socket,
//! start the new release with them, wait for `READY=1` and a settle time,
//! then commit (the old broker stops accepting, drains, exits). Any failure
//! before the commit kills the new process and leaves the old one serving.

mod announce;
mod child;
mod generations;
pub mod intent;
mod notify;
mod pidfile;
pub mod process;
pub mod recover;
mod restart;
mod runtime;
mod session;
pub mod shim;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use semver::Version;

use crate::config::Config;
use crate::privs;
use crate::Error;

pub use child::{clean_env, close_from, LEASE_ENV};
pub use generations::alive;
pub use process::{running_from, start_time, Expect};

/// The recorded draining broker, if it still runs (see [`generations`]).
pub fn draining_broker(config: &Config) -> Option<u32> {
    let uid = privs::lookup(&config.user).ok()?.uid;
    generations::draining(&config.runtime_dir, Expect { uid, store: None })
}

/// The environment variable giving a broker a switch starts under systemd
/// the unit's notify socket (its own `NOTIFY_SOCKET` is the helper's).
pub const SYSTEMD_NOTIFY_ENV: &str = "EMQX_RELUP_SYSTEMD_NOTIFY";
/// The environment variable naming the broker a switch replaces.
pub const OLD_PID_ENV: &str = "EMQX_RELUP_OLD_PID";
pub use pidfile::record as record_running;
pub use restart::Restart;
pub use session::Session;

/// The name of a running broker's handoff socket in the runtime dir.
pub const HANDOFF_SOCKET: &str = "handoff.sock";

/// A broker found running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningBroker {
    /// Its handoff socket.
    pub socket: PathBuf,
    /// Its pid.
    pub pid: u32,
    /// The release it runs.
    pub version: String,
    /// Its start time, when known (pins the pid against reuse).
    pub start: Option<u64>,
}

/// What a switch measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchReport {
    /// The old broker's pid.
    pub old_pid: u32,
    /// The new broker's pid.
    pub new_pid: u32,
    /// Connections the old broker was left to drain.
    pub draining: u64,
    /// The helper's own work (connect, take listeners, spawn, commit).
    pub helper: Duration,
    /// From spawn to `READY=1`.
    pub start: Duration,
    /// Something the operator must know although the switch happened.
    pub warning: Option<String>,
    /// The systemd unit that did the switch (its `ExecReload`), when it
    /// went through systemd.
    pub via_unit: Option<String>,
}

/// Finds and switches the running broker; a trait so that release logic can
/// be tested without a system.
pub trait Switcher {
    /// The running broker, if any.
    fn probe(&self) -> Result<Option<RunningBroker>, Error>;
    /// Whether the state must name the new release before [`Switcher::switch`]
    /// (the switch runs in another process that reads it: systemd's
    /// `ExecReload`); on failure the caller restores it.
    fn records_first(&self) -> bool {
        false
    }
    /// Moves `broker` to the release unpacked in `tree`, recording itself
    /// in `pending` right before its point of no return. On error the old
    /// broker is still serving.
    fn switch(
        &self,
        broker: &RunningBroker,
        version: &Version,
        tree: &Path,
        pending: &mut dyn Pending,
    ) -> Result<SwitchReport, Error>;
    /// Whether a switch it started elsewhere may still be running (a
    /// unit's `ExecReload`), so a pending record must wait.
    fn in_flight(&self) -> bool {
        false
    }
}

/// Where a switch records itself before its point of no return (the
/// store, under the lock), for the next command to resolve if the helper
/// dies (see [`intent`]).
pub trait Pending {
    /// Records `intent`; an error stops the switch before that point.
    fn record(&mut self, intent: &intent::Intent) -> Result<(), String>;
}

/// No record: the caller cannot write the store (an unprivileged
/// `ExecReload`), or there is nothing to resolve (tests).
pub struct NoRecord;

impl Pending for NoRecord {
    fn record(&mut self, _: &intent::Intent) -> Result<(), String> {
        Ok(())
    }
}

/// The handoff-socket switcher.
pub struct Handoff {
    config: Config,
    announce: announce::Announce,
}

impl Handoff {
    /// A switcher configured by `config`.
    pub fn new(config: Config) -> Self {
        Handoff {
            config,
            announce: announce::Announce::new(None),
        }
    }

    /// A switcher that reports to systemd through `notifier` (the switch
    /// runs as the unit's `ExecReload`): `MAINPID=` of the new broker
    /// behind a barrier before the old one is told to commit.
    pub fn under_systemd(config: Config, notifier: crate::systemd::Notifier) -> Self {
        Handoff {
            config,
            announce: announce::Announce::new(Some(notifier)),
        }
    }

    fn socket(&self) -> PathBuf {
        self.config.runtime_dir.join(HANDOFF_SOCKET)
    }
}

pub(crate) const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

impl Switcher for Handoff {
    fn probe(&self) -> Result<Option<RunningBroker>, Error> {
        let path = self.socket();
        let uid = privs::lookup(&self.config.user).ok().map(|u| u.uid);
        let session = Session::open(&path, uid, HELLO_TIMEOUT).map_err(Error::Broker)?;
        match session {
            Some(s) => Ok(Some(RunningBroker {
                socket: path,
                pid: s.pid,
                start: process::start_time(s.pid),
                version: s.version,
            })),
            // No handoff socket: broker.pid only words the refusal (a bad
            // one is no broker at all, since nothing listens).
            None => match pidfile::running(&self.config.runtime_dir) {
                Ok(Some(r)) => Err(Error::Broker(format!(
                    "broker {} (pid {}) runs without a handoff socket at {}; set strategy = \"restart\" to stop and start it instead",
                    r.version,
                    r.pid,
                    path.display()
                ))),
                Ok(None) | Err(_) => Ok(None),
            },
        }
    }

    fn switch(
        &self,
        broker: &RunningBroker,
        version: &Version,
        tree: &Path,
        pending: &mut dyn Pending,
    ) -> Result<SwitchReport, Error> {
        let announce = &self.announce;
        let config = &self.config;
        // The longest a switch may take, for systemd's job timeout.
        let bound = config.drain_wait() + config.ready_timeout() + config.settle() + SLACK;
        announce.begin(&version.to_string(), bound);
        let result = self.switch_announced(broker, version, tree, pending);
        match &result {
            Ok(r) => announce.end(&format!("running release {version} (pid {})", r.new_pid)),
            Err(e) => announce.end(&format!(
                "running release {} (pid {}); {e}",
                broker.version, broker.pid
            )),
        }
        result
    }
}

/// Margin on top of the configured waits for systemd's job timeout.
const SLACK: Duration = Duration::from_secs(15);

impl Handoff {
    fn switch_announced(
        &self,
        broker: &RunningBroker,
        version: &Version,
        tree: &Path,
        pending: &mut dyn Pending,
    ) -> Result<SwitchReport, Error> {
        let fail = |reason: String| Error::Switch {
            version: version.to_string(),
            reason,
        };
        let config = &self.config;
        let announce = &self.announce;
        let user = privs::lookup(&config.user).map_err(&fail)?;
        let after_drain = config.ready_timeout() + config.settle() + SLACK;
        let expect = process::Expect {
            uid: user.uid,
            store: None,
        };
        generations::wait_for_drain(
            &config.runtime_dir,
            expect,
            config.drain_wait(),
            &|pid, left| {
                announce.extend(
                    left + after_drain,
                    &format!("waiting for the previous broker (pid {pid}) to finish draining"),
                )
            },
        )
        .map_err(&fail)?;
        let began = Instant::now();
        let session = Session::open(&broker.socket, Some(user.uid), HELLO_TIMEOUT)
            .map_err(&fail)?
            .ok_or_else(|| {
                fail(format!(
                    "the broker at {} went away",
                    broker.socket.display()
                ))
            })?;
        let listeners = session.take_listeners().map_err(&fail)?;
        let new_socket = config
            .runtime_dir
            .join(format!("{HANDOFF_SOCKET}.{}", std::process::id()));
        let mut env = vec![
            (
                "EMQX_HANDOFF_SOCKET".into(),
                new_socket.display().to_string(),
            ),
            (
                "EMQX_RUNTIME_DIR".into(),
                config.runtime_dir.display().to_string(),
            ),
            ("EMQX_RELUP_VERSION".into(), version.to_string()),
            (OLD_PID_ENV.into(), broker.pid.to_string()),
        ];
        if announce.is_active() {
            if let Ok(addr) = std::env::var("NOTIFY_SOCKET") {
                env.push((SYSTEMD_NOTIFY_ENV.into(), addr));
            }
        }
        let launched = child::launch(
            config,
            &user,
            tree,
            &listeners,
            env,
            Some(session.channel.as_fd()),
        );
        drop(listeners);
        let child::Launched {
            child: mut new,
            lease,
            spawned_at,
            start,
        } = match launched {
            Ok(l) => l,
            Err(why) => {
                let _ = std::fs::remove_file(&new_socket);
                let reason = match why {
                    child::NotReady::Exited(how) => format!("the new broker {how}; the old one still serves"),
                    child::NotReady::Timeout(t) => format!(
                        "the new broker was not ready within {:.1} s (ready_timeout_secs); it was stopped and the old one still serves",
                        t.as_secs_f64()
                    ),
                    child::NotReady::OldGone => format!(
                        "the running broker (pid {}) exited during the switch; the new one was stopped, so no broker runs now: start it again ('emqx-relup start')",
                        broker.pid
                    ),
                    child::NotReady::Io(e) => format!("{e}; the old one still serves"),
                };
                return Err(fail(reason));
            }
        };
        let helper_before = spawned_at - began;
        let committing = Instant::now();
        // Abandons the new broker: the old one carries on (and is systemd's
        // main process again before the new one dies).
        let abandon = |new: &mut std::process::Child, reason: String, told: bool| {
            let mut reason = reason;
            if told {
                if let Err(e) = announce.main_pid(broker.pid) {
                    reason.push_str(&format!("; {e}"));
                }
            }
            child::stop_group(new);
            let _ = std::fs::remove_file(&new_socket);
            fail(reason)
        };
        // Under systemd: the new broker becomes the main process, and
        // systemd has taken that in, before the old one may exit.
        if let Err(e) = announce.main_pid(new.id()) {
            return Err(abandon(
                &mut new,
                format!("{e}; the new broker was stopped and the old one still serves"),
                true,
            ));
        }
        let mut warning = None;
        // From the lease confirm on, a dead helper leaves two brokers or a
        // half-done commit: say so in the store first.
        let record = intent::Intent::new(
            &version.to_string(),
            &broker.version,
            intent::Path::Direct {
                old: intent::Proc {
                    pid: broker.pid,
                    start: broker
                        .start
                        .or_else(|| process::start_time(broker.pid))
                        .unwrap_or(0),
                },
                new: intent::Proc {
                    pid: new.id(),
                    start: process::start_time(new.id()).unwrap_or(0),
                },
                socket: format!("{HANDOFF_SOCKET}.{}", std::process::id()),
            },
        );
        if let Err(e) = pending.record(&record) {
            return Err(abandon(
                &mut new,
                format!("recording the switch: {e}; the new broker was stopped and the old one still serves"),
                announce.is_active(),
            ));
        }
        crate::kill_point!("switch::recorded");
        // The lease ends before the commit is sent: a helper dying from here
        // on must not take the new broker with it, since the old one may
        // get the commit and drain away.
        if let Err(e) = lease.confirm() {
            return Err(abandon(
                &mut new,
                format!(
                    "confirming the new broker's lease: {e}; the new broker was stopped and the old one still serves"
                ),
                announce.is_active(),
            ));
        }
        crate::kill_point!("switch::confirmed");
        let draining = match session.commit() {
            Ok(n) => n,
            // Sent but not answered: the old broker may be draining already,
            // so killing the new one could leave nothing serving. Keep it.
            Err(session::CommitError::Unanswered(reason)) => {
                warning = Some(format!(
                    "the old broker (pid {}) did not confirm the commit ({reason}); it drains, or serves beside the new one until it exits",
                    broker.pid
                ));
                0
            }
            // The old broker is gone: the new one is ready and holds the
            // listeners, so keep it rather than leave nothing serving.
            Err(session::CommitError::Unsent(reason)) if !generations::alive(broker.pid) => {
                warning = Some(format!(
                    "the old broker exited during the commit ({reason})"
                ));
                0
            }
            Err(session::CommitError::Unsent(reason) | session::CommitError::Refused(reason)) => {
                return Err(abandon(
                    &mut new,
                    format!(
                        "commit: {reason}; the new broker was stopped and the old one still serves"
                    ),
                    announce.is_active(),
                ));
            }
        };
        crate::kill_point!("switch::committed");
        // Past the commit the switch has happened: what fails now is
        // reported, never turned into an error that would leave the state
        // naming the old release.
        if let Err(e) = std::fs::rename(&new_socket, self.socket()) {
            warning = Some(format!(
                "the new broker runs, but its handoff socket could not be published at {} ({e}); the next switch will not find it: restart the broker",
                self.socket().display()
            ));
        }
        generations::record_draining(&config.runtime_dir, broker.pid);
        let _ = pidfile::record(&config.runtime_dir, new.id(), &version.to_string());
        crate::kill_point!("switch::published");
        let helper = helper_before + committing.elapsed();
        Ok(SwitchReport {
            old_pid: broker.pid,
            new_pid: new.id(),
            draining,
            helper,
            start,
            warning,
            via_unit: None,
        })
    }
}
