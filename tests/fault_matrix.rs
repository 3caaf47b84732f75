//! The fault matrix, direct path: at every step of a switch where
//! `emqx_handoff::faults` injects (helper, old broker, new broker) and
//! for each action (kill, error, delay past the step's bound), one
//! upgrade under the load harness with persistent-session clients, then
//! the invariants of [`check`]. Prints the matrix as a table (step x
//! action -> outcome). Needs the `failpoints` feature (scripts/test builds
//! the tests with it); without it every test fails. Runs as root: brokers
//! run as a real non-root test user.

mod faults;

use faults::{Cell, Exception};

use std::time::{Duration, Instant};

use emqx_load::{Load, LoadOptions};
use emqx_testkit::BrokerHost;

/// Each release states a move bound of 1 s, so a delay of 1.5 s in a
/// broker is past it; the helper waits for the new broker 2 s.
const RELEASE_TOML: &str = "move_bound_ms = 1000\n";
const CONFIG: &str = "ready_timeout_secs = 2\n";

/// Runs one cell and checks its invariants; its line of the table.
fn run(cell: &Cell) -> String {
    let mut b = BrokerHost::new(CONFIG);
    b.with_tls();
    b.drop_broker_release("5.0.0", true, RELEASE_TOML);
    b.drop_broker_release("5.0.1", false, RELEASE_TOML);
    let (_, err, code) = b.emqx(&["install", "5.0.0"]);
    assert_eq!(code, Some(0), "{err}");
    // The old broker's steps are armed where it starts, no other's.
    let armed = cell.armed();
    let broker_env = [(emqx_handoff::faults::BROKER_FAILPOINTS_ENV, armed.as_str())];
    b.start_with(if cell.process() == "old" {
        &broker_env
    } else {
        &[]
    });
    let load = Load::start(
        LoadOptions::moving(b.addrs())
            .over_tls(b.load_tls())
            .over_websocket(b.load_ws()),
    );
    std::thread::sleep(Duration::from_millis(400));
    let mut upgrade = b.command();
    upgrade.args(["upgrade", "5.0.1"]);
    match cell.process() {
        "helper" => {
            upgrade.env("FAILPOINTS", &armed);
        }
        "new" => {
            upgrade.env(emqx_handoff::faults::BROKER_FAILPOINTS_ENV, &armed);
        }
        _ => {}
    }
    let out = upgrade.stdin(std::process::Stdio::null()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let exit = match (
        out.status.code(),
        std::os::unix::process::ExitStatusExt::signal(&out.status),
    ) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(6)) => "aborted".to_string(),
        (None, s) => format!("signal {s:?}"),
    };
    let ctx = format!("{cell}: {exit}: {stderr}");
    // An error is one line (and, with a broker running, a hint).
    if out.status.code().is_some_and(|c| c != 0) {
        assert!(stderr.lines().any(|l| l.starts_with("ERROR: ")), "{ctx}");
    }
    let outcome = check(&mut b, cell, &ctx);
    // The next switch succeeds and moves every session.
    let served = b.version_seen(0);
    let next = if served == "5.0.0" {
        ["upgrade", "5.0.1"]
    } else {
        ["downgrade", "5.0.0"]
    };
    let (_, err, code) = b.emqx(&next);
    assert_eq!(code, Some(0), "{ctx}\nnext switch: {err}");
    assert!(
        err.contains("connections moved with their sessions"),
        "{ctx}\nnext switch: {err}"
    );
    let after = if served == "5.0.0" { "5.0.1" } else { "5.0.0" };
    assert_eq!(b.version_seen(0), after, "{ctx}");
    let report = load.stop();
    let t = report.table();
    let lost = report.sessions.lost;
    let refused = report.refused;
    let exception = cell.exception();
    match exception {
        Exception::None => {
            assert!(report.connections_clean(), "{ctx}\n{t}");
            assert_eq!(report.closed_by_broker, 0, "{ctx}\n{t}");
            assert_eq!(lost, 0, "{ctx}\n{t}");
            assert!(report.messages_clean(), "{ctx}\n{t}");
        }
        // Its connections and sessions were in its memory: clients
        // reconnect (to the new broker, which holds the listeners).
        Exception::OldCrashed => assert_eq!(refused, 0, "{ctx}\n{t}"),
        // Nothing supervises a direct broker: refused until `start`.
        Exception::NewCrashedAfterGo => {}
    }
    let warned = if stderr.contains("WARNING: ") {
        ", warned"
    } else {
        ""
    };
    let mut line = format!("{exit}{warned}; {outcome}");
    if lost > 0 || report.closed_by_broker > 0 || refused > 0 {
        line.push_str(&format!(
            "; {} closed, {lost} sessions lost, {refused} refused ({exception:?})",
            report.closed_by_broker
        ));
    }
    line
}

/// After the faulted upgrade: a pending record is finished by the next
/// command; then exactly one broker serves both listeners (none only
/// after a new broker crashed past go: `start` brings back the release
/// the state names), and the state names what clients see. Returns what
/// came of the cell.
fn check(b: &mut BrokerHost, cell: &Cell, ctx: &str) -> String {
    // A new broker killed past go takes the listeners with it, and the old
    // one exits once it has answered: wait for both to be gone (else what
    // is checked can be the one still exiting).
    let most = match cell.exception() {
        Exception::NewCrashedAfterGo => 0,
        _ => 1,
    };
    if most == 0 {
        wait_brokers_at_most(b, 0, ctx);
    }
    let mut outcome = String::new();
    let before = status(b);
    if !before["pending"].is_null() {
        assert!(cell.may_leave_a_record(), "{ctx}\n{before}");
        // Any command that takes the lock finishes or drops it.
        let (_, err, code) = b.emqx(&["unpack", "5.0.1"]);
        assert_eq!(code, Some(0), "{ctx}\nresolving: {err}");
        let said = err
            .lines()
            .find(|l| l.contains("the switch from"))
            .unwrap_or("");
        outcome.push_str(if said.contains("finished") {
            "record finished by the next command; "
        } else {
            "record dropped by the next command; "
        });
        assert!(status(b)["pending"].is_null(), "{ctx}");
    }
    wait_brokers_at_most(b, most, ctx);
    if b.host_processes().is_empty() {
        assert_eq!(
            cell.exception(),
            Exception::NewCrashedAfterGo,
            "{ctx}\nno broker runs"
        );
        outcome.push_str("new broker crashed after go, `start` brings it back; ");
        let _ = std::fs::remove_file(b.runtime_dir().join("handoff.sock"));
        b.start();
    }
    let served = b.version_seen(0);
    assert_eq!(b.version_seen(1), served, "{ctx}");
    // What runs is the release marked current, else the permanent one.
    let versions = b.host.versions();
    let named = ["current", "permanent"]
        .iter()
        .find_map(|state| versions.iter().find(|(_, s)| s == state))
        .map(|(v, _)| v.clone());
    assert_eq!(
        named.as_deref(),
        Some(served.as_str()),
        "{ctx}: the state names another: {versions:?}"
    );
    // A release the switch unpacked stays unpacked when it failed.
    if served == "5.0.0" {
        assert!(
            b.host
                .versions()
                .contains(&("5.0.1".to_string(), "unpacked".to_string())),
            "{ctx}: {:?}",
            b.host.versions()
        );
    }
    outcome.push_str(&format!("{served} serves"));
    outcome
}

/// Waits (20 s at most) until at most `most` brokers of the host run.
fn wait_brokers_at_most(b: &BrokerHost, most: usize, ctx: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while b.host_processes().len() > most {
        assert!(
            Instant::now() < deadline,
            "{ctx}\nmore than {most} broker(s) run: {:?}",
            b.host_processes()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn status(b: &BrokerHost) -> serde_json::Value {
    let (out, err, code) = b.emqx(&["status", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    serde_json::from_str(&out).unwrap()
}

/// Runs `cells` (each on a host of its own) and fails with every failed
/// cell.
fn matrix(title: &str, cells: Vec<Cell>) {
    let failed = faults::matrix(title, cells, run, || {});
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

#[test]
fn every_helper_step_under_every_fault() {
    matrix("helper", faults::helper_cells());
}

#[test]
fn every_old_broker_step_under_every_fault() {
    matrix("old broker", faults::old_cells());
}

#[test]
fn every_new_broker_step_under_every_fault() {
    matrix("new broker", faults::new_cells());
}
