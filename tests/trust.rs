//! The root helper trusts nothing the service user can touch: a hostile
//! service user owns the runtime dir (and the log), plants links, FIFOs,
//! devices and a socket that never accepts, forges `broker.pid`; root's
//! files never change, no wrong process is signalled, and every command
//! returns within its bounds. Runs as root; the hostile acts run as the
//! real test user through `setpriv`.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use emqx_testkit::{BrokerHost, TEST_USER};

/// A command run as the test user (real, effective and saved ids, no
/// supplementary groups).
fn as_user(program: &str) -> Command {
    let u = nix::unistd::User::from_name(TEST_USER).unwrap().unwrap();
    let mut c = Command::new("setpriv");
    c.arg(format!("--reuid={}", u.uid))
        .arg(format!("--regid={}", u.gid))
        .arg("--clear-groups")
        .arg("--")
        .arg(program);
    c
}

/// Runs `sh -c SCRIPT` as the test user and insists it worked.
fn user_sh(script: &str) {
    let out = as_user("sh").args(["-c", script]).output().unwrap();
    assert!(
        out.status.success(),
        "as {TEST_USER}: {script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A root-owned 0600 file with known bytes, in a root-only folder.
struct Sentinel {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Sentinel {
    fn new() -> Sentinel {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o711)).unwrap();
        let path = dir.path().join("sentinel");
        fs::write(&path, b"root's secret\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        Sentinel { _dir: dir, path }
    }

    fn assert_untouched(&self) {
        let m = fs::symlink_metadata(&self.path).unwrap();
        assert_eq!((m.uid(), m.gid()), (0, 0), "the sentinel changed owner");
        assert_eq!(m.mode() & 0o7777, 0o600, "the sentinel changed mode");
        assert_eq!(fs::read(&self.path).unwrap(), b"root's secret\n");
    }
}

/// `emqx ARGS` with a bound; returns (stdout, stderr, code, took).
fn timed(b: &BrokerHost, args: &[&str]) -> (String, String, Option<i32>, Duration) {
    let began = Instant::now();
    let (out, err, code) = b.emqx(args);
    (out, err, code, began.elapsed())
}

#[test]
fn planted_links_fifos_devices_and_a_deaf_socket_change_nothing_of_root() {
    let sentinel = Sentinel::new();
    // The log lives in the service user's folder, as under the unit.
    let mut b = BrokerHost::new("ready_timeout_secs = 3\nbroker_log = \"RUN/broker.log\"\n");
    let run = b.runtime_dir();
    b.drop_broker_release("5.0.0", true, "");
    b.drop_broker_release("5.0.1", false, "");
    b.drop_broker_release("5.0.2", false, "");
    assert_eq!(b.emqx(&["install", "5.0.0"]).2, Some(0));
    b.start();
    let owner = fs::metadata(&run).unwrap().uid();
    assert_ne!(owner, 0, "the runtime dir belongs to the service user");
    let s = sentinel.path.display().to_string();
    let r = run.display().to_string();

    // The log is a link to root's file, then a FIFO without a reader: the
    // switch fails (the shim opens it as the service user, no follow, no
    // block), the old broker serves, the sentinel is untouched.
    user_sh(&format!("ln -s {s} {r}/broker.log"));
    let (_, err, code, took) = timed(&b, &["upgrade", "5.0.1"]);
    assert_eq!(code, Some(5), "{err}");
    assert!(err.contains("broker_log"), "{err}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    sentinel.assert_untouched();
    user_sh(&format!("rm {r}/broker.log && mkfifo {r}/broker.log"));
    let (_, err, code, took) = timed(&b, &["upgrade", "5.0.1"]);
    assert_eq!(code, Some(5), "{err}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_eq!(b.version_seen(0), "5.0.0");

    // broker.pid a link to /dev/zero, draining.pid a FIFO, the temp names
    // of older helpers FIFOs and links: the switch works and replaces
    // them; nothing blocks, nothing is read past a few bytes.
    user_sh(&format!(
        "rm {r}/broker.log && ln -sfn /dev/zero {r}/broker.pid && mkfifo {r}/draining.pid && for n in .draining.pid.tmp-1 .broker.pid.tmp-1; do mkfifo {r}/$n; done && ln -s {s} {r}/.RELEASES.tmp-1"
    ));
    let (_, err, code, took) = timed(&b, &["upgrade", "5.0.1"]);
    assert_eq!(code, Some(0), "{err}\n{}", b.log_text());
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_eq!(b.version_seen(0), "5.0.1");
    let pidfile = fs::symlink_metadata(run.join("broker.pid")).unwrap();
    assert!(pidfile.is_file(), "broker.pid was replaced by a file");
    sentinel.assert_untouched();

    // A socket of the service user's in place of handoff.sock that never
    // accepts, its backlog full: the command gives up within its bound.
    let deaf = as_user("/usr/bin/python3")
        .arg("-c")
        .arg(format!(
            "import os, socket, time\n\
             p = {:?}\n\
             os.rename(p, p + '.real')\n\
             s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)\n\
             s.bind(p)\n\
             s.listen(0)\n\
             kept = []\n\
             for _ in range(8):\n\
             \x20   c = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)\n\
             \x20   c.setblocking(False)\n\
             \x20   try:\n\
             \x20       c.connect(p)\n\
             \x20   except BlockingIOError:\n\
             \x20       break\n\
             \x20   kept.append(c)\n\
             print('ready', flush=True)\n\
             time.sleep(60)\n",
            run.join("handoff.sock").display().to_string()
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut deaf = KillOnDrop(deaf);
    wait_line(&mut deaf.0, "ready");
    let (_, err, code, took) = timed(&b, &["upgrade", "5.0.2"]);
    assert_eq!(code, Some(5), "{err}");
    assert!(err.contains("does not accept"), "{err}");
    assert!(took < Duration::from_secs(12), "{took:?}");
    drop(deaf);
    fs::rename(run.join("handoff.sock.real"), run.join("handoff.sock")).unwrap();
    // The lock was released: the next command takes it at once.
    let (_, err, code, _) = timed(&b, &["upgrade", "5.0.2"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(b.version_seen(0), "5.0.2");
    sentinel.assert_untouched();
    let lock = fs::metadata(b.host.store().join(".lock")).unwrap();
    assert_eq!(lock.mode() & 0o777, 0o600, "the store lock is root's only");
    b.kill_all();
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_line(child: &mut Child, want: &str) {
    use std::io::BufRead;
    let out = child.stdout.take().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(out).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), want);
}

/// The notify socket of a switch lives in a folder root made (0711), and
/// the socket inside is the service user's: never a name the service user
/// could have swapped. Seen during the settle time of a switch.
#[test]
fn the_notify_socket_lives_in_a_folder_only_its_maker_can_write() {
    let b = BrokerHost::running("settle_secs = 1.5\n");
    let run = b.runtime_dir();
    let mut switch = b.command().args(["upgrade", "5.0.1"]).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let folder = loop {
        let found = fs::read_dir(&run)
            .unwrap()
            .flatten()
            .find(|e| e.file_name().to_string_lossy().starts_with("notify."));
        if let Some(e) = found {
            break e.path();
        }
        assert!(Instant::now() < deadline, "no notify folder seen");
        std::thread::sleep(Duration::from_millis(5));
    };
    let m = fs::symlink_metadata(&folder).unwrap();
    assert!(m.is_dir());
    assert_eq!((m.uid(), m.mode() & 0o777), (0, 0o711));
    let sock = fs::symlink_metadata(folder.join("notify.sock")).unwrap();
    let user = nix::unistd::User::from_name(TEST_USER).unwrap().unwrap();
    assert_eq!(sock.uid(), user.uid.as_raw());
    assert!(switch.wait().unwrap().success());
    assert!(!folder.exists(), "the notify folder is removed");
}

fn start_time(pid: u32) -> String {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let (_, rest) = stat.rsplit_once(')').unwrap();
    rest.split_whitespace().nth(19).unwrap().to_string()
}

fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

/// `strategy = "restart"` signals only the recorded broker: a broker.pid
/// naming root's process, another user's, a reused pid, or PID 1 of a pid
/// namespace is refused with exit 5, the victim lives, the broker serves.
#[test]
fn the_restart_strategy_never_signals_a_process_that_is_not_the_broker() {
    let b = BrokerHost::running("strategy = \"restart\"\n");
    let run = b.runtime_dir();
    let broker = b.broker_pid();
    let spawn = |mut c: Command| KillOnDrop(c.stdin(Stdio::null()).spawn().unwrap());
    let mut root_sleep = Command::new("sleep");
    root_sleep.arg("300");
    let mut nobody = Command::new("setpriv");
    nobody.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "sleep",
        "300",
    ]);
    let mut ns_init = Command::new("unshare");
    ns_init.args(["--pid", "--fork", "sleep", "300"]);
    let victims = [spawn(root_sleep), spawn(nobody), spawn(ns_init)];
    std::thread::sleep(Duration::from_millis(200));
    let ns_sleep = child_of(victims[2].0.id()).expect("unshare's child");
    let mut claims: Vec<(u32, String)> = vec![
        (victims[0].0.id(), start_time(victims[0].0.id())),
        (victims[1].0.id(), start_time(victims[1].0.id())),
        (ns_sleep, start_time(ns_sleep)),
        // The broker's own pid, but another start time: a reused pid.
        (
            broker,
            (start_time(broker).parse::<u64>().unwrap() + 7).to_string(),
        ),
    ];
    claims.push((1, start_time(1)));
    for (pid, start) in claims {
        fs::write(run.join("broker.pid"), format!("{pid} {start} 5.0.0\n")).unwrap();
        let (_, err, code, took) = timed(&b, &["upgrade", "5.0.1"]);
        assert_eq!(code, Some(5), "pid {pid}: {err}");
        assert!(err.contains("nothing was stopped"), "{err}");
        assert!(took < Duration::from_secs(5), "{took:?}");
        assert!(alive(pid), "pid {pid} was killed");
        assert!(alive(broker), "the broker was stopped");
    }
    for v in &victims {
        assert!(alive(v.0.id()));
    }
    assert_eq!(b.version_seen(0), "5.0.0");
    // The genuine record still works.
    fs::write(
        run.join("broker.pid"),
        format!("{broker} {} 5.0.0\n", start_time(broker)),
    )
    .unwrap();
    let (_, err, code, _) = timed(&b, &["upgrade", "5.0.1"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(b.version_seen(0), "5.0.1");
}

fn child_of(parent: u32) -> Option<u32> {
    let text = fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// The new broker gets only the allowlisted environment, no terminal or
/// pipe of the admin's, and a session of its own.
#[test]
fn the_new_broker_inherits_nothing_of_roots_session() {
    let b = BrokerHost::running("pass_env = [\"HTTP_PROXY\"]\n");
    b.drop_broker_release("5.0.2", false, "");
    // Without broker_log: the broker's output must not be the admin's pipe,
    // or `output()` below would wait for as long as the broker lives.
    let conf = b.host.path().join("relup.toml");
    let text: String = fs::read_to_string(&conf)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("broker_log"))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(&conf, text).unwrap();
    // Run as an admin's shell would: umask 077 (a hardened root), and an
    // fd left open without close-on-exec (flock(1), `exec 7>>log`).
    let leaked_fd = b.host.path().join("admin-audit.log");
    let script = format!(
        "umask 077; exec 7>>{}; exec {} upgrade 5.0.1",
        leaked_fd.display(),
        b.host.path().join("bin/emqx").display()
    );
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &script]);
    for (k, v) in b.command().get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.env("AWS_SECRET_ACCESS_KEY", "leak")
        .env("VAULT_TOKEN", "leak")
        .env("HOME", "/root")
        .env("SSH_AUTH_SOCK", "/tmp/agent")
        .env("HTTP_PROXY", "http://proxy:3128")
        .env("EMQX_NODE__COOKIE", "cookie")
        .stdin(Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let began = Instant::now();
    let out = run_bounded(cmd, Duration::from_secs(30));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(began.elapsed() < Duration::from_secs(30));
    let pid = b.broker_pid();
    for fd in fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
        let target = fs::read_link(fd.path()).unwrap_or_default();
        assert_ne!(target, leaked_fd, "the admin's fd reached the broker");
    }
    let environ = fs::read(format!("/proc/{pid}/environ")).unwrap();
    let names: Vec<String> = environ
        .split(|c| *c == 0)
        .filter(|v| !v.is_empty())
        .map(|v| {
            let v = String::from_utf8_lossy(v);
            v.split('=').next().unwrap_or("").to_string()
        })
        .collect();
    for leaked in ["AWS_SECRET_ACCESS_KEY", "VAULT_TOKEN", "SSH_AUTH_SOCK"] {
        assert!(
            !names.iter().any(|n| n == leaked),
            "{leaked} leaked: {names:?}"
        );
    }
    let allowed = |n: &str| {
        [
            "PATH",
            "HOME",
            "USER",
            "LOGNAME",
            "NOTIFY_SOCKET",
            "HTTP_PROXY",
            "LANG",
            "TZ",
        ]
        .contains(&n)
            || n.starts_with("EMQX_")
            || n.starts_with("LISTEN_")
            || n.starts_with("LC_")
            || n == "JOURNAL_STREAM"
    };
    for n in &names {
        assert!(allowed(n), "{n} is not in the allowlist: {names:?}");
    }
    assert!(names.iter().any(|n| n == "HTTP_PROXY"), "pass_env passes");
    assert!(names.iter().any(|n| n == "EMQX_NODE__COOKIE"));
    let text = String::from_utf8_lossy(&environ);
    assert!(!text.contains("HOME=/root"), "HOME is the service user's");
    // Its own session, no controlling terminal, stdin /dev/null, and its
    // stdout/stderr not a pipe of the admin's.
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let (_, rest) = stat.rsplit_once(')').unwrap();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let (pgrp, session, tty) = (f[2], f[3], f[4]);
    assert_eq!(session, pid.to_string(), "a session of its own");
    assert_eq!(pgrp, pid.to_string());
    assert_eq!(tty, "0", "no controlling terminal");
    for fd in [0, 1, 2] {
        let target = fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap();
        assert!(
            !target.display().to_string().starts_with("pipe:"),
            "fd {fd} is {}",
            target.display()
        );
    }
    // A pipeline reading to the end returns while the broker lives.
    let script = format!(
        "{} upgrade 5.0.2 | tail -1",
        b.host.path().join("bin/emqx").display()
    );
    let mut piped = Command::new("sh");
    piped.args(["-c", &script]).stdin(Stdio::null());
    for (k, v) in b.command().get_envs() {
        match v {
            Some(v) => piped.env(k, v),
            None => piped.env_remove(k),
        };
    }
    let out = run_bounded(piped, Duration::from_secs(30));
    assert!(out.status.success());
    assert_eq!(b.version_seen(0), "5.0.2");
    assert!(alive(b.broker_pid()));
}

/// Runs `cmd` to the end of its output, failing (not hanging) past `bound`.
fn run_bounded(mut cmd: Command, bound: Duration) -> std::process::Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(bound) {
        Ok(out) => out.unwrap(),
        Err(_) => panic!("still running after {bound:?}: something holds its output open"),
    }
}

/// A release a live process runs from is never uninstalled, whatever the
/// state says: here a broker of the old release left running beside the
/// new one (as a killed switch could leave it).
#[test]
fn uninstall_refuses_a_release_a_live_process_runs_from() {
    let b = BrokerHost::running("");
    assert_eq!(b.emqx(&["upgrade", "5.0.1"]).2, Some(0));
    let tree = b.host.store().join("5.0.0");
    let elsewhere = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let orphan = Command::new(tree.join("bin/emqx"))
        .current_dir(&tree)
        .env("EMQX_LISTENERS", format!("mqtt=127.0.0.1:{port}"))
        .env("EMQX_RUNTIME_DIR", elsewhere.path())
        .env_remove("LISTEN_FDS")
        .env_remove("NOTIFY_SOCKET")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let orphan = KillOnDrop(orphan);
    let before = b.host.state();
    let (_, err, code) = b.emqx(&["uninstall", "5.0.0"]);
    assert_eq!(code, Some(3), "{err}");
    assert_eq!(
        err.trim(),
        format!(
            "ERROR: Uninstall failed: Release 5.0.0 is in use by pid {}, which runs from its tree; switch away and let it finish draining first.",
            orphan.0.id()
        )
    );
    assert_eq!(b.host.state(), before);
    assert!(tree.join("bin/emqx").exists());
    drop(orphan);
    let (_, err, code) = b.emqx(&["uninstall", "5.0.0"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!tree.exists());
}
