//! The broker as `emqx.service` inside a real systemd (PID 1 in namespaces,
//! `crates/testkit/sandbox/systemd-sandbox`): `emqx-relup upgrade` through D-Bus,
//! `systemctl reload emqx`, failures, restarts and kills, all under MQTT
//! load. Needs root; fails (never skips) without.

use std::time::Duration;

use emqx_testkit::sandbox::{assert_moved, CERTS};
use emqx_testkit::Sandbox;

fn pair(v: &str, s: &str) -> (String, String) {
    (v.to_string(), s.to_string())
}

/// A sandbox whose emqx.service runs 5.0.0 (permanent), with 5.0.1 dropped.
fn running(tag: &str, relup_toml: &str, drain_secs: f64) -> (Sandbox, u32) {
    running_with(tag, relup_toml, drain_secs, "", "")
}

/// As [`running`], with `service` added to emqx.service as a drop-in, and
/// `refbroker_toml` in release 5.0.0.
fn running_with(
    tag: &str,
    relup_toml: &str,
    drain_secs: f64,
    service: &str,
    refbroker_toml: &str,
) -> (Sandbox, u32) {
    let sb = Sandbox::with_emqx(tag, relup_toml, drain_secs);
    if !service.is_empty() {
        sb.ok(&format!(
            "printf '[Service]\\n{service}\\n' > /etc/systemd/system/emqx.service.d/extra.conf && systemctl daemon-reload"
        ));
    }
    sb.add_release("5.0.0", true, refbroker_toml);
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

    // `reload` from a root shell (no INVOCATION_ID): through systemd too,
    // never a switch behind its back (the new broker is the unit's).
    let out = sb.sh("emqx-relup -v reload");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}\n{}", sb.journal());
    assert!(stderr.contains("switching through systemd"), "{stderr}");
    let pid3 = sb.main_pid();
    assert_ne!(pid3, pid2);
    assert_eq!(sb.broker_of(pid3), ("5.0.1".to_string(), true));
    assert_eq!(sb.active_state(), "active");

    let report = sb.stop_load(load);
    assert_clean(&report);
    assert_moved(&report);
    // Over TLS, ws and wss too (the ws listeners bound by the broker,
    // handed over at each switch like the socket units' ones).
    for over in ["tls", "websocket"] {
        assert!(report[over].as_u64().unwrap_or(0) > 0, "{over}: {report:#}");
    }
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

#[test]
fn a_hundred_reloads_under_load_each_move_main_pid() {
    let (sb, _) = running("hundred", "settle_secs = 0.05", 0.1);
    let load = sb.start_load();
    // In one script: 100 x (reload, MainPID over D-Bus, its cgroup, state).
    let out = sb.ok(
        r#"
prop() { busctl get-property org.freedesktop.systemd1 /org/freedesktop/systemd1/unit/emqx_2eservice org.freedesktop.systemd1.$1 $2 | cut -d' ' -f2 | tr -d '"'; }
prev=$(prop Service MainPID); fails=0; unmoved=0; outside=0; inactive=0
for i in $(seq 100); do
  systemctl reload emqx || fails=$((fails+1))
  pid=$(prop Service MainPID)
  [ "$pid" != "$prev" ] && [ "$pid" != 0 ] || unmoved=$((unmoved+1))
  grep -q '/emqx.service$' /proc/$pid/cgroup 2>/dev/null || outside=$((outside+1))
  [ "$(prop Unit ActiveState)" = active ] || inactive=$((inactive+1))
  prev=$pid
done
echo "$fails $unmoved $outside $inactive"
"#,
    );
    let report = sb.stop_load(load);
    assert_eq!(
        out.trim(),
        "0 0 0 0",
        "failed reloads, MainPID unchanged, MainPID outside the unit, unit not active:\n{}",
        sb.journal()
    );
    assert_clean(&report);
    assert_moved(&report);
    assert_eq!(sb.versions(), [pair("5.0.0", "permanent")]);
    // One broker left: the main process (the others drained and exited).
    let pid = sb.main_pid();
    let brokers = sb.ok("sleep 0.5; for p in $(pgrep -x emqx); do echo $p; done");
    assert_eq!(brokers.trim(), pid.to_string(), "brokers left: {brokers}");
}

#[test]
fn a_release_that_fails_to_start_leaves_the_unit_on_the_old_broker() {
    let (sb, pid0) = running("fails", "ready_timeout_secs = 2", 1.0);
    sb.add_release("5.0.2", true, "fail = \"never-ready\"");
    sb.add_release("5.0.3", true, "fail = \"exit-at-once\"");
    // Ready, but its import of the sessions passes its bound: the move
    // fails before go, the old broker thaws and is the main process again.
    sb.add_release("5.0.4", true, "import_max_conns = 1");
    sb.ok("emqx-relup unpack 5.0.2 && emqx-relup unpack 5.0.3 && emqx-relup unpack 5.0.4");
    let before = sb.state_bytes();
    let load = sb.start_load();
    for (version, why) in [
        ("5.0.2", "not ready within 2.0 s"),
        ("5.0.3", "exited with code 3"),
        ("5.0.4", "connections, more than 1"),
    ] {
        let out = sb.sh(&format!("emqx-relup upgrade {version}"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(5), "{stderr}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("Release {version} is already unpacked, now installing.\n")
        );
        assert!(stderr.starts_with(&format!("ERROR: switch to {version} failed: systemd's reload of emqx.service failed; see 'journalctl -u emqx' (the broker still runs 5.0.0)")), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        // The reload's error in the journal says why.
        let journal = sb.ok("journalctl --no-pager -o cat EMQX_RELUP_COMMAND=reload PRIORITY=3");
        assert!(journal.contains(why), "{journal}");
        assert_eq!(sb.main_pid(), pid0);
        assert_eq!(sb.active_state(), "active");
        assert_eq!(sb.state_bytes(), before);
    }
    let report = sb.stop_load(load);
    assert_clean(&report);
    // No failure touched an established connection.
    assert_moved(&report);
}

#[test]
fn a_trial_release_reverts_on_restart() {
    let (sb, _) = running("trial", "", 1.0);
    let out = sb.ok("emqx-relup upgrade --no-permanent 5.0.1");
    assert!(out.ends_with("Installed Release: 5.0.1\n"), "{out}");
    assert_eq!(sb.broker_of(sb.main_pid()).0, "5.0.1");
    assert_eq!(
        sb.versions(),
        [pair("5.0.1", "current"), pair("5.0.0", "permanent")]
    );
    sb.ok("systemctl restart emqx");
    let pid = sb.wait_active(Duration::from_secs(10));
    assert_eq!(sb.broker_of(pid), ("5.0.0".to_string(), true));
    assert_eq!(
        sb.versions(),
        [pair("5.0.1", "unpacked"), pair("5.0.0", "permanent")]
    );
}

/// Waits for a process matching `pgrep -f pattern` (other than `not`);
/// write the pattern as `[e]mqx...` so that it does not match this script.
fn wait_process(sb: &Sandbox, pattern: &str, not: u32) -> u32 {
    let script = format!(
        "for i in $(seq 200); do for p in $(pgrep -f '{pattern}'); do [ $p != {not} ] && echo $p && exit 0; done; sleep 0.02; done; exit 1"
    );
    sb.ok(&script).trim().parse().unwrap()
}

#[test]
fn killing_the_reload_helper_leaves_one_broker_and_a_working_unit() {
    let (sb, pid0) = running("killhelper", "", 1.0);
    sb.add_release("5.0.2", true, "ready_delay_ms = 1500");
    sb.ok("emqx-relup unpack 5.0.2");
    let before = sb.state_bytes();
    let load = sb.start_load();
    let admin = sb.spawn("emqx-relup upgrade 5.0.2");
    let helper = wait_process(&sb, "[e]mqx-relup reload", 0);
    // The new broker exists (slow to get ready); kill the helper.
    wait_process(&sb, "[r]eleases/5.0.2/bin/emqx", 0);
    sb.ok(&format!("kill -9 {helper}"));
    let out = admin.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The orphaned new broker ended itself (its lease broke); the old serves.
    sb.ok("for i in $(seq 100); do pgrep -f '[r]eleases/5.0.2/bin/emqx' >/dev/null || exit 0; sleep 0.05; done; exit 1");
    assert_eq!(sb.main_pid(), pid0);
    assert_eq!(sb.active_state(), "active");
    assert_eq!(sb.state_bytes(), before);
    // And the next upgrade works.
    sb.ok("emqx-relup upgrade 5.0.2");
    assert_eq!(sb.broker_of(sb.main_pid()), ("5.0.2".to_string(), true));
    assert_clean(&sb.stop_load(load));
}

#[test]
fn killing_both_brokers_mid_switch_restarts_on_the_stored_listeners() {
    let (sb, pid0) = running("killboth", "", 1.0);
    sb.add_release("5.0.2", true, "ready_delay_ms = 1500");
    sb.ok("emqx-relup unpack 5.0.2");
    let load = sb.start_load();
    let admin = sb.spawn("emqx-relup upgrade 5.0.2");
    let new = wait_process(&sb, "[r]eleases/5.0.2/bin/emqx", 0);
    sb.ok(&format!("kill -9 {pid0} {new}"));
    let _ = admin.wait_with_output().unwrap();
    // Restart= brings the permanent release back on the fd store's sockets.
    let pid = sb.wait_active(Duration::from_secs(10));
    assert_ne!(pid, pid0);
    let (version, in_unit) = sb.broker_of(pid);
    assert!(in_unit);
    let versions = sb.versions();
    let permanent: Vec<_> = versions.iter().filter(|(_, s)| s == "permanent").collect();
    assert_eq!(permanent.len(), 1, "{versions:?}");
    assert_eq!(permanent[0].0, version, "{versions:?}");
    // The next upgrade works.
    sb.ok("emqx-relup upgrade 5.0.2");
    assert_eq!(sb.broker_of(sb.main_pid()).0, "5.0.2");
    let report = sb.stop_load(load);
    // Killed brokers reset their connections; none was refused: systemd
    // held the listeners while no broker ran.
    assert_eq!(report["refused"], 0, "{report:#}");
    assert_eq!(report["timed_out"], 0, "{report:#}");
}

#[test]
fn with_emqx_socket_systemd_owns_the_listener_through_upgrade_and_restart() {
    let sb = Sandbox::with_emqx("socket", "", 1.0);
    // The shipped socket unit, on a test address, with one listener.
    sb.ok(
        r#"set -e
mv /etc/systemd/system/emqx.socket.off /etc/systemd/system/emqx.socket
mkdir -p /etc/systemd/system/emqx.socket.d
printf '[Socket]\nListenStream=\nListenStream=127.0.0.1:1883\n' > /etc/systemd/system/emqx.socket.d/test.conf
printf '[Service]\nEnvironment=EMQX_LISTENERS=mqtt=127.0.0.1:1883\n' > /etc/systemd/system/emqx.service.d/zz-socket.conf
systemctl daemon-reload
systemctl start emqx.socket"#,
    );
    sb.add_release("5.0.0", true, "");
    sb.add_release("5.0.1", false, "");
    sb.ok("emqx-relup install 5.0.0");
    // No broker yet: the first connection starts the service.
    let load = sb.start_load_on(&[1883]);
    let pid0 = sb.wait_active(Duration::from_secs(10));
    assert_eq!(sb.broker_of(pid0), ("5.0.0".to_string(), true));
    sb.ok("emqx-relup upgrade 5.0.1");
    let pid1 = sb.main_pid();
    assert_ne!(pid1, pid0);
    assert_eq!(sb.broker_of(pid1), ("5.0.1".to_string(), true));
    // A plain restart: connections queue on systemd's socket meanwhile.
    sb.ok("systemctl restart emqx");
    let pid2 = sb.wait_active(Duration::from_secs(10));
    assert_eq!(sb.broker_of(pid2), ("5.0.1".to_string(), true));
    let report = sb.stop_load(load);
    assert_eq!(report["refused"], 0, "{report:#}");
    assert_eq!(report["timed_out"], 0, "{report:#}");
    assert!(
        report["versions_seen"]["5.0.1"].as_u64().unwrap() > 0,
        "{report:#}"
    );
}

#[test]
fn a_reload_waiting_for_a_long_drain_extends_systemds_timeout() {
    // The old broker of the first reload drains its 10 persistent clients
    // for 5 s (the release imports no session state, so nothing moves);
    // the second reload waits for that, longer than the unit's 2 s
    // TimeoutStartSec, and must not be killed for it.
    let (sb, _) = running_with("extend", "", 5.0, "TimeoutStartSec=2", "imports = []");
    let load = sb.start_load();
    sb.ok("systemctl reload emqx");
    let began = std::time::Instant::now();
    sb.ok("systemctl reload emqx");
    let waited = began.elapsed();
    assert!(
        waited > Duration::from_secs(3),
        "the second reload did not wait for the drain ({waited:?})"
    );
    assert_eq!(sb.active_state(), "active");
    let status = sb.ok("systemctl show -p StatusText --value emqx");
    assert!(
        status.starts_with("running release 5.0.0 (pid "),
        "{status}"
    );
    assert_clean(&sb.stop_load(load));
}

/// An administrator's upgrade killed while it waits for systemd (before
/// ReloadUnit, and in the middle of the reload job): the record it left
/// makes the next command restore or keep the state from what runs, and a
/// reload still in flight makes it wait rather than guess.
#[test]
fn an_admin_killed_around_reload_unit_leaves_a_record_the_next_command_resolves() {
    let (sb, pid0) = running("killed-admin", "settle_secs = 2", 1.0);
    // Killed after recording, before asking systemd: nothing switched.
    let out = sb.sh("FAILPOINTS=helper::unit_recorded=return emqx-relup upgrade 5.0.1");
    assert_ne!(out.status.code(), Some(0));
    let status: serde_json::Value =
        serde_json::from_str(&sb.ok("emqx-relup status --json")).unwrap();
    assert_eq!(status["pending"]["path"], "unit", "{status}");
    assert_eq!(status["pending"]["next"], "restore", "{status}");
    assert_eq!(status["broker"]["unit"], "emqx.service", "{status}");
    let out = sb.sh("emqx-relup upgrade 5.0.1");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}\n{}", sb.journal());
    assert!(stderr.contains("did not happen"), "{stderr}");
    let pid1 = sb.main_pid();
    assert_ne!(pid1, pid0);
    assert_eq!(sb.broker_of(pid1), ("5.0.1".to_string(), true));
    assert_eq!(
        sb.versions(),
        [pair("5.0.1", "permanent"), pair("5.0.0", "old")]
    );

    // SIGKILL in the middle of the reload job (settle time 2 s): the next
    // command waits while systemd still reloads, then keeps what runs.
    sb.ok("emqx-relup downgrade 5.0.0 & pid=$!; sleep 0.8; kill -9 $pid; wait $pid || true");
    let mut waited = 0;
    let stderr = loop {
        let out = sb.sh("emqx-relup install 5.0.0");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        match out.status.code() {
            Some(0) => break stderr,
            Some(3) if stderr.contains("still running the reload") && waited < 40 => {
                waited += 1;
                std::thread::sleep(Duration::from_millis(250));
            }
            other => panic!("{other:?}: {stderr}\n{}", sb.journal()),
        }
    };
    assert!(stderr.contains("did happen"), "{stderr}");
    let pid2 = sb.main_pid();
    assert_ne!(pid2, pid1);
    assert_eq!(sb.broker_of(pid2), ("5.0.0".to_string(), true));
    assert_eq!(
        sb.versions(),
        [pair("5.0.1", "old"), pair("5.0.0", "permanent")]
    );
    assert_eq!(sb.active_state(), "active");
    // The release it runs cannot go; nothing is pending any more.
    assert_eq!(sb.sh("emqx-relup uninstall 5.0.0").status.code(), Some(3));
    let status: serde_json::Value =
        serde_json::from_str(&sb.ok("emqx-relup status --json")).unwrap();
    assert!(status["pending"].is_null(), "{status}");
    assert_eq!(status["broker"]["pid"].as_u64(), Some(u64::from(pid2)));
}

#[test]
fn systemctl_reload_rotates_the_tls_certificate_and_a_mismatched_key_changes_nothing() {
    let (sb, pid0) = running("rotate", "", 1.0);
    let load = sb.start_load();
    let serial = || {
        sb.ok(&format!(
            "openssl s_client -connect 127.0.0.1:8883 -CAfile {CERTS}/cacert.pem </dev/null 2>/dev/null | openssl x509 -noout -serial"
        ))
        .trim()
        .to_string()
    };
    assert_eq!(serial(), "serial=1001");
    // Renewed: new files in place, a reload; new connections see them.
    sb.pki.issue("server", "localhost", 4098, true);
    sb.ok(&format!("{}systemctl reload emqx", sb.install_certs()));
    assert_eq!(serial(), "serial=1002");
    let pid1 = sb.main_pid();
    assert_ne!(pid1, pid0);
    // A key of no certificate: the reload fails, nothing changes.
    let stray = sb.pki.stray_key("stray");
    sb.ok(&format!(
        "install -m 0644 {} {CERTS}/key.pem",
        stray.display()
    ));
    let out = sb.sh("systemctl reload emqx");
    assert_ne!(out.status.code(), Some(0), "{}", sb.journal());
    assert_eq!(sb.main_pid(), pid1);
    assert_eq!(sb.active_state(), "active");
    assert_eq!(serial(), "serial=1002");
    let journal = sb.ok("journalctl --no-pager -o cat -u emqx");
    assert!(
        journal.contains(&format!(
            "{CERTS}/key.pem does not match the certificate {CERTS}/cert.pem"
        )),
        "{journal}"
    );
    let report = sb.stop_load(load);
    assert_clean(&report);
    assert_moved(&report);
    assert!(report["tls"].as_u64().unwrap_or(0) > 0, "{report:#}");
}
