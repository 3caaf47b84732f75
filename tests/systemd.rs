//! The broker as `emqx.service` inside a real systemd (PID 1 in namespaces,
//! `tests/sandbox/systemd-sandbox`): `emqx-relup upgrade` through D-Bus,
//! `systemctl reload emqx`, failures, restarts and kills, all under MQTT
//! load. Needs root; fails (never skips) without.

#[path = "common/broker.rs"]
mod broker;
mod common;
#[path = "common/sandbox.rs"]
mod sandbox;

use std::time::Duration;

use sandbox::Sandbox;

fn pair(v: &str, s: &str) -> (String, String) {
    (v.to_string(), s.to_string())
}

/// A sandbox whose emqx.service runs 5.0.0 (permanent), with 5.0.1 dropped.
fn running(tag: &str, relup_toml: &str, drain_secs: f64) -> (Sandbox, u32) {
    let sb = Sandbox::with_emqx(tag, relup_toml, drain_secs);
    sb.add_release("5.0.0", true, "");
    sb.add_release("5.0.1", false, "");
    let out = sb.ok("emqx-relup install 5.0.0");
    assert!(
        out.ends_with("Installed Release: 5.0.0\nMade release permanent: \"5.0.0\"\n"),
        "{out}"
    );
    sb.ok("systemctl start emqx");
    let pid = sb.wait_active(Duration::from_secs(10));
    assert_eq!(sb.broker_of(pid), ("5.0.0".to_string(), true));
    (sb, pid)
}

fn assert_clean(report: &serde_json::Value) {
    for key in ["refused", "reset", "timed_out", "other_error"] {
        assert_eq!(report[key], 0, "{key} in {report:#}");
    }
    assert!(report["attempts"].as_u64().unwrap() > 100, "{report:#}");
}

#[test]
fn upgrade_through_dbus_and_systemctl_reload_refuse_nothing() {
    let (sb, pid0) = running("paths", "", 1.0);
    let load = sb.start_load();

    // The administrator's path: record, ReloadUnit, wait for the job.
    let out = sb.sh("emqx-relup -v upgrade 5.0.1");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{stderr}\n{}",
        sb.journal()
    );
    assert_eq!(
        stdout,
        "Release 5.0.1 not found, attempting to unpack releases/emqx-5.0.1.tar.gz\nUnpacked successfully: \"5.0.1\"\nInstalled Release: 5.0.1\nMade release permanent: \"5.0.1\"\n"
    );
    assert!(stderr.contains("switching through systemd"), "{stderr}");
    assert!(stderr.contains("systemd reloaded emqx.service"), "{stderr}");
    let pid1 = sb.main_pid();
    assert_ne!(pid1, pid0);
    assert_eq!(sb.broker_of(pid1), ("5.0.1".to_string(), true));
    assert_eq!(sb.active_state(), "active");

    // systemd's own path: ExecReload, a fresh broker of the current release.
    sb.ok("systemctl reload emqx");
    let pid2 = sb.main_pid();
    assert_ne!(pid2, pid1);
    assert_eq!(sb.broker_of(pid2), ("5.0.1".to_string(), true));
    assert_eq!(sb.active_state(), "active");

    let report = sb.stop_load(load);
    assert_clean(&report);
    assert!(
        report["versions_seen"]["5.0.0"].as_u64().unwrap() > 0,
        "{report:#}"
    );
    assert!(
        report["versions_seen"]["5.0.1"].as_u64().unwrap() > 0,
        "{report:#}"
    );
    assert_eq!(
        sb.versions(),
        [pair("5.0.1", "permanent"), pair("5.0.0", "old")]
    );
    // The reload logged to the journal with structured fields.
    let logged = sb.ok("journalctl --no-pager -o cat EMQX_RELUP_COMMAND=reload");
    assert!(logged.contains("Reloaded release 5.0.1"), "{logged}");
}
