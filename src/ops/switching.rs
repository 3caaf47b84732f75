//! The switch step of an operation, both ways: recorded first when the
//! switch runs elsewhere (systemd's `ExecReload` reads the state), or here,
//! recording itself before its point of no return.

use std::path::Path;

use semver::Version;

use super::pending::StoreRecord;
use super::switched::report_switch;
use super::{Ops, Report};
use crate::release::Releases;
use crate::store::{Store, StoreLock};
use crate::switch::intent::{self, Intent};
use crate::switch::{NoRecord, RunningBroker};
use crate::Error;

impl Ops<'_> {
    /// The state names `v` before systemd's reload switches (its helper
    /// reads it); killed meanwhile, this command leaves the record, and
    /// the next one keeps or restores the state from what runs.
    pub(super) fn switch_recorded_first(
        &self,
        lock: &StoreLock,
        releases: &mut Releases,
        broker: &RunningBroker,
        v: &Version,
        tree: &Path,
        out: &mut dyn Report,
    ) -> Result<(), Error> {
        let before = releases.clone();
        let mut record = StoreRecord::new(&self.store, lock);
        let intent = Intent::new(
            &v.to_string(),
            &broker.version,
            intent::SwitchPath::Unit {
                before: Store::encode(&before),
            },
        );
        crate::switch::Pending::record(&mut record, &intent)
            .map_err(|e| Error::switching(v)(format!("recording the switch: {e}")))?;
        releases.install(v);
        self.state_write_step()?;
        self.store.save(lock, releases)?;
        // Kill or delay only.
        let _ = emqx_handoff::faults::step("helper::unit_recorded");
        match self.switcher.switch(broker, v, tree, &mut NoRecord) {
            Ok(r) => {
                record.clear()?;
                report_switch(out, broker, v, &r);
                Ok(())
            }
            Err(e) => {
                *releases = before;
                if let Err(save) = self.store.save(lock, releases) {
                    return Err(Error::switching(v)(format!(
                        "{e}; restoring the state failed too ({save}): it still names {v} as current, run 'emqx-relup versions' and install the running release"
                    )));
                }
                record.clear()?;
                Err(e)
            }
        }
    }

    /// The switch runs in this process and records itself in the store
    /// right before its point of no return; once it happened, a state
    /// that cannot be written keeps the record, and the next command
    /// finishes what this one did not.
    pub(super) fn switch_here(
        &self,
        lock: &StoreLock,
        releases: &mut Releases,
        broker: &RunningBroker,
        v: &Version,
        tree: &Path,
        out: &mut dyn Report,
    ) -> Result<(), Error> {
        let mut record = StoreRecord::new(&self.store, lock);
        let r = match self.switcher.switch(broker, v, tree, &mut record) {
            Ok(r) => r,
            Err(e) => {
                // Abandoned: the new broker was stopped.
                record.clear()?;
                return Err(e);
            }
        };
        report_switch(out, broker, v, &r);
        releases.install(v);
        self.state_write_step()?;
        self.store.save(lock, releases)?;
        let _ = emqx_handoff::faults::step("helper::state_written");
        if !r.unfinished {
            record.clear()?;
        }
        Ok(())
    }
}
