//! The rules of both sides of a move, with a broker that records what it
//! was told and moves no real connection.

use std::net::TcpStream;
use std::sync::Mutex;

use super::*;
use crate::transfer::{self, Sender};

/// Records the calls; exports an empty state, imports whatever comes.
#[derive(Default)]
struct Fake {
    calls: Mutex<Vec<&'static str>>,
}

impl Fake {
    fn calls(&self) -> Vec<&'static str> {
        self.calls.lock().unwrap().clone()
    }
    fn call(&self, name: &'static str) {
        self.calls.lock().unwrap().push(name);
    }
}

impl Service for Fake {
    fn serve(&self, _: &str, _: TcpStream) {}
    fn connections(&self) -> usize {
        0
    }
    fn close_all(&self) {}
    fn export(&self, ch: &Channel, _: &str, _: Instant) -> Result<Exported, ExportError> {
        self.call("export");
        let s =
            Sender::begin(ch, "fake/1", b"", 0).map_err(|e| ExportError::Failed(e.to_string()))?;
        s.end().map_err(|e| ExportError::Failed(e.to_string()))?;
        Ok(Exported {
            conns: 0,
            left: 0,
            left_why: None,
        })
    }
    fn thaw(&self) {
        self.call("thaw");
    }
    fn go(&self) -> usize {
        self.call("go");
        0
    }
    fn import(&self, state: &mut Receiver<'_>) -> Result<usize, TransferError> {
        self.call("import");
        while state.next_batch()?.is_some() {}
        Ok(0)
    }
    fn discard(&self) {
        self.call("discard");
    }
}

/// A broker whose export is the trait's default: it cannot.
struct CannotExport;

impl Service for CannotExport {
    fn serve(&self, _: &str, _: TcpStream) {}
    fn connections(&self) -> usize {
        0
    }
    fn close_all(&self) {}
}

#[test]
fn an_old_broker_that_cannot_export_tells_the_new_one_it_drains() {
    let (a, b) = pair();
    // The new broker's side says going, and takes over.
    let new = std::thread::spawn(move || {
        let new = Fake::default();
        let got = import(&b, &new, &BOUNDS, None);
        (got, new.calls())
    });
    assert_eq!(
        export(&a, &CannotExport, "fake/1", Duration::from_secs(1)),
        Err(MoveFailed::NoExport)
    );
    assert_eq!(new.join().unwrap(), (Imported::OldDrains, vec![]));
    // A new broker gone before its word: the old one serves on.
    let (a, b) = pair();
    let importer = std::thread::spawn(move || {
        let drains = matches!(
            transfer::Receiver::begin(&b, &BOUNDS),
            Err(TransferError::Drains)
        );
        drop(b);
        drains
    });
    assert!(matches!(
        export(&a, &CannotExport, "fake/1", Duration::from_secs(1)),
        Err(MoveFailed::Thawed(_))
    ));
    assert!(importer.join().unwrap(), "no word that it drains");
}

fn pair() -> (Channel, Channel) {
    Channel::pair().unwrap()
}

const BOUNDS: Bounds = Bounds {
    max_conns: 10,
    max_bytes: 1 << 20,
};

/// A pid that ran and is gone.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn the_old_broker_closes_its_copies_only_once_go_is_delivered() {
    let old = Fake::default();
    let (a, b) = pair();
    // The importer takes the state, says imported, and is gone for go
    // (it shut its reading side first: no race with the go).
    let importer = std::thread::spawn(move || {
        transfer::recv(&b, &BOUNDS).unwrap();
        use std::os::fd::AsRawFd;
        nix::sys::socket::shutdown(b.as_fd().as_raw_fd(), nix::sys::socket::Shutdown::Read)
            .unwrap();
        b.send(
            &Message::Imported {
                connections: 0,
                closed_by_policy: 0,
            },
            &[],
        )
        .unwrap();
        drop(b);
    });
    // Past its imported: the new broker is gone when go is sent.
    let r = export(&a, &old, "fake/1", Duration::from_secs(5));
    importer.join().unwrap();
    assert!(matches!(r, Err(MoveFailed::Thawed(_))), "{r:?}");
    assert_eq!(
        old.calls(),
        ["export", "thaw"],
        "never go without go delivered"
    );
}

#[test]
fn go_delivered_closes_the_old_copies() {
    let old = Fake::default();
    let (a, b) = pair();
    let importer = std::thread::spawn(move || {
        transfer::recv(&b, &BOUNDS).unwrap();
        b.send(
            &Message::Imported {
                connections: 0,
                closed_by_policy: 0,
            },
            &[],
        )
        .unwrap();
        let go = b.recv().unwrap().0;
        b.send(&Message::Going, &[]).unwrap();
        go
    });
    let r = export(&a, &old, "fake/1", Duration::from_secs(5));
    assert!(
        matches!(
            r,
            Ok(Moved {
                moved: 0,
                left: 0,
                ..
            })
        ),
        "{r:?}"
    );
    assert_eq!(importer.join().unwrap(), Message::Go);
    assert_eq!(old.calls(), ["export", "go"]);
}

#[test]
fn go_delivered_to_a_new_broker_that_dies_before_going_thaws() {
    let old = Fake::default();
    let (a, b) = pair();
    let importer = std::thread::spawn(move || {
        transfer::recv(&b, &BOUNDS).unwrap();
        b.send(
            &Message::Imported {
                connections: 0,
                closed_by_policy: 0,
            },
            &[],
        )
        .unwrap();
        // Dies with the go unread.
        drop(b);
    });
    let r = export(&a, &old, "fake/1", Duration::from_secs(5));
    importer.join().unwrap();
    assert!(matches!(r, Err(MoveFailed::Thawed(_))), "{r:?}");
    assert_eq!(old.calls(), ["export", "thaw"]);
}

/// The old broker sends its state, reads `imported`, then closes the
/// channel without a word (as if it died); `old_pid` is the pid the new
/// broker checks.
fn closed_after_imported(old_pid: u32) -> (Imported, Vec<&'static str>) {
    let new = Fake::default();
    let (a, b) = pair();
    let exporter = std::thread::spawn(move || {
        transfer::send(&a, "fake/1", b"", &[]).unwrap();
        assert!(matches!(a.recv().unwrap().0, Message::Imported { .. }));
    });
    let r = import(&b, &new, &BOUNDS, Some(&crate::Pinned::new(old_pid)));
    exporter.join().unwrap();
    (r, new.calls())
}

#[test]
fn closed_after_imported_serves_only_when_the_old_broker_is_dead() {
    let (r, calls) = closed_after_imported(dead_pid());
    assert_eq!(
        r,
        Imported::Serving {
            connections: 0,
            go: false
        }
    );
    assert_eq!(calls, ["import", "thaw"]);
    // Alive (this test's own pid): the old broker thawed, or will.
    let (r, calls) = closed_after_imported(std::process::id());
    assert!(matches!(r, Imported::Refused(_)), "{r:?}");
    assert_eq!(calls, ["import", "discard"]);
}

#[test]
fn a_channel_closed_empty_drains_and_an_error_refuses() {
    let new = Fake::default();
    let (a, b) = pair();
    drop(a);
    assert_eq!(import(&b, &new, &BOUNDS, None), Imported::Nothing);
    assert!(new.calls().is_empty());
    // Imported, then the old broker gave up: nothing kept.
    let (a, b) = pair();
    let exporter = std::thread::spawn(move || {
        transfer::send(&a, "fake/1", b"", &[]).unwrap();
        let _ = a.recv().unwrap();
        a.send(
            &Message::Error {
                reason: "thawed".into(),
            },
            &[],
        )
        .unwrap();
    });
    let r = import(&b, &new, &BOUNDS, None);
    exporter.join().unwrap();
    assert_eq!(
        r,
        Imported::Refused("the old broker gave up: thawed".into())
    );
    assert_eq!(new.calls(), ["import", "discard"]);
}
