//! `emqx-relup hook ...`: the logic behind the thin maintainer scripts of
//! the helper's own package and of release packages (`emqx-release-VSN`),
//! so that `apt install` of a newer release is a hot upgrade.
//!
//! `hook helper SCRIPT ARGS...` and `hook release VSN SCRIPT ARGS...`, where
//! SCRIPT is dpkg's (`preinst`, `postinst`, `prerm`, `postrm`) with dpkg's
//! arguments, or rpm's (`pre`, `post`, `preun`, `postun`) with `$1`.

mod table;

use std::path::Path;
use std::process::Command;

pub use table::{action, Action, BadCall, Package};

use crate::config::Config;
use crate::ops::{Ops, Report};
use crate::release::parse_version;
use crate::Error;

/// Parses the arguments after `hook`.
pub fn parse(args: &[String]) -> Result<(Package, String, Vec<String>), Error> {
    let usage = || {
        Error::Usage(
            "usage: emqx-relup hook helper SCRIPT [ARGS...] | hook release VSN SCRIPT [ARGS...]"
                .into(),
        )
    };
    match args {
        [kind, script, rest @ ..] if kind == "helper" => {
            Ok((Package::Helper, script.clone(), rest.to_vec()))
        }
        [kind, version, script, rest @ ..] if kind == "release" => Ok((
            Package::Release(parse_version(version)?),
            script.clone(),
            rest.to_vec(),
        )),
        _ => Err(usage()),
    }
}

/// Runs the hook.
pub fn run(
    ops: &Ops<'_>,
    config: &Config,
    package: &Package,
    script: &str,
    args: &[String],
    out: &mut dyn Report,
) -> Result<(), Error> {
    match action(package, script, args)? {
        Action::Nothing => Ok(()),
        Action::Setup { first } => setup(config, first, out),
        Action::StopUnit => {
            if systemd_booted() {
                // The socket first, or it would start the service again.
                let socket = config
                    .unit
                    .strip_suffix(".service")
                    .map(|u| format!("{u}.socket"));
                out.note(&format!("stopping {}", config.unit));
                if let Some(socket) = socket {
                    // Best effort: the socket unit may not be installed.
                    systemctl_ok(&["--quiet", "stop", &socket]);
                }
                systemctl(&["stop", &config.unit])?;
            }
            Ok(())
        }
        Action::Arrive(v) => {
            let first = ops.arrive(&v, out)?;
            if first && systemd_booted() && systemctl_ok(&["--quiet", "is-enabled", &config.unit]) {
                out.note(&format!("first release: starting {}", config.unit));
                // The release is recorded whatever happens here: say so.
                let short = crate::systemd::short_name(&config.unit);
                systemctl(&["start", &config.unit]).map_err(|e| {
                    Error::io(
                        format!(
                            "release {v} is installed and permanent, but the broker did not start (see 'journalctl -u {short}', then 'systemctl start {short}')"
                        ),
                        std::io::Error::other(e.to_string()),
                    )
                })?;
            }
            Ok(())
        }
        Action::Leave(v) => ops.leave(&v, out),
    }
}

/// The helper's package was installed or upgraded: the user and folders,
/// systemd told about changed units, the unit enabled the first time.
/// Never a start, stop or restart: a running broker keeps running.
fn setup(config: &Config, first: bool, out: &mut dyn Report) -> Result<(), Error> {
    run_tool("systemd-sysusers", &["emqx.conf"])?;
    run_tool("systemd-tmpfiles", &["--create", "emqx.conf"])?;
    if systemd_booted() {
        systemctl(&["daemon-reload"])?;
    }
    if first {
        out.note(&format!(
            "enabling {} (it starts with the first release package)",
            config.unit
        ));
        systemctl(&["enable", "--quiet", &config.unit])?;
    }
    Ok(())
}

/// Whether systemd is the running init (see sd_booted(3)).
fn systemd_booted() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// Runs systemctl and tells whether it succeeded (a question, not a step).
fn systemctl_ok(args: &[&str]) -> bool {
    Command::new("systemctl")
        .args(args)
        .status()
        .is_ok_and(|s| s.success())
}

fn systemctl(args: &[&str]) -> Result<(), Error> {
    run_tool("systemctl", args)
}

fn run_tool(program: &str, args: &[&str]) -> Result<(), Error> {
    let shown = format!("{program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .status()
        .map_err(|e| Error::io(format!("running {shown}"), e))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::io(
            format!("running {shown}"),
            std::io::Error::other(format!("it failed ({status})")),
        ))
    }
}
