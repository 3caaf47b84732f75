//! Fault injection at the steps of a switch (the `failpoints` feature,
//! tikv/fail-rs): compiled away otherwise, so release and package builds
//! have none.
//!
//! `FAILPOINTS="NAME=ACTION;..."` in a process's environment arms its
//! steps. A step's name says whose it is: `helper::…`, `old::…` (a broker
//! handing its connections away), `new::…` (a broker taking them),
//! `hook::…` (the helper around a `systemctl`/D-Bus call). A helper
//! passes [`BROKER_FAILPOINTS_ENV`] to the brokers it starts as their
//! `FAILPOINTS`. The actions:
//! - `return` or `return(kill)`: the process aborts there, as `kill -9`
//!   would (no destructor runs);
//! - `return(error)`: the step fails as its operation would
//!   ([`step`] returns [`Injected`]);
//! - `sleep(MS)`: the step takes MS milliseconds longer (a delay past a
//!   bound); `N*ACTION` arms it for the first N evaluations only, and
//!   `off->` sequences (`1*off->return`) pick a later evaluation.

/// A step failed by injection: its operation is to fail as it would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injected(pub &'static str);

impl std::fmt::Display for Injected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "fault injected at {}", self.0)
    }
}

impl std::error::Error for Injected {}

impl From<Injected> for std::io::Error {
    fn from(e: Injected) -> Self {
        std::io::Error::other(e.to_string())
    }
}

/// Reads `FAILPOINTS` (once per process; a process's entry calls it).
/// Holds the configuration while alive.
#[cfg(feature = "failpoints")]
pub fn setup() -> Option<fail::FailScenario<'static>> {
    Some(fail::FailScenario::setup())
}

/// Without the feature: nothing to read.
#[cfg(not(feature = "failpoints"))]
pub fn setup() -> Option<()> {
    None
}

/// Step `name` of a switch: aborts, fails or waits there as armed.
#[cfg(feature = "failpoints")]
pub fn step(name: &'static str) -> Result<(), Injected> {
    match fail::eval(name, |arg| arg) {
        None => Ok(()),
        Some(Some(arg)) if arg == "error" => Err(Injected(name)),
        Some(_) => std::process::abort(),
    }
}

/// Without the feature: every step passes.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn step(_name: &'static str) -> Result<(), Injected> {
    Ok(())
}

/// What a helper built with the feature arms in the brokers it starts
/// (as their `FAILPOINTS`; its own `FAILPOINTS` is never passed on).
pub const BROKER_FAILPOINTS_ENV: &str = "EMQX_RELUP_BROKER_FAILPOINTS";

/// Whether this build can inject faults (the `failpoints` feature).
pub const ENABLED: bool = cfg!(feature = "failpoints");
