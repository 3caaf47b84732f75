//! `--dry-run`: the plan of `install`, `upgrade`, `downgrade` or
//! `uninstall` as it would run now, worked out without the lock and
//! carried out on a copy of the states, so nothing on the host changes
//! (no lock file, no staging folder, no record). The package of an
//! unpack is found and its `.sha256` checked (both only read).

use semver::Version;
use serde::Serialize;

use super::status::PendingStatus;
use super::Ops;
use crate::release::{self, MoveKind, Plan, Releases, Say, Step};
use crate::Error;

/// What a command would do.
#[derive(Debug, Clone, Serialize)]
pub struct Preview {
    /// `install`, `upgrade`, `downgrade` or `uninstall`.
    pub command: &'static str,
    /// The release asked for.
    pub version: String,
    /// Whether the command would change a release state (or move the broker).
    pub changed: bool,
    /// The broker that answers now, if any: `{pid, release}`.
    pub broker: Option<BrokerBrief>,
    /// A switch an interrupted command left: the real command resolves
    /// it first, which this plan does not foresee.
    pub pending: Option<PendingStatus>,
    /// The steps, in order.
    pub steps: Vec<PlannedStep>,
    /// The transcript lines the command would print.
    pub lines: Vec<String>,
    /// The releases now, newest first.
    pub before: Vec<Entry>,
    /// The releases after it, newest first.
    pub after: Vec<Entry>,
}

/// The broker a switch would move.
#[derive(Debug, Clone, Serialize)]
pub struct BrokerBrief {
    /// Its pid.
    pub pid: u32,
    /// The release it runs.
    pub release: String,
}

/// One release and its state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// The release.
    pub version: String,
    /// Its state.
    pub state: &'static str,
}

/// One step that changes something, as the operator reads it.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum PlannedStep {
    /// Extract the package into the store.
    Unpack {
        /// The release.
        version: String,
        /// The package, as `releases/<file>`.
        package: String,
    },
    /// Move the running broker (or, with none, record the release to run
    /// at the next start).
    Switch {
        /// The release.
        version: String,
        /// The release the broker runs now, if one runs.
        from: Option<String>,
    },
    /// Record the release permanent.
    MakePermanent {
        /// The release.
        version: String,
    },
    /// Forget the release and delete its tree.
    Remove {
        /// The release.
        version: String,
    },
}

impl Ops<'_> {
    /// The plan of `install`, `upgrade` or `downgrade`, changing nothing.
    pub fn preview_move(
        &self,
        kind: MoveKind,
        version: &Version,
        permanent: bool,
    ) -> Result<Preview, Error> {
        let releases = self.store.load()?;
        let pending = self.pending_status()?;
        let broker = self.switcher.probe()?;
        let plan = release::plan_move(&releases, kind, version, permanent, broker.is_some())?;
        let broker = broker.map(|b| BrokerBrief {
            pid: b.pid,
            release: b.version,
        });
        self.preview(kind.as_str(), version, releases, plan, broker, pending)
    }

    /// The plan of `uninstall`, changing nothing.
    pub fn preview_uninstall(&self, version: &Version) -> Result<Preview, Error> {
        let releases = self.store.load()?;
        let pending = self.pending_status()?;
        let plan = release::plan_uninstall(&releases, version)?;
        self.refuse_if_in_use(&plan)?;
        self.preview("uninstall", version, releases, plan, None, pending)
    }

    fn pending_status(&self) -> Result<Option<PendingStatus>, Error> {
        Ok(self.pending_verdict()?.map(|p| PendingStatus::of(&p)))
    }

    fn preview(
        &self,
        command: &'static str,
        version: &Version,
        before: Releases,
        plan: Plan,
        broker: Option<BrokerBrief>,
        pending: Option<PendingStatus>,
    ) -> Result<Preview, Error> {
        let mut after = before.clone();
        let mut steps = Vec::new();
        let mut lines = Vec::new();
        for step in &plan.steps {
            match step {
                Step::Say(line) => lines.push(line.to_string()),
                Step::Unpack(v) => {
                    let package = self.checked_package(v)?;
                    lines.push(
                        Say::NotFoundUnpacking {
                            version: v.clone(),
                            package: package.clone(),
                        }
                        .to_string(),
                    );
                    lines.push(Say::Unpacked(v.clone()).to_string());
                    steps.push(PlannedStep::Unpack {
                        version: v.to_string(),
                        package,
                    });
                }
                Step::Switch(v) => steps.push(PlannedStep::Switch {
                    version: v.to_string(),
                    from: broker.as_ref().map(|b| b.release.clone()),
                }),
                Step::MakePermanent(v) => steps.push(PlannedStep::MakePermanent {
                    version: v.to_string(),
                }),
                Step::Remove(v) => steps.push(PlannedStep::Remove {
                    version: v.to_string(),
                }),
                // Only `start` plans a restart.
                Step::Restart => {}
            }
            release::apply(&mut after, step);
        }
        Ok(Preview {
            command,
            version: version.to_string(),
            changed: !steps.is_empty(),
            broker,
            pending,
            steps,
            lines,
            before: Entry::all(&before),
            after: Entry::all(&after),
        })
    }

    /// The one package of `version` in the drop folder, its sum checked:
    /// shown as `releases/<file>`.
    fn checked_package(&self, version: &Version) -> Result<String, Error> {
        let package = crate::package::locate(&self.layout.drop_dir(), version)?;
        let shown = self.layout.shown_package(&package.path);
        super::verify_sum(&package.path, &format!("checking {shown}"))?;
        Ok(shown)
    }
}

impl Entry {
    /// Every release, newest first.
    pub fn all(releases: &Releases) -> Vec<Entry> {
        releases
            .newest_first()
            .map(|(v, s)| Entry {
                version: v.to_string(),
                state: s.as_str(),
            })
            .collect()
    }
}
