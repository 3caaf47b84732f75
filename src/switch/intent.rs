//! A switch in flight, recorded in the store (`releases/SWITCH`, root's,
//! under the lock) before the point of no return, so that a helper killed
//! mid-switch leaves a record the next command resolves from what actually
//! runs, instead of a state that disagrees with the brokers.
//!
//! Two kinds: a direct switch writes the old and new brokers (pid and start
//! time) and the new broker's unpublished handoff socket right before the
//! new broker's lease is confirmed; an administrator's switch through
//! systemd writes the state it replaced before it asks for `ReloadUnit`.

use serde::{Deserialize, Serialize};

/// The record's format tag.
pub const FORMAT: &str = "emqx-relup/switch/v1";

/// A process, named so that a reused pid does not match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proc {
    /// Its pid.
    pub pid: u32,
    /// Its start time (`/proc/PID/stat` field 22).
    pub start: u64,
}

/// How the interrupted switch was going.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "path")]
pub enum SwitchPath {
    /// The helper itself was moving the listeners.
    Direct {
        /// The broker being replaced.
        old: Proc,
        /// The broker taking over.
        new: Proc,
        /// The new broker's handoff socket, not yet renamed to `handoff.sock`.
        socket: String,
    },
    /// systemd's `ExecReload` was; the administrator's command waited.
    Unit {
        /// The state document the command replaced (restored if the
        /// switch did not happen).
        before: String,
    },
}

/// A pending switch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// [`FORMAT`].
    pub format: String,
    /// The release switched to.
    pub version: String,
    /// The release the old broker ran.
    pub from: String,
    /// How.
    #[serde(flatten)]
    pub path: SwitchPath,
}

impl Intent {
    /// A new record.
    pub fn new(version: &str, from: &str, path: SwitchPath) -> Intent {
        Intent {
            format: FORMAT.into(),
            version: version.into(),
            from: from.into(),
            path,
        }
    }

    /// The record as stored.
    pub fn encode(&self) -> String {
        // A struct of strings and numbers always serializes.
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    /// Reads a stored record; a foreign or garbled one is an error.
    pub fn decode(bytes: &[u8]) -> Result<Intent, RecordError> {
        let intent: Intent =
            serde_json::from_slice(bytes).map_err(|e| RecordError::NotARecord(e.to_string()))?;
        if intent.format != FORMAT {
            return Err(RecordError::Unknown(intent.format));
        }
        Ok(intent)
    }
}

/// Why a stored switch record is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Not JSON of a record.
    #[error("not a switch record: {0}")]
    NotARecord(String),
    /// Another format tag.
    #[error("unknown format {0:?}")]
    Unknown(String),
}

/// What the next command does with a pending switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Direct: the new broker outlived its lease, so it was confirmed and
    /// stays: the old one gets the commit it may have missed, the new
    /// socket is published, the state names the new release.
    Finish,
    /// Direct: the new broker is gone (its lease closed with the helper):
    /// nothing took; the state stands.
    NotTaken,
    /// Through systemd: the broker runs the new release; the state,
    /// recorded first, already says so.
    Keep,
    /// Through systemd: the broker still runs the old release: the state
    /// goes back to what it was.
    Restore,
}

/// A direct switch, from whether the new broker still runs once a lease
/// it did not get confirmed would have ended it.
pub fn decide_direct(new_alive: bool) -> Verdict {
    if new_alive {
        Verdict::Finish
    } else {
        Verdict::NotTaken
    }
}

/// A switch through systemd, from the release the broker runs now.
pub fn decide_unit(running: Option<&str>, version: &str) -> Verdict {
    if running == Some(version) {
        Verdict::Keep
    } else {
        Verdict::Restore
    }
}

impl Verdict {
    /// What the next command will do, for `status`.
    pub fn describe(self) -> &'static str {
        match self {
            Verdict::Finish => {
                "finish it: commit the old broker, publish the new one's socket, record its release"
            }
            Verdict::NotTaken => "drop it: the new broker is gone, the recorded state stands",
            Verdict::Keep => "keep it: the broker runs the new release, as the state says",
            Verdict::Restore => "undo it: the broker runs the old release, the state goes back",
        }
    }

    /// Its name in `status --json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Finish => "finish",
            Verdict::NotTaken => "drop",
            Verdict::Keep => "keep",
            Verdict::Restore => "restore",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_foreign_ones_are_refused() {
        let direct = Intent::new(
            "5.0.1",
            "5.0.0",
            SwitchPath::Direct {
                old: Proc { pid: 10, start: 1 },
                new: Proc { pid: 11, start: 2 },
                socket: "handoff.sock.9".into(),
            },
        );
        assert_eq!(Intent::decode(direct.encode().as_bytes()).unwrap(), direct);
        let unit = Intent::new(
            "5.0.1",
            "5.0.0",
            SwitchPath::Unit {
                before: "{}".into(),
            },
        );
        assert_eq!(Intent::decode(unit.encode().as_bytes()).unwrap(), unit);
        let foreign = direct.encode().replace(FORMAT, "other/v9");
        assert!(Intent::decode(foreign.as_bytes()).is_err());
        assert!(Intent::decode(b"garbage").is_err());
    }

    #[test]
    fn the_verdict_follows_what_runs() {
        assert_eq!(decide_direct(false), Verdict::NotTaken);
        assert_eq!(decide_direct(true), Verdict::Finish);
        assert_eq!(decide_unit(Some("5.0.1"), "5.0.1"), Verdict::Keep);
        assert_eq!(decide_unit(Some("5.0.0"), "5.0.1"), Verdict::Restore);
        assert_eq!(decide_unit(None, "5.0.1"), Verdict::Restore);
    }
}
