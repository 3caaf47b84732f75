//! Bad and big authentication input (issue #25): a password or ACL file
//! that cannot be used stops the broker's start with exit 2 and one line
//! naming the file and the line (never a password or a hash), before any
//! listener is bound; a 100,000-user file made by `mosquitto_passwd -U`
//! starts and logs everyone in (start time and the cost of a login
//! printed against a broker without files); a brute-force loop of wrong
//! passwords is refused while another client is still served, beside
//! Debian's mosquitto with the same file (figures printed, not asserted).

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use emqx_testkit::bins::bin;
use emqx_testkit::broker::free_port;
use emqx_testkit::clients::{mosquitto_password_file, Mosquitto};
use emqx_testkit::mqtt_client::MqttClient;
use emqx_testkit::refbroker::RefBroker;

/// `mosquitto_passwd -c -b f alice secret`.
const ALICE: &str = "alice:$7$101$zQASycP1WEtpj+Fd$HYPBt1jaZLpgAkWMOwQAEjvZeW0T7FKG4ZsAzoBF/8PFcmX9r2Xx/M7KUcEpsJ43eMQSc5xIZoeTjft/e+ttLQ==";

/// `emqx-refbroker foreground` with `env`: exit code, stderr, and whether
/// anything listened on its port meanwhile.
fn start_refused(env: &[(&str, &str)]) -> (Option<i32>, String, bool) {
    let port = free_port();
    let run = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("timeout");
    cmd.args(["10"])
        .arg(bin("emqx-refbroker"))
        .arg("foreground")
        .env("EMQX_BROKER_VERSION", "5.0.0")
        .env("EMQX_LISTENERS", format!("mqtt=127.0.0.1:{port}"))
        .env("EMQX_RUNTIME_DIR", run.path())
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let listened = TcpStream::connect(("127.0.0.1", port)).is_ok();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code(), err, listened)
}

#[test]
fn a_file_that_cannot_be_used_stops_the_start_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    };
    let pw = "EMQX_AUTH_PASSWORD_FILE";
    let acl = "EMQX_AUTH_ACL_FILE";
    let good = file("good", &format!("{ALICE}\n"));
    let secret_hash = "zQASycP1WEtpj+Fd";
    let cases: Vec<(Vec<(&str, String)>, String)> = vec![
        (
            vec![(pw, file("nosep", "# users\nalice\n"))],
            "line 2".into(),
        ),
        (
            vec![(pw, file("plain", &format!("{ALICE}\ncarol:plaintext\n")))],
            "line 2: unknown password hash type".into(),
        ),
        (
            vec![(pw, file("badb64", "bob:$7$101$!!!!$abc\n"))],
            "line 1".into(),
        ),
        (
            vec![(pw, file("zero", "bob:$7$0$zQASycP1WEtpj+Fd$HYPB\n"))],
            "line 1".into(),
        ),
        (
            vec![
                (pw, good.clone()),
                (acl, file("acl1", "user alice\ntopic sometimes a/b\n")),
            ],
            "line 2".into(),
        ),
        (
            vec![(pw, good.clone()), (acl, file("acl2", "topic read a+\n"))],
            "line 1".into(),
        ),
        (
            vec![(pw, dir.path().join("missing").to_string_lossy().into())],
            "missing".into(),
        ),
        (
            vec![(pw, dir.path().to_string_lossy().into())],
            "not a regular file".into(),
        ),
        (
            vec![(pw, good.clone()), ("EMQX_ALLOW_ANONYMOUS", "maybe".into())],
            "EMQX_ALLOW_ANONYMOUS".into(),
        ),
    ];
    for (env, want) in &cases {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (code, err, listened) = start_refused(&env);
        assert_eq!(code, Some(2), "{env:?}: {err}");
        assert!(!listened, "{env:?}: it listened");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{env:?}: one line: {err}");
        assert!(lines[0].starts_with("emqx-refbroker: ERROR: "), "{err}");
        assert!(
            lines[0].contains(want.as_str()),
            "{env:?}: {want:?} in {err}"
        );
        assert!(
            !err.contains("plaintext") && !err.contains(secret_hash),
            "{err}"
        );
        println!("{}", lines[0]);
    }
}

/// A password file of `n` users `userK` with password `pwK`, hashed by
/// `mosquitto_passwd -U` (its default, PBKDF2-SHA512 `$7$`).
fn many_users(dir: &Path, n: usize) -> String {
    let path = dir.join("passwd");
    let users: Vec<(String, String)> = (0..n)
        .map(|k| (format!("user{k}"), format!("pw{k}")))
        .collect();
    mosquitto_password_file(&path, &users);
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    path.to_string_lossy().into_owned()
}

/// Starts a broker with `env` and how long it took to accept.
fn timed_start(env: &[(&str, &str)]) -> (RefBroker, Duration) {
    let t = Instant::now();
    let b = RefBroker::start_with(&bin("emqx-refbroker"), env);
    (b, t.elapsed())
}

/// Mean time of a login (CONNECT to CONNACK, then close) as `who(k)`.
fn login_cost(addr: SocketAddr, n: usize, who: impl Fn(usize) -> (String, String)) -> Duration {
    let t = Instant::now();
    for k in 0..n {
        let (user, pw) = who(k);
        let (_c, code) = MqttClient::login(addr, &format!("c{k}"), &user, &pw);
        assert_eq!(code, 0, "{user}");
    }
    t.elapsed() / n as u32
}

#[test]
fn a_hundred_thousand_users_start_and_log_in() {
    let dir = tempfile::tempdir().unwrap();
    let n = 100_000;
    let path = many_users(dir.path(), n);
    let version = [("EMQX_BROKER_VERSION", "5.0.0")];
    let (plain, plain_start) = timed_start(&version);
    let (b, start) = timed_start(&[version[0], ("EMQX_AUTH_PASSWORD_FILE", &path)]);
    let log = b.log();
    assert!(log.contains("authentication: 100000 users"), "{log}");
    // First, middle, last and spread users, each with its own password.
    let spread = |k: usize| {
        let u = [0, n / 2, n - 1][k % 3].max((k * 7919) % n);
        (format!("user{u}"), format!("pw{u}"))
    };
    let logins = 300;
    let with_files = login_cost(b.mqtt(), logins, spread);
    let without = login_cost(plain.mqtt(), logins, |k| (format!("any{k}"), "x".into()));
    let (_, wrong) = MqttClient::login(b.mqtt(), "w", &format!("user{}", n - 1), "pw0");
    assert_eq!(wrong, 5);
    let (_, unknown) = MqttClient::login(b.mqtt(), "u", "user100000", "pw100000");
    assert_eq!(unknown, 5);
    let read = log
        .lines()
        .find(|l| l.contains("authentication:"))
        .unwrap_or("");
    println!(
        "100,000-user password file ({} bytes): {read}",
        fs::metadata(&path).unwrap().len()
    );
    println!(
        "start until listening: {:.0} ms with it, {:.0} ms without ({:.2}x)",
        start.as_secs_f64() * 1e3,
        plain_start.as_secs_f64() * 1e3,
        start.as_secs_f64() / plain_start.as_secs_f64()
    );
    println!(
        "login (CONNECT to CONNACK, {logins} each): {:.3} ms with it, {:.3} ms anonymous without ({:.2}x)",
        with_files.as_secs_f64() * 1e3,
        without.as_secs_f64() * 1e3,
        with_files.as_secs_f64() / without.as_secs_f64()
    );
}

/// While threads of wrong-password CONNECTs hammer `addr`, a client of
/// `good` publishes to itself at QoS 0 and times each round trip: the
/// attempts made, and the client's median and worst round trip before
/// and during the loop.
fn brute_force(addr: SocketAddr, good: (&str, &str)) -> (u64, [Duration; 4]) {
    let (mut c, code) = MqttClient::login(addr, "good", good.0, good.1);
    assert_eq!(code, 0);
    assert_eq!(c.subscribe(&[("rt/good", 0)]), vec![0]);
    let mut round_trips = |n: usize| {
        let mut times: Vec<Duration> = (0..n)
            .map(|_| {
                let t = Instant::now();
                c.publish("rt/good", b"x", 0, false);
                assert_eq!(c.message().0, "rt/good");
                t.elapsed()
            })
            .collect();
        times.sort();
        [times[n / 2], times[n - 1]]
    };
    let before = round_trips(50);
    let stop = Arc::new(AtomicBool::new(false));
    let attempts = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..3)
        .map(|t| {
            let (stop, attempts, user) = (stop.clone(), attempts.clone(), good.0.to_string());
            thread::spawn(move || {
                let mut k = 0;
                while !stop.load(Ordering::Relaxed) {
                    let (_, code) =
                        MqttClient::login(addr, &format!("bf{t}"), &user, &format!("guess{k}"));
                    assert_eq!(code, 5, "a wrong password got in");
                    attempts.fetch_add(1, Ordering::Relaxed);
                    k += 1;
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    let during = round_trips(200);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    (
        attempts.load(Ordering::Relaxed),
        [before[0], before[1], during[0], during[1]],
    )
}

#[test]
fn a_brute_force_loop_is_refused_and_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("passwd");
    fs::write(&pw, format!("{ALICE}\n")).unwrap();
    let acl = dir.path().join("acl");
    fs::write(&acl, "user alice\ntopic readwrite rt/#\n").unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let (pw_s, acl_s) = (pw.to_string_lossy(), acl.to_string_lossy());
    let ours = RefBroker::start_with(
        &bin("emqx-refbroker"),
        &[
            ("EMQX_BROKER_VERSION", "5.0.0"),
            ("EMQX_AUTH_PASSWORD_FILE", &pw_s),
            ("EMQX_AUTH_ACL_FILE", &acl_s),
        ],
    );
    let theirs = Mosquitto::start_configured(
        None,
        &format!("allow_anonymous false\npassword_file {pw_s}\nacl_file {acl_s}\n"),
    );
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for (name, addr) in [
        ("reference broker", ours.mqtt()),
        ("mosquitto", theirs.addr),
    ] {
        let t = Instant::now();
        let (attempts, [b50, bmax, d50, dmax]) = brute_force(addr, ("alice", "secret"));
        let secs = t.elapsed().as_secs_f64();
        println!(
            "{name:<16}: {attempts} wrong passwords refused ({:.0}/s); alice's round trip median {:.2} ms, worst {:.2} ms before, {:.2} / {:.2} ms during",
            attempts as f64 / secs,
            ms(b50),
            ms(bmax),
            ms(d50),
            ms(dmax)
        );
        assert!(attempts > 0);
    }
}
