//! What moving established connections costs on the broker side (issue
//! #12), measured in one process: `emqx-load --idle N` holds N MQTT
//! connections to broker A; then A freezes and sends its state through a
//! SOCK_SEQPACKET pair (`emqx_handoff::transfer`) while broker B imports
//! it, then go. Printed: the pause (freeze until B has imported: when the
//! old broker says go), when each side finished, the go, per session, and
//! whether every connection lived on (the harness saw no close). N is at
//! most 9,000 here: this process holds each server socket and the one
//! received (2N fds of the 20,000 it may hold).
//! BENCH_MOVE=1000,5000 picks the sizes. Each size runs three times:
//! without authentication (`auth no`); with a password file
//! (`mosquitto_passwd`, `$7$`) that every client logs in with, both
//! brokers reading the same file (`same`: B checks each moved login
//! again at import, but the entry's fingerprint spares it the hashing);
//! and B reading the same users re-hashed with new salts (`new`: every
//! login hashed again, the worst case). The added pause per session is
//! the difference to `no` (issue #25).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use emqx_auth::Policy;
use emqx_handoff::broker::Service;
use emqx_handoff::transfer::{Bounds, Receiver};
use emqx_handoff::Channel;
use emqx_refbroker::broker::Auth;
use emqx_refbroker::RefBroker;

/// The newest schema: it carries each login.
const SCHEMA: &str = "refbroker/4";

/// The load's password (emqx-load's default users, `load-0` to `load-3`).
const PASSWORD: &str = "emqx-load";

fn broker(v: &str, passwords: Option<&Path>) -> RefBroker {
    let policy = passwords.map_or_else(Policy::default, |p| {
        Policy::load_files(Some(p), None, None).unwrap()
    });
    let auth = Auth {
        policy,
        cert_as_username: false,
    };
    RefBroker::start(v, 1000, Default::default(), Default::default(), auth).unwrap()
}

/// A password file of the load's users, made by `mosquitto_passwd`.
fn password_file(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let users: Vec<(String, String)> = (0..4)
        .map(|k| (format!("load-{k}"), PASSWORD.into()))
        .collect();
    emqx_testkit::clients::mosquitto_password_file(&path, &users);
    path
}

/// How the brokers authenticate: not at all, or A with the first file
/// and B with the second.
type Files<'a> = Option<(&'a Path, &'a Path)>;

fn run(n: usize, files: Files<'_>) {
    let passwords = files.map(|f| f.0);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let a = broker("5.0.0", passwords);
    let mut load = Command::new(emqx_testkit::bins::bin("emqx-load"));
    if passwords.is_some() {
        load.args(["--password", PASSWORD]);
    }
    let load = load
        .args(["--addr", &addr.to_string(), "--idle", &n.to_string()])
        .args([
            "--persistent",
            "0",
            "--sessions",
            "0",
            "--storm",
            "0",
            "--json",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..n {
        let (stream, _) = l.accept().unwrap();
        a.serve("mqtt", stream);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while a.connections() < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    let b = broker("5.0.1", files.map(|f| f.1));
    let (pa, pb) = Channel::pair().unwrap();
    pb.set_timeout(Duration::from_secs(10)).unwrap();
    let bounds = Bounds {
        max_conns: 20_000,
        max_bytes: 1 << 30,
    };
    let t0 = Instant::now();
    // The two sides run at once, as in two processes: the importer takes
    // in a batch while the exporter encodes the next.
    let (exported, imported, t_export, t_import) = std::thread::scope(|s| {
        let exporting = s.spawn(|| {
            let e = a
                .export(&pa, SCHEMA, Instant::now() + Duration::from_secs(10))
                .unwrap();
            (e, t0.elapsed())
        });
        let mut rx = Receiver::begin(&pb, &bounds).unwrap();
        let imported = b.import(&mut rx).unwrap();
        let t_import = t0.elapsed();
        let (e, t_export) = exporting.join().unwrap();
        (e, imported, t_export, t_import)
    });
    // What the old broker does once `imported` comes: say go, then close.
    let pause = t0.elapsed();
    let gone = a.go();
    let t_go = t0.elapsed();
    b.thaw();
    std::thread::sleep(Duration::from_millis(500));
    let on_new = b.connections();
    let on_old = a.connections();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(load.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    );
    let out = load.wait_with_output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{:>5} {n:>6} {:>7} {imported:>8} {gone:>5} {:>9.1} {:>8.1} {:>7.1} {:>6.1} {:>10.2} {:>10} {:>9}",
        match files {
            None => "no",
            Some((a, b)) if a == b => "same",
            Some(_) => "new",
        },
        exported.conns,
        ms(pause),
        ms(t_export),
        ms(t_import),
        ms(t_go - pause),
        pause.as_secs_f64() * 1e6 / n as f64,
        format!("{}/{}", report["closed_by_broker"], b.closed_by_policy()),
        format!("{on_new}/{on_old}"),
    );
}

fn main() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
    let sizes: Vec<usize> = std::env::var("BENCH_MOVE")
        .unwrap_or_else(|_| "1000,5000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    println!("moving established connections between two event loops of one process");
    println!(
        "{:>5} {:>6} {:>7} {:>8} {:>5} {:>9} {:>8} {:>7} {:>6} {:>10} {:>10} {:>9}",
        "auth",
        "conns",
        "sent",
        "imported",
        "go",
        "pause ms",
        "exported",
        "imported",
        "go ms",
        "us/session",
        "closed/pol",
        "new/old"
    );
    let dir = tempfile::tempdir().unwrap();
    let first = password_file(dir.path(), "passwd");
    let rehashed = password_file(dir.path(), "passwd.new");
    for n in sizes {
        run(n, None);
        run(n, Some((&first, &first)));
        run(n, Some((&first, &rehashed)));
    }
}
