//! A broker a switch started and never published: its helper died past
//! the commit under systemd (the unit's helper keeps no record), so it
//! answers at `handoff.sock.N`, not at `handoff.sock`.

use std::path::{Path, PathBuf};

use emqx_handoff::client::Session;
use emqx_handoff::env::HANDOFF_SOCKET;

use super::open_session;

/// The most `handoff.sock.<digits>` entries looked at (each may take a
/// hello's timeout; past this many the answer is "unclear").
const MAX_CANDIDATES: usize = 16;

/// The one `handoff.sock.<digits>` in `runtime_dir` that answers as the
/// service user (`uid`), when nothing answers at `handoff.sock`: its path
/// and session; `Ok(None)` when none answers. An error when it is not
/// clear which serves: more than one answers, one fails its checks, or
/// there are too many to look at. Reads only; the next switch publishes
/// its own broker's socket as usual.
pub fn find(
    runtime_dir: &Path,
    uid: Option<nix::unistd::Uid>,
) -> Result<Option<(PathBuf, Session)>, String> {
    let prefix = format!("{HANDOFF_SOCKET}.");
    let Ok(entries) = std::fs::read_dir(runtime_dir) else {
        return Ok(None);
    };
    let mut found: Option<(PathBuf, Session)> = None;
    let mut looked = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(suffix) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        if suffix.is_empty() || !suffix.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        looked += 1;
        if looked > MAX_CANDIDATES {
            return Err(format!(
                "nothing answers at {HANDOFF_SOCKET}, and there are more than {MAX_CANDIDATES} {prefix}* sockets in {} to look at: remove the stale ones (those no process listens on; `ss -xlp` shows which one does)",
                runtime_dir.display()
            ));
        }
        let path = runtime_dir.join(&name);
        match open_session(&path, uid) {
            Ok(None) => {}
            Ok(Some(session)) => {
                if let Some((first, other)) = &found {
                    return Err(format!(
                        "nothing answers at {HANDOFF_SOCKET}, and two brokers answer: pid {} (release {}) at {} and pid {} (release {}) at {}; a switch is in progress (retry once it ends), or was cut short (stop the one that should not run)",
                        other.pid,
                        other.version,
                        first.display(),
                        session.pid,
                        session.version,
                        path.display()
                    ));
                }
                found = Some((path, session));
            }
            Err(e) => {
                return Err(format!(
                    "nothing answers at {HANDOFF_SOCKET}, and asking {} failed: {e}",
                    path.display()
                ))
            }
        }
    }
    Ok(found)
}
