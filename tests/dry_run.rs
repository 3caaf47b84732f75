//! `--dry-run` and `--json` of `install`, `upgrade`, `downgrade` and
//! `uninstall`, in every state of the target release: a dry run changes
//! not one byte (the lock file included), exits as the real command
//! would, and foresees the real command's transcript and resulting
//! states; `--json` of a real run reports what it did. No broker runs.

use std::fs;

use emqx_testkit::{text, Host};
use serde_json::Value;

mod releases;

use releases::{assert_no_failures, host_in, owned, Before, O, V};

const STATES: [Before; 5] = [
    Before::Unknown,
    Before::Unpacked,
    Before::Current,
    Before::Permanent,
    Before::Old,
];

const COMMANDS: [&[&str]; 7] = [
    &["install", V],
    &["upgrade", V],
    &["downgrade", V],
    &["uninstall", V],
    &["install", "--no-permanent", V],
    &["downgrade", O],
    &["uninstall", O],
];

/// The `(version, state)` pairs of a JSON answer's `before` or `after`.
fn pairs(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e["version"].as_str().unwrap_or("").to_string(),
                        e["state"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The store's lock file: a dry run takes no lock, so not even it changes.
fn lock_bytes(host: &Host) -> Option<Vec<u8>> {
    fs::read(host.store().join(".lock")).ok()
}

/// `args` with `flags` after the command's name.
fn with(args: &[&str], flags: &[&str]) -> Vec<String> {
    let mut all = vec![args[0].to_string()];
    all.extend(flags.iter().map(|s| s.to_string()));
    all.extend(args[1..].iter().map(|s| s.to_string()));
    all
}

fn run(host: &Host, args: &[String]) -> std::process::Output {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    host.emqx(&refs)
}

/// One command in one state: the dry run against the real run on a twin host.
fn check(before: Before, args: &[&str], failures: &mut Vec<String>) {
    let label = format!("{before:?} {args:?}");
    let host = host_in(before);
    let (snapshot, lock) = (host.snapshot(), lock_bytes(&host));
    let dry = run(&host, &with(args, &["--dry-run", "--json"]));
    let text_dry = run(&host, &with(args, &["--dry-run"]));
    if host.snapshot() != snapshot || lock_bytes(&host) != lock {
        failures.push(format!("{label}: the dry run changed the host"));
    }
    let twin = host_in(before);
    let real = twin.emqx(args);
    let (real_out, real_err) = text(&real);
    if dry.status.code() != real.status.code() || text_dry.status.code() != real.status.code() {
        failures.push(format!(
            "{label}: dry run exit {:?}/{:?}, real {:?} ({real_err})",
            dry.status.code(),
            text_dry.status.code(),
            real.status.code()
        ));
        return;
    }
    let (dry_out, dry_err) = text(&dry);
    if real.status.code() != Some(0) {
        if dry_out.is_empty() && dry_err.lines().count() == 1 && dry_err.starts_with("ERROR: ") {
            return;
        }
        failures.push(format!(
            "{label}: a refused dry run printed {dry_out:?} {dry_err:?}"
        ));
        return;
    }
    let answer: Value = match serde_json::from_str(&dry_out) {
        Ok(v) => v,
        Err(e) => return failures.push(format!("{label}: not JSON ({e}): {dry_out}")),
    };
    let lines: Vec<String> = real_out.lines().map(str::to_string).collect();
    let foreseen: Vec<String> = answer["lines"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|l| l.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if foreseen != lines {
        failures.push(format!("{label}: foresaw {foreseen:?}, printed {lines:?}"));
    }
    if pairs(&answer["after"]) != twin.versions() {
        failures.push(format!(
            "{label}: foresaw {:?}, got {:?}",
            pairs(&answer["after"]),
            twin.versions()
        ));
    }
    let changed = twin.versions() != host.versions();
    if answer["changed"] != changed || answer["dry_run"] != true {
        failures.push(format!(
            "{label}: changed {} but {changed}",
            answer["changed"]
        ));
    }
    let (words, _) = text(&text_dry);
    if !words.starts_with(&format!("Dry run of '{}", args[0])) {
        failures.push(format!("{label}: text dry run {words:?}"));
    }
}

#[test]
fn a_dry_run_foresees_the_real_command_and_changes_nothing() {
    let mut failures = Vec::new();
    for before in STATES {
        for args in COMMANDS {
            check(before, args, &mut failures);
        }
    }
    assert_no_failures(&failures);
}

#[test]
fn the_text_plan_names_each_step_and_the_states() {
    let host = host_in(Before::Unknown);
    let out = host.ok(&["upgrade", "--dry-run", V]);
    assert_eq!(
        out,
        "Dry run of 'upgrade 5.0.1': nothing was changed.\n\
         Would unpack releases/emqx-5.0.1.zip into the store as release 5.0.1\n\
         Would record 5.0.1 to run at the next start (no broker is running)\n\
         Would make 5.0.1 permanent\n\
         Releases now:   5.0.0 permanent\n\
         Releases after: 5.0.1 permanent, 5.0.0 old\n"
    );
    let host = host_in(Before::Permanent);
    let out = host.ok(&["install", V, "--dry-run"]);
    assert_eq!(
        out,
        "Dry run of 'install 5.0.1': nothing was changed.\n\
         It would change nothing: Release 5.0.1 is already installed, running and set permanent.\n"
    );
}

#[test]
fn a_real_run_answers_in_json() {
    let host = host_in(Before::Unknown);
    let out = host.ok(&["upgrade", "--json", V]);
    let answer: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["changed"], true, "{answer}");
    assert_eq!(answer["dry_run"], false, "{answer}");
    assert_eq!(pairs(&answer["before"]), owned(&[(O, "permanent")]));
    assert_eq!(pairs(&answer["after"]), host.versions());
    assert_eq!(answer["lines"][3], "Made release permanent: \"5.0.1\"");
    // No broker ran: nothing switched.
    assert_eq!(answer["switch"], Value::Null);
    let again: Value = serde_json::from_str(&host.ok(&["upgrade", "--json", V])).unwrap();
    assert_eq!(again["changed"], false, "{again}");
    // A refusal is one line on stderr, never a JSON answer.
    let refused = host.emqx(&["uninstall", V, "--json"]);
    assert_eq!(refused.status.code(), Some(3));
    assert_eq!(text(&refused).0, "");
    let gone: Value = serde_json::from_str(&host.ok(&["uninstall", "--json", O])).unwrap();
    assert_eq!(gone["changed"], true, "{gone}");
    assert_eq!(pairs(&gone["after"]), owned(&[(V, "permanent")]));
}

#[test]
fn bad_input_to_a_dry_run_is_one_line_and_changes_nothing() {
    let host = host_in(Before::Unknown);
    fs::write(
        host.drop_dir().join("emqx-5.0.1.zip.sha256"),
        "0".repeat(64),
    )
    .unwrap();
    let (snapshot, lock) = (host.snapshot(), lock_bytes(&host));
    for (args, code, says) in [
        (
            &["upgrade", "--dry-run", "v5"][..],
            2,
            "Invalid semantic version: 'v5'",
        ),
        (&["upgrade", "--dry-run", "--json", V][..], 4, "checksum"),
        (
            &["upgrade", "--dry-run", "5.0.7"][..],
            4,
            "no package for release 5.0.7",
        ),
        (
            &["upgrade", "--dry-run", "5.1.0"][..],
            3,
            "Cannot upgrade/downgrade",
        ),
        (
            &["downgrade", "--dry-run", "--json", V][..],
            3,
            "use 'upgrade 5.0.1'",
        ),
        (&["uninstall", "--dry-run", O][..], 3, "is running"),
        (&["upgrade", "--dry-run", "--bogus", V][..], 2, "'--bogus'"),
    ] {
        let out = host.emqx(args);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert_eq!(stdout, "", "{args:?}");
        // One line; the patch-only refusal adds the reference's second.
        let lines = if code == 3 && says.starts_with("Cannot") {
            2
        } else {
            1
        };
        assert!(
            stderr.starts_with("ERROR: ")
                && stderr.lines().count() == lines
                && stderr.contains(says),
            "{args:?}: {stderr}"
        );
    }
    assert_eq!(host.snapshot(), snapshot);
    assert_eq!(lock_bytes(&host), lock);
}
