//! A switch whose helper dies at each step from the point of no return to
//! the state save (a kill point aborts it as kill -9 would), or that gets
//! SIGINT/SIGHUP on its process group: the next command resolves the
//! pending record from what runs, and then exactly one broker holds the
//! listeners, `versions` names its release, `handoff.sock` is its socket,
//! and `uninstall` of that release is refused. Needs the `failpoints`
//! feature (scripts/test builds the tests with it).

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Stdio;
use std::time::{Duration, Instant};

use emqx_testkit::BrokerHost;

/// The pids holding the listening socket on `port` (ss), once a draining
/// broker has had time to go.
fn holders(port: u16) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = std::process::Command::new("ss")
            .args(["-Hltnp", &format!("sport = :{port}")])
            .output()
            .expect("ss (iproute2) runs");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut pids: Vec<u32> = text
            .split("pid=")
            .skip(1)
            .filter_map(|p| p.split(',').next()?.parse().ok())
            .collect();
        pids.sort();
        pids.dedup();
        if pids.len() == 1 || Instant::now() > deadline {
            return pids;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn status(b: &BrokerHost) -> serde_json::Value {
    let (out, err, code) = b.emqx(&["status", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    serde_json::from_str(&out).unwrap()
}

/// After the resolving command: one broker, the one the state names.
fn assert_one_broker_running(b: &BrokerHost, version: &str) {
    for port in b.ports {
        let pids = holders(port);
        assert_eq!(pids.len(), 1, "port {port} held by {pids:?}");
        let s = status(b);
        assert_eq!(s["broker"]["pid"].as_u64(), Some(u64::from(pids[0])), "{s}");
        assert_eq!(s["broker"]["release"], version, "{s}");
        assert!(s["pending"].is_null(), "{s}");
    }
    assert_eq!(b.version_seen(0), version);
    let current: Vec<_> = b
        .host
        .versions()
        .into_iter()
        .filter(|(_, s)| s == "current" || s == "permanent")
        .collect();
    assert_eq!(current[0].0, version, "{current:?}");
    let (_, err, code) = b.emqx(&["uninstall", version]);
    assert_eq!(code, Some(3), "uninstall of the running release: {err}");
}

#[test]
fn a_helper_killed_at_each_step_leaves_a_record_the_next_command_resolves() {
    for point in [
        "helper::recorded",
        "helper::confirmed",
        "helper::answered",
        "helper::published",
        "helper::state_written",
    ] {
        let b = BrokerHost::running("");
        let out = b
            .command()
            .args(["upgrade", "5.0.1"])
            .env("FAILPOINTS", format!("{point}=return"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(
            out.status.signal(),
            Some(6),
            "{point}: the helper aborts there: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pending = status(&b)["pending"].clone();
        assert_eq!(pending["to"], "5.0.1", "{point}: {pending}");
        assert_eq!(pending["path"], "direct", "{point}");
        // The next command that takes the lock resolves it, then does its
        // own work: 5.0.1 runs, permanent.
        let (out, err, code) = b.emqx(&["install", "5.0.1"]);
        assert_eq!(code, Some(0), "{point}: {out}{err}");
        let expected = if point == "helper::recorded" {
            "dropped the switch from 5.0.0 to 5.0.1"
        } else {
            "finished the switch from 5.0.0 to 5.0.1"
        };
        assert!(err.contains(expected), "{point}: {err}");
        assert_one_broker_running(&b, "5.0.1");
        assert_eq!(
            b.host.versions()[0],
            ("5.0.1".to_string(), "permanent".to_string()),
            "{point}"
        );
    }
}

#[test]
fn sigint_or_sighup_to_the_helpers_group_stops_it_between_steps_only() {
    for sig in [
        nix::sys::signal::Signal::SIGINT,
        nix::sys::signal::Signal::SIGHUP,
    ] {
        let b = BrokerHost::running("settle_secs = 1.5\n");
        let mut cmd = b.command();
        cmd.args(["upgrade", "5.0.1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let child = cmd.spawn().unwrap();
        let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
        // Inside the settle time of the switch step.
        std::thread::sleep(Duration::from_millis(700));
        nix::sys::signal::killpg(pgid, sig).unwrap();
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{sig}: {err}");
        assert!(
            err.contains(&format!("interrupted by {}", sig.as_str())),
            "{sig}: {err}"
        );
        // The switch itself completed; the step after it did not run.
        assert_eq!(
            b.host.versions(),
            [
                ("5.0.1".to_string(), "current".to_string()),
                ("5.0.0".to_string(), "permanent".to_string())
            ],
            "{sig}"
        );
        assert_one_broker_running(&b, "5.0.1");
    }
}
