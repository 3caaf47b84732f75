//! The fault matrix inside a real systemd (the sandbox of tests/systemd.rs):
//! the steps only a switch under systemd has (`MAINPID=` and its barrier,
//! the D-Bus calls of `emqx-relup upgrade`) and those whose outcome
//! systemd decides (brokers and the unit's `ExecReload` helper killed),
//! each one `emqx-relup upgrade`/`downgrade` under the load harness, then
//! the invariants: the unit active, its main process serving the release
//! the state names (restarted on the stored listeners after a crash),
//! one broker left, nothing refused, no session lost but in the
//! documented crash cases, and the next switch moving every session.
//! Prints the table. Needs root and the `failpoints` feature.

mod faults;

use std::time::{Duration, Instant};

use faults::{Action, Cell, Exception, PAST_MOVE_BOUND, SLOW_HELPER};

use emqx_handoff::faults::BROKER_FAILPOINTS_ENV;
use emqx_testkit::sandbox::assert_moved;
use emqx_testkit::Sandbox;

const RELEASE_TOML: &str = "move_bound_ms = 1000\n";

fn cell(point: &'static str, action: Action) -> Cell {
    Cell { point, action }
}

fn cells() -> Vec<Cell> {
    use Action::{Delay, Error, Kill};
    vec![
        // The lease breaks after MAINPID=new: the new broker gives the
        // main process back to the old one before it exits.
        cell("helper::main_pid", Kill),
        cell("helper::main_pid", Error),
        cell("helper::main_pid", Delay(SLOW_HELPER)),
        cell("helper::barrier", Kill),
        cell("helper::barrier", Error),
        // The unit's helper killed past the commit, or failing to publish
        // the new socket: it cannot write a record (ExecReload runs as the
        // service user), so the new broker publishes its own socket once
        // it said going, and the administrator's command sees it run.
        cell("helper::confirmed", Kill),
        cell("helper::commit_sent", Kill),
        cell("helper::rename", Error),
        cell("hook::before_unit", Kill),
        cell("hook::before_reload", Kill),
        cell("hook::before_reload", Error),
        cell("hook::after_reload", Kill),
        cell("hook::after_reload", Error),
        cell("hook::after_reload", Delay(SLOW_HELPER)),
        cell("helper::write_state", Error),
        cell("helper::hello", Error),
        cell("helper::ready", Kill),
        cell("helper::settled", Error),
        cell("old::commit", Error),
        cell("old::before_go", Kill),
        cell("old::answer", Error),
        cell("old::exported", Kill),
        cell("old::exported", Delay(PAST_MOVE_BOUND)),
        cell("new::imported_batch", Kill),
        cell("new::imported_batch", Error),
        cell("new::reported", Kill),
        cell("new::after_go", Kill),
    ]
}

/// The switch from what runs to the other release.
fn switch_args(running: &str) -> &'static str {
    if running == "5.0.0" {
        "upgrade 5.0.1"
    } else {
        "downgrade 5.0.0"
    }
}

/// What the state names as running: current, else permanent.
fn named(sb: &Sandbox) -> String {
    let versions = sb.versions();
    ["current", "permanent"]
        .iter()
        .find_map(|state| versions.iter().find(|(_, s)| s == state))
        .map(|(v, _)| v.clone())
        .unwrap_or_default()
}

/// Processes in emqx.service's cgroup.
fn unit_processes(sb: &Sandbox) -> usize {
    sb.ok("cat /sys/fs/cgroup/system.slice/emqx.service/cgroup.procs 2>/dev/null || true")
        .lines()
        .count()
}

fn run(sb: &Sandbox, cell: &Cell) -> String {
    let armed = cell.armed();
    let running = sb.broker_of(sb.wait_active(Duration::from_secs(15))).0;
    let load = sb.start_load();
    match cell.process() {
        // Armed in the broker the prime switch starts, which is the old
        // broker of the next.
        "old" => {
            sb.ok(&format!(
                "systemctl set-environment {BROKER_FAILPOINTS_ENV}='{armed}'"
            ));
            let out = sb.sh(&format!("emqx-relup {}", switch_args(&running)));
            sb.ok(&format!(
                "systemctl unset-environment {BROKER_FAILPOINTS_ENV}"
            ));
            assert_eq!(out.status.code(), Some(0), "{cell}: prime switch");
        }
        "new" => {
            sb.ok(&format!(
                "systemctl set-environment {BROKER_FAILPOINTS_ENV}='{armed}'"
            ));
        }
        // The unit's ExecReload helper and the administrator's alike.
        _ => {
            sb.ok(&format!("systemctl set-environment FAILPOINTS='{armed}'"));
        }
    }
    let before = sb.broker_of(sb.wait_active(Duration::from_secs(15))).0;
    let out = sb.sh(&format!(
        "FAILPOINTS='{armed}' emqx-relup {}",
        switch_args(&before)
    ));
    sb.ok(&format!(
        "systemctl unset-environment FAILPOINTS {BROKER_FAILPOINTS_ENV}"
    ));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let exit = match out.status.code() {
        Some(c) => format!("exit {c}"),
        None => "aborted".to_string(),
    };
    let ctx = format!("{cell}: {exit}: {stderr}");
    let mut outcome = String::new();
    // A record left pending is finished or dropped by the next command.
    let status: serde_json::Value =
        serde_json::from_str(&sb.ok("emqx-relup status --json")).unwrap();
    if !status["pending"].is_null() {
        assert!(
            cell.may_leave_a_record() || cell.process() == "hook",
            "{ctx}: pending: {status}"
        );
        let out = sb.sh("emqx-relup unpack 5.0.1");
        assert_eq!(out.status.code(), Some(0), "{ctx}: resolving");
        outcome.push_str("record resolved by the next command; ");
    }
    // One broker, the unit's main process, serving what the state names.
    let deadline = Instant::now() + Duration::from_secs(20);
    let main = loop {
        let main = sb.wait_active(Duration::from_secs(15));
        if unit_processes(sb) <= 1 {
            break main;
        }
        assert!(
            Instant::now() < deadline,
            "{ctx}: brokers left: {}",
            sb.ok("cat /sys/fs/cgroup/system.slice/emqx.service/cgroup.procs")
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let (served, in_unit) = sb.broker_of(main);
    assert!(in_unit, "{ctx}: pid {main} runs {served}, not in the unit");
    assert_eq!(named(sb), served, "{ctx}: the state names another");
    outcome.push_str(&format!("{served} serves"));
    if served == before {
        outcome.push_str(" (not switched)");
    }
    // The next switch succeeds and moves every session.
    let out = sb.sh(&format!("emqx-relup {}", switch_args(&served)));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{ctx}\nnext switch: {err}");
    assert!(err.contains("moved with their sessions"), "{ctx}\n{err}");
    let report = sb.stop_load(load);
    // A crashed broker's own connections are reset; nothing is refused.
    let keys: &[&str] = match cell.exception() {
        Exception::None => &["refused", "reset", "timed_out", "other_error"],
        _ => &["refused"],
    };
    for key in keys {
        assert_eq!(report[*key], 0, "{ctx}: {key} in {report:#}");
    }
    let lost = report["sessions"]["lost"].as_u64().unwrap_or(0);
    if cell.exception() == Exception::None {
        assert_moved(&report);
    } else if lost > 0 {
        outcome.push_str(&format!("; {lost} sessions lost ({:?})", cell.exception()));
    }
    format!("{exit}; {outcome}")
}

#[test]
fn the_systemd_steps_under_faults() {
    let sb = Sandbox::with_emqx("faults", "", 1.0);
    sb.add_release("5.0.0", true, RELEASE_TOML);
    sb.add_release("5.0.1", false, RELEASE_TOML);
    sb.ok("emqx-relup install 5.0.0");
    sb.ok("systemctl start emqx");
    sb.wait_active(Duration::from_secs(10));
    let failed = faults::matrix(
        "systemd",
        cells(),
        |cell| run(&sb, cell),
        // Leave a unit that serves for the next cell.
        || {
            let _ = sb.sh(&format!(
                "systemctl unset-environment FAILPOINTS {BROKER_FAILPOINTS_ENV}; systemctl restart emqx"
            ));
        },
    );
    assert!(
        failed.is_empty(),
        "{}\n\njournal:\n{}",
        failed.join("\n\n"),
        sb.journal()
    );
}

/// A drain (5.0.2 imports nothing, so no broker publishes itself) whose
/// unit helper is killed past the commit, under load: nobody publishes
/// the new broker's socket, and the draining old broker no longer
/// answers at `handoff.sock`, yet the administrator's command finds the
/// new one at `handoff.sock.N`, the state names 5.0.2, and the next
/// switch starts from it.
#[test]
fn a_drain_whose_unit_helper_dies_past_the_commit_is_still_found() {
    if !emqx_handoff::faults::ENABLED {
        panic!("needs the failpoints feature: cargo test --features emqx-relup/failpoints");
    }
    let sb = Sandbox::with_emqx("faults-drain", "", 1.0);
    sb.add_release("5.0.0", true, RELEASE_TOML);
    sb.add_release("5.0.2", true, "imports = []\n");
    sb.ok("emqx-relup install 5.0.0");
    sb.ok("systemctl start emqx");
    sb.wait_active(Duration::from_secs(10));
    // Clients: the old broker drains them for a second.
    let load = sb.start_load();
    sb.ok("systemctl set-environment FAILPOINTS='helper::answered=1*return'");
    let out = sb.sh("emqx-relup upgrade 5.0.2");
    sb.ok("systemctl unset-environment FAILPOINTS");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{err}\n{}", sb.journal());
    assert!(err.contains("yet the broker runs 5.0.2 now"), "{err}");
    // Unpublished indeed: found at its own name.
    let names = sb.ok("ls /run/emqx");
    assert!(
        names.lines().any(|l| l.starts_with("handoff.sock.")),
        "{names}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while unit_processes(&sb) > 1 {
        assert!(
            Instant::now() < deadline,
            "the old broker did not drain away"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let main = sb.wait_active(Duration::from_secs(5));
    assert_eq!(sb.broker_of(main), ("5.0.2".to_string(), true));
    assert_eq!(named(&sb), "5.0.2");
    let status: serde_json::Value =
        serde_json::from_str(&sb.ok("emqx-relup status --json")).unwrap();
    assert_eq!(status["broker"]["release"], "5.0.2", "{status}");
    // The next switch starts from the unpublished socket and publishes its own.
    let out = sb.sh("emqx-relup downgrade 5.0.0");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(sb.broker_of(sb.main_pid()).0, "5.0.0");
    let status: serde_json::Value =
        serde_json::from_str(&sb.ok("emqx-relup status --json")).unwrap();
    assert_eq!(status["broker"]["release"], "5.0.0", "{status}");
    assert!(sb.sh("test -S /run/emqx/handoff.sock").status.success());
    // A drain closes established connections; new ones are never refused.
    let report = sb.stop_load(load);
    assert_eq!(report["refused"], 0, "{report:#}");
}

/// The code's phases and the matrices are one list: every fault step a
/// phase of the handoff switch passes has a cell in the direct matrix or
/// in this one (`main_pid` and `barrier` are reached under systemd only).
#[test]
fn every_phase_step_has_a_cell() {
    let mut covered: Vec<&str> = faults::helper_cells().iter().map(|c| c.point).collect();
    covered.extend(cells().iter().map(|c| c.point));
    let missing: Vec<&str> = emqx_relup::switch::PHASES
        .iter()
        .flat_map(|(_, steps)| steps.iter().copied())
        .filter(|step| !covered.contains(step))
        .collect();
    assert!(missing.is_empty(), "steps without a cell: {missing:?}");
}
