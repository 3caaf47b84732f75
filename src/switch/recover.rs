//! Resolving a direct switch that a killed helper left pending (the record
//! of [`super::intent`]): decided from what runs, never from a record the
//! service user writes.

use std::path::Path;
use std::time::Duration;

use super::intent::{decide_direct, Proc, Verdict};
use super::process::{self, Expect};
use super::runtime::RuntimeDir;
use super::{generations, open_session, pidfile, HANDOFF_SOCKET};
use crate::config::Config;

/// How long a new broker whose lease was never confirmed may take to
/// notice its helper died and exit.
const LEASE_GRACE: Duration = Duration::from_secs(3);

/// The verdict on a pending direct switch (no effect).
pub fn judge(config: &Config, store: &Path, new: Proc) -> Verdict {
    decide_direct(new_survives(config, store, new, Duration::ZERO))
}

fn new_survives(config: &Config, store: &Path, new: Proc, grace: Duration) -> bool {
    // No service user: no broker of it can run, so none survives.
    let Ok(user) = config.service_user() else {
        return false;
    };
    let expect = Expect {
        uid: user.uid,
        store: Some(store),
    };
    match process::verify(new.pid, Some(new.start), expect) {
        Ok(b) => !b.exited_within(grace),
        Err(_) => false,
    }
}

/// Resolves the pending switch to `version`: when the new broker outlived
/// its lease, the old one gets the commit it may have missed, the new
/// socket is published and recorded ([`Verdict::Finish`]: the caller
/// records the release); otherwise its leftovers go ([`Verdict::NotTaken`]).
pub fn settle(
    config: &Config,
    store: &Path,
    version: &str,
    old: Proc,
    new: Proc,
    socket: &str,
) -> Verdict {
    let verdict = decide_direct(new_survives(config, store, new, LEASE_GRACE));
    let rt = RuntimeDir::open(&config.runtime_dir).ok();
    let unpublished = !socket.is_empty() && socket != HANDOFF_SOCKET;
    match verdict {
        Verdict::Finish => {
            let uid = config.service_user().ok().map(|u| u.uid);
            let path = config.runtime_dir.join(HANDOFF_SOCKET);
            // Still the old broker's socket: it may never have got the
            // commit, and would serve beside the new one forever.
            if let Ok(Some(s)) = open_session(&path, uid) {
                if s.pid == old.pid {
                    let _ = s.commit();
                }
            }
            if let (Some(rt), true) = (&rt, unpublished) {
                let _ = rt.rename(socket, HANDOFF_SOCKET);
            }
            let _ = pidfile::record(&config.runtime_dir, new.pid, version);
            if process::start_time(old.pid) == Some(old.start) {
                generations::record_draining(&config.runtime_dir, old.pid);
            }
        }
        _ => {
            if let (Some(rt), true) = (&rt, unpublished) {
                rt.remove(socket);
            }
        }
    }
    verdict
}
