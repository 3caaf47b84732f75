//! Starting the new release with the inherited listeners, and waiting for
//! its `READY=1` on a private notify socket.

use std::fs::{self, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::config::Config;
use crate::privs::ServiceUser;

/// What to start and how.
struct Launch<'a> {
    /// The release tree.
    pub tree: &'a Path,
    /// Its entry command, relative to the tree.
    pub entry: &'a [String],
    /// The listeners, by name.
    pub listeners: &'a [(String, OwnedFd)],
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// The service user.
    pub user: &'a ServiceUser,
    /// Where its stdout and stderr go (inherited when `None`).
    pub log: Option<&'a Path>,
    /// The notify socket path.
    pub notify: &'a Path,
    /// The read end of the lease pipe, placed right after the listeners.
    pub lease: BorrowedFd<'a>,
}

/// The notify socket the new broker reports to.
struct Notify {
    socket: UnixDatagram,
    path: PathBuf,
}

impl Notify {
    /// Binds `path`, owned by the service user when we are root.
    fn bind(path: &Path, user: &ServiceUser) -> std::io::Result<Notify> {
        let _ = fs::remove_file(path);
        let socket = UnixDatagram::bind(path)?;
        if nix::unistd::Uid::effective().is_root() {
            nix::unistd::chown(path, Some(user.uid), Some(user.gid))?;
        }
        Ok(Notify {
            socket,
            path: path.to_path_buf(),
        })
    }
}

impl Drop for Notify {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Starts the release through the exec shim (`emqx-relup __exec`), which
/// sets `LISTEN_PID` to its own pid and drops privileges before exec'ing
/// the entry command: no window where `LISTEN_PID` is wrong.
fn spawn(launch: &Launch<'_>) -> std::io::Result<Child> {
    let exe = std::env::current_exe()?;
    let program = launch.tree.join(&launch.entry[0]);
    let mut cmd = Command::new(exe);
    cmd.arg(crate::cli::SHIM)
        .arg("--user")
        .arg(&launch.user.name)
        .arg("--")
        .arg(program)
        .args(&launch.entry[1..])
        .current_dir(launch.tree)
        .env("NOTIFY_SOCKET", launch.notify)
        .env_remove("LISTEN_PID")
        .stdin(Stdio::null());
    // No listeners (a restart): no LISTEN_* at all, so the broker binds.
    if !launch.listeners.is_empty() {
        let names: Vec<&str> = launch.listeners.iter().map(|(n, _)| n.as_str()).collect();
        cmd.env("LISTEN_FDS", names.len().to_string())
            .env("LISTEN_FDNAMES", names.join(":"));
    } else {
        cmd.env_remove("LISTEN_FDS").env_remove("LISTEN_FDNAMES");
    }
    for (k, v) in &launch.env {
        cmd.env(k, v);
    }
    if let Some(log) = launch.log {
        let file = OpenOptions::new().create(true).append(true).open(log)?;
        cmd.stdout(file.try_clone()?).stderr(file);
    }
    let mut raw: Vec<RawFd> = launch
        .listeners
        .iter()
        .map(|(_, fd)| fd.as_raw_fd())
        .collect();
    if raw.len() > crate::handoff::MAX_FDS {
        return Err(std::io::Error::other("too many listeners"));
    }
    // The lease goes after the listeners: LISTEN_FDS does not count it.
    cmd.env(LEASE_ENV, (3 + raw.len()).to_string());
    raw.push(launch.lease.as_raw_fd());
    let n = raw.len() as RawFd;
    // SAFETY: the closure runs between fork and exec and only makes
    // async-signal-safe fcntl/dup2 calls on fds this process owns, without
    // allocating (`raw` was built before the fork).
    unsafe {
        cmd.pre_exec(move || {
            // Move every fd above the target range first, so that placing
            // them at 3.. cannot overwrite one not yet placed.
            let mut moved = [0 as RawFd; 64];
            for (i, fd) in raw.iter().enumerate() {
                moved[i] = nix::libc::fcntl(*fd, nix::libc::F_DUPFD_CLOEXEC, 3 + n);
                if moved[i] < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (i, fd) in moved.iter().take(raw.len()).enumerate() {
                // dup2 clears close-on-exec on the target: these survive exec.
                if nix::libc::dup2(*fd, 3 + i as RawFd) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Why a new broker did not become ready.
#[derive(Debug)]
pub enum NotReady {
    /// It exited.
    Exited(String),
    /// The deadline passed.
    Timeout(Duration),
    /// The old broker went away meanwhile.
    OldGone,
    /// Polling failed.
    Io(String),
}

/// The environment variable naming the lease fd of a broker a switch starts.
pub const LEASE_ENV: &str = "EMQX_RELUP_LEASE_FD";

/// The helper's end of a new broker's lease: the broker exits if this end
/// closes (the helper died) before [`Lease::confirm`], so that a helper
/// killed mid-switch leaves no second broker serving the listeners.
pub struct Lease(OwnedFd);

impl Lease {
    /// The switch is about to be committed: from now on the broker stays
    /// whatever happens to the helper.
    pub fn confirm(self) -> std::io::Result<()> {
        let mut f = fs::File::from(self.0);
        std::io::Write::write_all(&mut f, b"c")
    }
}

/// A new broker that reported ready and stayed up through the settle time.
pub struct Launched {
    /// The process.
    pub child: Child,
    /// Its lease, to confirm once it is committed.
    pub lease: Lease,
    /// When it was spawned.
    pub spawned_at: Instant,
    /// From spawn to `READY=1`.
    pub start: Duration,
}

/// Starts the release (see [`spawn`]) with a private notify socket in the
/// runtime dir and waits for it to be ready; on any failure the new
/// process is killed. `old` is the old broker's session, watched for
/// hang-up.
pub fn launch(
    config: &Config,
    user: &ServiceUser,
    tree: &Path,
    listeners: &[(String, OwnedFd)],
    env: Vec<(String, String)>,
    old: Option<BorrowedFd<'_>>,
) -> Result<Launched, NotReady> {
    let notify_path = config
        .runtime_dir
        .join(format!("notify.{}.sock", std::process::id()));
    let notify = Notify::bind(&notify_path, user)
        .map_err(|e| NotReady::Io(format!("binding {}: {e}", notify_path.display())))?;
    let (lease_read, lease_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| NotReady::Io(format!("creating the lease pipe: {e}")))?;
    let launch = Launch {
        lease: lease_read.as_fd(),
        tree,
        entry: &config.entry,
        listeners,
        env,
        user,
        log: config.broker_log.as_deref(),
        notify: &notify_path,
    };
    let spawned_at = Instant::now();
    let mut child =
        spawn(&launch).map_err(|e| NotReady::Io(format!("starting {}: {e}", tree.display())))?;
    drop(lease_read);
    match wait_ready(
        &notify,
        &mut child,
        old,
        config.ready_timeout(),
        config.settle(),
    ) {
        Ok(start) => Ok(Launched {
            child,
            lease: Lease(lease_write),
            spawned_at,
            start,
        }),
        Err(why) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(why)
        }
    }
}

/// Waits for `READY=1` from `child` (and then `settle` more, checking that
/// it stays up), watching the old broker's session for hang-up.
fn wait_ready(
    notify: &Notify,
    child: &mut Child,
    old: Option<BorrowedFd<'_>>,
    timeout: Duration,
    settle: Duration,
) -> Result<Duration, NotReady> {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut ready_at = None;
    let mut buf = [0u8; 4096];
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let how = match (
                status.code(),
                std::os::unix::process::ExitStatusExt::signal(&status),
            ) {
                (Some(code), _) => format!("exited with code {code}"),
                (None, Some(sig)) => format!("was killed by signal {sig}"),
                _ => "exited".to_string(),
            };
            let when = if ready_at.is_some() {
                " after READY=1"
            } else {
                ""
            };
            return Err(NotReady::Exited(format!("{how}{when}")));
        }
        let now = Instant::now();
        if let Some(at) = ready_at {
            if now >= at + settle {
                return Ok(at - started);
            }
        } else if now >= deadline {
            return Err(NotReady::Timeout(timeout));
        }
        let mut fds = vec![PollFd::new(notify.socket.as_fd(), PollFlags::POLLIN)];
        if let Some(old) = old {
            fds.push(PollFd::new(old, PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::from(10u8)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(NotReady::Io(e.to_string())),
        }
        if fds
            .get(1)
            .and_then(|f| f.revents())
            .is_some_and(|r| !r.is_empty())
        {
            return Err(NotReady::OldGone);
        }
        if fds[0].any().unwrap_or(false) {
            if let Ok(n) = notify.socket.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]);
                if ready_at.is_none() && text.lines().any(|l| l == "READY=1") {
                    ready_at = Some(Instant::now());
                }
            }
        }
    }
}
