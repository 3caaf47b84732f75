//! `broker.pid` in the runtime dir: the pid and release of the broker that
//! `start` or the last switch left running; how a broker without a handoff
//! socket is found.

use std::path::Path;

use super::generations::alive;

const PIDFILE: &str = "broker.pid";

/// Records the running broker.
pub fn record(runtime_dir: &Path, pid: u32, version: &str) -> std::io::Result<()> {
    crate::store::write_atomic(
        &runtime_dir.join(PIDFILE),
        format!("{pid} {version}\n").as_bytes(),
    )
}

/// The recorded broker, if it still runs.
pub fn running(runtime_dir: &Path) -> Option<(u32, String)> {
    let text = std::fs::read_to_string(runtime_dir.join(PIDFILE)).ok()?;
    let (pid, version) = text.trim().split_once(' ')?;
    let pid = pid.parse().ok()?;
    alive(pid).then(|| (pid, version.to_string()))
}
