//! A broker a switch started and never published: its helper died past
//! the commit under systemd (the unit's helper keeps no record), so it
//! answers at `handoff.sock.N`, not at `handoff.sock`.

use std::path::{Path, PathBuf};

use emqx_handoff::client::Session;
use emqx_handoff::env::HANDOFF_SOCKET;

use super::open_session;

/// The most `handoff.sock.*` entries looked at.
const MAX_CANDIDATES: usize = 16;

/// The one `handoff.sock.<digits>` in `runtime_dir` that answers as the
/// service user (`uid`), when nothing answers at `handoff.sock`: its path
/// and session. None when none answers, or more than one does (then it
/// is not clear which serves). Reads only; the next switch publishes its
/// own broker's socket as usual.
pub fn find(runtime_dir: &Path, uid: Option<nix::unistd::Uid>) -> Option<(PathBuf, Session)> {
    let prefix = format!("{HANDOFF_SOCKET}.");
    let mut found = None;
    let entries = std::fs::read_dir(runtime_dir).ok()?;
    for entry in entries.flatten().take(MAX_CANDIDATES * 4) {
        let name = entry.file_name();
        let Some(suffix) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        if suffix.is_empty() || !suffix.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let path = runtime_dir.join(&name);
        if let Ok(Some(session)) = open_session(&path, uid) {
            if found.is_some() {
                return None;
            }
            found = Some((path, session));
        }
    }
    found
}
