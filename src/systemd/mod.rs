//! systemd adapters, no strategy: the broker's unit over D-Bus (`dbus`,
//! behind [`ServiceManager`]), what a job's result means (`outcome`), the
//! notify socket ([`Notifier`], from the `emqx_handoff` crate, which
//! brokers use too), and the journal (`journal`: structured log lines).
//! The switch through systemd is `crate::switch::UnitSwitch`.

mod dbus;
mod journal;
mod outcome;

use std::time::Duration;

pub use dbus::SystemBus;
pub use emqx_handoff::Notifier;
pub use journal::{stderr_is_journal, stream as journal_stream, Journal, Priority};
pub use outcome::{short_name, JobOutcome};

/// What systemd says about a unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitStatus {
    /// `loaded`, `not-found`, `masked`...
    pub load_state: String,
    /// `active`, `reloading`, `inactive`, `failed`, `activating`...
    pub active_state: String,
    /// The main process, 0 when none.
    pub main_pid: u32,
    /// What the unit's processes last said with `STATUS=`.
    pub status_text: String,
}

impl UnitStatus {
    /// Whether the unit runs a broker that a reload can switch.
    pub fn is_running(&self) -> bool {
        self.load_state == "loaded"
            && matches!(self.active_state.as_str(), "active" | "reloading")
            && self.main_pid != 0
    }
}

/// The service manager as far as the helper needs it; a trait so that the
/// switch logic is testable without a bus.
pub trait ServiceManager {
    /// The unit's status; `None` when systemd does not know it.
    fn unit(&self, name: &str) -> Result<Option<UnitStatus>, BusError>;
    /// Asks for a reload of the unit and waits for its job to end.
    fn reload(&self, name: &str, timeout: Duration) -> Result<JobOutcome, BusError>;
}

/// A failed call to systemd, with the unit it was about.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// No connection to the system bus.
    #[error("connecting to the system bus: {0}")]
    Connect(#[source] zbus::Error),
    /// The unit's status could not be read.
    #[error("asking systemd about {unit}: {source}")]
    Status {
        /// The unit.
        unit: String,
        /// What failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The reload could not be asked for, or its job not followed.
    #[error("asking systemd to reload {unit}: {source}")]
    Reload {
        /// The unit.
        unit: String,
        /// What failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Whether this process was started by systemd for a unit (`ExecStart=`,
/// `ExecReload=`...), as opposed to by an administrator.
pub fn started_by_systemd() -> bool {
    std::env::var_os("INVOCATION_ID").is_some()
        && std::env::var_os(emqx_handoff::env::NOTIFY_SOCKET).is_some()
}
