//! What a switch reports: one note for the operator, the same figures as
//! one JSON line with `-v`, and any warning.

use semver::Version;

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
    // With -v, the same figures for a machine.
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    out.detail(&format!(
        "switch: {}",
        serde_json::json!({
            "from": broker.version,
            "to": to.to_string(),
            "old_pid": r.old_pid,
            "new_pid": r.new_pid,
            "via_unit": r.via_unit,
            "ready_ms": ms(r.start),
            "helper_ms": ms(r.helper),
            "moved": r.moved.map(|m| m.moved),
            "pause_ms": r.moved.map(|m| ms(m.pause)),
            "draining": r.draining,
            "drain_reason": r.drain_reason,
            // This process's own footprint (the soak watches it).
            "helper_peak_rss_kib": own_peak_rss_kib(),
            "helper_fds": own_fds(),
        })
    ));
    if let Some(w) = &r.warning {
        out.warn(w);
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

/// "N connections moved with their sessions (pause P ms)".
fn moved_words(m: crate::switch::Moved) -> String {
    format!(
        "{} connections moved with their sessions (pause {:.1} ms)",
        m.moved,
        m.pause.as_secs_f64() * 1000.0
    )
}
