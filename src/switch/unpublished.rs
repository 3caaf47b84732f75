//! A broker a switch started and never published: its helper died past
//! the commit under systemd (the unit's helper keeps no record), so it
//! answers at `handoff.sock.N`, not at `handoff.sock`.

use std::path::{Path, PathBuf};

use emqx_handoff::client::Session;
use emqx_handoff::env::HANDOFF_SOCKET;
use emqx_handoff::SessionError;

use super::open_session;

/// The most `handoff.sock.<digits>` entries looked at (each may take a
/// hello's timeout; past this many the answer is "unclear").
const MAX_CANDIDATES: usize = 16;

/// Why it is not clear which unpublished broker serves.
#[derive(Debug, thiserror::Error)]
pub enum Unclear {
    /// More candidates than [`MAX_CANDIDATES`].
    #[error("nothing answers at {HANDOFF_SOCKET}, and there are more than {MAX_CANDIDATES} {HANDOFF_SOCKET}.* sockets in {} to look at: remove the stale ones (those no process listens on; `ss -xlp` shows which one does)", .0.display())]
    TooMany(PathBuf),
    /// Two brokers answer: (socket, pid, release) each.
    #[error("nothing answers at {HANDOFF_SOCKET}, and two brokers answer: pid {} (release {}) at {} and pid {} (release {}) at {}; a switch is in progress (retry once it ends), or was cut short (stop the one that should not run)", first.1, first.2, first.0.display(), second.1, second.2, second.0.display())]
    Two {
        /// The one found first.
        first: (PathBuf, u32, String),
        /// The other.
        second: (PathBuf, u32, String),
    },
    /// A candidate failed its checks.
    #[error("nothing answers at {HANDOFF_SOCKET}, and asking {} failed: {source}", path.display())]
    Failed {
        /// The candidate.
        path: PathBuf,
        /// What failed.
        #[source]
        source: SessionError,
    },
}

/// The one `handoff.sock.<digits>` in `runtime_dir` that answers as the
/// service user (`uid`), when nothing answers at `handoff.sock`: its path
/// and session; `Ok(None)` when none answers. An error when it is not
/// clear which serves: more than one answers, one fails its checks, or
/// there are too many to look at. Reads only; the next switch publishes
/// its own broker's socket as usual.
pub fn find(
    runtime_dir: &Path,
    uid: Option<nix::unistd::Uid>,
) -> Result<Option<(PathBuf, Session)>, Unclear> {
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
            return Err(Unclear::TooMany(runtime_dir.to_path_buf()));
        }
        let path = runtime_dir.join(&name);
        match open_session(&path, uid) {
            Ok(None) => {}
            Ok(Some(session)) => {
                if let Some((first, other)) = &found {
                    return Err(Unclear::Two {
                        first: (first.clone(), other.pid, other.version.clone()),
                        second: (path, session.pid, session.version),
                    });
                }
                found = Some((path, session));
            }
            Err(source) => return Err(Unclear::Failed { path, source }),
        }
    }
    Ok(found)
}
