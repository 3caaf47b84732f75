//! The lines an operation prints on stdout: the reference transcripts' words.

use std::fmt;

use semver::Version;

use super::ReleaseState;

/// One line of an operation's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Say {
    /// Unpacking starts; `package` is relative to the root dir.
    NotFoundUnpacking {
        /// The release.
        version: Version,
        /// The package, as `releases/<file>`.
        package: String,
    },
    /// `Unpacked successfully: "V"`.
    Unpacked(Version),
    /// `Installed Release: V`.
    Installed(Version),
    /// `Made release permanent: "V"`.
    MadePermanent(Version),
    /// Unpack of a known release, by its state.
    AlreadyThere(Version, ReleaseState),
    /// Install of an unpacked release.
    UnpackedNowInstalling(Version),
    /// Install of an old release.
    OldSwitching(Version),
    /// Install of the current release, which becomes permanent.
    CurrentMakingPermanent(Version),
    /// Install of the running permanent release: nothing to do.
    RunningPermanent(Version),
    /// Install of the permanent release while another one is current.
    CurrentlyRunning(Version),
    /// Uninstall of an unknown release.
    AlreadyUninstalled(Version),
    /// Uninstall starts.
    Uninstalling(Version, ReleaseState),
    /// Uninstall done.
    Uninstalled(Version),
    /// `reload` of the release the broker runs: a fresh broker took over
    /// (it reads its configuration anew).
    Refreshed(Version),
    /// `reload` moved the broker.
    Switched {
        /// The release it ran.
        from: String,
        /// The release it runs now.
        to: Version,
    },
}

impl fmt::Display for Say {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Say::NotFoundUnpacking { version, package } => {
                write!(
                    f,
                    "Release {version} not found, attempting to unpack {package}"
                )
            }
            Say::Unpacked(v) => write!(f, "Unpacked successfully: \"{v}\""),
            Say::Installed(v) => write!(f, "Installed Release: {v}"),
            Say::MadePermanent(v) => write!(f, "Made release permanent: \"{v}\""),
            Say::AlreadyThere(v, state) => match state {
                ReleaseState::Unpacked => write!(f, "Release {v} is already unpacked."),
                ReleaseState::Old => write!(f, "Release {v} is marked old."),
                ReleaseState::Current => write!(f, "Release {v} is already installed and current."),
                ReleaseState::Permanent => {
                    write!(f, "Release {v} is already installed and set permanent.")
                }
            },
            Say::UnpackedNowInstalling(v) => {
                write!(f, "Release {v} is already unpacked, now installing.")
            }
            Say::OldSwitching(v) => write!(f, "Release {v} is marked old, switching to it."),
            Say::CurrentMakingPermanent(v) => write!(
                f,
                "Release {v} is already installed and current, making permanent."
            ),
            Say::RunningPermanent(v) => write!(
                f,
                "Release {v} is already installed, running and set permanent."
            ),
            Say::CurrentlyRunning(v) => write!(f, "Release {v} is the currently running version."),
            Say::AlreadyUninstalled(v) => write!(f, "Release {v} is already uninstalled."),
            Say::Uninstalling(v, state) => {
                write!(f, "Release {v} is marked {state}, uninstalling it.")
            }
            Say::Uninstalled(v) => write!(f, "Uninstalled Release: {v}"),
            Say::Refreshed(v) => {
                write!(
                    f,
                    "Reloaded release {v}: a fresh broker took over the listeners."
                )
            }
            Say::Switched { from, to } => {
                write!(f, "Switched the running broker from {from} to {to}.")
            }
        }
    }
}
