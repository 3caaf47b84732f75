//! Hosts with releases 5.0.0 and 5.0.1 in every state of 5.0.1, for the
//! tables of tests/states.rs and tests/dry_run.rs. No broker runs.

use std::fs;

use emqx_testkit::Host;

pub const O: &str = "5.0.0";
pub const V: &str = "5.0.1";

/// The state of 5.0.1 before the command (5.0.0 is the other release).
#[derive(Debug, Clone, Copy)]
pub enum Before {
    Unknown,
    Unpacked,
    Current,
    Permanent,
    Old,
}

/// Builds a host with both packages dropped, both unpacked as needed, and
/// the state file set to the wanted states (a current release cannot be
/// reached without a running broker, so the state is written directly).
pub fn host_in(before: Before) -> Host {
    let host = Host::new();
    host.drop_release(O, true);
    host.drop_release(V, true);
    host.ok(&["unpack", O]);
    let states: &[(&str, &str)] = match before {
        Before::Unknown => &[(O, "permanent")],
        Before::Unpacked => &[(V, "unpacked"), (O, "permanent")],
        Before::Current => &[(V, "current"), (O, "permanent")],
        Before::Permanent => &[(V, "permanent"), (O, "old")],
        Before::Old => &[(V, "old"), (O, "permanent")],
    };
    if !matches!(before, Before::Unknown) {
        host.ok(&["unpack", V]);
    }
    write_state(&host, states);
    assert_eq!(host.versions(), owned(states));
    host
}

fn write_state(host: &Host, states: &[(&str, &str)]) {
    let releases: Vec<_> = states
        .iter()
        .map(|(v, s)| serde_json::json!({"version": v, "state": s}))
        .collect();
    let doc = serde_json::json!({"format": "emqx-relup/releases/v1", "releases": releases});
    fs::write(host.state_file(), doc.to_string()).unwrap();
}

pub fn owned(states: &[(&str, &str)]) -> Vec<(String, String)> {
    states
        .iter()
        .map(|(v, s)| (v.to_string(), s.to_string()))
        .collect()
}

/// Fails with every failure a table collected, or passes with none.
pub fn assert_no_failures(failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
