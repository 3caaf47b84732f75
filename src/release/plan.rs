//! Requests to plans: which steps an operation takes, or why it is refused.

use std::fmt;

use semver::Version;

use super::refusal::Refusal;
use super::request::MoveKind;
use super::version::{check_move, Direction};
use super::{ReleaseState, Releases, Say};

/// One step of a plan, executed in order; a failed step stops the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Print a line.
    Say(Say),
    /// Find, verify and extract the package, then record the release unpacked.
    Unpack(Version),
    /// Move the running broker (if any) to the release, then record it installed.
    Switch(Version),
    /// Record the release permanent.
    MakePermanent(Version),
    /// Forget the release, then delete its tree.
    Remove(Version),
    /// Record a restart: a current, non-permanent release stops being current.
    Restart,
}

/// The steps of one operation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// In order.
    pub steps: Vec<Step>,
}

/// Plans `install`, `upgrade` or `downgrade` of `version`.
pub fn plan_move(
    releases: &Releases,
    kind: MoveKind,
    version: &Version,
    permanent: bool,
    broker_running: bool,
) -> Result<Plan, Refusal> {
    let running = releases.running();
    if let Some(from) = running {
        let direction = check_move(from, version)?;
        let wrong = matches!(
            (kind, direction),
            (MoveKind::Upgrade, Direction::Down) | (MoveKind::Downgrade, Direction::Up)
        );
        if wrong {
            return Err(Refusal::WrongDirection {
                kind,
                from: from.clone(),
                to: version.clone(),
            });
        }
    }
    let v = version.clone();
    let mut steps = Vec::new();
    let needs_switch = match releases.get(version) {
        None => {
            steps.push(Step::Unpack(v.clone()));
            true
        }
        Some(ReleaseState::Unpacked) => {
            steps.push(Step::Say(Say::UnpackedNowInstalling(v.clone())));
            true
        }
        Some(ReleaseState::Old) => {
            steps.push(Step::Say(Say::OldSwitching(v.clone())));
            true
        }
        Some(ReleaseState::Current) => {
            if permanent {
                steps.push(Step::Say(Say::CurrentMakingPermanent(v.clone())));
                steps.push(Step::MakePermanent(v.clone()));
                steps.push(Step::Say(Say::MadePermanent(v)));
            } else {
                steps.push(Step::Say(Say::AlreadyThere(v, ReleaseState::Current)));
            }
            false
        }
        Some(ReleaseState::Permanent) => match running {
            Some(cur) if cur != version => {
                steps.push(Step::Say(Say::CurrentlyRunning(cur.clone())));
                true
            }
            _ => {
                steps.push(Step::Say(Say::RunningPermanent(v)));
                false
            }
        },
    };
    if needs_switch {
        if !permanent && !broker_running {
            return Err(Refusal::TrialNeedsBroker(version.clone()));
        }
        steps.push(Step::Switch(version.clone()));
        steps.push(Step::Say(Say::Installed(version.clone())));
        if permanent {
            steps.push(Step::MakePermanent(version.clone()));
            steps.push(Step::Say(Say::MadePermanent(version.clone())));
        }
    }
    Ok(Plan { steps })
}

/// Plans `unpack`: the patch-only rule applies, so that nothing that could
/// never be installed lands in the store.
pub fn plan_unpack(releases: &Releases, version: &Version) -> Result<Plan, Refusal> {
    if let Some(state) = releases.get(version) {
        let say = Say::AlreadyThere(version.clone(), state);
        return Ok(Plan {
            steps: vec![Step::Say(say)],
        });
    }
    if let Some(from) = releases.running() {
        check_move(from, version)?;
    }
    Ok(Plan {
        steps: vec![Step::Unpack(version.clone())],
    })
}

/// Plans `uninstall`: only unpacked and old releases go.
pub fn plan_uninstall(releases: &Releases, version: &Version) -> Result<Plan, Refusal> {
    let v = version.clone();
    match releases.get(version) {
        None => Ok(Plan {
            steps: vec![Step::Say(Say::AlreadyUninstalled(v))],
        }),
        Some(state @ (ReleaseState::Unpacked | ReleaseState::Old)) => Ok(Plan {
            steps: vec![
                Step::Say(Say::Uninstalling(v.clone(), state)),
                Step::Remove(v.clone()),
                Step::Say(Say::Uninstalled(v)),
            ],
        }),
        Some(state) => Err(Refusal::Uninstall { version: v, state }),
    }
}

/// Plans the removal of a release's package: as `uninstall`, except that the
/// last release of a host may go while no broker runs (the product is
/// being removed).
pub fn plan_leave(
    releases: &Releases,
    version: &Version,
    broker_running: bool,
) -> Result<Plan, Refusal> {
    let only = releases.newest_first().count() == 1;
    match releases.get(version) {
        Some(state) if only && !broker_running => {
            let v = version.clone();
            Ok(Plan {
                steps: vec![
                    Step::Say(Say::Uninstalling(v.clone(), state)),
                    Step::Remove(v.clone()),
                    Step::Say(Say::Uninstalled(v)),
                ],
            })
        }
        _ => plan_uninstall(releases, version),
    }
}

/// Plans `start`: revert a trial release, then run the permanent one.
pub fn plan_start(releases: &Releases) -> Result<(Plan, Version), Refusal> {
    let permanent = releases.permanent().ok_or(Refusal::NothingToStart)?;
    let mut plan = Plan::default();
    if releases.running() != Some(permanent) {
        plan.steps.push(Step::Restart);
    }
    Ok((plan, permanent.clone()))
}

/// What a step does to the states, as the operation records it (a
/// dry run carries its plan out on a copy with this).
pub fn apply(releases: &mut Releases, step: &Step) {
    match step {
        Step::Say(_) => {}
        Step::Unpack(v) => releases.add_unpacked(v.clone()),
        Step::Switch(v) => releases.install(v),
        Step::MakePermanent(v) => releases.make_permanent(v),
        Step::Remove(v) => releases.remove(v),
        Step::Restart => releases.restart(),
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Say(s) => write!(f, "say {s:?}"),
            Step::Unpack(v) => write!(f, "unpack {v}"),
            Step::Switch(v) => write!(f, "switch to {v}"),
            Step::MakePermanent(v) => write!(f, "make {v} permanent"),
            Step::Remove(v) => write!(f, "remove {v}"),
            Step::Restart => write!(f, "restart"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ReleaseState::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    fn rel(entries: &[(&str, ReleaseState)]) -> Releases {
        Releases::from_entries(entries.iter().map(|(s, st)| (v(s), *st))).unwrap()
    }

    #[test]
    fn upgrade_of_unknown_unpacks_installs_and_makes_permanent() {
        let r = rel(&[("5.0.0", Permanent)]);
        let plan = plan_move(&r, MoveKind::Upgrade, &v("5.0.1"), true, false).unwrap();
        assert_eq!(
            plan.steps,
            [
                Step::Unpack(v("5.0.1")),
                Step::Switch(v("5.0.1")),
                Step::Say(Say::Installed(v("5.0.1"))),
                Step::MakePermanent(v("5.0.1")),
                Step::Say(Say::MadePermanent(v("5.0.1"))),
            ]
        );
    }

    #[test]
    fn cross_minor_is_refused_before_anything() {
        let r = rel(&[("5.0.1", Permanent)]);
        for kind in [MoveKind::Install, MoveKind::Upgrade, MoveKind::Downgrade] {
            let err = plan_move(&r, kind, &v("5.1.0"), true, true).unwrap_err();
            assert_eq!(
                err.to_string(),
                "Cannot upgrade/downgrade from '5.0.1' to '5.1.0'"
            );
        }
        assert!(plan_unpack(&r, &v("5.1.0")).is_err());
    }

    #[test]
    fn direction_is_checked_against_the_running_release() {
        let r = rel(&[("5.0.1", Permanent), ("5.0.0", Old)]);
        let err = plan_move(&r, MoveKind::Upgrade, &v("5.0.0"), true, false).unwrap_err();
        assert!(err.to_string().contains("use 'downgrade 5.0.0'"), "{err}");
        let err = plan_move(&r, MoveKind::Downgrade, &v("5.0.2"), true, false).unwrap_err();
        assert!(err.to_string().contains("use 'upgrade 5.0.2'"), "{err}");
        assert!(plan_move(&r, MoveKind::Install, &v("5.0.0"), true, false).is_ok());
        assert!(plan_move(&r, MoveKind::Install, &v("5.0.2"), true, false).is_ok());
    }

    #[test]
    fn first_release_needs_no_policy() {
        let r = Releases::default();
        assert!(plan_move(&r, MoveKind::Downgrade, &v("9.9.9"), true, false).is_ok());
    }

    #[test]
    fn trial_without_broker_is_refused_but_noop_is_not() {
        let r = rel(&[("5.0.0", Permanent)]);
        assert_eq!(
            plan_move(&r, MoveKind::Upgrade, &v("5.0.1"), false, false),
            Err(Refusal::TrialNeedsBroker(v("5.0.1")))
        );
        let r = rel(&[("5.0.0", Permanent), ("5.0.1", Current)]);
        let plan = plan_move(&r, MoveKind::Install, &v("5.0.1"), false, false).unwrap();
        assert_eq!(
            plan.steps,
            [Step::Say(Say::AlreadyThere(v("5.0.1"), Current))]
        );
    }

    #[test]
    fn rollback_to_permanent_names_the_running_one() {
        let r = rel(&[("5.0.0", Permanent), ("5.0.1", Current)]);
        let plan = plan_move(&r, MoveKind::Install, &v("5.0.0"), true, true).unwrap();
        assert_eq!(plan.steps[0], Step::Say(Say::CurrentlyRunning(v("5.0.1"))));
        assert_eq!(plan.steps[1], Step::Switch(v("5.0.0")));
    }

    #[test]
    fn uninstall_refuses_running_and_current() {
        let r = rel(&[("5.0.1", Current), ("5.0.0", Permanent)]);
        assert_eq!(
            plan_uninstall(&r, &v("5.0.0")).unwrap_err().to_string(),
            "Uninstall failed: Release 5.0.0 is running."
        );
        assert_eq!(
            plan_uninstall(&r, &v("5.0.1")).unwrap_err().to_string(),
            "Uninstall failed: Release 5.0.1 is marked current."
        );
    }

    #[test]
    fn the_last_release_may_leave_only_while_no_broker_runs() {
        let one = rel(&[("5.0.0", Permanent)]);
        let plan = plan_leave(&one, &v("5.0.0"), false).unwrap();
        assert_eq!(plan.steps[1], Step::Remove(v("5.0.0")));
        assert!(plan_leave(&one, &v("5.0.0"), true).is_err());
        let two = rel(&[("5.0.1", Permanent), ("5.0.0", Old)]);
        assert!(plan_leave(&two, &v("5.0.1"), false).is_err());
        assert_eq!(
            plan_leave(&two, &v("5.0.0"), true).unwrap().steps[1],
            Step::Remove(v("5.0.0"))
        );
    }

    #[test]
    fn applying_a_plan_predicts_the_states() {
        let mut r = rel(&[("5.0.0", Permanent)]);
        let plan = plan_move(&r, MoveKind::Upgrade, &v("5.0.1"), true, true).unwrap();
        for step in &plan.steps {
            apply(&mut r, step);
        }
        assert_eq!(r, rel(&[("5.0.1", Permanent), ("5.0.0", Old)]));
        for step in &plan_uninstall(&r, &v("5.0.0")).unwrap().steps {
            apply(&mut r, step);
        }
        assert_eq!(r, rel(&[("5.0.1", Permanent)]));
    }

    #[test]
    fn start_reverts_a_trial() {
        let r = rel(&[("5.0.1", Current), ("5.0.0", Permanent)]);
        let (plan, vsn) = plan_start(&r).unwrap();
        assert_eq!(plan.steps, [Step::Restart]);
        assert_eq!(vsn, v("5.0.0"));
        assert_eq!(
            plan_start(&rel(&[("5.0.0", Unpacked)])),
            Err(Refusal::NothingToStart)
        );
    }
}
