//! Release states and their transitions (as Erlang's release_handler).

use std::collections::BTreeMap;
use std::fmt;

use semver::Version;
use serde::{Deserialize, Serialize};

/// The state of one release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReleaseState {
    /// Extracted, not running.
    Unpacked,
    /// Running, not permanent: a restart goes back to the permanent release.
    Current,
    /// What a (re)start runs.
    Permanent,
    /// Was current or permanent before.
    Old,
}

impl ReleaseState {
    /// The state once this release has been installed (switched to).
    pub fn installed(self) -> Self {
        match self {
            ReleaseState::Permanent => ReleaseState::Permanent,
            _ => ReleaseState::Current,
        }
    }

    /// The state of this release when another one is installed.
    pub fn other_installed(self) -> Self {
        match self {
            ReleaseState::Current => ReleaseState::Old,
            s => s,
        }
    }

    /// The state of this release when another one is made permanent.
    pub fn other_made_permanent(self) -> Self {
        match self {
            ReleaseState::Permanent => ReleaseState::Old,
            s => s,
        }
    }

    /// The state after the broker restarts: a release that was only current
    /// is no longer running.
    pub fn restarted(self) -> Self {
        match self {
            ReleaseState::Current => ReleaseState::Unpacked,
            s => s,
        }
    }

    /// The word used in messages and in `versions`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseState::Unpacked => "unpacked",
            ReleaseState::Current => "current",
            ReleaseState::Permanent => "permanent",
            ReleaseState::Old => "old",
        }
    }
}

impl fmt::Display for ReleaseState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// All known releases and their states.
///
/// A set of releases that breaks an invariant of [`Releases`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invariant {
    /// One version twice.
    #[error("release {0} is listed twice")]
    Twice(Version),
    /// More than one permanent or current release.
    #[error("{n} releases are marked {state}")]
    Marked {
        /// How many.
        n: usize,
        /// Which state.
        state: ReleaseState,
    },
}

/// Invariants (checked by [`Releases::from_entries`]): at most one release is
/// permanent and at most one is current.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Releases {
    entries: BTreeMap<Version, ReleaseState>,
}

impl Releases {
    /// Builds the set from `(version, state)` pairs, refusing duplicates and
    /// more than one permanent or current release.
    pub fn from_entries(
        entries: impl IntoIterator<Item = (Version, ReleaseState)>,
    ) -> Result<Self, Invariant> {
        let mut map = BTreeMap::new();
        for (version, state) in entries {
            if map.insert(version.clone(), state).is_some() {
                return Err(Invariant::Twice(version));
            }
        }
        for state in [ReleaseState::Permanent, ReleaseState::Current] {
            let n = map.values().filter(|s| **s == state).count();
            if n > 1 {
                return Err(Invariant::Marked { n, state });
            }
        }
        Ok(Releases { entries: map })
    }

    /// The state of one release.
    pub fn get(&self, version: &Version) -> Option<ReleaseState> {
        self.entries.get(version).copied()
    }

    /// Whether no release is known.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn find(&self, state: ReleaseState) -> Option<&Version> {
        self.entries
            .iter()
            .find(|(_, s)| **s == state)
            .map(|(v, _)| v)
    }

    /// The permanent release.
    pub fn permanent(&self) -> Option<&Version> {
        self.find(ReleaseState::Permanent)
    }

    /// The release that runs: the current one, else the permanent one.
    pub fn running(&self) -> Option<&Version> {
        self.find(ReleaseState::Current)
            .or_else(|| self.permanent())
    }

    /// Releases, newest first.
    pub fn newest_first(&self) -> impl Iterator<Item = (&Version, ReleaseState)> {
        self.entries.iter().rev().map(|(v, s)| (v, *s))
    }

    /// Records a newly unpacked release.
    pub fn add_unpacked(&mut self, version: Version) {
        self.entries.insert(version, ReleaseState::Unpacked);
    }

    /// Records that `version` now runs.
    pub fn install(&mut self, version: &Version) {
        for (v, s) in self.entries.iter_mut() {
            *s = if v == version {
                s.installed()
            } else {
                s.other_installed()
            };
        }
    }

    /// Records that `version` is what a restart runs.
    pub fn make_permanent(&mut self, version: &Version) {
        for (v, s) in self.entries.iter_mut() {
            *s = if v == version {
                ReleaseState::Permanent
            } else {
                s.other_made_permanent()
            };
        }
    }

    /// Records a restart: the permanent release runs again.
    pub fn restart(&mut self) {
        for s in self.entries.values_mut() {
            *s = s.restarted();
        }
    }

    /// Forgets a release.
    pub fn remove(&mut self, version: &Version) {
        self.entries.remove(version);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ReleaseState::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    fn states(r: &Releases) -> Vec<(String, ReleaseState)> {
        r.newest_first().map(|(v, s)| (v.to_string(), s)).collect()
    }

    #[test]
    fn upgrade_then_downgrade_follows_the_reference() {
        let mut r = Releases::from_entries([(v("5.0.0"), Permanent)]).unwrap();
        r.add_unpacked(v("5.0.1"));
        r.install(&v("5.0.1"));
        assert_eq!(
            states(&r),
            [("5.0.1".into(), Current), ("5.0.0".into(), Permanent)]
        );
        assert_eq!(r.running(), Some(&v("5.0.1")));
        r.make_permanent(&v("5.0.1"));
        assert_eq!(
            states(&r),
            [("5.0.1".into(), Permanent), ("5.0.0".into(), Old)]
        );
        r.install(&v("5.0.0"));
        r.make_permanent(&v("5.0.0"));
        assert_eq!(
            states(&r),
            [("5.0.1".into(), Old), ("5.0.0".into(), Permanent)]
        );
    }

    #[test]
    fn rollback_to_permanent_makes_the_trial_old() {
        let mut r =
            Releases::from_entries([(v("5.0.0"), Permanent), (v("5.0.1"), Current)]).unwrap();
        r.install(&v("5.0.0"));
        assert_eq!(
            states(&r),
            [("5.0.1".into(), Old), ("5.0.0".into(), Permanent)]
        );
    }

    #[test]
    fn restart_reverts_current() {
        let mut r =
            Releases::from_entries([(v("5.0.0"), Permanent), (v("5.0.1"), Current)]).unwrap();
        r.restart();
        assert_eq!(r.running(), Some(&v("5.0.0")));
        assert_eq!(r.get(&v("5.0.1")), Some(Unpacked));
    }

    #[test]
    fn invariants_are_checked() {
        assert!(
            Releases::from_entries([(v("5.0.0"), Permanent), (v("5.0.1"), Permanent)]).is_err()
        );
        assert_eq!(
            Releases::from_entries([(v("5.0.0"), Current), (v("5.0.1"), Current)]),
            Err(Invariant::Marked {
                n: 2,
                state: Current
            })
        );
        assert_eq!(
            Releases::from_entries([(v("5.0.0"), Old), (v("5.0.0"), Old)]),
            Err(Invariant::Twice(v("5.0.0")))
        );
    }
}
