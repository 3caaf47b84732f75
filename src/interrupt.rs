//! SIGINT, SIGHUP and SIGTERM while a command changes the store or moves
//! the broker: noted, and honoured between two steps, so that an admin's
//! Ctrl-C, a closing terminal or `timeout` never cuts a switch or a state
//! write in half (SIGKILL still can: the pending-switch record covers it).

use std::sync::atomic::{AtomicI32, Ordering};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

static SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn note(sig: nix::libc::c_int) {
    SIGNAL.store(sig, Ordering::SeqCst);
}

/// From now on the three signals are noted instead of ending the process.
/// A child's exec resets them to their defaults.
pub fn defer() {
    let action = SigAction::new(
        SigHandler::Handler(note),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGHUP, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe; no other handler for these signals exists.
        let _ = unsafe { sigaction(sig, &action) };
    }
}

/// The signal that arrived since [`defer`], if any.
pub fn pending() -> Option<Signal> {
    Signal::try_from(SIGNAL.load(Ordering::SeqCst)).ok()
}
