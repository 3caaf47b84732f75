//! Every failure of an operation, with the exit-code class an operator scripts against.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::release::Refusal;

/// Why a switch failed: the step's own error, typed, behind the line.
pub type Reason = Box<dyn std::error::Error + Send + Sync>;

/// The documented exit codes, one per class of failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitClass {
    /// I/O failure, unreadable or corrupt state file, anything the system refused.
    System,
    /// Bad argument, invalid version, bad configuration file.
    Usage,
    /// Refused by the version policy or by the state of the releases.
    Refused,
    /// The package is missing, ambiguous, corrupt, unsafe or of another version.
    Package,
    /// The running broker could not be moved to the new release.
    SwitchFailed,
    /// Another emqx-relup held the lock for longer than the configured wait.
    Busy,
}

impl ExitClass {
    /// The process exit code of this class.
    pub fn code(self) -> u8 {
        match self {
            ExitClass::System => 1,
            ExitClass::Usage => 2,
            ExitClass::Refused => 3,
            ExitClass::Package => 4,
            ExitClass::SwitchFailed => 5,
            ExitClass::Busy => 6,
        }
    }
}

/// A failed operation. `Display` gives the one line printed after `ERROR: `.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line or a configuration value is wrong.
    #[error("{0}")]
    Usage(String),
    /// A version argument that is not a semantic version.
    #[error(transparent)]
    InvalidVersion(#[from] crate::release::InvalidVersion),
    /// The release planner refused the request.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// Something is wrong with a release package.
    #[error("{context}: {problem}")]
    Package {
        /// What was being done, e.g. `unpacking releases/emqx-5.0.1.zip`.
        context: String,
        /// What is wrong with it.
        problem: PackageProblem,
    },
    /// The running broker could not be switched.
    #[error("switch to {version} failed: {reason}{}", serving.suffix())]
    Switch {
        /// The release that was to run.
        version: String,
        /// Why it did not: the typed error of the step that failed
        /// (callers may downcast it), or a line.
        reason: Reason,
        /// Which broker serves now.
        serving: Serving,
    },
    /// The configuration file is wrong.
    #[error("configuration {}: {problem}", path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong in it.
        #[source]
        problem: crate::config::ConfigError,
    },
    /// A maintainer script was called with arguments no package manager uses.
    #[error(transparent)]
    Hook(#[from] crate::hooks::BadCall),
    /// The configured service user cannot be used.
    #[error(transparent)]
    User(#[from] crate::privs::UserError),
    /// Privileges could not be dropped to the service user.
    #[error("dropping privileges: {0}")]
    Privileges(#[from] crate::privs::DropError),
    /// The running broker could not be asked (its handoff socket).
    #[error("asking the running broker: {0}")]
    Broker(Reason),
    /// The store lock is held by another process.
    #[error("another emqx-relup ({}) holds the lock", holder_text(.pid))]
    Busy {
        /// The holder's pid, when it could be read from the lock file.
        pid: Option<u32>,
    },
    /// The state file cannot be used.
    #[error("state file {}: {problem}", path.display())]
    State {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it; the file is left as it is.
        #[source]
        problem: StateProblem,
    },
    /// A system call failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error of the system.
        #[source]
        source: io::Error,
    },
    /// This platform cannot hot-upgrade.
    #[error("hot upgrade is not supported on this platform")]
    Unsupported,
    /// A signal asked the command to stop; it did, between two steps.
    #[error("interrupted by {0}: stopped before the next step, nothing is left half done")]
    Interrupted(String),
}

fn holder_text(pid: &Option<u32>) -> String {
    match pid {
        Some(pid) => format!("pid {pid}"),
        None => "pid unknown".to_string(),
    }
}

impl Error {
    /// The exit-code class of this error.
    pub fn class(&self) -> ExitClass {
        match self {
            Error::Usage(_)
            | Error::InvalidVersion(_)
            | Error::Config { .. }
            | Error::User(_)
            | Error::Hook(_) => ExitClass::Usage,
            Error::Refused(_) | Error::Unsupported => ExitClass::Refused,
            Error::Package { .. } => ExitClass::Package,
            Error::Switch { .. } | Error::Broker(_) => ExitClass::SwitchFailed,
            Error::Busy { .. } => ExitClass::Busy,
            Error::State { .. }
            | Error::Io { .. }
            | Error::Interrupted(_)
            | Error::Privileges(_) => ExitClass::System,
        }
    }

    /// Lines printed after the error line: the detail an operator acts on.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Refused(r) => r.hint(),
            _ => None,
        }
    }

    /// A failed switch to `version`, which broker serves told by `serving`.
    pub fn switch(
        version: &impl fmt::Display,
        reason: impl Into<Reason>,
        serving: Serving,
    ) -> Self {
        Error::Switch {
            version: version.to_string(),
            reason: reason.into(),
            serving,
        }
    }

    /// The constructor of a switch to `version` failing before anything
    /// changed: `.map_err(Error::switching(version))`.
    pub fn switching<'v, V: fmt::Display, R: Into<Reason>>(
        version: &'v V,
    ) -> impl Fn(R) -> Error + 'v {
        move |reason| Error::switch(version, reason, Serving::Unstated)
    }

    /// An I/O error with what was being done.
    pub fn io(context: impl fmt::Display, source: io::Error) -> Self {
        Error::Io {
            context: context.to_string(),
            source,
        }
    }
}

/// What is wrong with a state file or a release tree the state names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateProblem {
    /// The releases document.
    #[error(transparent)]
    Releases(#[from] crate::store::FormatError),
    /// The pending-switch record.
    #[error(transparent)]
    Record(#[from] crate::switch::intent::RecordError),
    /// A release the state lists has no tree.
    #[error("the tree of release {0} is missing; uninstall it and unpack it again")]
    MissingTree(semver::Version),
}

/// Which broker serves after a switch failed: what the operator reads
/// first, so it is a field, never a suffix typed into each reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serving {
    /// Nothing was started yet, or the reason itself says what runs.
    Unstated,
    /// The new broker exited by itself; the old one serves.
    Old,
    /// The new broker was stopped; the old one serves.
    OldNewStopped,
    /// No broker runs: the operator must start one.
    Nothing,
}

impl Serving {
    /// The end of the error line that says it.
    fn suffix(self) -> &'static str {
        match self {
            Serving::Unstated => "",
            Serving::Old => "; the old one still serves",
            Serving::OldNewStopped => "; the new broker was stopped and the old one still serves",
            Serving::Nothing => "; no broker runs now: start it again ('emqx-relup start')",
        }
    }
}

/// What is wrong with a release package.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackageProblem {
    /// No file in the drop folder names the version.
    #[error("no package for release {version} in {} (expected emqx-{version}.zip, emqx-{version}.tar.gz or emqx-{version}-<platform>.zip|.tar.gz)", dir.display())]
    NotFound {
        /// The requested version.
        version: String,
        /// The drop folder searched.
        dir: PathBuf,
    },
    /// Several files name the version.
    #[error("several packages for release {version}: {}; keep one", names.join(", "))]
    Ambiguous {
        /// The requested version.
        version: String,
        /// The matching file names.
        names: Vec<String>,
    },
    /// The `.sha256` file beside the package disagrees with it.
    #[error("checksum mismatch: {file} says {expected}, the package is {actual}")]
    Checksum {
        /// The checksum file's name.
        file: String,
        /// The sum it holds.
        expected: String,
        /// The sum of the package.
        actual: String,
    },
    /// The `.sha256` file cannot be read as a sha256 sum.
    #[error("{0} does not hold a sha256 sum")]
    ChecksumFormat(String),
    /// The archive cannot be read.
    #[error("corrupt archive: {0}")]
    Corrupt(String),
    /// An entry has an absolute path.
    #[error("entry '{0}' has an absolute path")]
    AbsolutePath(String),
    /// An entry's path climbs out with `..`.
    #[error("entry '{0}' contains '..'")]
    ParentDir(String),
    /// An entry has an empty or unusable name.
    #[error("entry '{0}' has an unusable name")]
    BadName(String),
    /// A symbolic link points outside the release tree.
    #[error("symlink '{path}' points outside the release tree ({target})")]
    SymlinkEscape {
        /// The link.
        path: String,
        /// Its target.
        target: String,
    },
    /// An entry would be written through a symbolic link of the package.
    #[error("entry '{path}' would be written through the symlink '{link}'")]
    WriteThroughSymlink {
        /// The entry.
        path: String,
        /// The link on its way.
        link: String,
    },
    /// A hard link entry.
    #[error("entry '{0}' is a hard link")]
    HardLink(String),
    /// A device node, fifo, socket or other special entry.
    #[error("entry '{path}' is a {kind}, not a file, folder or symlink")]
    Special {
        /// The entry.
        path: String,
        /// What it is.
        kind: String,
    },
    /// A setuid or setgid file.
    #[error("entry '{path}' has the setuid or setgid bit (mode {mode:o})")]
    SetId {
        /// The entry.
        path: String,
        /// Its mode.
        mode: u32,
    },
    /// Two entries with one path.
    #[error("entry '{0}' appears twice")]
    Duplicate(String),
    /// A name no file system here can hold (a component over 255 bytes,
    /// or the whole over 4095); the name is shown cut short.
    #[error("entry '{0}...' has a name too long for a file system (over 255 bytes in one component or 4095 in all)")]
    NameTooLong(String),
    /// The file in the drop folder is a link, FIFO, device or folder.
    #[error("{0} is not a regular file")]
    NotRegular(String),
    /// The expanded size exceeds the configured bound.
    #[error("expands to more than {limit} bytes (limits.max_unpacked_bytes)")]
    TooLarge {
        /// The bound.
        limit: u64,
    },
    /// The compression ratio exceeds the configured bound.
    #[error("compression ratio above {limit}:1 (limits.max_ratio), a zip bomb")]
    Ratio {
        /// The bound.
        limit: u64,
    },
    /// More entries than the configured bound.
    #[error("more than {limit} entries (limits.max_entries)")]
    TooManyEntries {
        /// The bound.
        limit: u64,
    },
    /// The archive holds nothing.
    #[error("the package is empty")]
    Empty,
    /// The archive is neither one folder nor a flat release tree.
    #[error("expected one top-level folder or a release tree, found {}", names.join(", "))]
    Layout {
        /// The top-level names found.
        names: Vec<String>,
    },
    /// The package's own `releases/VSN/` folder names another version.
    #[error("the package holds {found}, not release {wanted}")]
    WrongVersion {
        /// The requested version.
        wanted: String,
        /// What the package holds instead.
        found: String,
    },
}
