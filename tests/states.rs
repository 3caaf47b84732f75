//! Every command in every state of the target release, table-driven:
//! output, exit code and resulting state. No broker runs here.

use std::fs;

use emqx_testkit::{text, Host};

mod releases;

use releases::{assert_no_failures, host_in, owned, Before, O, V};

struct Case {
    before: Before,
    args: &'static [&'static str],
    stdout: &'static str,
    code: i32,
    /// The states after; `None`: unchanged.
    after: Option<&'static [(&'static str, &'static str)]>,
}

const UNPACKING: &str = "Release 5.0.1 not found, attempting to unpack releases/emqx-5.0.1.zip\n\
                         Unpacked successfully: \"5.0.1\"\n";
const INSTALLED_PERMANENT: &str = "Installed Release: 5.0.1\nMade release permanent: \"5.0.1\"\n";
const V_PERMANENT: &[(&str, &str)] = &[(V, "permanent"), (O, "old")];
const O_ONLY: &[(&str, &str)] = &[(O, "permanent")];

fn cases() -> Vec<Case> {
    use Before::*;
    let c = |before, args, stdout, code, after| Case {
        before,
        args,
        stdout,
        code,
        after,
    };
    vec![
        // unknown
        c(Unknown, &["unpack", V], UNPACKING, 0, Some(&[(V, "unpacked"), (O, "permanent")])),
        c(Unknown, &["install", V], "", 0, Some(V_PERMANENT)),
        c(Unknown, &["upgrade", V], "", 0, Some(V_PERMANENT)),
        c(Unknown, &["downgrade", V], "", 3, None),
        c(Unknown, &["uninstall", V], "Release 5.0.1 is already uninstalled.\n", 0, None),
        c(Unknown, &["install", "--no-permanent", V], "", 3, None),
        c(Unknown, &["start"], "release 5.0.0 foreground\n", 0, None),
        // unpacked
        c(Unpacked, &["unpack", V], "Release 5.0.1 is already unpacked.\n", 0, None),
        c(Unpacked, &["install", V], "Release 5.0.1 is already unpacked, now installing.\n", 0, Some(V_PERMANENT)),
        c(Unpacked, &["upgrade", V], "Release 5.0.1 is already unpacked, now installing.\n", 0, Some(V_PERMANENT)),
        c(Unpacked, &["downgrade", V], "", 3, None),
        c(Unpacked, &["uninstall", V], "Release 5.0.1 is marked unpacked, uninstalling it.\nUninstalled Release: 5.0.1\n", 0, Some(O_ONLY)),
        c(Unpacked, &["upgrade", V, "--no-permanent"], "", 3, None),
        c(Unpacked, &["start"], "release 5.0.0 foreground\n", 0, None),
        // current
        c(Current, &["unpack", V], "Release 5.0.1 is already installed and current.\n", 0, None),
        c(Current, &["install", V], "Release 5.0.1 is already installed and current, making permanent.\nMade release permanent: \"5.0.1\"\n", 0, Some(V_PERMANENT)),
        c(Current, &["upgrade", V], "Release 5.0.1 is already installed and current, making permanent.\nMade release permanent: \"5.0.1\"\n", 0, Some(V_PERMANENT)),
        c(Current, &["uninstall", V], "", 3, None),
        c(Current, &["install", "--no-permanent", V], "Release 5.0.1 is already installed and current.\n", 0, None),
        c(Current, &["start"], "release 5.0.0 foreground\n", 0, Some(&[(V, "unpacked"), (O, "permanent")])),
        // the permanent release while another is current: a rollback
        c(Current, &["install", O], "Release 5.0.1 is the currently running version.\nInstalled Release: 5.0.0\nMade release permanent: \"5.0.0\"\n", 0, Some(&[(V, "old"), (O, "permanent")])),
        c(Current, &["downgrade", O], "Release 5.0.1 is the currently running version.\nInstalled Release: 5.0.0\nMade release permanent: \"5.0.0\"\n", 0, Some(&[(V, "old"), (O, "permanent")])),
        c(Current, &["upgrade", O], "", 3, None),
        c(Current, &["uninstall", O], "", 3, None),
        // permanent
        c(Permanent, &["unpack", V], "Release 5.0.1 is already installed and set permanent.\n", 0, None),
        c(Permanent, &["install", V], "Release 5.0.1 is already installed, running and set permanent.\n", 0, None),
        c(Permanent, &["upgrade", V], "Release 5.0.1 is already installed, running and set permanent.\n", 0, None),
        c(Permanent, &["downgrade", V], "Release 5.0.1 is already installed, running and set permanent.\n", 0, None),
        c(Permanent, &["upgrade", "--no-permanent", V], "Release 5.0.1 is already installed, running and set permanent.\n", 0, None),
        c(Permanent, &["uninstall", V], "", 3, None),
        c(Permanent, &["start"], "release 5.0.1 foreground\n", 0, None),
        // old
        c(Old, &["unpack", V], "Release 5.0.1 is marked old.\n", 0, None),
        c(Old, &["install", V], "Release 5.0.1 is marked old, switching to it.\n", 0, Some(V_PERMANENT)),
        c(Old, &["upgrade", V], "Release 5.0.1 is marked old, switching to it.\n", 0, Some(V_PERMANENT)),
        c(Old, &["downgrade", V], "", 3, None),
        c(Old, &["install", "--no-permanent", V], "", 3, None),
        c(Old, &["uninstall", V], "Release 5.0.1 is marked old, uninstalling it.\nUninstalled Release: 5.0.1\n", 0, Some(O_ONLY)),
        c(Old, &["start"], "release 5.0.0 foreground\n", 0, None),
    ]
}

#[test]
fn every_command_in_every_state() {
    let mut failures = Vec::new();
    for case in cases() {
        let host = host_in(case.before);
        let before_state = host.state();
        let before_versions = host.versions();
        let out = host.emqx(case.args);
        let (stdout, stderr) = text(&out);
        let label = format!("{:?} {:?}", case.before, case.args);
        // Moves that switch print the install lines after the header line.
        let mut expected = case.stdout.to_string();
        let switches = case.code == 0
            && case.after == Some(V_PERMANENT)
            && matches!(case.args[0], "install" | "upgrade" | "downgrade")
            && !matches!(case.before, Before::Current);
        if switches {
            if matches!(case.before, Before::Unknown) {
                expected.push_str(UNPACKING);
            }
            expected.push_str(INSTALLED_PERMANENT);
        }
        if out.status.code() != Some(case.code) {
            failures.push(format!(
                "{label}: exit {:?}, wanted {} ({stderr})",
                out.status.code(),
                case.code
            ));
            continue;
        }
        if stdout != expected {
            failures.push(format!("{label}: stdout {stdout:?}, wanted {expected:?}"));
        }
        if case.code != 0 {
            let lines: Vec<_> = stderr.lines().collect();
            if lines.len() != 1 || !lines[0].starts_with("ERROR: ") {
                failures.push(format!("{label}: stderr {stderr:?} is not one ERROR line"));
            }
        }
        match case.after {
            None => {
                if host.state() != before_state {
                    failures.push(format!("{label}: the state file changed"));
                }
                assert_eq!(host.versions(), before_versions);
            }
            Some(after) => {
                if host.versions() != owned(after) {
                    failures.push(format!(
                        "{label}: versions {:?}, wanted {after:?}",
                        host.versions()
                    ));
                }
            }
        }
        // Every listed release has its tree; no unlisted tree remains.
        for (v, _) in host.versions() {
            if !host.store().join(&v).join("releases").join(&v).is_dir() {
                failures.push(format!("{label}: tree of {v} missing"));
            }
        }
        if case.args[0] == "uninstall"
            && case.code == 0
            && case.after.is_some()
            && host.store().join(case.args[1]).exists()
        {
            failures.push(format!("{label}: uninstalled tree still there"));
        }
    }
    assert_no_failures(&failures);
}

#[test]
fn refusals_name_the_reason() {
    let host = host_in(Before::Permanent);
    let out = host.emqx(&["uninstall", V]);
    assert_eq!(
        text(&out).1,
        "ERROR: Uninstall failed: Release 5.0.1 is running.\n"
    );
    let host = host_in(Before::Current);
    let out = host.emqx(&["uninstall", V]);
    assert_eq!(
        text(&out).1,
        "ERROR: Uninstall failed: Release 5.0.1 is marked current.\n"
    );
    let out = host.emqx(&["upgrade", O]);
    assert_eq!(
        text(&out).1,
        "ERROR: cannot upgrade from '5.0.1' to '5.0.0': it is an older release; use 'downgrade 5.0.0'\n"
    );
    let host = host_in(Before::Old);
    let out = host.emqx(&["downgrade", V]);
    assert_eq!(
        text(&out).1,
        "ERROR: cannot downgrade from '5.0.0' to '5.0.1': it is a newer release; use 'upgrade 5.0.1'\n"
    );
}

#[test]
fn bad_arguments_are_usage_errors_that_change_nothing() {
    let host = host_in(Before::Unpacked);
    let before = host.snapshot();
    for (args, message) in [
        (
            &["upgrade", "v5"][..],
            "ERROR: Invalid semantic version: 'v5'\n",
        ),
        (
            &["install", "5.0"][..],
            "ERROR: Invalid semantic version: '5.0'\n",
        ),
        (
            &["uninstall", "05.0.1"][..],
            "ERROR: Invalid semantic version: '05.0.1'\n",
        ),
    ] {
        let out = host.emqx(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(text(&out).1, message);
    }
    // One line each, naming what is wrong, with the documented code.
    for (args, names) in [
        (&["frobnicate"][..], "'frobnicate'"),
        (&["upgrade"][..], "<VSN>"),
        (&["upgrade", "--bogus", V][..], "'--bogus'"),
        (&[][..], "no command given"),
    ] {
        let out = host.emqx(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = text(&out).1;
        assert!(
            stderr.starts_with("ERROR: ") && stderr.lines().count() == 1 && stderr.contains(names),
            "{args:?}: {stderr}"
        );
    }
    assert_eq!(host.snapshot(), before);
}

#[test]
fn missing_and_ambiguous_packages() {
    let host = Host::new();
    let out = host.emqx(&["upgrade", "5.0.1"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(
        text(&out).1.contains("no package for release 5.0.1"),
        "{:?}",
        text(&out)
    );
    host.drop_release("5.0.10", true);
    let out = host.emqx(&["upgrade", "5.0.1"]);
    assert_eq!(out.status.code(), Some(4), "5.0.1 must not match 5.0.10");
    host.drop_release("5.0.1", true);
    host.drop_release("5.0.1", false);
    let out = host.emqx(&["upgrade", "5.0.1"]);
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(
        text(&out).1,
        "ERROR: finding the package of 5.0.1: several packages for release 5.0.1: emqx-5.0.1.tar.gz, emqx-5.0.1.zip; keep one\n"
    );
    assert_eq!(host.state(), None);
    fs::remove_file(host.drop_dir().join("emqx-5.0.1.tar.gz")).unwrap();
    fs::rename(
        host.drop_dir().join("emqx-5.0.1.zip"),
        host.drop_dir()
            .join("emqx-5.0.1-otp24.2.1-ubuntu20.04-amd64.zip"),
    )
    .unwrap();
    let out = host.ok(&["upgrade", "5.0.1"]);
    assert!(out.starts_with(
        "Release 5.0.1 not found, attempting to unpack releases/emqx-5.0.1-otp24.2.1-ubuntu20.04-amd64.zip\n"
    ));
}

#[test]
fn a_corrupt_state_file_is_reported_and_kept() {
    for bad in [
        &b"garbage"[..],
        br#"{"format": "emqx-relup/releases/v9", "releases": []}"#,
        br#"{"format": "emqx-relup/releases/v1", "releases": [{"version": "5.0.0", "state": "permanent"}, {"version": "5.0.1", "state": "permanent"}]}"#,
    ] {
        let host = host_in(Before::Unpacked);
        fs::write(host.state_file(), bad).unwrap();
        for args in [&["versions"][..], &["upgrade", V], &["uninstall", V], &["unpack", V], &["start"]] {
            let out = host.emqx(args);
            assert_eq!(out.status.code(), Some(1), "{args:?}");
            let stderr = text(&out).1;
            assert!(stderr.starts_with("ERROR: state file ") && stderr.lines().count() == 1, "{stderr}");
            assert_eq!(fs::read(host.state_file()).unwrap(), bad, "never overwritten");
        }
    }
}

#[test]
fn the_first_release_installs_on_an_empty_host_and_starts() {
    let host = Host::new();
    host.drop_release("4.4.3", false);
    host.ok(&["install", "4.4.3"]);
    assert_eq!(host.versions(), owned(&[("4.4.3", "permanent")]));
    let out = host.emqx(&["start"]);
    assert_eq!(text(&out).0, "release 4.4.3 foreground\n");
    let empty = Host::new();
    let out = empty.emqx(&["start"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out).1.contains("no permanent release to start"));
}

#[test]
fn a_flat_tarball_made_with_dot_unpacks() {
    // `tar czf pkg.tar.gz -C tree .` writes a "./" entry first.
    let host = Host::new();
    let tree = host.path().join("tree");
    let mut entries = vec![emqx_testkit::entry("./", emqx_testkit::Kind::Dir)];
    for mut e in emqx_testkit::release("5.0.3", "") {
        e.name = format!("./{}", e.name);
        entries.push(e);
    }
    host.drop_entries("emqx-5.0.3", false, &entries);
    host.ok(&["unpack", "5.0.3"]);
    assert!(host.store().join("5.0.3/releases/5.0.3").is_dir());
    assert!(!tree.exists());
}

#[test]
fn a_symlinked_state_file_is_not_followed() {
    let host = host_in(Before::Unpacked);
    let elsewhere = host.path().join("elsewhere.json");
    fs::rename(host.state_file(), &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, host.state_file()).unwrap();
    let out = host.emqx(&["versions"]);
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    assert!(
        text(&out).1.starts_with("ERROR: reading "),
        "{:?}",
        text(&out)
    );
}

#[test]
fn start_refuses_a_service_user_that_does_not_exist() {
    let host = Host::with_config("user = \"no-such-user-emqx-relup\"\n");
    host.drop_release("5.0.0", true);
    host.ok(&["install", "5.0.0"]);
    let out = host.emqx(&["start"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out).1,
        "ERROR: service user 'no-such-user-emqx-relup' does not exist\n"
    );
    assert_eq!(text(&out).0, "", "nothing ran");
}
