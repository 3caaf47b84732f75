//! Becoming the broker: the one way a process of the helper turns into a
//! broker of the service user, for `start` (systemd's `ExecStart`, or a
//! root shell) and for the exec shim a switch starts the new release
//! through. It fixes `LISTEN_PID`, keeps only the fds the broker is
//! given, drops every privilege, and execs.

use std::os::unix::process::CommandExt;
use std::process::Command;

use emqx_handoff::env;

use super::child::{clean_env, close_from};
use crate::privs::{self, ServiceUser};
use crate::Error;

/// Which fds the broker gets besides 0-2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fds {
    /// `start`: the listeners systemd passed (`LISTEN_FDS`, when
    /// `LISTEN_PID` is this process); every other fd is closed at exec.
    FromSystemd,
    /// The exec shim: the helper placed the listeners, the lease and the
    /// brokers' channel at 3.. and closed the rest; `LISTEN_PID` becomes
    /// this process, which the broker will be.
    Placed,
}

/// A broker about to be exec'd as the service user.
pub struct BrokerExec<'a> {
    command: Command,
    user: &'a ServiceUser,
}

impl<'a> BrokerExec<'a> {
    /// `command` will run as `user`.
    pub fn new(command: Command, user: &'a ServiceUser) -> Self {
        BrokerExec { command, user }
    }

    /// A root shell's world stays behind: only the allowlisted
    /// environment (and what `command` sets itself), and a session of its
    /// own (no controlling terminal to inject into). What a switch's
    /// spawn does for the new broker, done in this process.
    pub fn isolate(&mut self, pass_env: &[String]) {
        let set: Vec<_> = self
            .command
            .get_envs()
            .map(|(k, v)| (k.to_owned(), v.map(|v| v.to_owned())))
            .collect();
        clean_env(&mut self.command, pass_env, self.user, true);
        for (k, v) in set {
            match v {
                Some(v) => self.command.env(k, v),
                None => self.command.env_remove(k),
            };
        }
        let _ = nix::unistd::setsid();
    }

    /// Places the fds as `fds` says and drops to the service user, with
    /// no capability left and no_new_privs set. After this, only the
    /// service user's files can be opened.
    pub fn drop_privileges(&mut self, fds: Fds) -> Result<(), Error> {
        match fds {
            Fds::FromSystemd => {
                let listeners = systemd_listeners();
                close_from(3 + listeners).map_err(|e| Error::io("closing inherited fds", e))?;
            }
            Fds::Placed => {
                if std::env::var_os(env::LISTEN_FDS).is_some() {
                    self.command
                        .env(env::LISTEN_PID, std::process::id().to_string());
                }
            }
        }
        privs::drop_to(self.user)?;
        Ok(())
    }

    /// Sets `name` in the broker's environment.
    pub fn env(&mut self, name: &str, value: &str) {
        self.command.env(name, value);
    }

    /// Execs the broker; returns only the error of a failed exec, which
    /// says `doing` the program (`starting`, `executing`).
    pub fn exec(mut self, doing: &str) -> Error {
        let program = self.command.get_program().to_string_lossy().into_owned();
        let err = self.command.exec();
        Error::io(format!("{doing} {program}"), err)
    }
}

/// How many listeners systemd passed to this process (0 when
/// `LISTEN_PID` names another one), at most 1024.
fn systemd_listeners() -> i32 {
    match (
        std::env::var(env::LISTEN_PID),
        std::env::var(env::LISTEN_FDS),
    ) {
        (Ok(pid), Ok(n)) if pid == std::process::id().to_string() => {
            n.parse::<i32>().unwrap_or(0).clamp(0, 1024)
        }
        _ => 0,
    }
}
