//! `status`: what runs now, derived from the processes and the store, never
//! from a record alone: the broker (pid, release, since when, inside the
//! unit or not), a generation still draining, a pending switch and what
//! the next command will do with it.

use serde::Serialize;

use super::Ops;
use crate::Error;

/// The answer of `status`.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The broker answering the handoff socket.
    pub broker: Option<BrokerStatus>,
    /// Why the broker is not known: the probe failed while a direct
    /// switch is pending (the record and its verdict are what the
    /// operator needs then; without a record the probe's error fails
    /// `status`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_unknown: Option<String>,
    /// The previous broker, still draining.
    pub draining: Option<ProcStatus>,
    /// A switch an interrupted command left.
    pub pending: Option<PendingStatus>,
}

/// The running broker.
#[derive(Debug, Clone, Serialize)]
pub struct BrokerStatus {
    /// Its pid.
    pub pid: u32,
    /// The release it runs (its hello).
    pub release: String,
    /// When it started, seconds since the epoch.
    pub since: Option<u64>,
    /// The systemd unit it runs in, if any.
    pub unit: Option<String>,
}

/// A process.
#[derive(Debug, Clone, Serialize)]
pub struct ProcStatus {
    /// Its pid.
    pub pid: u32,
    /// When it started, seconds since the epoch.
    pub since: Option<u64>,
}

/// A pending switch.
#[derive(Debug, Clone, Serialize)]
pub struct PendingStatus {
    /// From this release.
    pub from: String,
    /// To this one.
    pub to: String,
    /// `direct` or `unit`.
    pub path: &'static str,
    /// What the next command does: `finish`, `drop`, `keep`, `restore`.
    pub next: &'static str,
    /// The same, in words.
    pub next_words: &'static str,
}

impl PendingStatus {
    /// A pending switch and its verdict, as `status` shows them.
    pub fn of(p: &super::PendingSwitch) -> PendingStatus {
        PendingStatus {
            from: p.intent.from.clone(),
            to: p.intent.version.clone(),
            path: match p.intent.path {
                crate::switch::intent::SwitchPath::Direct { .. } => "direct",
                crate::switch::intent::SwitchPath::Unit { .. } => "unit",
            },
            next: p.verdict.as_str(),
            next_words: p.verdict.describe(),
        }
    }
}

impl Ops<'_> {
    /// What runs now; reads only.
    pub fn status(&self) -> Result<Status, Error> {
        let pending = self.pending_verdict()?;
        // A direct record's verdict does not depend on the probe (a unit
        // record's does: pending_verdict failed already), and a switch
        // left half done is when the probe is most likely to fail.
        let direct = pending.as_ref().is_some_and(|p| {
            matches!(
                p.intent.path,
                crate::switch::intent::SwitchPath::Direct { .. }
            )
        });
        let (probed, broker_unknown) = match self.switcher.probe() {
            Ok(found) => (found, None),
            Err(e) if direct => (None, Some(e.to_string())),
            Err(e) => return Err(e),
        };
        let broker = probed.map(|b| BrokerStatus {
            since: started_at(b.pid),
            unit: in_unit(b.pid, &self.config.unit).then(|| self.config.unit.clone()),
            pid: b.pid,
            release: b.version,
        });
        let draining = crate::switch::draining_broker(&self.config).map(|pid| ProcStatus {
            pid,
            since: started_at(pid),
        });
        let pending = pending.as_ref().map(PendingStatus::of);
        Ok(Status {
            broker,
            broker_unknown,
            draining,
            pending,
        })
    }
}

/// Whether `pid` runs in `unit`'s cgroup.
fn in_unit(pid: u32, unit: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .is_ok_and(|c| c.lines().any(|l| l.ends_with(&format!("/{unit}"))))
}

/// When `pid` started, in seconds since the epoch.
fn started_at(pid: u32) -> Option<u64> {
    let ticks = crate::switch::start_time(pid)?;
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let boot: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()??;
    Some(boot + ticks / u64::try_from(hz).ok()?.max(1))
}

/// `secs` since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_796_083_200), "2026-12-01T00:00:00Z");
        assert_eq!(utc(1_796_083_200 + 3_723), "2026-12-01T01:02:03Z");
    }

    #[test]
    fn this_process_started_recently() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let at = started_at(std::process::id()).unwrap();
        assert!(at <= now + 1 && now - at < 3600, "{at} vs {now}");
    }
}
