//! Switching a running reference broker: under load, byte-exact transcripts,
//! failures that must leave the old broker serving, privileges of the new
//! broker, and the handoff socket's defences. Runs as root: brokers run as
//! a real non-root test user.

use std::collections::BTreeMap;
use std::fs;
use std::time::Duration;

use emqx_load::{Load, LoadOptions};
use emqx_testkit::{BrokerHost, TEST_USER};

fn load(b: &BrokerHost) -> Load {
    Load::start(
        LoadOptions::switching(b.addrs())
            .over_tls(b.load_tls())
            .over_websocket(b.load_ws()),
    )
}

fn versions(b: &BrokerHost) -> Vec<(String, String)> {
    b.host.versions()
}

fn pair(v: &str, s: &str) -> (String, String) {
    (v.to_string(), s.to_string())
}

#[test]
fn twenty_switches_under_load_refuse_nothing() {
    let b = BrokerHost::running_tls("");
    let load = load(&b);
    std::thread::sleep(Duration::from_millis(500));
    for i in 0..20 {
        let (target, other, args) = if i % 2 == 0 {
            ("5.0.1", "5.0.0", ["upgrade", "5.0.1"])
        } else {
            ("5.0.0", "5.0.1", ["downgrade", "5.0.0"])
        };
        let (out, err, code) = b.emqx(&args);
        assert_eq!(
            code,
            Some(0),
            "switch {i}: {out}{err}\nlog:\n{}",
            b.log_text()
        );
        assert!(
            out.ends_with(&format!(
                "Installed Release: {target}\nMade release permanent: \"{target}\"\n"
            )),
            "{out}"
        );
        // Connections already closing (a storm client's DISCONNECT) are
        // not moved: they finish closing on the old broker.
        assert!(
            err.contains("connections moved with their sessions (pause "),
            "switch {i}: {err}"
        );
        assert_eq!(versions(&b), {
            let mut v = vec![pair(target, "permanent"), pair(other, "old")];
            v.sort_by(|a, b| b.0.cmp(&a.0));
            v
        });
        assert_eq!(b.version_seen(0), target, "switch {i}: new clients on mqtt");
        assert_eq!(
            b.version_seen(1),
            target,
            "switch {i}: new clients on mqtt-alt"
        );
    }
    let report = load.stop();
    println!("{}", report.table());
    assert!(
        report.connections_clean(),
        "connections refused, reset or timed out:\n{}",
        report.table()
    );
    // A live client publishes to itself on one connection: nothing of it
    // may be lost however the brokers change.
    for class in ["live-qos0", "live-qos1", "live-qos2"] {
        let c = report.class(class);
        assert!(c.sent > 0 && c.lost == 0, "{class}:\n{}", report.table());
    }
    // Each switch moves every established connection with its session
    // (protocol 2): none is closed, no session lost, no message lost,
    // none twice at QoS 2, none out of order.
    assert_eq!(report.closed_by_broker, 0, "{}", report.table());
    assert_eq!(report.sessions.lost, 0, "{}", report.table());
    assert!(report.sessions.resumed > 0, "{}", report.table());
    for class in ["session-qos1", "session-qos2"] {
        let c = report.class(class);
        assert!(c.sent > 0, "{class}:\n{}", report.table());
        assert_eq!(
            c.lost + c.dup_beyond_qos + c.out_of_order,
            0,
            "{class}:\n{}",
            report.table()
        );
    }
    assert!(report.attempts > 100, "{}", report.table());
    let seen: BTreeMap<String, u64> = report.versions_seen.clone();
    assert!(
        seen.contains_key("5.0.0") && seen.contains_key("5.0.1"),
        "{seen:?}"
    );
}

#[test]
fn reference_transcripts_with_a_running_broker() {
    let b = BrokerHost::running("");
    let (out, _, code) = b.emqx(&["upgrade", "--no-permanent", "5.0.1"]);
    assert_eq!(code, Some(0));
    assert_eq!(
        out,
        "Release 5.0.1 not found, attempting to unpack releases/emqx-5.0.1.tar.gz\nUnpacked successfully: \"5.0.1\"\nInstalled Release: 5.0.1\n"
    );
    assert_eq!(b.version_seen(0), "5.0.1");
    assert_eq!(
        b.emqx(&["versions"]).0,
        "Installed versions:\n* 5.0.1 current\n* 5.0.0 permanent\n"
    );
    let (out, err, code) = b.emqx(&["install", "5.0.1"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "Release 5.0.1 is already installed and current, making permanent.\nMade release permanent: \"5.0.1\"\n");
    assert_eq!(b.version_seen(1), "5.0.1");
    assert_eq!(
        b.emqx(&["versions"]).0,
        "Installed versions:\n* 5.0.1 permanent\n* 5.0.0 old\n"
    );
    let (out, _, code) = b.emqx(&["downgrade", "5.0.0"]);
    assert_eq!(code, Some(0));
    assert_eq!(out, "Release 5.0.0 is marked old, switching to it.\nInstalled Release: 5.0.0\nMade release permanent: \"5.0.0\"\n");
    assert_eq!(b.version_seen(0), "5.0.0");
    let (out, _, code) = b.emqx(&["uninstall", "5.0.1"]);
    assert_eq!(code, Some(0));
    assert_eq!(
        out,
        "Release 5.0.1 is marked old, uninstalling it.\nUninstalled Release: 5.0.1\n"
    );
    assert_eq!(b.version_seen(0), "5.0.0");
}

#[test]
fn a_trial_release_reverts_on_start_and_reload_follows_the_state() {
    let mut b = BrokerHost::running("");
    assert_eq!(b.emqx(&["upgrade", "--no-permanent", "5.0.1"]).2, Some(0));
    assert_eq!(b.version_seen(0), "5.0.1");
    // The broker dies; start runs the permanent release again.
    b.kill_all();
    b.start();
    assert_eq!(b.version_seen(0), "5.0.0");
    assert_eq!(
        versions(&b),
        [pair("5.0.1", "unpacked"), pair("5.0.0", "permanent")]
    );
    // A reload of the running release: a fresh broker of it takes over.
    let before = b.broker_pid();
    let (out, _, code) = b.emqx(&["reload"]);
    assert_eq!(
        (out.as_str(), code),
        (
            "Reloaded release 5.0.0: a fresh broker took over the listeners.\n",
            Some(0)
        )
    );
    assert_ne!(b.broker_pid(), before);
    assert_eq!(b.version_seen(0), "5.0.0");
}

/// Runs a failing switch under load; the old broker must keep serving,
/// nothing refused, the state unchanged.
fn failing_switch(extra: &str, refbroker_toml: &str, expect: &str, crashes: bool) {
    let b = BrokerHost::running(extra);
    b.drop_broker_release("5.0.2", true, refbroker_toml);
    assert_eq!(b.emqx(&["unpack", "5.0.2"]).2, Some(0));
    let before = b.host.state();
    let load = load(&b);
    let (out, err, code) = b.emqx(&["upgrade", "5.0.2"]);
    let report = load.stop();
    assert_eq!(code, Some(5), "{out}{err}");
    assert!(
        err.starts_with("ERROR: switch to 5.0.2 failed: ") && err.contains(expect),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(b.host.state(), before, "state changed");
    assert_eq!(b.version_seen(0), "5.0.0", "the old broker serves");
    assert_eq!(report.refused, 0, "{}", report.table());
    assert_eq!(report.timed_out, 0, "{}", report.table());
    // A release that crashes after READY takes the connections it accepted
    // with it; every other failure touches no connection.
    if !crashes {
        assert_eq!(report.reset, 0, "{}", report.table());
    }
    // And a good release still switches afterwards.
    assert_eq!(b.emqx(&["upgrade", "5.0.1"]).2, Some(0));
    assert_eq!(b.version_seen(0), "5.0.1");
}

#[test]
fn a_release_that_exits_at_once_changes_nothing() {
    failing_switch(
        "",
        "fail = \"exit-at-once\"\n",
        "the new broker exited with code 3",
        false,
    );
}

#[test]
fn a_release_that_never_becomes_ready_is_stopped() {
    failing_switch(
        "ready_timeout_secs = 1.5\n",
        "fail = \"never-ready\"\n",
        "not ready within 1.5 s",
        false,
    );
}

#[test]
fn a_release_that_crashes_after_ready_is_caught_before_commit() {
    failing_switch(
        "settle_secs = 1.5\n",
        "fail = \"crash-after-ready\"\n",
        "after READY=1",
        true,
    );
}

#[test]
fn the_old_broker_killed_during_a_switch_is_reported_and_start_recovers() {
    let mut b = BrokerHost::running("");
    b.drop_broker_release("5.0.2", true, "ready_delay_ms = 2000\n");
    assert_eq!(b.emqx(&["unpack", "5.0.2"]).2, Some(0));
    let before = b.host.state();
    let old = b.broker_pid();
    let upgrade = b
        .command()
        .args(["upgrade", "5.0.2"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let out = upgrade.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(
        err.contains(&format!(
            "the running broker (pid {old}) exited during the switch"
        )),
        "{err}"
    );
    assert!(err.contains("emqx-relup start"), "{err}");
    assert_eq!(b.host.state(), before);
    b.kill_all();
    b.start();
    assert_eq!(b.version_seen(0), "5.0.0");
}

fn status_field(pid: u32, field: &str) -> String {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field}"))
        .trim()
        .to_string()
}

#[test]
fn the_new_broker_runs_as_the_service_user_without_capabilities() {
    let b = BrokerHost::running("");
    assert_eq!(b.emqx(&["upgrade", "5.0.1"]).2, Some(0));
    let pid = b.broker_pid();
    let uid = nix::unistd::User::from_name(TEST_USER)
        .unwrap()
        .unwrap()
        .uid
        .as_raw()
        .to_string();
    let uids: Vec<String> = status_field(pid, "Uid")
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(
        uids,
        [uid.clone(), uid.clone(), uid.clone(), uid],
        "real, effective, saved, fs uid"
    );
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(status_field(pid, set), "0000000000000000", "{set}");
    }
    assert_eq!(status_field(pid, "NoNewPrivs"), "1");
    // LISTEN_PID was the broker's own pid: it took both listeners by name.
    assert_eq!(b.version_seen(1), "5.0.1");
}

/// mosquitto's clients, which this project did not write, connecting in a
/// loop across switches: every one must succeed.
#[test]
fn mosquitto_clients_in_a_loop_across_switches() {
    for tool in ["mosquitto_pub", "mosquitto_sub"] {
        let found = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .unwrap();
        assert!(
            found.status.success(),
            "{tool} is missing: install mosquitto-clients (scripts/test does)"
        );
    }
    let b = BrokerHost::running("");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ports = b.ports;
    let looping = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut runs = 0;
            let mut failures = Vec::new();
            let mut seen = BTreeMap::<String, u32>::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let port = ports[runs % 2].to_string();
                let publish = std::process::Command::new("mosquitto_pub")
                    .args([
                        "-h",
                        "127.0.0.1",
                        "-p",
                        &port,
                        "-q",
                        "1",
                        "-t",
                        "test/mosquitto",
                        "-m",
                        "hello",
                    ])
                    .output()
                    .unwrap();
                let subscribe = std::process::Command::new("mosquitto_sub")
                    .args([
                        "-h",
                        "127.0.0.1",
                        "-p",
                        &port,
                        "-t",
                        "$SYS/broker/version",
                        "-C",
                        "1",
                        "-W",
                        "5",
                    ])
                    .output()
                    .unwrap();
                for out in [&publish, &subscribe] {
                    if !out.status.success() {
                        failures.push(String::from_utf8_lossy(&out.stderr).into_owned());
                    }
                }
                let version = String::from_utf8_lossy(&subscribe.stdout)
                    .trim()
                    .to_string();
                *seen.entry(version).or_default() += 1;
                runs += 1;
            }
            (runs, failures, seen)
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(b.emqx(&["upgrade", "5.0.1"]).2, Some(0));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(b.emqx(&["downgrade", "5.0.0"]).2, Some(0));
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (runs, failures, seen) = looping.join().unwrap();
    println!("{runs} mosquitto_pub + mosquitto_sub pairs; versions seen {seen:?}");
    assert!(
        failures.is_empty(),
        "{} of {runs} runs failed: {failures:?}",
        failures.len()
    );
    assert!(runs >= 10, "only {runs} runs");
    assert!(
        seen.contains_key("5.0.1") && seen.contains_key("5.0.0"),
        "{seen:?}"
    );
}

/// The fallback for brokers without a handoff socket: stop, then start.
/// It works, and its cost (refused connections) shows in the load report.
#[test]
fn the_restart_strategy_stops_and_starts() {
    let b = BrokerHost::running("strategy = \"restart\"\n");
    let old = b.broker_pid();
    let load = load(&b);
    std::thread::sleep(Duration::from_millis(300));
    let (out, err, code) = b.emqx(&["upgrade", "5.0.1"]);
    assert_eq!(code, Some(0), "{out}{err}\n{}", b.log_text());
    std::thread::sleep(Duration::from_millis(500));
    let report = load.stop();
    println!("restart strategy:\n{}", report.table());
    assert!(!emqx_relup_alive(old), "the old broker was stopped");
    assert_ne!(b.broker_pid(), old);
    assert_eq!(b.version_seen(0), "5.0.1");
    assert_eq!(
        versions(&b),
        [pair("5.0.1", "permanent"), pair("5.0.0", "old")]
    );
    assert!(
        report.closed_by_broker + report.closed_by_reset > 0,
        "the restart dropped the persistent clients"
    );
}

fn emqx_relup_alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

#[test]
fn without_systemd_the_switch_is_direct_and_says_so_with_v() {
    let b = BrokerHost::running("");
    let (out, err, code) = b.emqx(&["-v", "upgrade", "5.0.1"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.ends_with("Installed Release: 5.0.1\nMade release permanent: \"5.0.1\"\n"),
        "{out}"
    );
    // No system bus here (or no such unit on a host that has one).
    assert!(
        err.contains("switching directly (Handoff strategy)"),
        "{err}"
    );
    assert_eq!(b.version_seen(0), "5.0.1");
}
