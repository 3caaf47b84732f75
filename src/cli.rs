//! The command line: arguments (clap), output, and exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use semver::Version;

use crate::config::{self, Config, Strategy};
use crate::hooks;
use crate::layout::Layout;
use crate::ops::{Ops, Report};
use crate::privs;
use crate::release::{parse_version, MoveKind};
use crate::switch::{self, record_running, shim, BrokerExec, Fds, Handoff, Switcher};
use crate::systemd::{self, Journal, Notifier, Priority};
use crate::Error;

mod answer;
mod print;

pub use answer::Answer;
use print::{print_status, print_versions, Printer};

/// Release manager and zero-downtime switcher for the EMQX broker.
///
/// Put a release package (emqx-VSN.zip or emqx-VSN.tar.gz) into
/// $EMQX_ROOT_DIR/releases/ and run `emqx-relup upgrade VSN`. Also answers as
/// `emqx` so the EMQX hot-upgrade commands work verbatim.
///
/// Exit codes: 0 success, 1 system error, 2 usage, 3 refused by policy or
/// state, 4 package problem, 5 switch failed, 6 another emqx-relup holds the lock.
#[derive(Debug, Parser)]
#[command(name = "emqx-relup", version, max_term_width = 100)]
pub struct Cli {
    /// The install dir; packages are dropped into its releases/ folder.
    #[arg(
        long,
        global = true,
        env = "EMQX_ROOT_DIR",
        value_name = "DIR",
        default_value = "/usr/lib/emqx"
    )]
    pub root: PathBuf,
    /// Where the release store lives (releases/RELEASES and unpacked trees).
    #[arg(
        long,
        global = true,
        env = "EMQX_STATE_DIR",
        value_name = "DIR",
        default_value = "/var/lib/emqx"
    )]
    pub state_dir: PathBuf,
    /// Configuration file [default: /etc/emqx/relup.toml if it exists].
    #[arg(
        long,
        global = true,
        env = "EMQX_RELUP_CONFIG",
        hide_env_values = true,
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,
    /// Say which path a switch takes (through systemd or directly).
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Cmd,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// List the known releases, newest first, with their states.
    Versions {
        /// Print JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Print the install dir, quoted.
    #[command(name = "root_dir")]
    RootDir,
    /// Show what runs: the broker (pid, release, since when, unit or
    /// direct), a generation still draining, and a switch an interrupted
    /// command left pending with what the next command will do with it.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Unpack a release package without installing it.
    Unpack {
        /// The release version, e.g. 5.0.1.
        #[arg(value_name = "VSN")]
        version: String,
    },
    /// Switch to a release (either way) and make it permanent.
    Install {
        /// Switch, but keep the permanent release: a restart goes back to it.
        #[arg(long)]
        no_permanent: bool,
        #[command(flatten)]
        answer: Answer,
        /// The release version, e.g. 5.0.1.
        #[arg(value_name = "VSN")]
        version: String,
    },
    /// Unpack, switch to a newer patch release and make it permanent.
    Upgrade {
        /// Switch, but keep the permanent release: a restart goes back to it.
        #[arg(long)]
        no_permanent: bool,
        #[command(flatten)]
        answer: Answer,
        /// The release version, e.g. 5.0.1.
        #[arg(value_name = "VSN")]
        version: String,
    },
    /// Switch to an older patch release and make it permanent.
    Downgrade {
        #[command(flatten)]
        answer: Answer,
        /// The release version, e.g. 5.0.0.
        #[arg(value_name = "VSN")]
        version: String,
    },
    /// Remove an old or unpacked release.
    Uninstall {
        #[command(flatten)]
        answer: Answer,
        /// The release version, e.g. 5.0.0.
        #[arg(value_name = "VSN")]
        version: String,
    },
    /// Revert a non-permanent release, then run the permanent one in place (ExecStart).
    Start {
        /// Only revert and check, as root before the unit drops privileges
        /// (ExecStartPre=+); do not run the broker.
        #[arg(long)]
        prepare: bool,
    },
    /// Switch the running broker to the release marked current (ExecReload).
    ///
    /// A fresh broker of the release that runs takes over the listeners
    /// (e.g. MQTT on 1883, MQTT over TLS on 8883) and every established
    /// session, TLS ones with their TLS state. It reads its TLS certificate
    /// and key at start: after renewing them, this puts the new certificate
    /// into service without a disconnect (docs/tls.md).
    Reload,
    /// What package maintainer scripts call (see docs/packages.md).
    #[command(hide = true)]
    Hook {
        /// `helper SCRIPT ARGS...` or `release VSN SCRIPT ARGS...`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
    },
}

/// The clap definition, for man pages and completions.
pub fn command() -> clap::Command {
    Cli::command()
}

/// Runs the command line and returns the exit code.
pub fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == shim::SHIM) {
        return report(shim::run(&args[2..]), &mut Printer::default());
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let mut out = Printer {
        collected: None,
        verbose: cli.verbose,
        journal: Journal::for_stderr(vec![(
            "EMQX_RELUP_COMMAND".into(),
            command_name(&cli.command).into(),
        )]),
    };
    let result = run(cli, &mut out);
    let code = report(result, &mut out);
    // Before exiting: journald must still find this process's unit.
    if let Some(j) = &out.journal {
        j.flush();
    }
    code
}

fn report(result: Result<(), Error>, out: &mut Printer) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut text = format!("ERROR: {e}");
            if let Some(hint) = e.hint() {
                text.push('\n');
                text.push_str(&hint);
            }
            out.line(Priority::Error, &text);
            ExitCode::from(e.class().code())
        }
    }
}

fn command_name(cmd: &Cmd) -> &'static str {
    match cmd {
        Cmd::Versions { .. } => "versions",
        Cmd::RootDir => "root_dir",
        Cmd::Status { .. } => "status",
        Cmd::Unpack { .. } => "unpack",
        Cmd::Install { .. } => "install",
        Cmd::Upgrade { .. } => "upgrade",
        Cmd::Downgrade { .. } => "downgrade",
        Cmd::Uninstall { .. } => "uninstall",
        Cmd::Start { .. } => "start",
        Cmd::Reload => "reload",
        Cmd::Hook { .. } => "hook",
    }
}

fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::from(0);
    }
    eprintln!("ERROR: {} (see 'emqx-relup --help')", usage_line(&e));
    ExitCode::from(crate::ExitClass::Usage.code())
}

/// A clap error as one line: its message up to the usage block, with the
/// lines clap puts under it (the missing arguments) joined on.
fn usage_line(e: &clap::Error) -> String {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand | ErrorKind::MissingSubcommand
    ) {
        return "no command given".to_string();
    }
    let rendered = e.to_string();
    let line = rendered
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.trim().trim_start_matches("error: "))
        .collect::<Vec<_>>()
        .join(" ");
    if line.is_empty() {
        e.kind().as_str().unwrap_or("bad usage").to_string()
    } else {
        line
    }
}

fn version(text: &str) -> Result<Version, Error> {
    Ok(parse_version(text)?)
}

fn run(cli: Cli, out: &mut Printer) -> Result<(), Error> {
    let layout = Layout {
        root: cli.root,
        state_dir: cli.state_dir,
    };
    if let Cmd::RootDir = cli.command {
        println!("\"{}\"", layout.root.display());
        return Ok(());
    }
    let config = match &cli.config {
        Some(path) => Config::load(path, true)?,
        None => Config::load(std::path::Path::new(config::DEFAULT_PATH), false)?,
    };
    // Commands that change the store or move the broker stop only between
    // steps (a signal during a switch is honoured once it is over).
    if !matches!(
        cli.command,
        Cmd::Versions { .. } | Cmd::Status { .. } | Cmd::Start { prepare: false }
    ) {
        crate::interrupt::defer();
    }
    let switcher = switcher_for(&cli.command, &config, out)?;
    // A copy for the commands below: it shares the one service-user
    // lookup of this command with the copies the operations hold.
    let shared = config.clone();
    let ops = Ops::new(layout, config, &*switcher);
    match cli.command {
        Cmd::RootDir => Ok(()),
        Cmd::Versions { json } => {
            let releases = ops.versions()?;
            print_versions(&releases, json);
            Ok(())
        }
        Cmd::Status { json } => {
            print_status(&ops.status()?, json);
            Ok(())
        }
        Cmd::Unpack { version: v } => ops.unpack(&version(&v)?, out),
        Cmd::Install {
            no_permanent,
            answer,
            version: v,
        } => move_to(&ops, MoveKind::Install, &v, !no_permanent, answer, out),
        Cmd::Upgrade {
            no_permanent,
            answer,
            version: v,
        } => move_to(&ops, MoveKind::Upgrade, &v, !no_permanent, answer, out),
        Cmd::Downgrade { answer, version: v } => {
            move_to(&ops, MoveKind::Downgrade, &v, true, answer, out)
        }
        Cmd::Uninstall { answer, version: v } => uninstall(&ops, &v, answer, out),
        Cmd::Start { prepare: true } => ops.start(out).map(|_| ()),
        Cmd::Start { prepare: false } => {
            let (command, version) = ops.start(out)?;
            let user = shared.service_user()?;
            let runtime_dir = &shared.runtime_dir;
            // The broker serves its handoff socket in the runtime dir (under
            // systemd, RuntimeDirectory= makes it); this process becomes the
            // broker, recorded for a later switch.
            prepare_runtime_dir(runtime_dir, user)?;
            let _ = record_running(runtime_dir, std::process::id(), &version.to_string());
            let mut broker = BrokerExec::new(command, user);
            if nix::unistd::Uid::effective().is_root() {
                broker.isolate(&shared.pass_env);
            }
            broker.drop_privileges(Fds::FromSystemd)?;
            Err(broker.exec("starting"))
        }
        Cmd::Reload => ops.reload(out),
        Cmd::Hook { args } => {
            let (package, script, args) = hooks::parse(&args)?;
            hooks::run(&ops, &shared, &package, &script, &args, out)
        }
    }
}

/// `install`, `upgrade` and `downgrade`, their dry run and JSON answer.
fn move_to(
    ops: &Ops,
    kind: MoveKind,
    text: &str,
    permanent: bool,
    answer: Answer,
    out: &mut Printer,
) -> Result<(), Error> {
    let v = version(text)?;
    if answer.dry_run {
        let preview = ops.preview_move(kind, &v, permanent)?;
        answer::print_preview(&preview, answer.json, out);
        return Ok(());
    }
    if answer.json {
        return answer::run_json(ops, kind.as_str(), text, out, |out| {
            ops.move_to(kind, &v, permanent, out)
        });
    }
    ops.move_to(kind, &v, permanent, out)
}

/// `uninstall`, its dry run and JSON answer.
fn uninstall(ops: &Ops, text: &str, answer: Answer, out: &mut Printer) -> Result<(), Error> {
    let v = version(text)?;
    if answer.dry_run {
        let preview = ops.preview_uninstall(&v)?;
        answer::print_preview(&preview, answer.json, out);
        return Ok(());
    }
    if answer.json {
        return answer::run_json(ops, "uninstall", text, out, |out| ops.uninstall(&v, out));
    }
    ops.uninstall(&v, out)
}

/// How this command moves a running broker: `reload` started by systemd
/// reports to it; an administrator's switch (`reload` from a shell too)
/// goes through systemd when the unit is active; everything else only
/// probes.
fn switcher_for(
    command: &Cmd,
    config: &Config,
    out: &mut dyn Report,
) -> Result<Box<dyn Switcher>, Error> {
    match command {
        Cmd::Reload if systemd::started_by_systemd() => {
            if config.strategy == Strategy::Restart {
                return Err(Error::Usage(
                    "strategy = \"restart\" cannot switch inside systemd's reload (stopping the main process stops the unit); use 'systemctl restart' instead".into(),
                ));
            }
            match Notifier::from_env() {
                Some(Ok(n)) => {
                    out.detail("started by systemd: reporting MAINPID= and READY=1 to it");
                    Ok(Box::new(Handoff::under_systemd(config.clone(), n)))
                }
                Some(Err(e)) => Err(Error::io("connecting to NOTIFY_SOCKET", e)),
                None => Ok(switch::direct(config)),
            }
        }
        // An administrator's `reload` (a root shell, no INVOCATION_ID) goes
        // through systemd like the other switches when the unit is active,
        // never behind its back.
        Cmd::Install { .. }
        | Cmd::Upgrade { .. }
        | Cmd::Downgrade { .. }
        | Cmd::Hook { .. }
        | Cmd::Reload => {
            let (switcher, path) = switch::admin_switcher(config);
            out.detail(&path);
            Ok(switcher)
        }
        _ => Ok(switch::direct(config)),
    }
}

fn prepare_runtime_dir(dir: &std::path::Path, user: &privs::ServiceUser) -> Result<(), Error> {
    if !dir.is_dir() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        if nix::unistd::Uid::effective().is_root() {
            nix::unistd::chown(dir, Some(user.uid), Some(user.gid))
                .map_err(|e| Error::io(format!("chown {}", dir.display()), e.into()))?;
        }
    }
    Ok(())
}
