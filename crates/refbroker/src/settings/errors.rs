//! Why the settings of the `emqx-refbroker` binary cannot be read: one
//! typed error per source (environment, release tree, listener list,
//! drain bound, behaviour file), each keeping what it was reading and
//! printing the same line the binary always printed.

use std::error::Error;
use std::fmt;
use std::io;
use std::net::AddrParseError;
use std::num::ParseFloatError;
use std::path::PathBuf;

/// Why the settings cannot be read, each with where from.
#[derive(Debug)]
pub enum SettingsError {
    /// `EMQX_BROKER_VERSION` is not semver.
    Version {
        /// What it says.
        version: String,
        /// Why it is not semver.
        source: semver::Error,
    },
    /// `EMQX_BROKER_VERSION` is unset and the binary runs from no release
    /// tree.
    NoTree,
    /// The release tree does not give one version.
    Tree(TreeError),
    /// An environment variable (named) cannot be used.
    Var(&'static str, VarError),
    /// The built-in listeners ([`DEFAULT_LISTENERS`](super::DEFAULT_LISTENERS))
    /// do not parse.
    DefaultListeners(ListenerError),
    /// `<tree>/etc/refbroker.toml` cannot be read.
    Behaviour(BehaviourError),
    /// An `ssl` listener (named) without `EMQX_SSL_CERTFILE`.
    NoCertificate(String),
    /// The `EMQX_SSL_*` settings cannot be used.
    Tls(super::TlsError),
    /// `EMQX_ALLOW_ANONYMOUS` is not `true` or `false`.
    Auth(emqx_auth::SettingsError),
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingsError::Version { version, source } => {
                write!(f, "version {version:?} is not semver: {source}")
            }
            SettingsError::NoTree => f.write_str(
                "EMQX_BROKER_VERSION is not set and my release tree is unknown (no <tree>/bin/emqx)",
            ),
            SettingsError::Tree(e) => e.fmt(f),
            SettingsError::Var(name, e) => write!(f, "{name}: {e}"),
            SettingsError::DefaultListeners(e) => e.fmt(f),
            SettingsError::Behaviour(e) => e.fmt(f),
            SettingsError::NoCertificate(name) => write!(
                f,
                "listener {name:?} is ssl:// but EMQX_SSL_CERTFILE and EMQX_SSL_KEYFILE are not set"
            ),
            SettingsError::Tls(e) => e.fmt(f),
            SettingsError::Auth(e) => e.fmt(f),
        }
    }
}

impl Error for SettingsError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            SettingsError::Version { source, .. } => Some(source),
            SettingsError::NoTree => None,
            SettingsError::Tree(e) => Some(e),
            SettingsError::Var(_, e) => Some(e),
            SettingsError::DefaultListeners(e) => Some(e),
            SettingsError::Behaviour(e) => Some(e),
            SettingsError::NoCertificate(_) => None,
            SettingsError::Tls(e) => Some(e),
            SettingsError::Auth(e) => Some(e),
        }
    }
}

/// Why an environment variable cannot be used.
#[derive(Debug)]
pub enum VarError {
    /// It is set, but not to Unicode.
    NotUnicode(std::env::VarError),
    /// Its listeners do not parse.
    Listeners(ListenerError),
    /// Its drain bound does not parse.
    Drain(DrainError),
    /// It is not a positive whole number (what it says).
    NotPositive(String),
    /// It is not a whole number of seconds (what it says).
    NotSeconds(String),
    /// It is no log level (what it says).
    NotALevel(String),
}

impl fmt::Display for VarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VarError::NotUnicode(e) => e.fmt(f),
            VarError::Listeners(e) => e.fmt(f),
            VarError::Drain(e) => e.fmt(f),
            VarError::NotPositive(s) => write!(f, "{s:?} is not a positive number"),
            VarError::NotSeconds(s) => write!(f, "{s:?} is not a whole number of seconds"),
            VarError::NotALevel(s) => write!(f, "{s:?} is not a log level (info or debug)"),
        }
    }
}

impl Error for VarError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            VarError::NotUnicode(e) => Some(e),
            VarError::Listeners(e) => Some(e),
            VarError::Drain(e) => Some(e),
            VarError::NotPositive(_) | VarError::NotSeconds(_) | VarError::NotALevel(_) => None,
        }
    }
}

/// Why a release tree does not give one version.
#[derive(Debug)]
pub enum TreeError {
    /// Its `releases/` folder cannot be read.
    Read {
        /// The folder.
        dir: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// It has no semver-named folder.
    NoRelease {
        /// The `releases/` folder.
        dir: PathBuf,
    },
    /// It has more than one (sorted).
    Several {
        /// The `releases/` folder.
        dir: PathBuf,
        /// Their names.
        found: Vec<String>,
    },
}

impl fmt::Display for TreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TreeError::Read { dir, source } => write!(f, "reading {}: {source}", dir.display()),
            TreeError::NoRelease { dir } => write!(f, "no release folder in {}", dir.display()),
            TreeError::Several { dir, found } => write!(
                f,
                "several release folders in {}: {}",
                dir.display(),
                found.join(", ")
            ),
        }
    }
}

impl Error for TreeError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            TreeError::Read { source, .. } => Some(source),
            TreeError::NoRelease { .. } | TreeError::Several { .. } => None,
        }
    }
}

/// Why a listener list does not parse.
#[derive(Debug)]
pub enum ListenerError {
    /// An item without `=` (the item).
    NotNamed(String),
    /// An empty name, or one with `:`.
    BadName(String),
    /// A name given twice.
    Twice(String),
    /// An address that does not parse.
    BadAddress {
        /// The whole item.
        item: String,
        /// Why.
        source: AddrParseError,
    },
    /// No listener at all.
    Empty,
    /// A kind that is not `tcp`, `ssl`, `ws` or `wss`.
    BadKind(String),
    /// A path on a `tcp` or `ssl` listener, or a `ws`/`wss` path that
    /// does not start with `/` or holds a space or `?`.
    BadPath(String),
}

impl fmt::Display for ListenerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenerError::NotNamed(item) => {
                write!(f, "bad listener {item:?} (want name=ip:port)")
            }
            ListenerError::BadName(name) => write!(f, "bad listener name {name:?}"),
            ListenerError::Twice(name) => write!(f, "listener {name:?} named twice"),
            ListenerError::BadAddress { item, source } => {
                write!(f, "bad address in {item:?}: {source}")
            }
            ListenerError::Empty => f.write_str("no listener"),
            ListenerError::BadKind(kind) => {
                write!(
                    f,
                    "bad listener kind {kind:?} (want tcp://, ssl://, ws:// or wss://)"
                )
            }
            ListenerError::BadPath(item) => {
                write!(
                    f,
                    "bad path in {item:?} (ws:// and wss:// take one, as /mqtt)"
                )
            }
        }
    }
}

impl Error for ListenerError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            ListenerError::BadAddress { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Why a drain bound does not parse.
#[derive(Debug)]
pub enum DrainError {
    /// Not a number (what it says).
    NotANumber {
        /// The text.
        text: String,
        /// Why.
        source: ParseFloatError,
    },
    /// Not from 0 to 86,400 seconds (what it says).
    OutOfRange(String),
}

impl fmt::Display for DrainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DrainError::NotANumber { text, source } => {
                write!(f, "{text:?} is not a number of seconds: {source}")
            }
            DrainError::OutOfRange(text) => {
                write!(f, "{text:?} is not between 0 and 86400 seconds")
            }
        }
    }
}

impl Error for DrainError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            DrainError::NotANumber { source, .. } => Some(source),
            DrainError::OutOfRange(_) => None,
        }
    }
}

/// Why `<tree>/etc/refbroker.toml` cannot be read.
#[derive(Debug)]
pub enum BehaviourError {
    /// The file cannot be read.
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// It is not a behaviour this broker knows.
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        source: toml::de::Error,
    },
}

impl fmt::Display for BehaviourError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BehaviourError::Read { path, source } => {
                write!(f, "reading {}: {source}", path.display())
            }
            BehaviourError::Invalid { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl Error for BehaviourError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            BehaviourError::Read { source, .. } => Some(source),
            BehaviourError::Invalid { source, .. } => Some(source),
        }
    }
}
