//! Starting the new release with the inherited listeners, and waiting for
//! its `READY=1` on a private notify socket.

use std::fs;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use emqx_handoff::env::{self, FIRST_FD};
use emqx_handoff::faults::step;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::notify::Notify;
use super::runtime::RuntimeDir;
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
    /// Names passed from the helper's environment besides the allowlist.
    pub pass_env: &'a [String],
    /// The service user.
    pub user: &'a ServiceUser,
    /// A log file the shim opens as the service user, if configured.
    pub log: Option<&'a Path>,
    /// Where the broker's output goes otherwise (see [`output_sink`]).
    pub sink: OwnedFd,
    /// Whether the shim connects a journal stream instead of the sink.
    pub journal: bool,
    /// The write end of the pipe the shim reports its own failure on.
    pub report: OwnedFd,
    /// The notify socket path.
    pub notify: &'a Path,
    /// The read end of the lease pipe, placed right after the listeners.
    pub lease: BorrowedFd<'a>,
    /// The new broker's end of the brokers' channel (protocol 2), placed
    /// right after the lease.
    pub moving: Option<BorrowedFd<'a>>,
}

/// Where the new broker's stdout and stderr go without `broker_log`: the
/// helper's stderr when that is the unit's journal stream (`ExecReload`,
/// running as the service user); otherwise `/dev/null`, and the shim
/// connects a journal stream of its own once it is the service user (so
/// journald stamps the broker's lines with the broker's credentials, not
/// root's). Never the administrator's terminal or pipe, which the broker
/// outlives. Returns the sink and whether the shim should try the journal.
fn output_sink() -> std::io::Result<(OwnedFd, bool)> {
    if crate::systemd::stderr_is_journal() {
        return Ok((std::io::stderr().as_fd().try_clone_to_owned()?, false));
    }
    let null = fs::OpenOptions::new().write(true).open("/dev/null")?;
    Ok((null.into(), true))
}

/// Where a new broker's own lines went ([`output_sink`]), for an error
/// that sends the operator there.
fn output_named(log: Option<&Path>, journal: bool) -> String {
    match log {
        Some(path) => path.display().to_string(),
        None if journal => "the journal (journalctl -t emqx)".into(),
        None => "the unit's journal (journalctl -u emqx)".into(),
    }
}

/// The names a new broker gets from the helper's environment, whatever
/// the configuration adds (`pass_env`): nothing of root's session (no
/// `HOME`, credentials, tokens, `SSH_*`), only what configures a broker.
pub fn allowed_env(name: &str, pass_env: &[String]) -> bool {
    const NAMES: [&str; 5] = ["PATH", "LANG", "LANGUAGE", "TZ", "TZDIR"];
    const SYSTEMD: [&str; 6] = [
        "RUNTIME_DIRECTORY",
        "STATE_DIRECTORY",
        "CACHE_DIRECTORY",
        "LOGS_DIRECTORY",
        "CONFIGURATION_DIRECTORY",
        "CREDENTIALS_DIRECTORY",
    ];
    NAMES.contains(&name)
        || SYSTEMD.contains(&name)
        || name.starts_with("LC_")
        || (name.starts_with(env::BROKER_PREFIX) && !name.starts_with(env::HELPER_PREFIX))
        || pass_env.iter().any(|p| p == name)
}

/// Clears `cmd`'s environment to [`allowed_env`] of this process's, plus
/// the service user's `HOME`, `USER` and `LOGNAME`; with `systemd`, also
/// what systemd hands a unit's main process (`NOTIFY_SOCKET`, `LISTEN_*`,
/// `JOURNAL_STREAM`, `INVOCATION_ID`, `WATCHDOG_*`), for `start`.
pub fn clean_env(cmd: &mut Command, pass_env: &[String], user: &ServiceUser, systemd: bool) {
    const UNIT: [&str; 8] = [
        env::NOTIFY_SOCKET,
        env::LISTEN_FDS,
        env::LISTEN_PID,
        env::LISTEN_FDNAMES,
        "JOURNAL_STREAM",
        "INVOCATION_ID",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
    ];
    cmd.env_clear()
        .envs(std::env::vars_os().filter(|(k, _)| {
            k.to_str()
                .is_some_and(|k| allowed_env(k, pass_env) || (systemd && UNIT.contains(&k)))
        }))
        .env("HOME", &user.home)
        .env("USER", &user.name)
        .env("LOGNAME", &user.name);
    // Fault tests: the brokers this process starts get their own steps
    // armed, never the helper's.
    if emqx_handoff::faults::ENABLED {
        if let Some(points) = std::env::var_os(emqx_handoff::faults::BROKER_FAILPOINTS_ENV) {
            cmd.env("FAILPOINTS", points);
        }
    }
    if std::env::var_os("PATH").is_none() {
        cmd.env("PATH", DEFAULT_PATH);
    }
}

/// Starts the release through the exec shim (`emqx-relup __exec`), which
/// sets `LISTEN_PID` to its own pid, drops privileges and opens the log
/// as the service user before exec'ing the entry command: no window where
/// `LISTEN_PID` is wrong. The new broker gets a session of its own (no
/// terminal, no signal to the admin's process group reaches it) and an
/// environment cleared to [`allowed_env`].
fn spawn(launch: Launch<'_>) -> std::io::Result<Child> {
    let exe = std::env::current_exe()?;
    let program = launch.tree.join(&launch.entry[0]);
    let mut cmd = Command::new(exe);
    cmd.arg(super::shim::SHIM)
        .arg("--user")
        .arg(&launch.user.name);
    if let Some(log) = launch.log {
        cmd.arg("--log").arg(log);
    } else if launch.journal {
        cmd.arg("--journal");
    }
    cmd.arg("--")
        .arg(program)
        .args(&launch.entry[1..])
        .current_dir(launch.tree);
    clean_env(&mut cmd, launch.pass_env, launch.user, false);
    cmd.env(env::NOTIFY_SOCKET, launch.notify)
        .stdin(Stdio::null())
        .stdout(Stdio::from(launch.sink))
        .stderr(Stdio::from(launch.report));
    // No listeners (a restart): no LISTEN_* at all, so the broker binds.
    if !launch.listeners.is_empty() {
        let names: Vec<&str> = launch.listeners.iter().map(|(n, _)| n.as_str()).collect();
        cmd.env(env::LISTEN_FDS, names.len().to_string())
            .env(env::LISTEN_FDNAMES, names.join(":"));
    }
    for (k, v) in &launch.env {
        cmd.env(k, v);
    }
    let mut raw: Vec<RawFd> = launch
        .listeners
        .iter()
        .map(|(_, fd)| fd.as_raw_fd())
        .collect();
    if raw.len() > emqx_handoff::MAX_FDS {
        return Err(std::io::Error::other("too many listeners"));
    }
    // The lease goes after the listeners: LISTEN_FDS does not count it.
    let listeners = raw.len();
    cmd.env(env::LEASE_ENV, env::lease_fd(listeners).to_string());
    raw.push(launch.lease.as_raw_fd());
    if let Some(moving) = launch.moving {
        cmd.env(env::MOVE_FD_ENV, env::move_fd(listeners).to_string());
        raw.push(moving.as_raw_fd());
    }
    let n = raw.len() as RawFd;
    // SAFETY: the closure runs between fork and exec and only makes
    // async-signal-safe setsid/fcntl/dup2 calls on fds this process owns,
    // without allocating (`raw` was built before the fork).
    unsafe {
        cmd.pre_exec(move || {
            // A session of its own: the admin's Ctrl-C, SIGHUP or
            // `timeout` on the helper's group never reaches the broker.
            if nix::libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Move every fd above the target range first, so that placing
            // them at 3.. cannot overwrite one not yet placed.
            let mut moved = [0 as RawFd; 64];
            for (i, fd) in raw.iter().enumerate() {
                moved[i] = nix::libc::fcntl(*fd, nix::libc::F_DUPFD_CLOEXEC, FIRST_FD + n);
                if moved[i] < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (i, fd) in moved.iter().take(raw.len()).enumerate() {
                // dup2 clears close-on-exec on the target: these survive exec.
                if nix::libc::dup2(*fd, FIRST_FD + i as RawFd) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // Nothing else the helper holds reaches the broker: an fd the
            // helper inherited without close-on-exec (a caller's lock or
            // log) is closed at exec.
            close_from(FIRST_FD + n)
        });
    }
    cmd.spawn()
}

/// Marks every fd from `first` up close-on-exec (`close_range`), so that
/// only 0-2 and what was placed below `first` survive exec.
/// Async-signal-safe: one syscall.
pub fn close_from(first: RawFd) -> std::io::Result<()> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets a flag on fds
    // of this process; no memory is passed.
    let r = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_close_range,
            first as nix::libc::c_uint,
            nix::libc::c_uint::MAX,
            nix::libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// `PATH` for a broker when the helper has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

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
    mut env: Vec<(String, String)>,
    old: Option<BorrowedFd<'_>>,
    moving: Option<BorrowedFd<'_>>,
) -> Result<Launched, NotReady> {
    let runtime = RuntimeDir::open(&config.runtime_dir)
        .map_err(|e| NotReady::Io(format!("opening {}: {e}", config.runtime_dir.display())))?;
    let notify = Notify::bind(runtime, user).map_err(|e| {
        NotReady::Io(format!(
            "binding a notify socket in {}: {e}",
            config.runtime_dir.display()
        ))
    })?;
    let notify_path = notify.path();
    let (lease_read, lease_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| NotReady::Io(format!("creating the lease pipe: {e}")))?;
    let (report_read, report_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
        .map_err(|e| NotReady::Io(format!("creating the report pipe: {e}")))?;
    let (sink, journal) =
        output_sink().map_err(|e| NotReady::Io(format!("opening the broker's output: {e}")))?;
    // The unit's own stream, inherited: it is still the broker's stderr.
    if !journal && config.broker_log.is_none() {
        if let Ok(stream) = std::env::var("JOURNAL_STREAM") {
            env.push(("JOURNAL_STREAM".into(), stream));
        }
    }
    // The shim's end must block: it writes its one failure line.
    let flags = fcntl(&report_write, FcntlArg::F_GETFL).map_err(|e| NotReady::Io(e.to_string()))?;
    fcntl(
        &report_write,
        FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) & !OFlag::O_NONBLOCK),
    )
    .map_err(|e| NotReady::Io(e.to_string()))?;
    let launch = Launch {
        lease: lease_read.as_fd(),
        tree,
        entry: &config.entry,
        listeners,
        env,
        pass_env: &config.pass_env,
        user,
        log: config.broker_log.as_deref(),
        sink,
        journal,
        report: report_write,
        notify: &notify_path,
        moving,
    };
    let spawned_at = Instant::now();
    let mut child =
        spawn(launch).map_err(|e| NotReady::Io(format!("starting {}: {e}", tree.display())))?;
    drop(lease_read);
    let ready = step("helper::spawned")
        .map_err(|e| NotReady::Io(e.to_string()))
        .and_then(|()| {
            wait_ready(
                &notify,
                &mut child,
                old,
                config.ready_timeout(),
                config.settle(),
            )
        })
        .and_then(|start| {
            step("helper::settled")
                .map(|()| start)
                .map_err(|e| NotReady::Io(e.to_string()))
        });
    match ready {
        Ok(start) => Ok(Launched {
            child,
            lease: Lease(lease_write),
            spawned_at,
            start,
        }),
        Err(why) => {
            stop_group(&mut child);
            Err(match why {
                NotReady::Exited(how) => match shim_report(&report_read) {
                    Some(line) => NotReady::Exited(format!("{how} ({line})")),
                    None => NotReady::Exited(format!(
                        "{how} (its own line says why, in {})",
                        output_named(config.broker_log.as_deref(), journal)
                    )),
                },
                other => other,
            })
        }
    }
}

/// Kills a new broker that will not be used, with every process of its
/// session (it leads its own process group, so its children go too), and
/// reaps it, waiting at most [`REAP_WAIT`].
pub fn stop_group(child: &mut Child) {
    let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
    let _ = child.kill();
    let deadline = Instant::now() + REAP_WAIT;
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// How long a killed new broker may take to be reaped.
const REAP_WAIT: Duration = Duration::from_secs(5);

/// The line the exec shim wrote before it failed (it could not become the
/// service user, open the log, or exec), if any: printable, one line,
/// at most 300 characters.
fn shim_report(pipe: &OwnedFd) -> Option<String> {
    let mut buf = [0u8; 1024];
    let n = nix::unistd::read(pipe, &mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf[..n]);
    let line: String = text
        .lines()
        .next()?
        .chars()
        .filter(|c| !c.is_control())
        .take(300)
        .collect();
    (!line.is_empty()).then_some(line)
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
                    step("helper::ready").map_err(|e| NotReady::Io(e.to_string()))?;
                    ready_at = Some(Instant::now());
                }
            }
        }
    }
}
