//! `/etc/emqx/relup.toml`: entry command, service user, unit, timeouts, limits.

use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::{Arc, OnceLock};

use serde::Deserialize;

use crate::privs::{self, ServiceUser, UserError};
use crate::Error;

/// The default configuration file.
pub const DEFAULT_PATH: &str = "/etc/emqx/relup.toml";

/// The helper's configuration; every key is optional.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The release's entry command, relative to its tree (`bin/emqx foreground`).
    pub entry: Vec<String>,
    /// How a running broker moves: `handoff` (listeners handed over, no
    /// connection refused) or `restart` (stop, then start: for a broker
    /// without a handoff socket).
    pub strategy: Strategy,
    /// The user the broker runs as.
    pub user: String,
    /// The systemd unit of the broker.
    pub unit: String,
    /// Where the running broker's handoff socket lives.
    pub runtime_dir: PathBuf,
    /// How long a command waits for another one's lock, in seconds.
    pub lock_timeout_secs: f64,
    /// How long a new broker has to report ready, in seconds.
    pub ready_timeout_secs: f64,
    /// How long a new broker must stay up after `READY=1` before the old one
    /// is told to drain, in seconds.
    pub settle_secs: f64,
    /// How long a switch waits for the previous old broker to finish
    /// draining (at most two generations), in seconds.
    pub drain_wait_secs: f64,
    /// How long an administrator's command waits for systemd's reload job
    /// (under systemd the switch runs as the unit's `ExecReload`), in seconds.
    pub job_timeout_secs: f64,
    /// Where a broker started by a switch writes stdout and stderr
    /// (appended, opened as the service user); unset: the journal (the
    /// unit's stream under systemd), else nowhere.
    pub broker_log: Option<PathBuf>,
    /// Environment variables a broker started by a switch gets from the
    /// helper's environment, besides the fixed allowlist (`PATH`, `LANG`,
    /// `LC_*`, `TZ`, `EMQX_*`, systemd's `*_DIRECTORY`).
    pub pass_env: Vec<String>,
    /// Bounds on what a package may expand to.
    pub limits: Limits,
    /// The service user, looked up in the user database at the first ask
    /// and kept, shared by every copy of this configuration: one lookup
    /// per command, and none by a command that needs no user.
    #[serde(skip)]
    resolved: Arc<OnceLock<Result<ServiceUser, UserError>>>,
}

/// How a running broker is moved to another release.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Hand the listeners over: no connection refused.
    Handoff,
    /// Stop the broker, then start the new release.
    Restart,
}

/// Bounds that refuse zip bombs and inode floods.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Total bytes a package may expand to.
    pub max_unpacked_bytes: u64,
    /// Expanded bytes per compressed byte, checked past the first 8 MiB.
    pub max_ratio: u64,
    /// Files, folders and links a package may hold.
    pub max_entries: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_unpacked_bytes: 4 << 30,
            max_ratio: 200,
            max_entries: 500_000,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            entry: vec!["bin/emqx".into(), "foreground".into()],
            strategy: Strategy::Handoff,
            user: "emqx".into(),
            unit: "emqx.service".into(),
            runtime_dir: PathBuf::from("/run/emqx"),
            lock_timeout_secs: 10.0,
            ready_timeout_secs: 30.0,
            settle_secs: 0.5,
            drain_wait_secs: 60.0,
            job_timeout_secs: 120.0,
            broker_log: None,
            pass_env: Vec::new(),
            limits: Limits::default(),
            resolved: Arc::new(OnceLock::new()),
        }
    }
}

/// What is wrong with a configuration document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Not TOML, an unknown key, or a value of the wrong type.
    #[error("{0}")]
    Syntax(String),
    /// `entry` is empty.
    #[error("entry must name a program")]
    NoEntry,
    /// A time is outside 0..=86400 seconds.
    #[error("{0} must be between 0 and 86400")]
    OutOfRange(&'static str),
    /// A `pass_env` entry is no variable name.
    #[error("pass_env: {0:?} is not an environment variable name")]
    PassEnv(String),
    /// `limits.max_ratio` is 0.
    #[error("limits.max_ratio must be at least 1")]
    MaxRatio,
}

impl Config {
    /// Reads `path`; a missing file is an error only when `required`.
    pub fn load(path: &Path, required: bool) -> Result<Config, Error> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                return Ok(Config::default())
            }
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        Config::parse(&text).map_err(|problem| Error::Config {
            path: path.to_path_buf(),
            problem,
        })
    }

    /// Parses and checks a configuration document.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config =
            toml::from_str(text).map_err(|e| ConfigError::Syntax(one_line(&e.to_string())))?;
        if config.entry.is_empty() || config.entry[0].is_empty() {
            return Err(ConfigError::NoEntry);
        }
        for (name, secs) in [
            ("lock_timeout_secs", config.lock_timeout_secs),
            ("ready_timeout_secs", config.ready_timeout_secs),
            ("settle_secs", config.settle_secs),
            ("drain_wait_secs", config.drain_wait_secs),
            ("job_timeout_secs", config.job_timeout_secs),
        ] {
            if !(0.0..=86_400.0).contains(&secs) {
                return Err(ConfigError::OutOfRange(name));
            }
        }
        for name in &config.pass_env {
            let ok = name
                .chars()
                .enumerate()
                .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
            if name.is_empty() || !ok {
                return Err(ConfigError::PassEnv(name.clone()));
            }
        }
        if config.limits.max_ratio == 0 {
            return Err(ConfigError::MaxRatio);
        }
        Ok(config)
    }

    /// The service user named by `user`, looked up once (see `resolved`).
    pub fn service_user(&self) -> Result<&ServiceUser, UserError> {
        self.resolved
            .get_or_init(|| privs::lookup(&self.user))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The readiness wait.
    pub fn ready_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.ready_timeout_secs)
    }

    /// The settle time after readiness.
    pub fn settle(&self) -> Duration {
        Duration::from_secs_f64(self.settle_secs)
    }

    /// The wait for a draining broker.
    pub fn drain_wait(&self) -> Duration {
        Duration::from_secs_f64(self.drain_wait_secs)
    }

    /// The wait for systemd's reload job.
    pub fn job_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.job_timeout_secs)
    }

    /// The lock wait.
    pub fn lock_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.lock_timeout_secs)
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_document_is_the_default() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }

    #[test]
    fn keys_are_read_and_unknown_keys_refused() {
        let c = Config::parse("lock_timeout_secs = 0.5\n[limits]\nmax_ratio = 10\n").unwrap();
        assert_eq!(c.lock_timeout(), Duration::from_millis(500));
        assert_eq!(c.limits.max_ratio, 10);
        assert!(matches!(
            Config::parse("lock_timeout = 1"),
            Err(ConfigError::Syntax(_))
        ));
        assert_eq!(Config::parse("entry = []"), Err(ConfigError::NoEntry));
        assert_eq!(
            Config::parse("lock_timeout_secs = -1"),
            Err(ConfigError::OutOfRange("lock_timeout_secs"))
        );
        assert_eq!(
            Config::parse("pass_env = [\"A=B\"]"),
            Err(ConfigError::PassEnv("A=B".into()))
        );
        assert_eq!(
            Config::parse("pass_env = [\"HTTP_PROXY\"]")
                .unwrap()
                .pass_env,
            ["HTTP_PROXY"]
        );
    }
}
