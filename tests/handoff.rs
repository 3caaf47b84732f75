//! The running broker's handoff socket against bad peers: a real other uid,
//! a wrong protocol version, garbage, truncated messages, a peer that hangs.
//! The broker keeps serving and logs one line per bad session.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use emqx_handoff::{Channel, Message};
use emqx_testkit::BrokerHost;

fn running() -> BrokerHost {
    let mut b = BrokerHost::new("");
    b.drop_broker_release("5.0.0", true, "");
    assert_eq!(b.emqx(&["install", "5.0.0"]).2, Some(0));
    b.start();
    b
}

fn handoff_lines(b: &BrokerHost) -> Vec<String> {
    b.log_text()
        .lines()
        .filter(|l| l.starts_with("handoff:"))
        .map(String::from)
        .collect()
}

/// Waits until the log has `n` handoff lines.
fn wait_lines(b: &BrokerHost, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while handoff_lines(b).len() < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    handoff_lines(b)
}

#[test]
fn another_uid_gets_no_listeners() {
    let b = running();
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let socket = b.runtime_dir().join("handoff.sock");
    let as_nobody = |b: &BrokerHost| {
        let out = b
            .command()
            .arg("reload")
            .uid(nobody.uid.as_raw())
            .gid(nobody.gid.as_raw())
            .output()
            .unwrap();
        (
            String::from_utf8_lossy(&out.stderr).into_owned(),
            out.status.code(),
        )
    };
    // The socket's mode keeps it out first.
    assert_eq!(
        fs::metadata(&socket).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (err, code) = as_nobody(&b);
    assert_ne!(code, Some(0));
    assert!(
        err.contains("Permission denied") || err.contains("EACCES"),
        "{err}"
    );
    // With the mode loosened, the broker's SO_PEERCRED check refuses.
    fs::set_permissions(&socket, fs::Permissions::from_mode(0o666)).unwrap();
    let (err, code) = as_nobody(&b);
    assert_eq!(code, Some(5), "{err}");
    assert!(
        err.contains("the broker refused: permission denied"),
        "{err}"
    );
    let lines = wait_lines(&b, 1);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("refused pid") && lines[0].contains(&format!("uid {}", nobody.uid)),
        "{lines:?}"
    );
    assert_eq!(b.version_seen(0), "5.0.0");
}

#[test]
fn bad_peers_are_logged_once_each_and_the_broker_serves_on() {
    let b = running();
    let path = b.runtime_dir().join("handoff.sock");
    // Wrong protocol version.
    let ch = Channel::connect(&path).unwrap();
    ch.set_timeout(Duration::from_secs(5)).unwrap();
    ch.send(
        &Message::Hello {
            protocol: 9,
            min_protocol: 9,
            version: "x".into(),
            pid: 1,
        },
        &[],
    )
    .unwrap();
    assert!(matches!(ch.recv().unwrap().0, Message::Error { .. }));
    // Garbage.
    let ch = Channel::connect(&path).unwrap();
    ch.set_timeout(Duration::from_secs(5)).unwrap();
    nix::unistd::write(ch.as_fd(), b"\x00\xffnot json at all").unwrap();
    assert!(matches!(ch.recv().unwrap().0, Message::Error { .. }));
    // Truncated message.
    let ch = Channel::connect(&path).unwrap();
    ch.set_timeout(Duration::from_secs(5)).unwrap();
    nix::unistd::write(ch.as_fd(), br#"{"type":"hel"#).unwrap();
    assert!(matches!(ch.recv().unwrap().0, Message::Error { .. }));
    // Commit before hello.
    let ch = Channel::connect(&path).unwrap();
    ch.set_timeout(Duration::from_secs(5)).unwrap();
    ch.send(&Message::Commit, &[]).unwrap();
    assert!(matches!(ch.recv().unwrap().0, Message::Error { .. }));
    // A peer that connects and hangs, while the broker serves on.
    let hang = Channel::connect(&path).unwrap();
    assert_eq!(b.version_seen(0), "5.0.0");
    let lines = wait_lines(&b, 5);
    assert_eq!(lines.len(), 5, "one line per bad session: {lines:?}");
    assert!(lines.iter().any(|l| l.contains("timed out")), "{lines:?}");
    drop(hang);
    // A well-behaved helper still switches afterwards.
    b.drop_broker_release("5.0.1", true, "");
    assert_eq!(b.emqx(&["upgrade", "5.0.1"]).2, Some(0));
    assert_eq!(b.version_seen(1), "5.0.1");
    assert_eq!(handoff_lines(&b).len(), 5, "a good session logs nothing");
}
