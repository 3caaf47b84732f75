//! Direct switches as root while a process of the service user watches the
//! runtime dir (inotify) and swaps every new entry for a symlink to a
//! root-owned 0600 sentinel: the sentinel's owner, mode and bytes never
//! change, every command returns within its bounds, the lock is released,
//! and the helper's peak RSS stays small. `TRUST_SWITCHES` sets the count
//! (default 200). Runs as root, alone in its test binary (the RSS figure is
//! that of this process's children).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use emqx_testkit::{BrokerHost, TEST_USER};

#[test]
fn switches_under_a_service_user_that_swaps_every_new_entry_for_a_link() {
    let switches: usize = std::env::var("TRUST_SWITCHES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    let secret = tempfile::tempdir().unwrap();
    fs::set_permissions(secret.path(), fs::Permissions::from_mode(0o711)).unwrap();
    let sentinel = secret.path().join("sentinel");
    fs::write(&sentinel, b"root's secret\n").unwrap();
    fs::set_permissions(&sentinel, fs::Permissions::from_mode(0o600)).unwrap();
    let untouched = || {
        let m = fs::symlink_metadata(&sentinel).unwrap();
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (0, 0, 0o600));
        assert_eq!(fs::read(&sentinel).unwrap(), b"root's secret\n");
    };

    let mut b = BrokerHost::new(
        "ready_timeout_secs = 0.5\nsettle_secs = 0.05\nlock_timeout_secs = 5\nbroker_log = \"RUN/broker.log\"\n",
    );
    let run = b.runtime_dir();
    b.drop_broker_release("5.0.0", true, "");
    b.drop_broker_release("5.0.1", false, "");
    assert_eq!(b.emqx(&["install", "5.0.0"]).2, Some(0));
    b.start();
    assert_eq!(b.emqx(&["unpack", "5.0.1"]).2, Some(0));

    // The hostile watcher: every entry created or moved into the runtime
    // dir is moved aside and replaced by a link to the sentinel. First it
    // spares the handoff sockets, so that switches go on and every other
    // entry a switch makes (notify folders, record temp files, the log) is
    // attacked at each; then it takes everything.
    let user = nix::unistd::User::from_name(TEST_USER).unwrap().unwrap();
    let watch = |spare: &str| {
        let script = format!(
            "d={run}; s={sentinel}; inotifywait -m -q -e create -e moved_to --format %f \"$d\" | \
             while IFS= read -r f; do case \"$f\" in .gone.*{spare}) continue;; esac; \
             mv -f \"$d/$f\" \"$d/.gone.$(date +%s%N)\" 2>/dev/null && ln -s \"$s\" \"$d/$f\" 2>/dev/null; done",
            run = run.display(),
            sentinel = sentinel.display()
        );
        let child = Command::new("setpriv")
            .arg(format!("--reuid={}", user.uid))
            .arg(format!("--regid={}", user.gid))
            .args(["--clear-groups", "--", "sh", "-c", &script])
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("setpriv and inotifywait (inotify-tools) run");
        std::thread::sleep(Duration::from_millis(300));
        child
    };
    let stop = |mut w: std::process::Child| {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(w.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = w.wait();
    };

    let bound = Duration::from_secs(5 + 5 + 1); // hello + connect, ready, slack
    let mut codes = std::collections::BTreeMap::new();
    let mut slowest = Duration::ZERO;
    for (phase, spare) in [
        ("spares the sockets", "|handoff.sock*"),
        ("takes everything", ""),
    ] {
        let watcher = watch(spare);
        for i in 0..switches / 2 {
            let target = if i % 2 == 0 { "5.0.1" } else { "5.0.0" };
            let began = Instant::now();
            let (_, err, code) = b.emqx(&["install", target]);
            let took = began.elapsed();
            slowest = slowest.max(took);
            assert!(took < bound, "{phase}, switch {i} took {took:?}: {err}");
            assert!(
                matches!(code, Some(0) | Some(3) | Some(5)),
                "{phase}, switch {i}: {code:?} {err}"
            );
            let seen = codes
                .entry((phase, code.unwrap_or(-1)))
                .or_insert((0, String::new()));
            seen.0 += 1;
            if seen.1.is_empty() {
                seen.1 = err.lines().last().unwrap_or("").to_string();
            }
            if i % 20 == 0 {
                untouched();
            }
        }
        stop(watcher);
    }
    untouched();
    // The lock is free: a command that takes it does so at once.
    let began = Instant::now();
    let (_, err, code) = b.emqx(&["uninstall", "5.0.9"]);
    assert!(began.elapsed() < Duration::from_secs(2), "{err}");
    assert_ne!(code, Some(6), "the lock is still held: {err}");
    let usage =
        nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).unwrap();
    let peak_kib = usage.max_rss();
    println!(
        "{switches} switches under a swapping service user (count, last stderr line of the first): {codes:#?}\nslowest {:.2} s, helper peak RSS {} KiB",
        slowest.as_secs_f64(),
        peak_kib
    );
    assert!(peak_kib < 64 * 1024, "peak RSS {peak_kib} KiB");
    b.kill_all();
}

use std::os::unix::process::CommandExt;
