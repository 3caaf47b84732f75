//! Moving a running broker to another release, the one switch step that the
//! release operations call: take the listeners over the handoff socket,
//! start the new release with them, wait for `READY=1` and a settle time,
//! then commit (the old broker stops accepting, drains, exits). Any failure
//! before the commit kills the new process and leaves the old one serving.
//!
//! The strategies: [`Handoff`] (`handoff`: the listeners move), [`Restart`]
//! (`restart`: stop, then start), [`UnitSwitch`] (`unit`: systemd's reload
//! runs one of those inside the unit); `choose` picks one for an
//! administrator's command. Their parts: `phases` (the handoff switch,
//! one type per phase, and the fault steps each passes), `commit` (the
//! pure commit decision), `child` (starting the new broker: environment,
//! fds, lease), `shim` (the exec shim it runs through), `exec` (becoming
//! the broker, for the shim and `start` alike), `notify` (its private notify
//! socket), `announce` (what systemd is told), `runtime` (the only way
//! root touches the runtime folder), `process` (proving a pid is a broker),
//! `pidfile` and `generations` (the running and the draining broker),
//! `intent` and `recover` (the record of a switch in flight, resolved by
//! the next command), `unpublished` (a broker a switch under systemd
//! never published). The protocol itself is the `emqx_handoff` crate.

mod announce;
mod child;
mod choose;
mod commit;
mod exec;
mod generations;
mod handoff;
pub mod intent;
mod moving;
mod notify;
mod phases;
mod pidfile;
pub mod process;
pub mod recover;
mod restart;
mod runtime;
pub mod shim;
mod unit;
mod unpublished;

use std::path::{Path, PathBuf};
use std::time::Duration;

use semver::Version;

use crate::config::Config;
use crate::Error;

pub use child::{clean_env, close_from};
pub use choose::{admin_switcher, direct};
pub use emqx_handoff::client::Session;
pub use emqx_handoff::env::HANDOFF_SOCKET;
pub use exec::{BrokerExec, Fds};
pub use handoff::Handoff;
pub use phases::{OTHER_STEPS, PHASES};
pub use process::{running_from, start_time, Expect};
pub use unit::UnitSwitch;

/// The recorded draining broker, if it still runs (see [`generations`]).
pub fn draining_broker(config: &Config) -> Option<u32> {
    let uid = config.service_user().ok()?.uid;
    generations::draining(&config.runtime_dir, Expect { uid, store: None })
}

pub use pidfile::record as record_running;
pub use restart::Restart;

/// How long a running broker has to answer the helper's hello.
pub(crate) const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// A session with the broker at `path` (see [`Session::open`]), the
/// helper's version in its hello; `Ok(None)` when nothing listens there.
pub(crate) fn open_session(
    path: &Path,
    uid: Option<nix::unistd::Uid>,
) -> Result<Option<Session>, emqx_handoff::SessionError> {
    open_session_within(path, uid, HELLO_TIMEOUT)
}

/// [`open_session`], each step bounded by `timeout`.
pub(crate) fn open_session_within(
    path: &Path,
    uid: Option<nix::unistd::Uid>,
    timeout: Duration,
) -> Result<Option<Session>, emqx_handoff::SessionError> {
    Session::open(path, uid, timeout, env!("CARGO_PKG_VERSION"))
}

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
    /// The established connections moved to the new broker (protocol 2).
    pub moved: Option<Moved>,
    /// Why connections drained instead of moving, when they could not.
    pub drain_reason: Option<String>,
    /// The helper's own work (connect, take listeners, spawn, commit).
    pub helper: Duration,
    /// From spawn to `READY=1`.
    pub start: Duration,
    /// Something the operator must know although the switch happened.
    pub warning: Option<String>,
    /// The systemd unit that did the switch (its `ExecReload`), when it
    /// went through systemd.
    pub via_unit: Option<String>,
    /// The switch happened but is not finished (the new broker's handoff
    /// socket could not be published): its record stays, and the next
    /// command that takes the lock finishes it.
    pub unfinished: bool,
}

/// Established connections moved at a switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moved {
    /// How many.
    pub moved: u64,
    /// From the old broker's freeze to its go: what clients felt.
    pub pause: Duration,
    /// Of `moved`, the connections the new broker closed at once because
    /// its policy no longer lets their login in (a password or ACL file
    /// changed): the switch did not close them, the operator's files did.
    pub closed_by_policy: u64,
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
    fn record(&mut self, intent: &intent::Intent) -> Result<(), Error>;
}

/// No record: the caller cannot write the store (an unprivileged
/// `ExecReload`), or there is nothing to resolve (tests).
pub struct NoRecord;

impl Pending for NoRecord {
    fn record(&mut self, _: &intent::Intent) -> Result<(), Error> {
        Ok(())
    }
}
