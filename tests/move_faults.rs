//! A move that fails before "go" loses nothing: the new broker killed in
//! the middle of its import (20 runs at random points), a new broker that
//! imports no schema of the old one (the connections drain, and the
//! report says why), an import over the new broker's bound, the helper
//! killed in the middle of a move (the new broker exits with it). After
//! each, every client is still connected with its session, and the state
//! file says what runs. And wills: a moved client's will is not fired by
//! the move, and fires once, from the new broker, when its connection
//! dies. Runs as root: brokers run as a real non-root test user.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use emqx_load::{Load, LoadOptions, Report};
use emqx_testkit::BrokerHost;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Persistent sessions and live clients, no storm.
fn load(b: &BrokerHost) -> Load {
    Load::start(
        LoadOptions::moving(b.addrs())
            .over_tls(b.load_tls())
            .over_websocket(b.load_ws()),
    )
}

/// Nothing refused, reset, timed out or closed; no session and no
/// message lost.
fn untouched(report: &Report) {
    let t = report.table();
    assert!(report.connections_clean(), "{t}");
    assert_eq!(report.closed_by_broker, 0, "{t}");
    assert_eq!(report.sessions.lost, 0, "{t}");
    assert!(report.messages_clean(), "{t}");
    for class in ["session-qos1", "session-qos2", "live-qos1"] {
        assert_eq!(report.class(class).lost, 0, "{class}: {t}");
    }
}

/// A host running 5.0.0, with 5.0.2 (whose `etc/refbroker.toml` is
/// `toml`) unpacked.
fn host_with(toml: &str) -> BrokerHost {
    let b = BrokerHost::running_tls("");
    b.drop_broker_release("5.0.2", true, toml);
    assert_eq!(b.emqx(&["unpack", "5.0.2"]).2, Some(0));
    b
}

/// The first broker of this host other than `old`, within 5 s.
fn new_broker(b: &BrokerHost, old: u32) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some((pid, _, _)) = b.host_processes().into_iter().find(|p| p.0 != old as i32) {
            return pid;
        }
        assert!(Instant::now() < deadline, "no new broker started");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_new_broker_killed_during_its_import_loses_nothing() {
    // Its import takes 300 ms: the kills land before READY, in the settle
    // time, or while the old broker is frozen and sending.
    let b = host_with("import_delay_ms = 300\n");
    let before = b.host.state();
    let old = b.broker_pid();
    let load = load(&b);
    std::thread::sleep(Duration::from_millis(500));
    let mut seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    println!("seed {seed}");
    let mut kills = Vec::new();
    for run in 0..20 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let at = Duration::from_millis((seed >> 33) % 450);
        let upgrade = b
            .command()
            .args(["upgrade", "5.0.2"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let new = new_broker(&b, old);
        std::thread::sleep(at);
        let _ = kill(Pid::from_raw(new), Signal::SIGKILL);
        let out = upgrade.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(5),
            "run {run}, kill at {at:?}: {err}"
        );
        assert_eq!(b.host.state(), before, "run {run}: state changed");
        assert_eq!(b.broker_pid(), old, "run {run}");
        kills.push((at.as_millis(), err.trim().to_string()));
    }
    assert_eq!(b.version_seen(0), "5.0.0");
    // The next switch moves everything.
    let (_, err, code) = b.emqx(&["upgrade", "5.0.2"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("connections moved with their sessions"),
        "{err}"
    );
    let report = load.stop();
    for (at, err) in &kills {
        println!("killed at {at:>3} ms: {err}");
    }
    println!("{}", report.table());
    untouched(&report);
}

#[test]
fn a_new_broker_that_imports_nothing_gets_the_connections_drained_and_says_why() {
    let b = host_with("imports = []\n");
    let load = load(&b);
    std::thread::sleep(Duration::from_millis(300));
    let (out, err, code) = b.emqx(&["upgrade", "5.0.2"]);
    let report = load.stop();
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        err.contains(
            "connections draining (5.0.2 cannot import refbroker/5, refbroker/4, refbroker/3, refbroker/2, refbroker/1)"
        ),
        "{err}"
    );
    assert!(!err.contains("moved"), "{err}");
    // Drained, not refused: new connections go to the new broker.
    assert!(report.connections_clean(), "{}", report.table());
    assert_eq!(b.version_seen(0), "5.0.2");
}

#[test]
fn an_import_over_its_bound_fails_the_switch_and_the_old_broker_serves_on() {
    let b = host_with("import_max_conns = 1\n");
    let before = b.host.state();
    let old = b.broker_pid();
    let load = load(&b);
    std::thread::sleep(Duration::from_millis(300));
    let (out, err, code) = b.emqx(&["upgrade", "5.0.2"]);
    std::thread::sleep(Duration::from_millis(300));
    let report = load.stop();
    assert_eq!(code, Some(5), "{out}{err}");
    assert!(
        err.starts_with("ERROR: switch to 5.0.2 failed: ")
            && err.contains("connections, more than 1"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(b.host.state(), before);
    assert_eq!(b.broker_pid(), old);
    assert_eq!(b.version_seen(0), "5.0.0");
    untouched(&report);
}

#[test]
fn the_helper_killed_in_the_middle_of_a_move_leaves_the_old_broker_serving() {
    // A second-long import: the helper dies while the brokers move.
    let b = host_with("import_delay_ms = 1000\n");
    let old = b.broker_pid();
    let load = load(&b);
    std::thread::sleep(Duration::from_millis(300));
    let mut upgrade = b
        .command()
        .args(["upgrade", "5.0.2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let new = new_broker(&b, old);
    // READY at once, 0.2 s settle, then the import: kill inside it.
    std::thread::sleep(Duration::from_millis(600));
    kill(Pid::from_raw(upgrade.id() as i32), Signal::SIGKILL).unwrap();
    let _ = upgrade.wait();
    // Before the go the lease holds: the new broker exits with its
    // helper, and the old one thaws with every session.
    let deadline = Instant::now() + Duration::from_secs(10);
    while emqx_handoff::alive(new as u32) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!emqx_handoff::alive(new as u32), "the new broker stayed");
    assert!(emqx_handoff::alive(old), "the old broker went");
    // The next command that takes the lock drops the record, and the
    // next upgrade moves everything.
    let (out, err, code) = b.emqx(&["install", "5.0.2"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        err.contains("dropped the switch from 5.0.0 to 5.0.2"),
        "{err}"
    );
    // Then it switches, moving every session.
    assert!(
        err.contains("connections moved with their sessions"),
        "{err}"
    );
    assert_ne!(b.broker_pid(), old, "{err}");
    assert_eq!(b.version_seen(0), "5.0.2");
    let report = load.stop();
    println!("{out}{err}\n{}", report.table());
    untouched(&report);
}

/// Lines of a child's stdout, as they come.
fn lines_of(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let out = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

#[test]
fn a_moved_will_fires_once_from_the_new_broker_when_its_connection_dies() {
    let b = BrokerHost::running_tls("");
    let port = b.ports[0].to_string();
    let sub = |args: &[&str]| {
        Command::new("stdbuf")
            .args(["-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p", &port])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("mosquitto_sub: {e} (scripts/test installs it)"))
    };
    let mut witness = sub(&["-i", "witness", "-t", "wills/#", "-v", "-q", "1", "-d"]);
    let seen = lines_of(&mut witness);
    let mut holder = sub(&[
        "-i",
        "holder",
        "-t",
        "nothing",
        "-d",
        "--will-topic",
        "wills/holder",
        "--will-payload",
        "gone",
        "--will-qos",
        "1",
    ]);
    let held = lines_of(&mut holder);
    for (who, rx) in [("witness", &seen), ("holder", &held)] {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let line = rx.recv_timeout(Duration::from_secs(5)).unwrap();
            if line.contains("received SUBACK") {
                break;
            }
            assert!(Instant::now() < deadline, "{who} never subscribed");
        }
    }
    let old = b.broker_pid();
    let (_, err, code) = b.emqx(&["upgrade", "5.0.1"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains(" 2 connections moved with their sessions"),
        "{err}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while emqx_handoff::alive(old) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!emqx_handoff::alive(old), "the old broker still runs");
    // The move fired no will.
    let wills = |rx: &mpsc::Receiver<String>, wait: Duration| {
        let mut n = 0;
        let end = Instant::now() + wait;
        while let Ok(line) = rx.recv_timeout(end.saturating_duration_since(Instant::now())) {
            if line == "wills/holder gone" {
                n += 1;
            }
        }
        n
    };
    assert_eq!(
        wills(&seen, Duration::from_millis(700)),
        0,
        "a will at the move"
    );
    // The holder's connection dies without DISCONNECT: its will, once,
    // from the only broker left (5.0.1).
    holder.kill().unwrap();
    let _ = holder.wait();
    assert_eq!(wills(&seen, Duration::from_secs(2)), 1, "the will once");
    let _ = witness.kill();
    let _ = witness.wait();
    assert_eq!(b.version_seen(0), "5.0.1");
}

/// A release of protocol 1 (from before session moves), either side of a
/// switch: the connections drain, as they did then, the report says why,
/// and nothing is refused; a rollback to it works.
#[test]
fn a_protocol_1_release_on_either_side_drains_and_says_why() {
    let b = host_with("handoff_protocol = 1\n");
    let load = load(&b);
    std::thread::sleep(Duration::from_millis(300));
    let reason = "(5.0.2 speaks handoff protocol 1 (sessions move from protocol 2))";
    for (args, now) in [
        (["upgrade", "5.0.2"], "5.0.2"),
        (["downgrade", "5.0.0"], "5.0.0"),
    ] {
        let (out, err, code) = b.emqx(&args);
        assert_eq!(code, Some(0), "{args:?}: {out}{err}");
        assert!(!err.contains("moved"), "{args:?}: {err}");
        // The load's clients are connected: some drain, and why is said.
        assert!(err.contains(reason), "{args:?}: {err}");
        assert_eq!(b.version_seen(0), now);
    }
    let report = load.stop();
    assert!(report.connections_clean(), "{}", report.table());
}
