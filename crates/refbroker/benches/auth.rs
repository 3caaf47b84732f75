//! Authentication's cost (issue #25), printed, not asserted: the CONNECT
//! rate (CONNECT, CONNACK, close, from 4 threads) of the reference broker
//! and of Debian's mosquitto, each without files and with the same
//! password file (BENCH_AUTH_USERS users, `mosquitto_passwd -U`: `$7$`,
//! 101 iterations) and ACL; then a brute-force loop of wrong passwords
//! against each, with another client's round trip before and during it.
//! Ratios are against the baseline measured in the same run.
//! BENCH_AUTH_CONNECTS sets the CONNECTs per thread (default 2,000).

use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use emqx_testkit::bins::bin;
use emqx_testkit::clients::{mosquitto_password_file, Mosquitto};
use emqx_testkit::mqtt_client::MqttClient;
use emqx_testkit::refbroker::RefBroker;

const THREADS: usize = 4;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A password file of `n` users `userK` / `pwK` and an ACL letting each
/// use `rt/#`, in `dir`.
fn files(dir: &Path, n: usize) -> (String, String) {
    let pw = dir.join("passwd");
    let users: Vec<(String, String)> = (0..n)
        .map(|k| (format!("user{k}"), format!("pw{k}")))
        .collect();
    mosquitto_password_file(&pw, &users);
    let acl = dir.join("acl");
    fs::write(&acl, "pattern readwrite rt/%u/#\n").unwrap();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    let s = |p: &Path| p.to_string_lossy().into_owned();
    (s(&pw), s(&acl))
}

/// CONNECTs per second from [`THREADS`] threads, `per_thread` each, as
/// users spread over `users` (anonymous when `users` is 0).
fn connect_rate(addr: SocketAddr, per_thread: usize, users: usize) -> f64 {
    let t = Instant::now();
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            thread::spawn(move || {
                for k in 0..per_thread {
                    let u = (t * per_thread + k) * 7919 % users.max(1);
                    let (user, pw) = (format!("user{u}"), format!("pw{u}"));
                    let id = format!("c{t}-{k}");
                    let (_c, code) = MqttClient::login(addr, &id, &user, &pw);
                    assert_eq!(code, 0, "{user}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    (THREADS * per_thread) as f64 / t.elapsed().as_secs_f64()
}

/// Wrong passwords per second from 3 threads for 2 s, and the median
/// and worst QoS 0 round trip of user0 meanwhile (ms), and before.
fn brute_force(addr: SocketAddr) -> (f64, [f64; 4]) {
    let (mut c, code) = MqttClient::login(addr, "good", "user0", "pw0");
    assert_eq!(code, 0);
    assert_eq!(c.subscribe(&[("rt/user0/x", 0)]), vec![0]);
    let mut round_trips = |n: usize| {
        let mut ms: Vec<f64> = (0..n)
            .map(|_| {
                let t = Instant::now();
                c.publish("rt/user0/x", b"x", 0, false);
                c.message();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        ms.sort_by(f64::total_cmp);
        [ms[n / 2], ms[n - 1]]
    };
    let before = round_trips(200);
    let stop = Arc::new(AtomicBool::new(false));
    let attempts = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..3)
        .map(|t| {
            let (stop, attempts) = (stop.clone(), attempts.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let (_, code) = MqttClient::login(addr, &format!("bf{t}"), "user0", "guess");
                    assert_eq!(code, 5);
                    attempts.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    let during = round_trips(1000);
    let wait = Duration::from_secs(2).saturating_sub(t.elapsed());
    thread::sleep(wait);
    let secs = t.elapsed().as_secs_f64() + 0.2;
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let rate = attempts.load(Ordering::Relaxed) as f64 / secs;
    (rate, [before[0], before[1], during[0], during[1]])
}

fn main() {
    let users = env_or("BENCH_AUTH_USERS", 10_000);
    let per_thread = env_or("BENCH_AUTH_CONNECTS", 2_000);
    let dir = tempfile::tempdir().unwrap();
    let (pw, acl) = files(dir.path(), users);
    let version = ("EMQX_BROKER_VERSION", "5.0.0");
    let ours_plain = RefBroker::start_with(&bin("emqx-refbroker"), &[version]);
    let ours = RefBroker::start_with(
        &bin("emqx-refbroker"),
        &[
            version,
            ("EMQX_AUTH_PASSWORD_FILE", &pw),
            ("EMQX_AUTH_ACL_FILE", &acl),
        ],
    );
    let theirs_plain = Mosquitto::start();
    let theirs = Mosquitto::start_configured(
        None,
        &format!("allow_anonymous false\npassword_file {pw}\nacl_file {acl}\n"),
    );
    println!(
        "CONNECT, CONNACK, close from {THREADS} threads, {} each; password file of {users} users ($7$, 101 iterations) and an ACL",
        per_thread
    );
    let rows = [
        ("reference broker", ours_plain.mqtt(), ours.mqtt()),
        ("mosquitto 2.0.11", theirs_plain.addr, theirs.addr),
    ];
    let mut with_files = Vec::new();
    for (name, plain, auth) in rows {
        let base = connect_rate(plain, per_thread, 0);
        let rate = connect_rate(auth, per_thread, users);
        println!(
            "{name:<17} {base:>8.0}/s anonymous, {rate:>8.0}/s with the files ({:.2}x)",
            rate / base
        );
        with_files.push(rate);
    }
    println!(
        "with the files, reference broker / mosquitto: {:.2}x",
        with_files[0] / with_files[1]
    );
    println!("a brute-force loop (3 threads of wrong passwords) against user0, while user0 publishes to itself");
    for (name, addr) in [
        ("reference broker", ours.mqtt()),
        ("mosquitto 2.0.11", theirs.addr),
    ] {
        let (rate, [b50, bmax, d50, dmax]) = brute_force(addr);
        println!(
            "{name:<17} {rate:>7.0} refused/s; round trip median {b50:.3} ms (worst {bmax:.3}) before, {d50:.3} ms (worst {dmax:.3}) during"
        );
    }
}
