//! What a switch reports: one note for the operator, the same figures as
//! one JSON line with `-v`, and any warning.

use semver::Version;
use serde::Serialize;

use super::Report;
use crate::switch::RunningBroker;

pub(super) fn report_switch(
    out: &mut dyn Report,
    broker: &RunningBroker,
    to: &Version,
    r: &crate::switch::SwitchReport,
) {
    match &r.via_unit {
        Some(unit) => out.note(&format!(
            "systemd reloaded {unit}: broker {} (pid {}) handed over to {to}, main pid now {}, in {} ms{}",
            broker.version,
            r.old_pid,
            r.new_pid,
            r.start.as_millis(),
            // What the unit's helper said of its move (its status text).
            r.moved
                .map(|m| format!(", {}", moved_words(m)))
                .unwrap_or_default()
        )),
        None => out.note(&format!(
            "broker {} (pid {}) handed its listeners to {to} (pid {}): ready in {} ms, helper work {} ms, {}",
            broker.version,
            r.old_pid,
            r.new_pid,
            r.start.as_millis(),
            r.helper.as_millis(),
            connections(r)
        )),
    }
    // With -v, the same figures for a machine; with --json, in its answer.
    let figures = SwitchFigures::of(broker, to, r);
    let json = serde_json::to_value(&figures).unwrap_or_default();
    out.detail(&format!("switch: {json}"));
    out.switched(&figures);
    if let Some(w) = &r.warning {
        out.warn(w);
    }
}

/// What a switch measured, as `-v` prints it and `--json` returns it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SwitchFigures {
    /// The release the broker ran.
    pub from: String,
    /// The release it runs now.
    pub to: String,
    /// The old broker's pid.
    pub old_pid: u32,
    /// The new broker's pid.
    pub new_pid: u32,
    /// The systemd unit whose reload switched, if it went through systemd.
    pub via_unit: Option<String>,
    /// From the new broker's start to its `READY=1`, in ms.
    pub ready_ms: f64,
    /// The helper's own work, in ms.
    pub helper_ms: f64,
    /// Established connections moved with their sessions.
    pub moved: Option<u64>,
    /// What clients felt of the move, in ms.
    pub pause_ms: Option<f64>,
    /// Of the moved connections, those the new broker closed because its
    /// policy (password or ACL file) no longer lets their login in.
    pub closed_by_policy: Option<u64>,
    /// Connections the old broker was left to drain.
    pub draining: u64,
    /// Why they drained instead of moving.
    pub drain_reason: Option<String>,
    /// This process's peak RSS (the soak watches it).
    pub helper_peak_rss_kib: Option<u64>,
    /// The fds this process holds.
    pub helper_fds: Option<usize>,
}

impl SwitchFigures {
    fn of(broker: &RunningBroker, to: &Version, r: &crate::switch::SwitchReport) -> Self {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
        SwitchFigures {
            from: broker.version.clone(),
            to: to.to_string(),
            old_pid: r.old_pid,
            new_pid: r.new_pid,
            via_unit: r.via_unit.clone(),
            ready_ms: ms(r.start),
            helper_ms: ms(r.helper),
            moved: r.moved.map(|m| m.moved),
            pause_ms: r.moved.map(|m| ms(m.pause)),
            closed_by_policy: r.moved.map(|m| m.closed_by_policy),
            draining: r.draining,
            drain_reason: r.drain_reason.clone(),
            helper_peak_rss_kib: own_peak_rss_kib(),
            helper_fds: own_fds(),
        }
    }
}

/// This process's peak RSS (VmHWM), in KiB.
fn own_peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The fds this process holds open (less the one reading them).
fn own_fds() -> Option<usize> {
    Some(
        std::fs::read_dir("/proc/self/fd")
            .ok()?
            .count()
            .saturating_sub(1),
    )
}

/// What became of the established connections at a switch.
fn connections(r: &crate::switch::SwitchReport) -> String {
    let drained = match &r.drain_reason {
        Some(why) if r.draining > 0 => format!("{} connections draining ({why})", r.draining),
        _ => format!("{} connections draining", r.draining),
    };
    match r.moved {
        Some(m) => format!("{}, {drained}", moved_words(m)),
        None => drained,
    }
}

/// "N connections moved with their sessions (pause P ms)", and ", K of
/// them closed by policy" when the new broker's files refused some.
fn moved_words(m: crate::switch::Moved) -> String {
    let closed = match m.closed_by_policy {
        0 => String::new(),
        n => format!(", {n} of them closed by policy"),
    };
    format!(
        "{} connections moved with their sessions (pause {:.1} ms){closed}",
        m.moved,
        m.pause.as_secs_f64() * 1000.0
    )
}
