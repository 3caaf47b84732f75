//! The reference broker binary, packaged in release packages as `bin/emqx`
//! and started as `bin/emqx foreground`. Its version is the one release
//! folder of its tree (`<tree>/releases/VSN/`) or `EMQX_BROKER_VERSION`;
//! listeners come from `EMQX_LISTENERS` (`name=[tcp|ssl://]ip:port,...`)
//! or are inherited (their kind still named there); `ssl` listeners serve
//! the certificate and key of `EMQX_SSL_CERTFILE`/`EMQX_SSL_KEYFILE`,
//! read at start; `EMQX_AUTH_PASSWORD_FILE`, `EMQX_AUTH_ACL_FILE` and
//! `EMQX_ALLOW_ANONYMOUS` set who may connect and do what (mosquitto's
//! files, read at start); `<tree>/etc/refbroker.toml` can make a release misbehave for
//! tests (`fail = "exit-at-once" | "never-ready" | "crash-after-ready"`,
//! `ready_delay_ms = N`, `imports = [...]`, `import_max_conns = N`,
//! `import_delay_ms = N`, `handoff_protocol = 1`, `move_bound_ms = N`).
//! Exit codes: 0 after a drain, 1 on a failure to run, 2 on bad arguments
//! or settings (a certificate or key that cannot be read or do not
//! match, a password or ACL file that cannot be read or parsed included),
//! 3 for `exit-at-once`.

use std::process::ExitCode;

#[cfg(target_os = "linux")]
fn main() -> ExitCode {
    linux::main()
}

#[cfg(target_os = "linux")]
mod linux {
    //! The broker's run on Linux: settings, failures on purpose, the fd
    //! limit, then the handoff library's broker loop with this service.

    use std::process::ExitCode;
    use std::sync::Arc;
    use std::time::Duration;

    use emqx_auth::{Policy, PolicyError};
    use emqx_handoff::broker::{self, Options};
    use emqx_handoff::transfer::Bounds;
    use emqx_refbroker::broker::Auth;
    use emqx_refbroker::event_loop::Listening;
    use emqx_refbroker::settings::{Fail, ListenerKind, Settings};
    use emqx_refbroker::{Moving, RefBroker};
    use emqx_tls::TlsConfig;
    use nix::sys::resource::{getrlimit, setrlimit, Resource};

    /// Fds kept for everything but imported connections.
    const FD_MARGIN: u64 = 256;
    /// The most bytes of state imported.
    const MAX_IMPORT_BYTES: u64 = 2 << 30;

    pub fn main() -> ExitCode {
        let args: Vec<String> = std::env::args().skip(1).collect();
        if !(args.is_empty() || args == ["foreground"]) {
            eprintln!(
                "emqx-refbroker: ERROR: unexpected arguments {args:?} (usage: emqx foreground)"
            );
            return ExitCode::from(2);
        }
        let settings = match Settings::from_env() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("emqx-refbroker: ERROR: {e}");
                return ExitCode::from(2);
            }
        };
        let version = settings.version.clone();
        emqx_refbroker::set_logging(settings.debug, settings.summary_every);
        let log = |m: &str| emqx_refbroker::log(&version, format_args!("{m}"));
        let ready_delay = match fail_on_purpose(&settings, &log) {
            Ok(delay) => delay,
            Err(code) => return code,
        };
        let listening = match listening(&settings) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("emqx-refbroker: ERROR: {e}");
                return ExitCode::from(2);
            }
        };
        let auth = match auth(&settings, &log) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("emqx-refbroker: ERROR: {e}");
                return ExitCode::from(2);
            }
        };
        let options = options(&settings, ready_delay, fd_room());
        let names: Vec<String> = settings
            .listeners
            .iter()
            .map(|(n, l)| match l.kind {
                ListenerKind::Tcp => format!("{n}={}", l.addr),
                k => format!("{n}={}://{}{}", k.scheme(), l.addr, l.path),
            })
            .collect();
        log(&format!(
            "starting (pid {}, listeners {} unless inherited, handoff socket {}, drain {:?})",
            std::process::id(),
            names.join(","),
            options.handoff_path.display(),
            options.drain
        ));
        let moving = Moving {
            imports: settings.behaviour.imports.clone(),
            import_delay: Duration::from_millis(settings.behaviour.import_delay_ms),
        };
        let service = match RefBroker::start(&version, settings.max_queued, moving, listening, auth)
        {
            Ok(s) => Arc::new(s),
            Err(e) => {
                log(&format!("ERROR: starting the event loop: {e}"));
                return ExitCode::from(1);
            }
        };
        run(options, service, &log)
    }

    /// The password and ACL files, read now (a file that cannot be read
    /// or parsed fails the start: a switch to this broker fails, and the
    /// old one serves on with its rules), and one line saying what they
    /// hold.
    fn auth(settings: &Settings, log: &dyn Fn(&str)) -> Result<Auth, PolicyError> {
        let started = std::time::Instant::now();
        let policy = Policy::load(&settings.auth)?;
        let files = [
            policy.passwords().map(|p| format!("{} users", p.len())),
            policy.acl().map(|_| "an ACL".to_string()),
        ];
        let files: Vec<String> = files.into_iter().flatten().collect();
        if !files.is_empty() {
            log(&format!(
                "authentication: {}, anonymous clients {} (read in {} ms)",
                files.join(" and "),
                if policy.allow_anonymous() {
                    "allowed"
                } else {
                    "refused"
                },
                started.elapsed().as_millis()
            ));
        }
        Ok(Auth {
            policy,
            cert_as_username: settings
                .tls
                .as_ref()
                .is_some_and(|t| t.peer_cert_as_username),
        })
    }

    /// What the behaviour file asks to fail, set up: the delay before
    /// ready, or the exit code to leave with now.
    fn fail_on_purpose(settings: &Settings, log: &dyn Fn(&str)) -> Result<Duration, ExitCode> {
        let ready_delay = Duration::from_millis(settings.behaviour.ready_delay_ms);
        match settings.behaviour.fail {
            None => Ok(ready_delay),
            Some(Fail::ExitAtOnce) => {
                log("failing on purpose: exit at once");
                Err(ExitCode::from(3))
            }
            Some(Fail::NeverReady) => {
                log("failing on purpose: never ready");
                // `run` reports ready after the delay, then accepts: never.
                Ok(Duration::from_secs(365 * 24 * 3600))
            }
            Some(Fail::CrashAfterReady) => {
                log("failing on purpose: abort 300 ms after READY");
                // `run` reports ready at once after binding (plus the
                // delay). This thread touches no environment, so `run`
                // may still clear LISTEN_* safely.
                let at = ready_delay + Duration::from_millis(300);
                let spawned = std::thread::Builder::new()
                    .name("crash".into())
                    .spawn(move || {
                        std::thread::sleep(at);
                        std::process::abort();
                    });
                if let Err(e) = spawned {
                    log(&format!("ERROR: cannot start the crash thread: {e}"));
                    return Err(ExitCode::from(1));
                }
                Ok(ready_delay)
            }
        }
    }

    /// The listeners' kinds and, when an `ssl` listener is configured,
    /// its TLS configuration: the certificate and key read now, so that a
    /// bad one fails the start (and with it a switch) in one line.
    fn listening(settings: &Settings) -> Result<Listening, emqx_tls::ConfigError> {
        let kinds = settings
            .listeners
            .iter()
            .map(|(n, l)| (n.clone(), l.kind))
            .collect();
        let paths = settings
            .listeners
            .iter()
            .filter(|(_, l)| l.kind.is_websocket())
            .map(|(n, l)| (n.clone(), l.path.clone()))
            .collect();
        let tls = match &settings.tls {
            Some(t) => Some(TlsConfig::server(&t.files)?),
            None => None,
        };
        Ok(Listening::new(kinds, tls).with_paths(paths))
    }

    /// One fd per connection: allows as many as the hard limit does (the
    /// soft limit is often 1,024); returns how many connections that
    /// leaves to import.
    fn fd_room() -> usize {
        let mut fds = 1024;
        if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
            fds = soft;
            if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                fds = hard;
            }
        }
        usize::try_from(fds.saturating_sub(FD_MARGIN)).unwrap_or(usize::MAX)
    }

    fn options(settings: &Settings, ready_delay: Duration, fd_room: usize) -> Options {
        let behaviour = &settings.behaviour;
        Options {
            version: settings.version.clone(),
            listeners: settings
                .listeners
                .iter()
                .map(|(n, l)| (n.clone(), l.addr))
                .collect(),
            handoff_path: Options::handoff_path_from_env(),
            drain: settings.drain,
            ready_delay,
            move_bound: behaviour
                .move_bound_ms
                .map_or(broker::DEFAULT_MOVE_BOUND, Duration::from_millis),
            import: Bounds {
                max_conns: behaviour.import_max_conns.unwrap_or(fd_room),
                max_bytes: MAX_IMPORT_BYTES,
            },
            protocol: behaviour.handoff_protocol.unwrap_or(emqx_handoff::PROTOCOL),
        }
    }

    /// Serves until switched away; the exit code.
    fn run(options: Options, service: Arc<RefBroker>, log: &dyn Fn(&str)) -> ExitCode {
        match broker::run(options, service) {
            Ok(d) => {
                if let Some(m) = d.moved {
                    log(&format!(
                        "switched away: {} connections moved to the new broker in {} us",
                        m.moved,
                        m.pause.as_micros()
                    ));
                }
                log(&format!(
                    "switched away: {} connections at commit, {} closed at the drain bound; exiting",
                    d.at_commit, d.closed
                ));
                ExitCode::SUCCESS
            }
            Err(e) => {
                log(&format!("ERROR: {e}"));
                ExitCode::from(1)
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn main() -> ExitCode {
    eprintln!("emqx-refbroker: ERROR: runs on Linux only");
    ExitCode::from(1)
}
