//! What a switch tells systemd when it runs as the unit's `ExecReload`:
//! progress, the new main process (behind a barrier), and the end.

use std::time::Duration;

use super::Moved;
use crate::systemd::Notifier;
use emqx_handoff::faults::step;

/// How long systemd may take to answer a barrier.
const BARRIER_TIMEOUT: Duration = Duration::from_secs(10);

/// Why systemd may not have taken a new main process in.
#[derive(Debug, thiserror::Error)]
pub enum MainPidError {
    /// `MAINPID=` did not go.
    #[error("telling systemd MAINPID={pid}: {source}")]
    Telling {
        /// The new main process.
        pid: u32,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The barrier after it did not return.
    #[error("notify barrier after MAINPID={pid}: {source}")]
    Barrier {
        /// The new main process.
        pid: u32,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
}

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
    pub fn main_pid(&self, pid: u32) -> Result<(), MainPidError> {
        let Some(n) = &self.0 else { return Ok(()) };
        let telling = |source| MainPidError::Telling { pid, source };
        n.main_pid(pid).map_err(telling)?;
        step("helper::main_pid").map_err(|e| telling(e.into()))?;
        let barrier = |source| MainPidError::Barrier { pid, source };
        n.barrier(BARRIER_TIMEOUT).map_err(barrier)?;
        step("helper::barrier").map_err(|e| barrier(e.into()))
    }

    /// The switch is over, one way or the other.
    pub fn end(&self, status: &str) {
        if let Some(n) = &self.0 {
            let _ = n.ready(status);
        }
    }
}

/// The unit's status text once a switch to `version` ran `pid`: with a
/// move, its figures, which the administrator's `upgrade` reads back
/// over D-Bus ([`moved_from_status`]) for its report.
pub fn ended_status(version: &str, pid: u32, moved: Option<Moved>) -> String {
    let mut text = format!("running release {version} (pid {pid})");
    if let Some(m) = moved {
        text.push_str(&format!(
            "; moved {} connections with their sessions, pause {} us",
            m.moved,
            m.pause.as_micros()
        ));
        if m.closed_by_policy > 0 {
            text.push_str(&format!(", {} closed by policy", m.closed_by_policy));
        }
    }
    text
}

/// The move figures of [`ended_status`], when the text is one and names
/// `pid` (display only: any process of the unit may set the text).
pub fn moved_from_status(text: &str, pid: u32) -> Option<Moved> {
    let rest = text.strip_prefix("running release ")?;
    let (_, rest) = rest.split_once(&format!(" (pid {pid}); moved "))?;
    let (moved, rest) = rest.split_once(" connections with their sessions, pause ")?;
    let (pause, closed) = match rest.split_once(" us, ") {
        Some((pause, closed)) => (
            pause,
            closed.strip_suffix(" closed by policy")?.parse().ok()?,
        ),
        None => (rest.strip_suffix(" us")?, 0),
    };
    Some(Moved {
        moved: moved.parse().ok()?,
        pause: Duration::from_micros(pause.parse().ok()?),
        closed_by_policy: closed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_move_figures_come_back_from_the_status_text() {
        let m = Moved {
            moved: 9,
            pause: Duration::from_micros(912),
            closed_by_policy: 0,
        };
        let text = ended_status("5.0.1", 42, Some(m));
        assert_eq!(moved_from_status(&text, 42), Some(m));
        let closed = Moved {
            closed_by_policy: 2,
            ..m
        };
        let text = ended_status("5.0.1", 42, Some(closed));
        assert!(text.ends_with("pause 912 us, 2 closed by policy"), "{text}");
        assert_eq!(moved_from_status(&text, 42), Some(closed));
        // Another pid's, a drain's, or a text of somebody else: none.
        assert_eq!(moved_from_status(&text, 43), None);
        assert_eq!(
            moved_from_status(&ended_status("5.0.1", 42, None), 42),
            None
        );
        assert_eq!(moved_from_status("running release x (pid 42); moved many connections with their sessions, pause 1 us", 42), None);
    }
}
