//! The exec shim of a switch, `emqx-relup __exec --user NAME [--log FILE]
//! -- COMMAND...`: runs as the new broker's pid, so it can set `LISTEN_PID`
//! to itself, then becomes the service user, opens the log as that user
//! (root never opens a file in a folder the service user writes), and
//! execs. Not a clap command: internal only. What it has to say before
//! exec goes to its stderr, a pipe the helper reads.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::stat::{fstat, SFlag};

use super::exec::{BrokerExec, Fds};
use crate::{privs, Error};

/// The first argument that makes this binary the exec shim of a switch.
pub const SHIM: &str = "__exec";

/// Runs the shim on the arguments after [`SHIM`]; returns only on failure.
pub fn run(args: &[OsString]) -> Result<(), Error> {
    let usage = || {
        Error::Usage(format!(
            "usage: emqx-relup {SHIM} --user NAME [--log FILE | --journal] -- COMMAND..."
        ))
    };
    let (user, output, command) = match args {
        [flag, user, log_flag, log, sep, command @ ..]
            if flag == "--user" && log_flag == "--log" && sep == "--" =>
        {
            (user, Output::Log(Path::new(log)), command)
        }
        [flag, user, journal, sep, command @ ..]
            if flag == "--user" && journal == "--journal" && sep == "--" =>
        {
            (user, Output::Journal, command)
        }
        [flag, user, sep, command @ ..] if flag == "--user" && sep == "--" => {
            (user, Output::Stdout, command)
        }
        _ => return Err(usage()),
    };
    let (program, args) = command.split_first().ok_or_else(usage)?;
    let user = user.to_str().ok_or_else(usage)?;
    let user = privs::lookup(user)?;
    let mut command = std::process::Command::new(program);
    command.args(args);
    let mut broker = BrokerExec::new(command, &user);
    broker.drop_privileges(Fds::Placed)?;
    // Output: the log, or a journal stream of the broker's own, else what
    // the helper chose (stdout: the unit's journal stream or /dev/null).
    // From here on stderr is no longer the helper's pipe.
    let stdout = || {
        std::io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| Error::io("stdout", e))
    };
    let out = match output {
        Output::Log(path) => open_log(path).map_err(|e| {
            Error::io(
                format!(
                    "opening broker_log {} as the service user '{}' (it must be able to create or append to it: chown a file an older emqx-relup created as root)",
                    path.display(),
                    user.name
                ),
                e,
            )
        })?,
        Output::Journal => match crate::systemd::journal_stream("emqx") {
            Ok(fd) => {
                let st = fstat(&fd).map_err(|e| Error::io("journal stream", e.into()))?;
                broker.env("JOURNAL_STREAM", &format!("{}:{}", st.st_dev, st.st_ino));
                fd
            }
            Err(_) => stdout()?,
        },
        Output::Stdout => stdout()?,
    };
    let placed = nix::unistd::dup2_stdout(&out).and_then(|_| nix::unistd::dup2_stderr(&out));
    placed.map_err(|e| Error::io("placing the broker's output", e.into()))?;
    Err(broker.exec("executing"))
}

/// Where the broker's stdout and stderr go.
enum Output<'a> {
    /// `broker_log`.
    Log(&'a Path),
    /// A journal stream of the broker's own, else stdout.
    Journal,
    /// What the helper passed as stdout.
    Stdout,
}

/// Opens the log for appending, as the service user: a link is refused, a
/// FIFO cannot block (O_NONBLOCK), and only a regular file is used.
fn open_log(path: &Path) -> std::io::Result<OwnedFd> {
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)?;
    let st = fstat(&file)?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Err(std::io::Error::other("not a regular file"));
    }
    let flags = OFlag::from_bits_truncate(fcntl(&file, FcntlArg::F_GETFL)?);
    fcntl(&file, FcntlArg::F_SETFL(flags & !OFlag::O_NONBLOCK))?;
    Ok(file.into())
}
