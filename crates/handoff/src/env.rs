//! Every environment variable of the protocol and the fd placement rule:
//! what the helper sets for a new broker, and what a broker reads.
//!
//! Placement: the listeners are fds `FIRST_FD ..` in `LISTEN_FDNAMES`
//! order (systemd's socket-activation convention, so a broker that knows
//! only that convention works); the helper's lease, when there is one,
//! comes right after them and is not counted by `LISTEN_FDS`, and the
//! brokers' direct channel of protocol 2, when there is one, after it.
//!
//! Other `EMQX_*` variables (not `EMQX_RELUP_*`) are the broker's own
//! configuration, passed through by the helper untouched (the reference
//! broker's `EMQX_LISTENERS`, `EMQX_BROKER_VERSION`, `EMQX_DRAIN_SECS`);
//! `EMQX_ROOT_DIR`, `EMQX_STATE_DIR` and `EMQX_RELUP_CONFIG` configure the
//! helper's command line.

use std::os::fd::RawFd;
use std::path::PathBuf;

/// Number of inherited listeners (socket activation).
pub const LISTEN_FDS: &str = "LISTEN_FDS";
/// Their names, `:`-separated, in fd order.
pub const LISTEN_FDNAMES: &str = "LISTEN_FDNAMES";
/// The pid the listeners are for (set by the exec shim to the broker's own).
pub const LISTEN_PID: &str = "LISTEN_PID";
/// The notify socket for `READY=1` (during a switch: the helper's).
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";
/// Where the broker serves its handoff socket (set by the helper during a
/// switch; the helper renames it over [`HANDOFF_SOCKET`] after the commit).
pub const HANDOFF_SOCKET_ENV: &str = "EMQX_HANDOFF_SOCKET";
/// The runtime folder that holds [`HANDOFF_SOCKET`].
pub const RUNTIME_DIR_ENV: &str = "EMQX_RUNTIME_DIR";
/// The release version the helper starts.
pub const VERSION_ENV: &str = "EMQX_RELUP_VERSION";
/// The fd of the helper's lease on a broker it starts (see
/// [`crate::broker`]): a pipe; `c` confirms, end of file without it means
/// the helper died before its point of no return and the broker exits.
pub const LEASE_ENV: &str = "EMQX_RELUP_LEASE_FD";
/// The fd of the new broker's end of the brokers' direct channel
/// (protocol 2): a SOCK_SEQPACKET socket, placed right after the lease.
/// The old broker sends its state over it, or the channel closes with
/// nothing on it (the connections drain instead); the new broker accepts
/// only after that.
pub const MOVE_FD_ENV: &str = "EMQX_RELUP_MOVE_FD";
/// The broker a switch replaces (handed back as systemd's main process if
/// the lease is lost).
pub const OLD_PID_ENV: &str = "EMQX_RELUP_OLD_PID";
/// systemd's own notify socket for a broker a switch starts under systemd
/// (its `NOTIFY_SOCKET` is the helper's).
pub const SYSTEMD_NOTIFY_ENV: &str = "EMQX_RELUP_SYSTEMD_NOTIFY";
/// Names starting with this are the helper's to set: never passed from the
/// helper's own environment to a broker.
pub const HELPER_PREFIX: &str = "EMQX_RELUP_";
/// Names starting with this (but not [`HELPER_PREFIX`]) are the broker's
/// configuration, passed through.
pub const BROKER_PREFIX: &str = "EMQX_";

/// The name of a running broker's handoff socket in the runtime folder.
pub const HANDOFF_SOCKET: &str = "handoff.sock";
/// The runtime folder when [`RUNTIME_DIR_ENV`] is unset.
pub const DEFAULT_RUNTIME_DIR: &str = "/run/emqx";

/// The first passed fd (0-2 are stdio).
pub const FIRST_FD: RawFd = 3;

/// Where the lease goes when `listeners` listeners are passed.
pub fn lease_fd(listeners: usize) -> RawFd {
    FIRST_FD + RawFd::try_from(listeners).unwrap_or(RawFd::MAX - FIRST_FD)
}

/// Where the brokers' channel goes: right after the lease.
pub fn move_fd(listeners: usize) -> RawFd {
    lease_fd(listeners).saturating_add(1)
}

/// The handoff socket a broker serves: [`HANDOFF_SOCKET_ENV`] (set during
/// a switch), else [`HANDOFF_SOCKET`] in [`RUNTIME_DIR_ENV`] (default
/// [`DEFAULT_RUNTIME_DIR`]).
pub fn handoff_path() -> PathBuf {
    if let Some(p) = std::env::var_os(HANDOFF_SOCKET_ENV) {
        return PathBuf::from(p);
    }
    let dir = std::env::var_os(RUNTIME_DIR_ENV).unwrap_or_else(|| DEFAULT_RUNTIME_DIR.into());
    PathBuf::from(dir).join(HANDOFF_SOCKET)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_follows_the_listeners() {
        assert_eq!(lease_fd(0), 3);
        assert_eq!(lease_fd(2), 5);
        assert_eq!(move_fd(2), 6);
    }
}
