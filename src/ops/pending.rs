//! The pending-switch record (`releases/SWITCH`): written under the lock
//! before a switch's point of no return, removed once the state names what
//! runs, and resolved by the next command that takes the lock when a killed
//! helper left it behind. See [`crate::switch::intent`].

use semver::Version;

use super::{Ops, Report};
use crate::release::{Refusal, Releases};
use crate::store::{Store, StoreLock};
use crate::switch::intent::{decide_unit, Intent, SwitchPath, Verdict};
use crate::switch::{recover, Pending};
use crate::Error;

/// The record's name in the store.
pub const PENDING_FILE: &str = "SWITCH";

/// Writes the record for a switch run under `lock`.
pub struct StoreRecord<'a> {
    store: &'a Store,
    lock: &'a StoreLock,
    written: bool,
}

impl<'a> StoreRecord<'a> {
    /// A record in `store`, not yet written.
    pub fn new(store: &'a Store, lock: &'a StoreLock) -> Self {
        StoreRecord {
            store,
            lock,
            written: false,
        }
    }

    /// The switch is over and the state says so: the record goes.
    pub fn clear(&self) -> Result<(), Error> {
        if self.written {
            self.store.remove_file(self.lock, PENDING_FILE)?;
        }
        Ok(())
    }
}

impl Pending for StoreRecord<'_> {
    fn record(&mut self, intent: &Intent) -> Result<(), Error> {
        self.store
            .write_file(self.lock, PENDING_FILE, intent.encode().as_bytes())?;
        self.written = true;
        Ok(())
    }
}

/// A pending switch and what the next command will do with it.
#[derive(Debug, Clone)]
pub struct PendingSwitch {
    /// The record.
    pub intent: Intent,
    /// The verdict from what runs now.
    pub verdict: Verdict,
}

impl Ops<'_> {
    /// The pending record, if any (read without the lock).
    pub fn pending(&self) -> Result<Option<Intent>, Error> {
        let Some(bytes) = self.store.read_file(PENDING_FILE)? else {
            return Ok(None);
        };
        Intent::decode(&bytes)
            .map(Some)
            .map_err(|problem| Error::State {
                path: self.store.dir().join(PENDING_FILE),
                problem: problem.into(),
            })
    }

    /// The pending switch and its verdict, for `status` (no effect).
    pub fn pending_verdict(&self) -> Result<Option<PendingSwitch>, Error> {
        let Some(intent) = self.pending()? else {
            return Ok(None);
        };
        let verdict = match &intent.path {
            SwitchPath::Direct { new, .. } => recover::judge(&self.config, self.store.dir(), *new),
            SwitchPath::Unit { .. } => {
                let running = self.switcher.probe()?.map(|b| b.version);
                decide_unit(running.as_deref(), &intent.version)
            }
        };
        Ok(Some(PendingSwitch { intent, verdict }))
    }

    /// Resolves a record a killed helper left, from what runs; under the
    /// lock, before the command plans anything.
    pub(super) fn resolve_pending(
        &self,
        lock: &StoreLock,
        releases: &mut Releases,
        out: &mut dyn Report,
    ) -> Result<(), Error> {
        let Some(intent) = self.pending()? else {
            return Ok(());
        };
        let (to, from) = (&intent.version, &intent.from);
        let version = Version::parse(to).ok();
        match &intent.path {
            SwitchPath::Direct { old, new, socket } => {
                let store = self.store.dir();
                match recover::settle(&self.config, store, to, *old, *new, socket) {
                    Verdict::Finish => {
                        if let Some(v) = version.filter(|v| releases.get(v).is_some()) {
                            if releases.running() != Some(&v) {
                                releases.install(&v);
                                self.store.save(lock, releases)?;
                            }
                        }
                        out.note(&format!(
                            "finished the switch from {from} to {to} that an interrupted command left: the broker (pid {}) runs {to}",
                            new.pid
                        ));
                    }
                    _ => out.note(&format!(
                        "dropped the switch from {from} to {to} that an interrupted command left: it had not taken"
                    )),
                }
            }
            SwitchPath::Unit { before } => {
                if self.switcher.in_flight() {
                    return Err(Refusal::ReloadInFlight(self.config.unit.clone()).into());
                }
                let running = self.switcher.probe()?.map(|b| b.version);
                match decide_unit(running.as_deref(), to) {
                    Verdict::Keep => out.note(&format!(
                        "the switch to {to} that an interrupted command asked systemd for did happen: {to} is current (make it permanent with 'emqx-relup install {to}')"
                    )),
                    _ => {
                        *releases = self.store.decode(before)?;
                        self.store.save(lock, releases)?;
                        out.note(&format!(
                            "the switch to {to} that an interrupted command asked systemd for did not happen: the state is back to what it was"
                        ));
                    }
                }
            }
        }
        self.store.remove_file(lock, PENDING_FILE)
    }
}
