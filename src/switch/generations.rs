//! At most two generations: a switch waits for the previous old broker to
//! finish draining, or refuses. `draining.pid` lives in the runtime dir,
//! so a pid read from it is only a claim: it is waited for only once it
//! is proved to be a broker of this store (pid, start time, user, exe).

use std::path::Path;
use std::time::{Duration, Instant};

use super::process::{self, Expect};
use super::runtime::RuntimeDir;

const DRAINING_FILE: &str = "draining.pid";

/// The previous old broker outlived the wait for its drain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the previous broker (pid {pid}) is still draining after {:.0} s (drain_wait_secs); try again once it has exited", waited.as_secs_f64())]
pub struct StillDraining {
    /// Its pid.
    pub pid: u32,
    /// How long the switch waited.
    pub waited: Duration,
}

/// Notes the pid (and start time) of the broker that is now draining.
pub fn record_draining(runtime_dir: &Path, pid: u32) {
    let Some(start) = process::start_time(pid) else {
        return;
    };
    if let Ok(rt) = RuntimeDir::open(runtime_dir) {
        let _ = rt.write_record(DRAINING_FILE, format!("{pid} {start}\n").as_bytes());
    }
}

/// The recorded draining broker, when the record names a live process
/// of `expect` (pid, start time, user).
pub fn draining(runtime_dir: &Path, expect: Expect<'_>) -> Option<u32> {
    let rt = RuntimeDir::open(runtime_dir).ok()?;
    let text = rt.read_record(DRAINING_FILE).ok().flatten()?;
    let mut f = text.split_whitespace();
    let pid = f.next()?.parse::<u32>().ok()?;
    let start = f.next()?.parse::<u64>().ok()?;
    process::verify(pid, Some(start), expect)
        .ok()
        .map(|b| b.pid())
}

/// Waits until the recorded draining broker has exited, at most `wait`;
/// calls `still(pid, left)` about once a second meanwhile. A record that
/// does not name a live broker of this store is ignored and removed.
pub fn wait_for_drain(
    runtime_dir: &Path,
    expect: Expect<'_>,
    wait: Duration,
    still: &dyn Fn(u32, Duration),
) -> Result<(), StillDraining> {
    let Ok(rt) = RuntimeDir::open(runtime_dir) else {
        return Ok(());
    };
    let record = rt.read_record(DRAINING_FILE).ok().flatten();
    let claim = record.as_deref().and_then(|text| {
        let mut f = text.split_whitespace();
        let pid = f.next()?.parse::<u32>().ok()?;
        let start = f.next()?.parse::<u64>().ok()?;
        Some((pid, start))
    });
    let broker = claim.and_then(|(pid, start)| process::verify(pid, Some(start), expect).ok());
    let Some(broker) = broker else {
        rt.remove(DRAINING_FILE);
        return Ok(());
    };
    let pid = broker.pid();
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if broker.exited_within(left.min(Duration::from_secs(1))) {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(StillDraining { pid, waited: wait });
        }
        still(pid, left);
    }
    rt.remove(DRAINING_FILE);
    Ok(())
}
