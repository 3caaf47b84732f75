//! The operations behind the commands: plan under the lock, then carry the
//! plan out step by step, recording each state change atomically.

//! (`pending.rs`: the record a switch leaves for a killed helper's successor;
//! `switched.rs`: what a switch reports.)

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use semver::Version;

use crate::config::Config;
use crate::error::PackageProblem;
use crate::layout::Layout;
use crate::package::{self, PackageFile};
use crate::release::{self, MoveKind, Plan, Refusal, Releases, Say, Step};
use crate::store::{remove_tree, Repair, Store, StoreLock};
use crate::switch::{NoRecord, RunningBroker, Switcher};

mod pending;
mod preview;
mod status;
mod switched;
mod switching;

use crate::Error;
use pending::StoreRecord;
pub use pending::{PendingSwitch, PENDING_FILE};
pub use preview::{BrokerBrief, Entry, PlannedStep, Preview};
pub use status::{utc, PendingStatus, Status};
use switched::report_switch;
pub use switched::SwitchFigures;

/// Where operations send what they have to say; the CLI prints it.
pub trait Report {
    /// A line of the transcript (stdout).
    fn say(&mut self, line: &Say);
    /// A note for the operator (stderr).
    fn note(&mut self, text: &str);
    /// Something the operator must act on although the operation
    /// succeeded (stderr, `note: WARNING: ...`, journal priority warning).
    fn warn(&mut self, text: &str);
    /// A detail shown only when asked for (`-v`).
    fn detail(&mut self, _text: &str) {}
    /// What a switch measured, for a machine (`--json`).
    fn switched(&mut self, _figures: &SwitchFigures) {}
}

/// The release operations of one installation.
pub struct Ops<'a> {
    layout: Layout,
    config: Config,
    store: Store,
    switcher: &'a dyn Switcher,
}

impl<'a> Ops<'a> {
    /// Operations on `layout`, switching through `switcher`.
    pub fn new(layout: Layout, config: Config, switcher: &'a dyn Switcher) -> Self {
        let store = Store::new(layout.store_dir());
        Ops {
            layout,
            config,
            store,
            switcher,
        }
    }

    /// The known releases, read without the lock (the state file is only
    /// ever replaced whole).
    pub fn versions(&self) -> Result<Releases, Error> {
        self.store.load()
    }

    /// `unpack VSN`.
    pub fn unpack(&self, version: &Version, out: &mut dyn Report) -> Result<(), Error> {
        let (lock, mut releases) = self.begin(out)?;
        let plan = release::plan_unpack(&releases, version)?;
        self.execute(&lock, &mut releases, plan, None, out)
    }

    /// `install`, `upgrade` and `downgrade`.
    pub fn move_to(
        &self,
        kind: MoveKind,
        version: &Version,
        permanent: bool,
        out: &mut dyn Report,
    ) -> Result<(), Error> {
        let (lock, mut releases) = self.begin(out)?;
        let broker = self.switcher.probe()?;
        let plan = release::plan_move(&releases, kind, version, permanent, broker.is_some())?;
        let switches = plan.steps.iter().any(|s| matches!(s, Step::Switch(_)));
        self.execute(&lock, &mut releases, plan, broker.as_ref(), out)?;
        if switches && broker.is_none() {
            out.note(&format!(
                "no broker is running; release {version} will run at the next start"
            ));
        }
        Ok(())
    }

    /// A release package arrived (its maintainer script): switch to it, up
    /// or down from the running release, and make it permanent. Returns
    /// whether it is the first release of the host.
    pub fn arrive(&self, version: &Version, out: &mut dyn Report) -> Result<bool, Error> {
        let releases = self.store.load()?;
        let first = releases.is_empty();
        let kind = match releases.running() {
            Some(cur) if version > cur => MoveKind::Upgrade,
            Some(cur) if version < cur => MoveKind::Downgrade,
            _ => MoveKind::Install,
        };
        self.move_to(kind, version, true, out)?;
        Ok(first)
    }

    /// A release package is being removed (its maintainer script): refused
    /// while the release runs or is permanent (the package manager keeps
    /// the package), else the release is uninstalled. The last release may
    /// go while no broker runs.
    pub fn leave(&self, version: &Version, out: &mut dyn Report) -> Result<(), Error> {
        let (lock, mut releases) = self.begin(out)?;
        let broker = self.switcher.probe()?;
        let kept = |reason: String| {
            Error::from(Refusal::PackageKept {
                version: version.clone(),
                reason,
            })
        };
        if let Some(b) = &broker {
            if b.version == version.to_string() {
                return Err(kept(format!("the broker (pid {}) runs it.", b.pid)));
            }
        }
        let plan = release::plan_leave(&releases, version, broker.is_some())
            .map_err(|r| kept(r.to_string()))?;
        if let Err(e) = self.refuse_if_in_use(&plan) {
            return Err(kept(e.to_string()));
        }
        self.execute(&lock, &mut releases, plan, None, out)
    }

    /// `uninstall VSN`.
    pub fn uninstall(&self, version: &Version, out: &mut dyn Report) -> Result<(), Error> {
        let (lock, mut releases) = self.begin(out)?;
        let plan = release::plan_uninstall(&releases, version)?;
        self.refuse_if_in_use(&plan)?;
        self.execute(&lock, &mut releases, plan, None, out)
    }

    /// A tree a live process runs from is never deleted, whatever the
    /// state says (a draining broker, or one a killed switch left).
    fn refuse_if_in_use(&self, plan: &Plan) -> Result<(), Refusal> {
        for step in &plan.steps {
            if let Step::Remove(v) = step {
                if let Some(pid) = crate::switch::running_from(&self.store.tree(v)) {
                    return Err(Refusal::InUse {
                        version: v.clone(),
                        pid,
                    });
                }
            }
        }
        Ok(())
    }

    /// `start`: reverts a trial release and returns the permanent release's
    /// entry command, for the caller to exec in place.
    /// Without write access to the store (the unit's `ExecStart=` runs as the
    /// service user; `ExecStartPre=+... start --prepare` reverted as root),
    /// it reads the state and runs the permanent release without recording.
    pub fn start(&self, out: &mut dyn Report) -> Result<(Command, Version), Error> {
        let version = if self.store.writable() {
            let (lock, mut releases) = self.begin(out)?;
            self.refuse_if_running()?;
            let (plan, version) = release::plan_start(&releases)?;
            self.execute(&lock, &mut releases, plan, None, out)?;
            version
        } else {
            let releases = self.store.load()?;
            self.refuse_if_running()?;
            let (plan, version) = release::plan_start(&releases)?;
            if plan.steps.iter().any(|s| matches!(s, Step::Restart)) {
                out.note(&format!(
                    "the state still names a trial release; running the permanent release {version} without recording the revert (no write access to {}: run 'emqx-relup start --prepare' as root first)",
                    self.layout.store_dir().display()
                ));
            }
            version
        };
        let tree = self.existing_tree(&version)?;
        let program = tree.join(&self.config.entry[0]);
        let mut command = Command::new(program);
        command
            .args(&self.config.entry[1..])
            .current_dir(&tree)
            .env(emqx_handoff::env::VERSION_ENV, version.to_string())
            .env(emqx_handoff::env::RUNTIME_DIR_ENV, &self.config.runtime_dir)
            .env("EMQX_ROOT_DIR", &self.layout.root);
        Ok((command, version))
    }

    /// `reload`: switches the running broker to the release the state marks
    /// running (current, else permanent); when it already runs that release,
    /// a fresh broker of it takes over (as `systemctl reload` of any daemon
    /// rereads its configuration). Reads the state, never writes it.
    pub fn reload(&self, out: &mut dyn Report) -> Result<(), Error> {
        // Root's reload takes the lock and records itself like any switch;
        // the unit's ExecReload (the service user) cannot write the store.
        let (lock, releases) = if self.store.writable() {
            let (lock, releases) = self.begin(out)?;
            (Some(lock), releases)
        } else {
            (None, self.store.load()?)
        };
        let target = releases.running().cloned().ok_or(Refusal::NothingToStart)?;
        let broker = self.switcher.probe()?.ok_or(Refusal::NoBroker)?;
        let tree = self.existing_tree(&target)?;
        let r = match &lock {
            Some(lock) => {
                let mut record = StoreRecord::new(&self.store, lock);
                let r = self.switcher.switch(&broker, &target, &tree, &mut record);
                record.clear()?;
                r?
            }
            None => self
                .switcher
                .switch(&broker, &target, &tree, &mut NoRecord)?,
        };
        report_switch(out, &broker, &target, &r);
        if broker.version == target.to_string() {
            out.say(&Say::Refreshed(target));
        } else {
            out.say(&Say::Switched {
                from: broker.version.clone(),
                to: target,
            });
        }
        Ok(())
    }

    /// Fault tests: the state write of a switch fails here as armed
    /// (`helper::write_state`); its record stays for the next command.
    fn state_write_step(&self) -> Result<(), Error> {
        emqx_handoff::faults::step("helper::write_state").map_err(|e| {
            Error::io(
                format!("writing {}", self.store.state_path().display()),
                e.into(),
            )
        })
    }

    fn refuse_if_running(&self) -> Result<(), Error> {
        match self.switcher.probe()? {
            Some(broker) => Err(Refusal::BrokerRunning(broker.socket.display().to_string()).into()),
            None => Ok(()),
        }
    }

    /// Takes the lock, reads the state, and resolves a switch a killed
    /// command left pending.
    fn begin(&self, out: &mut dyn Report) -> Result<(StoreLock, Releases), Error> {
        let lock = self.store.lock(self.config.lock_timeout())?;
        let mut releases = self.store.load()?;
        self.resolve_pending(&lock, &mut releases, out)?;
        Ok((lock, releases))
    }

    fn execute(
        &self,
        lock: &StoreLock,
        releases: &mut Releases,
        plan: Plan,
        broker: Option<&RunningBroker>,
        out: &mut dyn Report,
    ) -> Result<(), Error> {
        for repair in self.store.repair(lock, releases)? {
            match repair {
                Repair::Leftover(name) => {
                    out.note(&format!("removed {name} left by an interrupted run"))
                }
                Repair::Unlisted(v) => out.note(&format!(
                    "removed the unrecorded tree of release {v} left by an interrupted run"
                )),
            }
        }
        for step in plan.steps {
            if let Some(sig) = crate::interrupt::pending() {
                return Err(Error::Interrupted(sig.as_str().to_string()));
            }
            match step {
                Step::Say(line) => out.say(&line),
                Step::Unpack(v) => {
                    self.unpack_tree(lock, &v, out)?;
                    releases.add_unpacked(v.clone());
                    self.store.save(lock, releases)?;
                    out.say(&Say::Unpacked(v));
                }
                Step::Switch(v) => {
                    let tree = self.existing_tree(&v)?;
                    match broker {
                        // The switch runs elsewhere (systemd's ExecReload)
                        // and reads the state: record it first, restore it
                        // when the switch did not happen.
                        Some(broker) if self.switcher.records_first() => {
                            self.switch_recorded_first(lock, releases, broker, &v, &tree, out)?
                        }
                        Some(broker) => self.switch_here(lock, releases, broker, &v, &tree, out)?,
                        None => {
                            releases.install(&v);
                            self.store.save(lock, releases)?;
                        }
                    }
                }
                Step::MakePermanent(v) => {
                    releases.make_permanent(&v);
                    self.store.save(lock, releases)?;
                }
                Step::Remove(v) => {
                    releases.remove(&v);
                    self.store.save(lock, releases)?;
                    self.store.delete_tree(lock, &v)?;
                }
                Step::Restart => {
                    releases.restart();
                    self.store.save(lock, releases)?;
                }
            }
        }
        Ok(())
    }

    fn existing_tree(&self, version: &Version) -> Result<PathBuf, Error> {
        let tree = self.store.tree(version);
        match std::fs::symlink_metadata(&tree) {
            Ok(m) if m.is_dir() => Ok(tree),
            _ => Err(Error::State {
                path: tree,
                problem: crate::error::StateProblem::MissingTree(version.clone()),
            }),
        }
    }

    /// Finds, verifies and extracts the package, then moves the tree into
    /// place. A refused package leaves nothing behind.
    fn unpack_tree(
        &self,
        lock: &StoreLock,
        version: &Version,
        out: &mut dyn Report,
    ) -> Result<(), Error> {
        let package = package::locate(&self.layout.drop_dir(), version)?;
        let shown = self.layout.shown_package(&package.path);
        out.say(&Say::NotFoundUnpacking {
            version: version.clone(),
            package: shown.clone(),
        });
        let context = format!("unpacking {shown}");
        let staging = self.store.staging(lock, version)?;
        let result = self.fill_staging(lock, &package, &staging, version, &context);
        // On failure the staging folder goes; should that fail too, the next
        // command's repair removes it.
        let _ = remove_tree(&staging);
        result
    }

    fn fill_staging(
        &self,
        lock: &StoreLock,
        package: &PackageFile,
        staging: &Path,
        version: &Version,
        context: &str,
    ) -> Result<(), Error> {
        let problem = |problem: PackageProblem| Error::Package {
            context: context.to_string(),
            problem,
        };
        verify_sum(&package.path, context)?;
        let links =
            package::extract(package, staging, self.config.limits).map_err(|e| match e {
                package::ExtractError::Problem(p) => problem(p),
                package::ExtractError::Io(what, e) => Error::io(format!("{context}: {what}"), e),
            })?;
        let root = package::release_root(staging, version, &links).map_err(problem)?;
        // A flat package's root is the (private, 0700) staging folder itself.
        std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(|e| Error::io(format!("{context}: setting the tree's mode"), e))?;
        let dir =
            File::open(staging).map_err(|e| Error::io(format!("{context}: opening staging"), e))?;
        nix::unistd::syncfs(&dir)
            .map_err(|e| Error::io(format!("{context}: syncing"), e.into()))?;
        self.store.commit_tree(lock, &root, version)
    }
}

/// A package's optional `.sha256` must match (read only).
fn verify_sum(package: &Path, context: &str) -> Result<(), Error> {
    package::verify_checksum(package).map_err(|e| match e {
        package::ChecksumError::Problem(problem) => Error::Package {
            context: context.to_string(),
            problem,
        },
        package::ChecksumError::Io(e) => Error::io(format!("{context}: checking the sum"), e),
    })
}

#[cfg(test)]
mod tests;
