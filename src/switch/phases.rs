//! The handoff switch, one type per phase: each step is a method of the
//! phase it is legal in and returns the next one, so the order is the
//! compiler's, not the statements'. `abandon` (stop the new broker; the
//! old one serves on) is a method of the spawned new broker, which only
//! the phases from a ready new broker up to the commit hold. [`PHASES`] lists each phase with the fault steps
//! (`emqx_handoff::faults`) it passes, the list the fault matrix covers.
//!
//! ```text
//! Run::greet -> Greeted::take_listeners -> Holding::launch -> Ready
//!   -> Ready::announce -> Announced::record -> Recorded::lease
//!   -> Leased::commit -> Committed::publish -> SwitchReport
//! ```

use std::process::Child;
use std::time::{Duration, Instant};

use emqx_handoff::client::{Committed as Answer, Session};
use emqx_handoff::faults::step;
use emqx_handoff::Channel;

use super::child::{self, Lease};
use super::commit::{self, decide, Decision};
use super::handoff::{Run, MOVE_SLACK};
use super::moving::{self, Route, Side};
use super::{Moved, Pending, SwitchReport};
use crate::Error;

/// Each phase of a handoff switch with the fault steps it passes, in
/// order. The helper steps outside this list are the callers' (the
/// state's write, a switch through systemd): see [`OTHER_STEPS`].
pub const PHASES: &[(&str, &[&str])] = &[
    ("greeted", &["helper::hello"]),
    ("holding", &["helper::listeners"]),
    (
        "ready",
        &["helper::spawned", "helper::ready", "helper::settled"],
    ),
    ("announced", &["helper::main_pid", "helper::barrier"]),
    ("recorded", &["helper::recorded"]),
    // A drain confirms the lease here; a move after its commit's answer.
    ("leased", &["helper::confirmed"]),
    ("committed", &["helper::commit_sent", "helper::answered"]),
    ("published", &["helper::rename", "helper::published"]),
];

/// The helper's fault steps outside a handoff switch: the state written
/// after it, and a switch through systemd.
pub const OTHER_STEPS: &[&str] = &[
    "helper::write_state",
    "helper::state_written",
    "helper::unit_recorded",
    "helper::reloaded",
];

/// The old broker answered the hello.
pub(super) struct Greeted<'r> {
    run: &'r Run<'r>,
    session: Session,
    began: Instant,
}

/// The listeners are in the helper's hands (the old broker still serves
/// on its copies), with the old broker's side and the brokers' channel
/// when it can move its connections.
pub(super) struct Holding<'r> {
    greeted: Greeted<'r>,
    listeners: Vec<(String, std::os::fd::OwnedFd)>,
    /// The old broker's side and its bound on a move, or the drain
    /// (with why) when it cannot move.
    movable: Result<(Side, Duration), Route>,
    /// Both ends of the brokers' channel, when the old broker can move.
    pair: Option<(Channel, Channel)>,
}

/// A new broker runs, ready; from here until the commit the switch can
/// be abandoned.
struct Spawned<'r> {
    run: &'r Run<'r>,
    session: Session,
    new: Child,
    /// Until [`Recorded::lease`] settles it.
    lease: Option<Lease>,
    route: Route,
    /// The old broker's end of the brokers' channel (a move only).
    ours: Option<Channel>,
    move_bound: Duration,
    /// The helper's own time before the spawn.
    helper_before: Duration,
    /// When the phases after the start began.
    committing: Instant,
    /// From spawn to `READY=1`.
    start: Duration,
}

/// The new broker is ready and the route (move or drain) planned.
pub(super) struct Ready<'r>(Spawned<'r>);
/// systemd (if any) has the new broker as the unit's main process.
pub(super) struct Announced<'r>(Spawned<'r>);
/// The store records the switch, for a helper that dies from here on.
pub(super) struct Recorded<'r>(Spawned<'r>);
/// The lease is settled: confirmed for a drain, held for a move (the
/// old broker's go ends it).
pub(super) struct Leased<'r> {
    spawned: Spawned<'r>,
    held: Option<Lease>,
}

/// The old broker committed: past the point of no return.
pub(super) struct Committed<'r> {
    run: &'r Run<'r>,
    new_pid: u32,
    old_pid: u32,
    answer: Answer,
    drain_reason: Option<String>,
    warning: Option<String>,
    /// The helper's own time before the spawn.
    helper_before: Duration,
    /// When the phases after the start began.
    committing: Instant,
    start: Duration,
}

impl<'r> Run<'r> {
    /// Waits for a previous drain, then says hello to the old broker.
    pub(super) fn greet(&'r self) -> Result<Greeted<'r>, Error> {
        self.wait_for_drain()
            .map_err(Error::switching(self.version))?;
        let began = Instant::now();
        let session = self.open_old()?;
        step("helper::hello").map_err(Error::switching(self.version))?;
        Ok(Greeted {
            run: self,
            session,
            began,
        })
    }
}

impl<'r> Greeted<'r> {
    /// Takes the listeners, asks the old broker whether it can move its
    /// connections, and makes the brokers' channel only then.
    pub(super) fn take_listeners(self) -> Result<Holding<'r>, Error> {
        let version = self.run.version;
        let listeners = self
            .session
            .take_listeners()
            .map_err(Error::switching(version))?;
        step("helper::listeners").map_err(Error::switching(version))?;
        let drain = |reason| Route::Drain { reason };
        let movable = match self.run.old_side(&self.session) {
            Ok((side, bound)) => match moving::cannot_export(&side) {
                Some(reason) => Err(drain(reason)),
                None => Ok((side, bound)),
            },
            Err(e) => Err(drain(e.to_string())),
        };
        let (pair, movable) = match movable {
            Ok(side) => match Channel::pair() {
                Ok(p) => (Some(p), Ok(side)),
                Err(e) => (
                    None,
                    Err(drain(format!("making the brokers' channel: {e}"))),
                ),
            },
            Err(route) => (None, Err(route)),
        };
        Ok(Holding {
            greeted: self,
            listeners,
            movable,
            pair,
        })
    }
}

impl<'r> Holding<'r> {
    /// Starts the new release with the listeners (and its end of the
    /// channel) and waits until it is ready; then plans the route, asking
    /// the new broker only when the old one can move. A new broker that
    /// does not become ready is already stopped: nothing to abandon.
    pub(super) fn launch(self, tree: &std::path::Path) -> Result<Ready<'r>, Error> {
        let Holding {
            greeted,
            listeners,
            movable,
            mut pair,
        } = self;
        let run = greeted.run;
        let user = run.user;
        let launched = child::launch(
            &run.handoff.config,
            user,
            tree,
            &listeners,
            run.env(),
            Some(greeted.session.channel.as_fd()),
            pair.as_ref().map(|(_, theirs)| theirs.as_fd()),
        );
        drop(listeners);
        let ours = pair.take().map(|(ours, _theirs)| ours);
        let launched = launched.map_err(|why| run.not_ready(why))?;
        let committing = Instant::now();
        let (route, move_bound) = match movable {
            Ok((old, bound)) => match run.new_side(launched.child.id()) {
                Ok(new) => (moving::route(&old, &new), bound),
                Err(e) => (
                    Route::Drain {
                        reason: e.to_string(),
                    },
                    bound,
                ),
            },
            Err(route) => (route, Duration::ZERO),
        };
        Ok(Ready(Spawned {
            run,
            session: greeted.session,
            helper_before: launched.spawned_at - greeted.began,
            new: launched.child,
            lease: Some(launched.lease),
            start: launched.start,
            route,
            ours,
            move_bound,
            committing,
        }))
    }
}

impl<'r> Spawned<'r> {
    /// Stops the new broker: the old one carries on (and is systemd's
    /// main process again, when systemd listens, before the new one dies).
    fn abandon(mut self, reason: String) -> Error {
        self.run.abandon(&mut self.new, reason)
    }
}

impl<'r> Ready<'r> {
    /// Under systemd: the new broker becomes the main process, and systemd
    /// has taken that in (a barrier), before the old one may exit.
    pub(super) fn announce(self) -> Result<Announced<'r>, Error> {
        match self.0.run.handoff.announce.main_pid(self.0.new.id()) {
            Ok(()) => Ok(Announced(self.0)),
            Err(e) => Err(self.0.abandon(e.to_string())),
        }
    }
}

impl<'r> Announced<'r> {
    /// Records the switch in the store: from the lease on, a dead helper
    /// leaves two brokers or a half-done commit, which the next command
    /// resolves from this record.
    pub(super) fn record(self, pending: &mut dyn Pending) -> Result<Recorded<'r>, Error> {
        let spawned = self.0;
        let recorded = pending
            .record(&spawned.run.intent(&spawned.new))
            .map_err(|e| e.to_string())
            .and_then(|()| step("helper::recorded").map_err(|e| e.to_string()));
        match recorded {
            Ok(()) => Ok(Recorded(spawned)),
            Err(e) => Err(spawned.abandon(format!("recording the switch: {e}"))),
        }
    }
}

/// Confirms a lease: the new broker stays whatever happens to the helper.
fn confirm(lease: Lease) -> std::io::Result<()> {
    lease.confirm()?;
    Ok(step("helper::confirmed")?)
}

impl<'r> Recorded<'r> {
    /// A drain: the lease ends before the commit is sent, since a helper
    /// dying from here on must not take the new broker with it (the old
    /// one may get the commit and drain away). A move: the old broker's
    /// go ends it (the new broker stays from its `going` on), so a helper
    /// dying before the commit takes the new broker with it and the old
    /// one serves on, its sessions untouched.
    pub(super) fn lease(self) -> Result<Leased<'r>, Error> {
        let mut spawned = self.0;
        let moving = matches!(spawned.route, Route::Move { .. }) && spawned.ours.is_some();
        let lease = spawned.lease.take();
        if moving {
            return Ok(Leased {
                spawned,
                held: lease,
            });
        }
        match lease.map_or(Ok(()), confirm) {
            Ok(()) => Ok(Leased {
                spawned,
                held: None,
            }),
            Err(e) => Err(spawned.abandon(format!("confirming the new broker's lease: {e}"))),
        }
    }
}

impl<'r> Leased<'r> {
    /// Commits as planned and decides from the answer: the new broker
    /// stays (committed, or a commit in doubt) or is stopped (the old
    /// broker did not commit and serves on).
    pub(super) fn commit(self) -> Result<Committed<'r>, Error> {
        let Leased { mut spawned, held } = self;
        let old = spawned.run.broker.pid;
        let wait = spawned.move_bound + MOVE_SLACK;
        let (result, drain_reason) =
            commit::send(&spawned.session, spawned.ours.take(), &spawned.route, wait);
        let decision = decide(result, old, || emqx_handoff::alive(old));
        // A move's lease, once its commit is answered: confirmed when the
        // new broker stays (a move that became a drain needs it; one that
        // moved has made it moot), never when it is to be stopped (a
        // confirmed one would accept beside the old broker until then).
        if let Some(lease) = held {
            if !matches!(decision, Decision::Abandon { .. }) {
                let _ = confirm(lease);
            }
        }
        let (answer, warning) = match decision {
            Decision::Committed { outcome } => (outcome, None),
            Decision::Keep { warning } => (Answer::Draining(0), Some(warning)),
            Decision::Abandon { reason } => return Err(spawned.abandon(reason)),
        };
        Ok(Committed {
            run: spawned.run,
            new_pid: spawned.new.id(),
            old_pid: old,
            answer,
            drain_reason,
            warning,
            helper_before: spawned.helper_before,
            committing: spawned.committing,
            start: spawned.start,
        })
    }
}

impl Committed<'_> {
    /// Publishes the new broker's socket and records who runs and who
    /// drains. Past the commit the switch has happened: what fails now is
    /// a warning, never an error that would leave the state naming the
    /// old release.
    pub(super) fn publish(self) -> SwitchReport {
        let (draining, moved, drain_reason) = match self.answer {
            Answer::Draining(n) => (n, None, self.drain_reason),
            Answer::Moved {
                moved,
                drained,
                drained_why,
                pause,
                closed_by_policy,
            } => (
                drained,
                Some(Moved {
                    moved,
                    pause,
                    closed_by_policy,
                }),
                drained_why,
            ),
        };
        let unpublished = self.run.publish(self.new_pid);
        let unfinished = unpublished.is_some();
        // Both matter: a commit in doubt and a socket nobody will find.
        let warning = match (self.warning, unpublished) {
            (Some(first), Some(w)) => Some(format!("{first}; {w}")),
            (first, w) => first.or(w),
        };
        // Errors here are the rename's own (see `Run::publish`).
        let _ = step("helper::published");
        SwitchReport {
            old_pid: self.old_pid,
            new_pid: self.new_pid,
            draining,
            moved,
            drain_reason,
            // The helper's own work includes the publish.
            helper: self.helper_before + self.committing.elapsed(),
            start: self.start,
            warning,
            via_unit: None,
            unfinished,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every helper step the code fires, from the sources of the switch
    /// and the operations.
    fn fired() -> std::collections::BTreeSet<String> {
        let sources = [
            include_str!("phases.rs"),
            include_str!("handoff.rs"),
            include_str!("child.rs"),
            include_str!("announce.rs"),
            include_str!("unit.rs"),
            include_str!("../ops/mod.rs"),
            include_str!("../ops/switching.rs"),
            include_str!("../../crates/handoff/src/client.rs"),
        ];
        let mut found = std::collections::BTreeSet::new();
        for text in sources {
            for (i, _) in text.match_indices("(\"helper::") {
                let name = &text[i + 2..];
                if let Some(end) = name.find('"') {
                    found.insert(name[..end].to_string());
                }
            }
        }
        found
    }

    #[test]
    fn the_phase_list_names_every_step_the_code_fires_and_no_other() {
        let listed: std::collections::BTreeSet<String> = PHASES
            .iter()
            .flat_map(|(_, steps)| steps.iter())
            .chain(OTHER_STEPS)
            .map(|s| s.to_string())
            .collect();
        assert_eq!(listed, fired());
    }
}
