//! At most two generations: a switch waits for the previous old broker to
//! finish draining, or refuses.

use std::path::Path;
use std::time::{Duration, Instant};

const DRAINING_FILE: &str = "draining.pid";

/// Notes the pid of the broker that is now draining.
pub fn record_draining(runtime_dir: &Path, pid: u32) {
    let _ =
        crate::store::write_atomic(&runtime_dir.join(DRAINING_FILE), pid.to_string().as_bytes());
}

/// Waits until the recorded draining broker has exited, at most `wait`;
/// calls `still(pid, left)` about once a second meanwhile.
pub fn wait_for_drain(
    runtime_dir: &Path,
    wait: Duration,
    still: &dyn Fn(u32, Duration),
) -> Result<(), String> {
    let path = runtime_dir.join(DRAINING_FILE);
    let Some(pid) = std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
    else {
        return Ok(());
    };
    let deadline = Instant::now() + wait;
    let mut told = Instant::now();
    while alive(pid) {
        if told.elapsed() >= Duration::from_secs(1) {
            told = Instant::now();
            still(pid, deadline.saturating_duration_since(told));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the previous broker (pid {pid}) is still draining after {:.0} s (drain_wait_secs); try again once it has exited",
                wait.as_secs_f64()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_file(&path);
    Ok(())
}

/// Whether `pid` runs (a zombie has finished).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}
