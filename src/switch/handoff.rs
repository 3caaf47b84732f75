//! The handoff strategy: take the listeners over the running broker's
//! handoff socket, start the new release with them (and, when the old
//! broker can move its connections, one end of a channel to it), wait
//! until it is ready, plan the move or the drain, record the switch,
//! confirm the lease (a drain; a move's go ends it), commit, publish.
//! The order is [`super::phases`]' (one type per phase); this module is
//! the switcher and what the phases ask of the switch as a whole.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use emqx_handoff::env::{
    HANDOFF_SOCKET, HANDOFF_SOCKET_ENV, OLD_PID_ENV, RUNTIME_DIR_ENV, SYSTEMD_NOTIFY_ENV,
    VERSION_ENV,
};
use emqx_handoff::faults::step;
use emqx_handoff::{Pinned, SessionError};
use semver::Version;

use super::announce::Announce;
use super::generations::StillDraining;
use super::moving::Side;
use super::runtime::RuntimeDir;
use super::{child, generations, intent, open_session, pidfile, process, unpublished};
use super::{Pending, RunningBroker, SwitchReport, Switcher};
use crate::config::Config;
use crate::privs::ServiceUser;
use crate::{Error, Serving};
use emqx_handoff::client::Session;

/// Margin on top of the configured waits for systemd's job timeout.
const SLACK: Duration = Duration::from_secs(15);
/// How long the old broker has to answer a move on top of the bound it
/// states (10 s by default); its own wait is the bound and 5 s.
pub(super) const MOVE_SLACK: Duration = Duration::from_secs(10);
/// The longest bound a broker keeps, for systemd's job timeout.
const MOVE_MAX: Duration = emqx_handoff::broker::MAX_MOVE_BOUND;

/// The longest a direct switch may take: a drain to wait for, a start, a
/// settle time, a move (at most [`MOVE_MAX`] and its slack), a margin.
pub(super) fn bound(config: &Config) -> Duration {
    config.drain_wait() + config.ready_timeout() + config.settle() + MOVE_MAX + MOVE_SLACK + SLACK
}

/// The handoff-socket switcher.
pub struct Handoff {
    pub(super) config: Config,
    pub(super) announce: Announce,
}

impl Handoff {
    /// A switcher configured by `config`.
    pub fn new(config: Config) -> Self {
        Handoff {
            config,
            announce: Announce::new(None),
        }
    }

    /// A switcher that reports to systemd through `notifier` (the switch
    /// runs as the unit's `ExecReload`): `MAINPID=` of the new broker
    /// behind a barrier before the old one is told to commit.
    pub fn under_systemd(config: Config, notifier: emqx_handoff::Notifier) -> Self {
        Handoff {
            config,
            announce: Announce::new(Some(notifier)),
        }
    }

    fn socket(&self) -> PathBuf {
        self.config.runtime_dir.join(HANDOFF_SOCKET)
    }

    /// No handoff socket answers: broker.pid only words the refusal (a
    /// bad one is no broker at all, since nothing listens).
    fn without_socket(&self, path: &Path) -> Result<Option<RunningBroker>, Error> {
        match pidfile::running(&self.config.runtime_dir) {
            Ok(Some(r)) => Err(Error::Broker(format!(
                "broker {} (pid {}) runs without a handoff socket at {}; set strategy = \"restart\" to stop and start it instead",
                r.version,
                r.pid,
                path.display()
            )
            .into())),
            Ok(None) | Err(_) => Ok(None),
        }
    }
}

impl Switcher for Handoff {
    fn probe(&self) -> Result<Option<RunningBroker>, Error> {
        let path = self.socket();
        let uid = self.config.service_user().ok().map(|u| u.uid);
        match open_session(&path, uid).map_err(|e| Error::Broker(e.into()))? {
            Some(s) => Ok(Some(RunningBroker {
                socket: path,
                pid: s.pid,
                start: process::start_time(s.pid),
                version: s.version,
            })),
            // A broker a switch left unpublished is the one that serves.
            None => {
                match unpublished::find(&self.config.runtime_dir, uid)
                    .map_err(|e| Error::Broker(e.into()))?
                {
                    Some((socket, s)) => Ok(Some(RunningBroker {
                        socket,
                        pid: s.pid,
                        start: process::start_time(s.pid),
                        version: s.version,
                    })),
                    None => self.without_socket(&path),
                }
            }
        }
    }

    fn switch(
        &self,
        broker: &RunningBroker,
        version: &Version,
        tree: &Path,
        pending: &mut dyn Pending,
    ) -> Result<SwitchReport, Error> {
        let config = &self.config;
        // The longest a switch may take, for systemd's job timeout.
        let bound = bound(config);
        self.announce.begin(&version.to_string(), bound);
        let result = config
            .service_user()
            .map_err(Error::switching(version))
            .and_then(|user| {
                let run = Run {
                    handoff: self,
                    broker,
                    old: pin(broker),
                    version,
                    user,
                    new_socket: config
                        .runtime_dir
                        .join(format!("{HANDOFF_SOCKET}.{}", std::process::id())),
                };
                Ok(run
                    .greet()?
                    .take_listeners()?
                    .launch(tree)?
                    .announce()?
                    .record(pending)?
                    .lease()?
                    .commit()?
                    .publish())
            });
        match &result {
            Ok(r) => self.announce.end(&super::announce::ended_status(
                &version.to_string(),
                r.new_pid,
                r.moved,
            )),
            Err(e) => self.announce.end(&format!(
                "running release {} (pid {}); {e}",
                broker.version, broker.pid
            )),
        }
        result
    }
}

/// Why a broker's side of a move is unknown: its connections drain, and
/// the report says why.
#[derive(Debug, thiserror::Error)]
pub(super) enum SideError {
    /// Its session failed.
    #[error("asking {version} for its schemas: {source}")]
    Asking {
        /// Its release.
        version: String,
        /// What failed.
        #[source]
        source: SessionError,
    },
    /// Nothing answers at the new broker's socket.
    #[error("asking {version} for its schemas: no handoff socket")]
    NoSocket {
        /// Its release.
        version: String,
    },
    /// Another process answers there than the one the switch started.
    #[error(
        "asking {version} for its schemas: pid {answered} answers on its socket, not {expected}"
    )]
    OtherPid {
        /// Its release.
        version: String,
        /// Who answered.
        answered: u32,
        /// Who was started.
        expected: u32,
    },
}

/// The old broker pinned by a pidfd, when it is still the process the
/// probe found (its start time, when known, is the recorded one); else
/// pinned as gone.
fn pin(broker: &RunningBroker) -> Pinned {
    let pinned = Pinned::new(broker.pid);
    match broker.start {
        Some(start) if process::start_time(broker.pid) != Some(start) => Pinned::gone(broker.pid),
        _ => pinned,
    }
}

/// One switch in progress: what every phase ([`super::phases`]) asks of
/// the switch as a whole.
pub(super) struct Run<'a> {
    pub(super) handoff: &'a Handoff,
    pub(super) broker: &'a RunningBroker,
    /// The old broker, pinned by a pidfd when the switch began: systemd's
    /// main process goes back to it only while it runs.
    old: Pinned,
    pub(super) version: &'a Version,
    pub(super) user: &'a ServiceUser,
    /// Where the new broker serves until it is published.
    new_socket: PathBuf,
}

impl Run<'_> {
    /// A session with the old broker, which must still answer.
    /// It must be the broker the probe found: a broker restarted in
    /// between (another pid) is not the one the switch was planned for.
    pub(super) fn open_old(&self) -> Result<Session, Error> {
        let shown = self.broker.socket.display();
        let session = open_session(&self.broker.socket, Some(self.user.uid))
            .map_err(Error::switching(self.version))?
            .ok_or_else(|| {
                Error::switching(self.version)(format!("the broker at {shown} went away"))
            })?;
        if session.pid != self.broker.pid {
            return Err(Error::switching(self.version)(format!(
                "the broker at {shown} is pid {} now, not pid {} as it was a moment ago: it was restarted; try again",
                session.pid, self.broker.pid
            )));
        }
        Ok(session)
    }

    /// What the old broker says of itself, and its bound on a move; why
    /// not, when a protocol 2 broker does not say (its connections drain).
    pub(super) fn old_side(&self, session: &Session) -> Result<(Side, Duration), SideError> {
        let version = self.broker.version.clone();
        match session.schemas() {
            Ok((schemas, bound)) => Ok((
                Side {
                    version,
                    protocol: session.protocol,
                    schemas,
                },
                bound.min(MOVE_MAX),
            )),
            Err(source) => Err(SideError::Asking { version, source }),
        }
    }

    /// What the new broker, ready, says of itself on its handoff socket
    /// (it must be the process this switch started); why not, when it
    /// does not say (its connections drain).
    pub(super) fn new_side(&self, pid: u32) -> Result<Side, SideError> {
        let version = self.version.to_string();
        let asking = |source| SideError::Asking {
            version: version.clone(),
            source,
        };
        let s = open_session(&self.new_socket, Some(self.user.uid))
            .map_err(asking)?
            .ok_or_else(|| SideError::NoSocket {
                version: version.clone(),
            })?;
        if s.pid != pid {
            return Err(SideError::OtherPid {
                version,
                answered: s.pid,
                expected: pid,
            });
        }
        let (schemas, _) = s.schemas().map_err(asking)?;
        Ok(Side {
            version,
            protocol: s.protocol,
            schemas,
        })
    }

    /// Waits until the broker a previous switch left draining is gone.
    pub(super) fn wait_for_drain(&self) -> Result<(), StillDraining> {
        let config = &self.handoff.config;
        let after_drain = config.ready_timeout() + config.settle() + SLACK;
        let expect = process::Expect {
            uid: self.user.uid,
            store: None,
        };
        generations::wait_for_drain(
            &config.runtime_dir,
            expect,
            config.drain_wait(),
            &|pid, left| {
                self.handoff.announce.extend(
                    left + after_drain,
                    &format!("waiting for the previous broker (pid {pid}) to finish draining"),
                )
            },
        )
    }

    /// What the new broker is told besides its listeners.
    pub(super) fn env(&self) -> Vec<(String, String)> {
        let config = &self.handoff.config;
        let mut env = vec![
            (
                HANDOFF_SOCKET_ENV.into(),
                self.new_socket.display().to_string(),
            ),
            (
                RUNTIME_DIR_ENV.into(),
                config.runtime_dir.display().to_string(),
            ),
            (VERSION_ENV.into(), self.version.to_string()),
            (OLD_PID_ENV.into(), self.broker.pid.to_string()),
        ];
        if self.handoff.announce.is_active() {
            if let Ok(addr) = std::env::var(emqx_handoff::env::NOTIFY_SOCKET) {
                env.push((SYSTEMD_NOTIFY_ENV.into(), addr));
            }
        }
        env
    }

    /// The error of a new broker that never became ready.
    pub(super) fn not_ready(&self, why: child::NotReady) -> Error {
        let _ = std::fs::remove_file(&self.new_socket);
        let (reason, serving) = match why {
            child::NotReady::Exited(how) => (format!("the new broker {how}"), Serving::Old),
            child::NotReady::Timeout(t) => (
                format!(
                    "the new broker was not ready within {:.1} s (ready_timeout_secs)",
                    t.as_secs_f64()
                ),
                Serving::OldNewStopped,
            ),
            child::NotReady::OldGone => (
                format!(
                    "the running broker (pid {}) exited during the switch and the new one was stopped",
                    self.broker.pid
                ),
                Serving::Nothing,
            ),
            child::NotReady::Io(e) => (e, Serving::Old),
        };
        Error::switch(self.version, reason, serving)
    }

    /// Stops the new broker: the old one carries on (and is systemd's main
    /// process again, when systemd listens, before the new one dies).
    pub(super) fn abandon(&self, new: &mut Child, reason: String) -> Error {
        let mut reason = reason;
        if self.handoff.announce.is_active() && self.old.alive() {
            if let Err(e) = self.handoff.announce.main_pid(self.broker.pid) {
                reason.push_str(&format!("; {e}"));
            }
        }
        child::stop_group(new);
        let _ = std::fs::remove_file(&self.new_socket);
        Error::switch(self.version, reason, Serving::OldNewStopped)
    }

    /// The record of this switch, written before its point of no return.
    pub(super) fn intent(&self, new: &Child) -> intent::Intent {
        let broker = self.broker;
        intent::Intent::new(
            &self.version.to_string(),
            &broker.version,
            intent::SwitchPath::Direct {
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
        )
    }

    /// Publishes the new broker's socket and records who runs and who
    /// drains; a failure is a warning, the switch has happened.
    pub(super) fn publish(&self, new_pid: u32) -> Option<String> {
        let config = &self.handoff.config;
        let published = self.handoff.socket();
        // In the service user's directory: by name, through its fd.
        let name = self.new_socket.file_name().and_then(|n| n.to_str());
        let renamed = step("helper::rename")
            .map_err(std::io::Error::from)
            .and_then(|()| RuntimeDir::open(&config.runtime_dir))
            .and_then(|rt| match name {
                Some(name) => rt.rename(name, HANDOFF_SOCKET),
                None => Err(std::io::Error::other("no socket name")),
            });
        // A broker that took the connections publishes itself too: gone
        // from its place and answering at ours as itself is published.
        let renamed = match renamed {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                match open_session(&published, Some(self.user.uid)) {
                    Ok(Some(s)) if s.pid == new_pid => Ok(()),
                    _ => Err(e),
                }
            }
            other => other,
        };
        let warning = renamed.err().map(|e| {
            format!(
                "the new broker runs, but its handoff socket could not be published at {} ({e}); the next emqx-relup command finishes the switch",
                published.display()
            )
        });
        generations::record_draining(&config.runtime_dir, self.broker.pid);
        let _ = pidfile::record(&config.runtime_dir, new_pid, &self.version.to_string());
        warning
    }
}
