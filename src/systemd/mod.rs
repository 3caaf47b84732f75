//! systemd: the broker's unit over D-Bus, the notify socket, and the journal.
//!
//! An administrator's `upgrade` on a host whose unit is active goes through
//! [`UnitSwitch`] (systemd runs `ExecReload=emqx-relup reload`, so the new
//! broker lands inside the unit); `reload` itself reports to systemd through
//! [`Notifier`]; [`Journal`] gives log lines structured fields.

mod choose;
mod dbus;
mod journal;
mod notify;
mod outcome;
mod unit;

use std::time::Duration;

pub use choose::{admin_switcher, direct};
pub use dbus::SystemBus;
pub use journal::{stderr_is_journal, stream as journal_stream, Journal, Priority};
pub use notify::Notifier;
pub use outcome::{short_name, JobOutcome};
pub use unit::UnitSwitch;

/// What systemd says about a unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitStatus {
    /// `loaded`, `not-found`, `masked`...
    pub load_state: String,
    /// `active`, `reloading`, `inactive`, `failed`, `activating`...
    pub active_state: String,
    /// The main process, 0 when none.
    pub main_pid: u32,
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
    fn unit(&self, name: &str) -> Result<Option<UnitStatus>, String>;
    /// Asks for a reload of the unit and waits for its job to end.
    fn reload(&self, name: &str, timeout: Duration) -> Result<JobOutcome, String>;
}

/// Whether this process was started by systemd for a unit (`ExecStart=`,
/// `ExecReload=`...), as opposed to by an administrator.
pub fn started_by_systemd() -> bool {
    std::env::var_os("INVOCATION_ID").is_some() && std::env::var_os("NOTIFY_SOCKET").is_some()
}
