//! `Ops::execute` with a fake switcher: the state recorded before a switch
//! through systemd is restored when the switch fails, kept when it works,
//! and the pending record is gone either way.

use std::cell::RefCell;
use std::path::Path;

use semver::Version;

use super::pending::PENDING_FILE;
use super::{Ops, Report};
use crate::config::Config;
use crate::layout::Layout;
use crate::release::{MoveKind, ReleaseState, Releases, Say};
use crate::store::Store;
use crate::switch::{Pending, RunningBroker, SwitchReport, Switcher};
use crate::Error;

/// Runs 5.0.0; its switch first reads the state the other process would
/// read (systemd's `ExecReload`), then succeeds or fails.
struct FakeUnit {
    store: Store,
    works: bool,
    seen: RefCell<Option<Releases>>,
}

impl Switcher for FakeUnit {
    fn probe(&self) -> Result<Option<RunningBroker>, Error> {
        Ok(Some(RunningBroker {
            socket: "/nonexistent/handoff.sock".into(),
            pid: 1,
            version: "5.0.0".into(),
            start: None,
        }))
    }
    fn records_first(&self) -> bool {
        true
    }
    fn switch(
        &self,
        broker: &RunningBroker,
        version: &Version,
        _tree: &Path,
        _pending: &mut dyn Pending,
    ) -> Result<SwitchReport, Error> {
        *self.seen.borrow_mut() = Some(self.store.load()?);
        if !self.works {
            return Err(Error::switching(version)("the reload job failed"));
        }
        Ok(SwitchReport {
            old_pid: broker.pid,
            new_pid: 2,
            draining: 0,
            moved: None,
            drain_reason: None,
            helper: std::time::Duration::ZERO,
            start: std::time::Duration::ZERO,
            warning: None,
            via_unit: Some("emqx.service".into()),
            unfinished: false,
        })
    }
}

struct Quiet;

impl Report for Quiet {
    fn say(&mut self, _: &Say) {}
    fn note(&mut self, _: &str) {}
    fn warn(&mut self, _: &str) {}
}

fn v(s: &str) -> Version {
    Version::parse(s).unwrap()
}

/// A store with 5.0.0 permanent and 5.0.1 unpacked (its tree present).
fn host() -> (tempfile::TempDir, Layout, Store) {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout {
        root: dir.path().join("root"),
        state_dir: dir.path().join("state"),
    };
    std::fs::create_dir_all(layout.drop_dir()).unwrap();
    let store = Store::new(layout.store_dir());
    std::fs::create_dir_all(store.tree(&v("5.0.0"))).unwrap();
    std::fs::create_dir_all(store.tree(&v("5.0.1"))).unwrap();
    let mut releases = Releases::default();
    releases.add_unpacked(v("5.0.0"));
    releases.make_permanent(&v("5.0.0"));
    releases.add_unpacked(v("5.0.1"));
    let lock = store.lock(std::time::Duration::from_secs(1)).unwrap();
    store.save(&lock, &releases).unwrap();
    drop(lock);
    (dir, layout, store)
}

/// `upgrade 5.0.1 --no-permanent` through the fake: its result, the state
/// after it, and the state the switch saw.
fn upgrade(works: bool) -> (Result<(), Error>, Releases, Option<Releases>) {
    let (_dir, layout, store) = host();
    let fake = FakeUnit {
        store: Store::new(layout.store_dir()),
        works,
        seen: RefCell::new(None),
    };
    let ops = Ops::new(layout, Config::default(), &fake);
    let result = ops.move_to(MoveKind::Upgrade, &v("5.0.1"), false, &mut Quiet);
    let seen = fake.seen.borrow().clone();
    let after = store.load().unwrap();
    assert_eq!(
        store.read_file(PENDING_FILE).unwrap(),
        None,
        "the pending record must be cleared"
    );
    (result, after, seen)
}

#[test]
fn a_failed_switch_through_systemd_restores_the_recorded_state() {
    let (result, after, seen) = upgrade(false);
    let e = result.unwrap_err();
    assert!(matches!(e, Error::Switch { .. }), "{e}");
    let seen = seen.expect("the switch ran");
    assert_eq!(
        seen.get(&v("5.0.1")),
        Some(ReleaseState::Current),
        "the unit's ExecReload must read the new release as current"
    );
    assert_eq!(after.get(&v("5.0.0")), Some(ReleaseState::Permanent));
    assert_eq!(after.get(&v("5.0.1")), Some(ReleaseState::Unpacked));
}

#[test]
fn a_switch_through_systemd_that_works_keeps_the_recorded_state() {
    let (result, after, _) = upgrade(true);
    result.unwrap();
    assert_eq!(after.get(&v("5.0.1")), Some(ReleaseState::Current));
    assert_eq!(after.get(&v("5.0.0")), Some(ReleaseState::Permanent));
}

/// A broker nobody can ask: its probe fails.
struct Unanswered;

impl Switcher for Unanswered {
    fn probe(&self) -> Result<Option<RunningBroker>, Error> {
        Err(Error::Broker("two brokers answer".into()))
    }
    fn switch(
        &self,
        _: &RunningBroker,
        version: &Version,
        _: &Path,
        _: &mut dyn Pending,
    ) -> Result<SwitchReport, Error> {
        Err(Error::switching(version)("not reached"))
    }
}

#[test]
fn status_shows_a_pending_direct_switch_when_the_probe_fails() {
    use crate::switch::intent::{Intent, Proc, SwitchPath as How};
    let (_dir, layout, store) = host();
    let ops = Ops::new(layout, Config::default(), &Unanswered);
    // Without a record, the probe's error is the answer.
    assert!(matches!(ops.status(), Err(Error::Broker(_))));
    let gone = Proc {
        pid: u32::MAX - 1,
        start: 1,
    };
    let intent = Intent::new(
        "5.0.1",
        "5.0.0",
        How::Direct {
            old: gone,
            new: gone,
            socket: "handoff.sock.7".into(),
        },
    );
    let lock = store.lock(std::time::Duration::from_secs(1)).unwrap();
    store
        .write_file(&lock, PENDING_FILE, intent.encode().as_bytes())
        .unwrap();
    drop(lock);
    let status = ops.status().unwrap();
    assert!(status.broker.is_none());
    assert_eq!(
        status.broker_unknown.as_deref(),
        Some("asking the running broker: two brokers answer"),
        "{status:?}"
    );
    let pending = status.pending.expect("the record is shown");
    assert_eq!(
        (pending.from.as_str(), pending.to.as_str()),
        ("5.0.0", "5.0.1")
    );
    assert_eq!(pending.path, "direct");
}
