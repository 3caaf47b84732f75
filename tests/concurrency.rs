//! Two commands at once: one holds the lock, the other waits or gives up
//! with the holder's pid; the state file stays valid.

use std::fs;
use std::thread::sleep;
use std::time::{Duration, Instant};

use emqx_testkit::{big_release, text, write_tar_gz, Host};

fn host(lock_timeout: &str) -> Host {
    let host = Host::with_config(&format!("lock_timeout_secs = {lock_timeout}\n"));
    host.drop_release("5.0.0", true);
    host.ok(&["install", "5.0.0"]);
    write_tar_gz(
        &host.drop_dir().join("emqx-5.0.1.tar.gz"),
        &big_release("5.0.1", 1500, 24 << 20),
    );
    host
}

fn spawn(host: &Host) -> std::io::Result<std::process::Child> {
    use std::process::Stdio;
    host.command()
        .args(["upgrade", "5.0.1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
}

fn wait_for_staging(host: &Host) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let staging = fs::read_dir(host.store()).unwrap().any(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".staging-")
        });
        if staging {
            return;
        }
        sleep(Duration::from_millis(1));
    }
    panic!("the first upgrade never started unpacking");
}

#[test]
fn the_second_upgrade_waits_for_the_first() {
    let host = host("30");
    let a = spawn(&host).unwrap();
    let b = spawn(&host).unwrap();
    let a = a.wait_with_output().unwrap();
    let b = b.wait_with_output().unwrap();
    assert!(
        a.status.success() && b.status.success(),
        "{:?} {:?}",
        text(&a),
        text(&b)
    );
    let mut outs = [text(&a).0, text(&b).0];
    outs.sort();
    assert_eq!(
        outs[0], "Release 5.0.1 is already installed, running and set permanent.\n",
        "the loser sees the winner's work"
    );
    assert!(outs[1].contains("Unpacked successfully: \"5.0.1\""));
    assert_eq!(
        host.versions(),
        [
            ("5.0.1".to_string(), "permanent".to_string()),
            ("5.0.0".into(), "old".into())
        ]
    );
}

#[test]
fn a_lock_held_too_long_is_reported_with_the_holders_pid() {
    let host = host("0.05");
    let a = spawn(&host).unwrap();
    let holder = a.id();
    wait_for_staging(&host);
    let before = host.state();
    let b = host.emqx(&["upgrade", "5.0.1"]);
    assert_eq!(b.status.code(), Some(6), "{:?}", text(&b));
    assert_eq!(
        text(&b).1,
        format!("ERROR: another emqx-relup (pid {holder}) holds the lock\n")
    );
    assert_eq!(text(&b).0, "");
    let after_refusal = host.state();
    let a = a.wait_with_output().unwrap();
    assert!(a.status.success(), "{:?}", text(&a));
    assert_eq!(before, after_refusal, "the refused command wrote nothing");
    assert_eq!(
        host.versions()[0],
        ("5.0.1".to_string(), "permanent".to_string())
    );
}
