//! A broker a switch started and never published: its helper died past
//! the commit under systemd (the unit's helper keeps no record), so it
//! answers at `handoff.sock.N`, not at `handoff.sock`. The look is
//! bounded as a whole, and removes the stale `handoff.sock.N` it passes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use emqx_handoff::client::Session;
use emqx_handoff::env::HANDOFF_SOCKET;
use emqx_handoff::SessionError;

use super::runtime::RuntimeDir;
use super::{open_session_within, HELLO_TIMEOUT};

/// The most `handoff.sock.<digits>` entries looked at (past this many the
/// answer is "unclear").
const MAX_CANDIDATES: usize = 16;

/// The whole look may take this long, however many candidates answer
/// slowly (one hello's timeout, not one per candidate).
const LOOK_BOUND: Duration = HELLO_TIMEOUT;

/// A socket nothing listens on that is at least this old is stale: no
/// broker takes that long from binding its handoff socket to listening.
const STALE_AGE: Duration = Duration::from_secs(60);

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
    /// The look's bound passed before every candidate was asked.
    #[error("nothing answers at {HANDOFF_SOCKET}, and the {HANDOFF_SOCKET}.* sockets in {} did not all answer within {:.0} s", .0.display(), LOOK_BOUND.as_secs_f64())]
    Slow(PathBuf),
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
/// clear which serves: more than one answers, one fails its checks, the
/// look takes longer than [`LOOK_BOUND`] in all, or there are too many to
/// look at. A stale candidate is removed (see [`remove_if_stale`]); the
/// next switch publishes its own broker's socket as usual.
pub fn find(
    runtime_dir: &Path,
    uid: Option<nix::unistd::Uid>,
) -> Result<Option<(PathBuf, Session)>, Unclear> {
    let prefix = format!("{HANDOFF_SOCKET}.");
    let Ok(entries) = std::fs::read_dir(runtime_dir) else {
        return Ok(None);
    };
    let deadline = Instant::now() + LOOK_BOUND;
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
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Unclear::Slow(runtime_dir.to_path_buf()));
        }
        match open_session_within(&path, uid, left) {
            Ok(None) => {
                if let Some(name) = name.to_str() {
                    remove_if_stale(runtime_dir, name, suffix);
                }
            }
            Ok(Some(session)) => {
                if let Some((first, other)) = &found {
                    return Err(Unclear::Two {
                        first: (first.clone(), other.pid, other.version.clone()),
                        second: (path, session.pid, session.version),
                    });
                }
                found = Some((path, session));
            }
            Err(SessionError::Channel(emqx_handoff::ChannelError::TimedOut))
            | Err(SessionError::NotAccepting { .. })
                if Instant::now() >= deadline =>
            {
                return Err(Unclear::Slow(runtime_dir.to_path_buf()))
            }
            Err(source) => return Err(Unclear::Failed { path, source }),
        }
    }
    Ok(found)
}

/// Removes `name` (`handoff.sock.<pid>`, which just refused a
/// connection) when it is stale: the helper whose pid names it is gone
/// (a live one may be starting its broker), it is at least
/// [`STALE_AGE`] old, no socket listens at its path (`/proc/net/unix`),
/// and it is still the same file (device, inode) right before it goes.
fn remove_if_stale(runtime_dir: &Path, name: &str, pid: &str) {
    if pid.parse::<u32>().is_ok_and(emqx_handoff::alive) {
        return;
    }
    let Ok(rt) = RuntimeDir::open(runtime_dir) else {
        return;
    };
    let stat =
        || nix::sys::stat::fstatat(rt.fd(), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).ok();
    let Some(before) = stat() else { return };
    let made = std::time::UNIX_EPOCH + Duration::from_secs(before.st_mtime.max(0) as u64);
    let old = SystemTime::now()
        .duration_since(made)
        .is_ok_and(|age| age >= STALE_AGE);
    if !old || listening(&rt.join(name)) {
        return;
    }
    let same = |s: nix::sys::stat::FileStat| (s.st_dev, s.st_ino) == (before.st_dev, before.st_ino);
    if stat().is_some_and(same) {
        rt.remove(name);
    }
}

/// Whether a unix socket listens at `path` (its flags in
/// `/proc/net/unix` have `__SO_ACCEPTCON`); when that cannot be read,
/// taken for listening.
fn listening(path: &Path) -> bool {
    const ACCEPTCON: u32 = 0x10000;
    let Ok(table) = std::fs::read_to_string("/proc/net/unix") else {
        return true;
    };
    let Some(path) = path.to_str() else {
        return true;
    };
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(7) == Some(&path)
            && fields
                .get(3)
                .and_then(|f| u32::from_str_radix(f, 16).ok())
                .is_some_and(|flags| flags & ACCEPTCON != 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use emqx_handoff::{Channel, Message};
    use nix::sys::socket::{bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType};
    use std::os::fd::{AsRawFd, OwnedFd};

    /// A seqpacket listener at `path`, as a broker's handoff socket.
    fn listener(path: &Path) -> OwnedFd {
        let fd = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        bind(
            fd.as_raw_fd(),
            &nix::sys::socket::UnixAddr::new(path).unwrap(),
        )
        .unwrap();
        listen(&fd, Backlog::new(8).unwrap()).unwrap();
        fd
    }

    /// A broker that answers its first hello after `delay`.
    fn slow_broker(fd: OwnedFd, delay: Duration) {
        std::thread::spawn(move || {
            let ch = Channel::new(nix::sys::socket::accept(&fd).unwrap());
            let _ = ch.recv();
            std::thread::sleep(delay);
            let _ = ch.send(&Message::hello("5.0.1"), &[]);
            std::thread::sleep(Duration::from_secs(10));
        });
    }

    #[test]
    fn the_look_is_bounded_as_a_whole() {
        let dir = tempfile::tempdir().unwrap();
        // Two brokers each answering after 3 s: one after the other they
        // would take 6 s; the look gives up at its bound.
        for n in [1, 2] {
            let path = dir.path().join(format!("{HANDOFF_SOCKET}.{n}"));
            slow_broker(listener(&path), Duration::from_secs(3));
        }
        let began = Instant::now();
        let r = find(dir.path(), None);
        let took = began.elapsed();
        assert!(matches!(r, Err(Unclear::Slow(_))), "{r:?}");
        assert!(took < LOOK_BOUND + Duration::from_millis(500), "{took:?}");
    }

    #[test]
    fn a_stale_socket_is_removed_and_a_fresh_or_live_one_kept() {
        let dir = tempfile::tempdir().unwrap();
        // Pids no process has (above the default pid_max's range in use).
        let stale_path = dir.path().join(format!("{HANDOFF_SOCKET}.4194301"));
        let fresh_path = dir.path().join(format!("{HANDOFF_SOCKET}.4194302"));
        // Bound, then closed: the file stays, nothing listens.
        drop(listener(&stale_path));
        drop(listener(&fresh_path));
        let old = nix::sys::time::TimeSpec::new(1_000_000, 0);
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &stale_path,
            &old,
            &old,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
        assert!(matches!(find(dir.path(), None), Ok(None)));
        assert!(!stale_path.exists(), "a stale socket stays");
        assert!(fresh_path.exists(), "a fresh one went");
    }
}
