//! emqx-relup: release manager and zero-downtime switcher for an MQTT broker.
//!
//! The parts of the design are one module each:
//! - [`release`]: pure planning (versions, states, messages, the patch-only rule);
//! - [`store`]: the on-disk release store (state file, lock, unpacked trees);
//! - [`package`]: finding, verifying and safely extracting release packages;
//! - [`switch`]: moving a running broker to another release;
//! - [`systemd`]: the broker's unit over D-Bus, sd_notify, the journal;
//! - [`ops`]: the operations that tie them together; [`cli`]: the command line;
//! - [`hooks`]: what the .deb/.rpm maintainer scripts call.

#[cfg(target_os = "linux")]
pub mod broker;
pub mod config;
pub mod error;
#[cfg(target_os = "linux")]
pub mod handoff;
pub mod layout;
pub mod load;
pub mod mqtt;
pub mod release;

#[cfg(target_os = "linux")]
pub mod cli;
#[cfg(target_os = "linux")]
pub mod hooks;
#[cfg(target_os = "linux")]
pub mod interrupt;
#[cfg(target_os = "linux")]
pub mod ops;
#[cfg(target_os = "linux")]
pub mod package;
#[cfg(target_os = "linux")]
pub mod privs;
#[cfg(target_os = "linux")]
pub mod refbroker;
#[cfg(target_os = "linux")]
pub mod store;
#[cfg(target_os = "linux")]
pub mod switch;
#[cfg(target_os = "linux")]
pub mod systemd;

pub use error::{Error, ExitClass};

/// A place where a fault test kills the helper as `kill -9` would: with
/// the `failpoints` feature, `FAILPOINTS=NAME=return` aborts there (no
/// destructor runs, no fd is closed by us). Compiled away otherwise.
#[macro_export]
macro_rules! kill_point {
    ($name:literal) => {
        #[cfg(feature = "failpoints")]
        {
            if fail::eval($name, |_| ()).is_some() {
                std::process::abort();
            }
        }
    };
}
