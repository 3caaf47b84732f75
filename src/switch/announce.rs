//! What a switch tells systemd when it runs as the unit's `ExecReload`:
//! progress, the new main process (behind a barrier), and the end.

use std::time::Duration;

use crate::systemd::Notifier;
use emqx_handoff::faults::step;

/// How long systemd may take to answer a barrier.
const BARRIER_TIMEOUT: Duration = Duration::from_secs(10);

/// A switch's messages to systemd; silent without a notify socket.
pub struct Announce(Option<Notifier>);

impl Announce {
    /// Announces to `notifier`, if any.
    pub fn new(notifier: Option<Notifier>) -> Announce {
        Announce(notifier)
    }

    /// Whether systemd is listening.
    pub fn is_active(&self) -> bool {
        self.0.is_some()
    }

    /// The switch begins; it may take `bound` at most.
    ///
    /// No `RELOADING=1`: systemd 252 keeps it pending past the end of
    /// `ExecReload` and waits for a `READY=1`, so a helper killed mid-switch
    /// left the unit `reloading` until `TimeoutStartSec=` (seen in
    /// tests/systemd.rs). The `ExecReload` job already is the reload state.
    pub fn begin(&self, version: &str, bound: Duration) {
        if let Some(n) = &self.0 {
            let _ = n.extend_timeout(bound);
            let _ = n.status(&format!("switching to release {version}"));
        }
    }

    /// Still working (a long drain): `bound` more from now.
    pub fn extend(&self, bound: Duration, status: &str) {
        if let Some(n) = &self.0 {
            let _ = n.extend_timeout(bound);
            let _ = n.status(status);
        }
    }

    /// Makes `pid` the unit's main process and waits until systemd has
    /// taken it in, so that the previous main process may exit.
    pub fn main_pid(&self, pid: u32) -> Result<(), String> {
        let Some(n) = &self.0 else { return Ok(()) };
        n.main_pid(pid)
            .map_err(|e| format!("telling systemd MAINPID={pid}: {e}"))?;
        step("helper::main_pid").map_err(|e| format!("telling systemd MAINPID={pid}: {e}"))?;
        n.barrier(BARRIER_TIMEOUT)
            .map_err(|e| format!("notify barrier after MAINPID={pid}: {e}"))?;
        step("helper::barrier").map_err(|e| format!("notify barrier after MAINPID={pid}: {e}"))
    }

    /// The switch is over, one way or the other.
    pub fn end(&self, status: &str) {
        if let Some(n) = &self.0 {
            let _ = n.ready(status);
        }
    }
}
