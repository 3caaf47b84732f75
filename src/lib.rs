//! emqx-relup: release manager and zero-downtime switcher for an MQTT broker.
//!
//! The parts of the design are one module each:
//! - [`release`]: pure planning (versions, states, refusals, messages, the
//!   patch-only rule); knows no I/O and not [`Error`];
//! - [`store`]: the on-disk release store (state file, lock, unpacked trees);
//! - [`package`]: finding, verifying and safely extracting release packages;
//! - [`switch`]: moving a running broker to another release (the handoff,
//!   restart and systemd strategies, the exec shim, the pending record);
//! - [`systemd`]: adapters only: the unit over D-Bus, the journal, the
//!   notify socket;
//! - [`ops`]: the operations that tie them together; [`cli`]: the command line;
//! - [`hooks`]: what the .deb/.rpm maintainer scripts call;
//! - [`config`]: `relup.toml`; [`layout`]: the host's paths; [`error`]:
//!   every failure and its exit class; [`privs`]: the service user,
//!   capabilities, no_new_privs; [`interrupt`]: signals honoured between
//!   steps.
//!
//! The handoff protocol itself (messages, fd channel, environment names,
//! the broker side) is the `emqx_handoff` crate, which brokers use too.

pub mod config;
pub mod error;
pub mod layout;
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
pub mod store;
#[cfg(target_os = "linux")]
pub mod switch;
#[cfg(target_os = "linux")]
pub mod systemd;

pub use error::{Error, ExitClass, Serving};
