//! The handoff strategy: take the listeners over the running broker's
//! handoff socket, start the new release with them (and, when the old
//! broker can move its connections, one end of a channel to it), wait
//! until it is ready, plan the move or the drain, record the switch,
//! confirm the lease (a drain; a move's go ends it), commit, publish.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use emqx_handoff::env::{
    HANDOFF_SOCKET, HANDOFF_SOCKET_ENV, OLD_PID_ENV, RUNTIME_DIR_ENV, SYSTEMD_NOTIFY_ENV,
    VERSION_ENV,
};
use semver::Version;

use super::announce::Announce;
use super::commit::{self, decide, Decision};
use super::moving::{self, Plan, Side};
use super::runtime::RuntimeDir;
use super::{child, generations, intent, open_session, pidfile, process, unpublished};
use super::{Moved, Pending, RunningBroker, SwitchReport, Switcher};
use crate::config::Config;
use crate::privs::{self, ServiceUser};
use crate::{Error, Serving};
use emqx_handoff::client::{Committed, Session};
use emqx_handoff::faults::step;
use emqx_handoff::Channel;

/// Margin on top of the configured waits for systemd's job timeout.
const SLACK: Duration = Duration::from_secs(15);
/// How long the old broker has to answer a move on top of the bound it
/// states (10 s by default); its own wait is the bound and 5 s.
const MOVE_SLACK: Duration = Duration::from_secs(10);
/// The longest bound a broker keeps, for systemd's job timeout.
const MOVE_MAX: Duration = emqx_handoff::broker::MAX_MOVE_BOUND;

/// The longest a direct switch may take: a drain to wait for, a start, a
/// settle time, a move (at most [`MOVE_MAX`] and its slack), a margin.
pub(super) fn bound(config: &Config) -> Duration {
    config.drain_wait() + config.ready_timeout() + config.settle() + MOVE_MAX + MOVE_SLACK + SLACK
}

/// The handoff-socket switcher.
pub struct Handoff {
    config: Config,
    announce: Announce,
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
            ))),
            Ok(None) | Err(_) => Ok(None),
        }
    }
}

impl Switcher for Handoff {
    fn probe(&self) -> Result<Option<RunningBroker>, Error> {
        let path = self.socket();
        let uid = privs::lookup(&self.config.user).ok().map(|u| u.uid);
        match open_session(&path, uid).map_err(Error::Broker)? {
            Some(s) => Ok(Some(RunningBroker {
                socket: path,
                pid: s.pid,
                start: process::start_time(s.pid),
                version: s.version,
            })),
            // A broker a switch left unpublished is the one that serves.
            None => {
                match unpublished::find(&self.config.runtime_dir, uid).map_err(Error::Broker)? {
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
        let run = Run {
            handoff: self,
            broker,
            version,
            new_socket: config
                .runtime_dir
                .join(format!("{HANDOFF_SOCKET}.{}", std::process::id())),
        };
        let result = run.switch(tree, pending);
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

/// One switch in progress.
struct Run<'a> {
    handoff: &'a Handoff,
    broker: &'a RunningBroker,
    version: &'a Version,
    /// Where the new broker serves until it is published.
    new_socket: PathBuf,
}

impl Run<'_> {
    fn switch(&self, tree: &Path, pending: &mut dyn Pending) -> Result<SwitchReport, Error> {
        let fail = Error::switching(self.version);
        let config = &self.handoff.config;
        let user = privs::lookup(&config.user).map_err(&fail)?;
        self.wait_for_drain(&user).map_err(&fail)?;
        let began = Instant::now();
        let session = open_session(&self.broker.socket, Some(user.uid))
            .map_err(&fail)?
            .ok_or_else(|| {
                fail(format!(
                    "the broker at {} went away",
                    self.broker.socket.display()
                ))
            })?;
        step("helper::hello").map_err(|e| fail(e.to_string()))?;
        let listeners = session.take_listeners().map_err(&fail)?;
        step("helper::listeners").map_err(|e| fail(e.to_string()))?;
        let (old, move_bound) = self.old_side(&session);
        // The old broker's side when it can move its connections, else why
        // not; a channel between the brokers only then (the new one waits
        // on it before accepting).
        let movable = old.and_then(|side| match moving::cannot_export(&side) {
            Some(reason) => Err(reason),
            None => Ok(side),
        });
        let (mut pair, movable) = match movable.map(|side| (Channel::pair(), side)) {
            Ok((Ok(p), side)) => (Some(p), Ok(side)),
            Ok((Err(e), _)) => (None, Err(format!("making the brokers' channel: {e}"))),
            Err(reason) => (None, Err(reason)),
        };
        let launched = child::launch(
            config,
            &user,
            tree,
            &listeners,
            self.env(),
            Some(session.channel.as_fd()),
            pair.as_ref().map(|(_, theirs)| theirs.as_fd()),
        );
        drop(listeners);
        let ours = pair.take().map(|(ours, _theirs)| ours);
        let child::Launched {
            child: mut new,
            lease,
            spawned_at,
            start,
        } = launched.map_err(|why| self.not_ready(why))?;
        let helper_before = spawned_at - began;
        let committing = Instant::now();
        // The new broker is asked only when the old one can move.
        let plan = match movable.and_then(|old| Ok((old, self.new_side(new.id(), &user)?))) {
            Ok((old, new)) => moving::plan(&old, &new),
            Err(reason) => Plan::Drain { reason },
        };
        let announce = &self.handoff.announce;
        // Under systemd: the new broker becomes the main process, and
        // systemd has taken that in, before the old one may exit.
        if let Err(e) = announce.main_pid(new.id()) {
            return Err(self.abandon(&mut new, e, true));
        }
        // From the lease confirm on, a dead helper leaves two brokers or a
        // half-done commit: say so in the store first.
        let recorded = pending
            .record(&self.intent(&new))
            .and_then(|()| step("helper::recorded").map_err(|e| e.to_string()));
        if let Err(e) = recorded {
            let why = format!("recording the switch: {e}");
            return Err(self.abandon(&mut new, why, announce.is_active()));
        }
        let confirm = |lease: child::Lease| {
            lease
                .confirm()
                .and_then(|()| Ok(step("helper::confirmed")?))
        };
        // A drain: the lease ends before the commit is sent, since a
        // helper dying from here on must not take the new broker with it
        // (the old one may get the commit and drain away). A move: the
        // old broker's go ends it (the new broker stays from its `going`
        // on), so a helper dying before the commit takes the new broker
        // with it and the old one serves on, its sessions untouched.
        let moving = matches!(plan, Plan::Move { .. }) && ours.is_some();
        let lease = if moving {
            Some(lease)
        } else {
            if let Err(e) = confirm(lease) {
                let why = format!("confirming the new broker's lease: {e}");
                return Err(self.abandon(&mut new, why, announce.is_active()));
            }
            None
        };
        let old = self.broker.pid;
        let (result, drain_reason) = commit::send(&session, ours, plan, move_bound + MOVE_SLACK);
        let decision = decide(result, old, || generations::alive(old));
        // A move's lease, once its commit is answered: confirmed when the
        // new broker stays (a move that became a drain needs it; one that
        // moved has made it moot), never when it is to be stopped (a
        // confirmed one would accept beside the old broker until then).
        if let Some(lease) = lease {
            if !matches!(decision, Decision::Abandon { .. }) {
                let _ = confirm(lease);
            }
        }
        let (outcome, mut warning) = match decision {
            Decision::Committed { outcome } => (outcome, None),
            Decision::Keep { warning } => (Committed::Draining(0), Some(warning)),
            Decision::Abandon { reason } => {
                return Err(self.abandon(&mut new, reason, announce.is_active()))
            }
        };
        let (draining, moved) = match outcome {
            Committed::Draining(n) => (n, None),
            Committed::Moved {
                moved,
                drained,
                pause,
            } => (drained, Some(Moved { moved, pause })),
        };
        // Past the commit the switch has happened: what fails now is
        // reported, never turned into an error that would leave the state
        // naming the old release.
        let unpublished = self.publish(new.id(), &user);
        let unfinished = unpublished.is_some();
        if let Some(w) = unpublished {
            // Both matter: a commit in doubt and a socket nobody will find.
            warning = Some(match warning {
                Some(first) => format!("{first}; {w}"),
                None => w,
            });
        }
        // Errors here are the rename's own (see `publish`).
        let _ = step("helper::published");
        Ok(SwitchReport {
            old_pid: old,
            new_pid: new.id(),
            draining,
            moved,
            drain_reason,
            helper: helper_before + committing.elapsed(),
            start,
            warning,
            via_unit: None,
            unfinished,
        })
    }

    /// What the old broker says of itself, and its bound on a move; why
    /// not, when a protocol 2 broker does not say (its connections drain).
    fn old_side(&self, session: &Session) -> (Result<Side, String>, Duration) {
        let version = self.broker.version.clone();
        match session.schemas() {
            Ok((schemas, bound)) => (
                Ok(Side {
                    version,
                    protocol: session.protocol,
                    schemas,
                }),
                bound.min(MOVE_MAX),
            ),
            Err(e) => (
                Err(format!("asking {version} for its schemas: {e}")),
                Duration::ZERO,
            ),
        }
    }

    /// What the new broker, ready, says of itself on its handoff socket
    /// (it must be the process this switch started); why not, when it
    /// does not say (its connections drain).
    fn new_side(&self, pid: u32, user: &ServiceUser) -> Result<Side, String> {
        let version = self.version.to_string();
        let asking = format!("asking {version} for its schemas");
        let s = open_session(&self.new_socket, Some(user.uid))
            .map_err(|e| format!("{asking}: {e}"))?
            .ok_or_else(|| format!("{asking}: no handoff socket"))?;
        if s.pid != pid {
            return Err(format!(
                "{asking}: pid {} answers on its socket, not {pid}",
                s.pid
            ));
        }
        let (schemas, _) = s.schemas().map_err(|e| format!("{asking}: {e}"))?;
        Ok(Side {
            version,
            protocol: s.protocol,
            schemas,
        })
    }

    /// Waits until the broker a previous switch left draining is gone.
    fn wait_for_drain(&self, user: &ServiceUser) -> Result<(), String> {
        let config = &self.handoff.config;
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
                self.handoff.announce.extend(
                    left + after_drain,
                    &format!("waiting for the previous broker (pid {pid}) to finish draining"),
                )
            },
        )
    }

    /// What the new broker is told besides its listeners.
    fn env(&self) -> Vec<(String, String)> {
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
    fn not_ready(&self, why: child::NotReady) -> Error {
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
    /// process again, when `told`, before the new one dies).
    fn abandon(&self, new: &mut Child, reason: String, told: bool) -> Error {
        let mut reason = reason;
        if told {
            if let Err(e) = self.handoff.announce.main_pid(self.broker.pid) {
                reason.push_str(&format!("; {e}"));
            }
        }
        child::stop_group(new);
        let _ = std::fs::remove_file(&self.new_socket);
        Error::switch(self.version, reason, Serving::OldNewStopped)
    }

    /// The record of this switch, written before its point of no return.
    fn intent(&self, new: &Child) -> intent::Intent {
        let broker = self.broker;
        intent::Intent::new(
            &self.version.to_string(),
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
        )
    }

    /// Publishes the new broker's socket and records who runs and who
    /// drains; a failure is a warning, the switch has happened.
    fn publish(&self, new_pid: u32, user: &ServiceUser) -> Option<String> {
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
                match open_session(&published, Some(user.uid)) {
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
