//! Why the planner refuses a request: one variant per refusal, its text
//! the line an operator reads after `ERROR: `.

use semver::Version;

use super::request::MoveKind;
use super::state::ReleaseState;

/// Why the planner refused a request. Nothing has been touched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The versions differ in major or minor.
    #[error("Cannot upgrade/downgrade from '{from}' to '{to}'")]
    NotPatch {
        /// The running release.
        from: Version,
        /// The requested one.
        to: Version,
    },
    /// `upgrade` to an older release, or `downgrade` to a newer one.
    #[error("cannot {kind} from '{from}' to '{to}': it is {} release; use '{} {to}'",
        if *.kind == MoveKind::Upgrade { "an older" } else { "a newer" },
        if *.kind == MoveKind::Upgrade { "downgrade" } else { "upgrade" },
        kind = .kind.as_str())]
    WrongDirection {
        /// The command.
        kind: MoveKind,
        /// The running release.
        from: Version,
        /// The requested one.
        to: Version,
    },
    /// Uninstall of the permanent or current release.
    #[error("Uninstall failed: Release {version} is {}.",
        if *.state == ReleaseState::Current { "marked current" } else { "running" })]
    Uninstall {
        /// The release.
        version: Version,
        /// Its state.
        state: ReleaseState,
    },
    /// Removing the package of a release that must stay.
    #[error("refusing to remove the package of release {version}: {reason} Switch to another release first; the package stays installed.")]
    PackageKept {
        /// The release.
        version: Version,
        /// Why it must stay.
        reason: String,
    },
    /// `--no-permanent` while no broker runs.
    #[error("--no-permanent needs a running broker to try release {0} on, and none is running; start the broker or drop --no-permanent")]
    TrialNeedsBroker(Version),
    /// `start` while a broker already runs.
    #[error("a broker is already running (handoff socket {0}); use 'reload' to switch it")]
    BrokerRunning(String),
    /// `reload` with no broker running.
    #[error("no broker is running to reload; start it with 'emqx-relup start'")]
    NoBroker,
    /// `start` with no permanent release.
    #[error("no permanent release to start; install one with 'emqx-relup install VSN'")]
    NothingToStart,
    /// A pending switch through systemd whose reload still runs.
    #[error("systemd is still running the reload of {0} that an interrupted command asked for; try again once 'systemctl status {0}' shows it active")]
    ReloadInFlight(String),
    /// Removing a release that a live process still runs from (the broker,
    /// one still draining, or one a killed switch left behind).
    #[error("Uninstall failed: Release {version} is in use by pid {pid}, which runs from its tree; switch away and let it finish draining first.")]
    InUse {
        /// The release.
        version: Version,
        /// A process running from its tree.
        pid: u32,
    },
}

impl Refusal {
    /// A second line for the operator.
    pub fn hint(&self) -> Option<String> {
        match self {
            Refusal::NotPatch { .. } => {
                Some("Hot upgrade is only supported between patch releases.".to_string())
            }
            _ => None,
        }
    }
}
