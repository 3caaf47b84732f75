//! `emqx-load`: drives clean-session publishers, persistent sessions,
//! idle connections and a connection storm against loopback broker
//! listeners, and prints what every connection attempt and every message
//! ended in (see `emqx_load`); with `--password`, as users of a broker
//! with a password file and an ACL.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use emqx_load::{ClientFiles, Load, LoadOptions, LoadTls, LoadWs};

/// Load an MQTT broker; count refused, reset and timed-out connections
/// and lost, duplicated and out-of-order messages.
///
/// With --password every client connects with a username and that
/// password, and probes check that --denied-topic is denied: the broker
/// needs a password file with those users and the ACL --print-acl
/// prints (mosquitto's password_file and acl_file).
///
/// Exit status: 0 when no connection was refused, reset or timed out and
/// no message was lost, duplicated beyond its QoS, out of order or
/// misrouted (with --password: and no CONNECT refused its credentials,
/// nothing of the denied topic was allowed, at least one probe was
/// denied); 1 otherwise (the report is printed either way); 2 on bad
/// usage.
#[derive(Parser, Debug)]
#[command(name = "emqx-load", version)]
struct Args {
    /// Broker listener (loopback only); repeat for round-robin.
    #[arg(long = "addr", required_unless_present = "print_acl")]
    addrs: Vec<SocketAddr>,
    /// Long-lived clean-session clients publishing to themselves.
    #[arg(long, default_value_t = 9)]
    persistent: usize,
    /// QoS of those clients, in turn (comma-separated, each 0-2).
    #[arg(long, value_delimiter = ',', default_value = "0,1,2", value_parser = clap::value_parser!(u8).range(0..=2))]
    qos: Vec<u8>,
    /// Persistent-session clients (clean_session=0) that leave and come
    /// back; one ring per QoS, each publishing to the next.
    #[arg(long, default_value_t = 6)]
    sessions: usize,
    /// QoS of the sessions, in turn (comma-separated, each 1 or 2).
    #[arg(long, value_delimiter = ',', default_value = "1,2", value_parser = clap::value_parser!(u8).range(1..=2))]
    session_qos: Vec<u8>,
    /// About how long a session stays connected, in seconds.
    #[arg(long, default_value_t = 1.0)]
    session_online: f64,
    /// How long a session stays away, in seconds.
    #[arg(long, default_value_t = 0.2)]
    session_offline: f64,
    /// Connections held with keep-alive pings only.
    #[arg(long, default_value_t = 0)]
    idle: usize,
    /// Messages per second per publishing client.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Storm clients (connect, version, DISCONNECT, again).
    #[arg(long, default_value_t = 4)]
    storm: usize,
    /// Seconds to run; without it, until SIGINT/SIGTERM.
    #[arg(long)]
    duration: Option<f64>,
    /// Seconds one attempt may take (connect, CONNACK, SUBACK, version).
    #[arg(long, default_value_t = 5.0)]
    connect_timeout: f64,
    /// A TLS listener (loopback only): every other client connects there
    /// over TLS, verifying the server against --cafile.
    #[arg(long, requires = "cafile")]
    tls_addr: Option<SocketAddr>,
    /// The CA the TLS listener's certificate chains to.
    #[arg(long, requires = "tls_addr")]
    cafile: Option<PathBuf>,
    /// A client certificate for the TLS clients (mutual TLS), with --keyfile.
    #[arg(long, requires_all = ["keyfile", "tls_addr"])]
    certfile: Option<PathBuf>,
    /// The key of --certfile.
    #[arg(long, requires = "certfile")]
    keyfile: Option<PathBuf>,
    /// Every client over TLS (with --tls-addr), not every other one.
    #[arg(long, requires = "tls_addr")]
    all_tls: bool,
    /// A WebSocket listener (`ws://`, loopback only): clients take turns
    /// over the plain, TLS, ws and wss listeners given.
    #[arg(long)]
    ws_addr: Option<SocketAddr>,
    /// A WebSocket listener under TLS (`wss://`), trusted as --tls-addr is
    /// (it needs --tls-addr and --cafile; with --all-ws nothing connects
    /// to --tls-addr).
    #[arg(long, requires_all = ["tls_addr", "cafile"])]
    wss_addr: Option<SocketAddr>,
    /// The HTTP path of the WebSocket listeners.
    #[arg(long, default_value = "/mqtt")]
    ws_path: String,
    /// Every client over WebSocket (--ws-addr, --wss-addr), none over
    /// plain TCP or TLS; with --all-tls too, every client over wss.
    #[arg(long)]
    all_ws: bool,
    /// Add the MQTT 5 clients: sessions with an expiry interval, shared
    /// subscriptions, topic aliases, message expiry, user properties,
    /// Receive Maximum 2.
    #[arg(long)]
    v5: bool,
    /// Connect every client with a username and this password, and run
    /// the denied probes: 2 clients at MQTT 3.1.1 and 2 at MQTT 5 that
    /// subscribe and publish (QoS 1) to --denied-topic every second and
    /// count the broker's answers ("denied checks") and whatever let
    /// the topic through ("leaks": an MQTT 5 PUBACK success, a delivery
    /// of it to any client).
    #[arg(long)]
    password: Option<String>,
    /// Usernames: this prefix and a number from 0 to --users - 1, given
    /// to the clients round-robin [default: load-].
    #[arg(long)]
    username_prefix: Option<String>,
    /// How many usernames [default: 4].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    users: Option<u32>,
    /// The topic the broker's ACL denies to every client [default:
    /// emqx-load/denied].
    #[arg(long)]
    denied_topic: Option<String>,
    /// The broker must refuse a SUBSCRIBE to --denied-topic: a granted one
    /// counts as a leak (mosquitto 2.0 grants it and checks each delivery
    /// instead, so by default a grant is only counted as "subscribed").
    #[arg(long, requires = "password")]
    refuse_subscribe: bool,
    /// Print the acl_file granting what the load does (with these
    /// --username-prefix, --denied-topic) and the usernames, then exit:
    /// each topic is RUN/STREAM/PUBLISHER-CLIENT-ID/RECEIVER-USERNAME,
    /// granted by `%c` and `%u` patterns.
    #[arg(long)]
    print_acl: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

impl Args {
    /// The credentials of the options, defaults filled in.
    fn auth(&self) -> emqx_load::LoadAuth {
        let d = emqx_load::LoadAuth::default();
        emqx_load::LoadAuth {
            username_prefix: self.username_prefix.clone().unwrap_or(d.username_prefix),
            users: self.users.map_or(d.users, |n| n as usize),
            password: self.password.clone().unwrap_or(d.password),
            denied_topic: self.denied_topic.clone().unwrap_or(d.denied_topic),
            refuse_subscribe: self.refuse_subscribe,
        }
    }
}

impl Args {
    /// Why the listener options cannot be used, if they cannot: an
    /// address not on loopback, --all-ws without a WebSocket listener, a
    /// path not starting with '/'.
    fn bad_listeners(&self) -> Option<String> {
        let addrs = self.addrs.iter().chain(&self.tls_addr);
        let mut addrs = addrs.chain(&self.ws_addr).chain(&self.wss_addr);
        if let Some(a) = addrs.find(|a| !a.ip().is_loopback()) {
            return Some(format!("refusing non-loopback address {a}"));
        }
        if self.all_ws && self.ws_addr.is_none() && self.wss_addr.is_none() {
            return Some("--all-ws needs --ws-addr or --wss-addr".into());
        }
        if !self.ws_path.starts_with('/') {
            return Some(format!("--ws-path must start with '/': {:?}", self.ws_path));
        }
        None
    }

    /// The credentials to connect with (None without --password), or why
    /// the options cannot be used.
    fn checked_auth(&self) -> Result<Option<emqx_load::LoadAuth>, String> {
        let auth = self.auth();
        auth.validate().map_err(|e| e.to_string())?;
        let flags = self.username_prefix.is_some() || self.users.is_some();
        let flags = flags || self.denied_topic.is_some();
        if flags && self.password.is_none() && !self.print_acl {
            return Err("--username-prefix, --users and --denied-topic need --password".into());
        }
        Ok(self.password.is_some().then_some(auth))
    }
}

/// What --print-acl prints: the ACL, then the usernames as comments.
fn acl_and_users(auth: &emqx_load::LoadAuth) -> String {
    let mut out = auth.acl_file_text();
    let names: Vec<String> = auth.credentials().into_iter().map(|(u, _)| u).collect();
    out.push_str(&format!("# users (password_file): {}\n", names.join(" ")));
    out
}

/// Longest time any option may give: a year.
const MAX_SECONDS: f64 = 365.0 * 24.0 * 3600.0;

/// A time option (named without its dashes) this harness cannot use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimeError {
    /// Not from 0 to [`MAX_SECONDS`].
    OutOfRange(&'static str),
    /// Not a number of seconds a `Duration` holds.
    NotSeconds(&'static str),
    /// Zero where it must be more.
    NotPositive(&'static str),
}

impl fmt::Display for TimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimeError::OutOfRange(what) => {
                write!(f, "--{what} must be between 0 and {MAX_SECONDS} seconds")
            }
            TimeError::NotSeconds(what) => {
                write!(f, "--{what} must be a non-negative number of seconds")
            }
            TimeError::NotPositive(what) => write!(f, "--{what} must be positive"),
        }
    }
}

impl std::error::Error for TimeError {}

fn seconds(what: &'static str, v: f64) -> Result<Duration, TimeError> {
    if !(0.0..=MAX_SECONDS).contains(&v) {
        return Err(TimeError::OutOfRange(what));
    }
    Duration::try_from_secs_f64(v).map_err(|_| TimeError::NotSeconds(what))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let auth = match args.checked_auth() {
        Ok(auth) => auth,
        Err(e) => {
            eprintln!("emqx-load: {e}");
            return ExitCode::from(2);
        }
    };
    if args.print_acl {
        print!("{}", acl_and_users(&args.auth()));
        return ExitCode::SUCCESS;
    }
    if let Some(why) = args.bad_listeners() {
        eprintln!("emqx-load: {why}");
        return ExitCode::from(2);
    }
    let parsed = (|| {
        let timeout = seconds("connect-timeout", args.connect_timeout)?;
        if timeout.is_zero() {
            return Err(TimeError::NotPositive("connect-timeout"));
        }
        let duration = args.duration.map(|d| seconds("duration", d)).transpose()?;
        let online = seconds("session-online", args.session_online)?;
        let offline = seconds("session-offline", args.session_offline)?;
        Ok((timeout, duration, online, offline))
    })();
    let (connect_timeout, duration, session_online, session_offline) = match parsed {
        Ok(t) => t,
        Err(e) => {
            eprintln!("emqx-load: {e}");
            return ExitCode::from(2);
        }
    };
    signals::install();
    let json = args.json;
    let times = (connect_timeout, duration, session_online, session_offline);
    let load = Load::start(load_options(args, auth, times));
    while !load.is_finished() && !signals::stopped() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let report = load.stop();
    if json {
        println!("{}", report.json());
    } else {
        print!("{}", report.table());
    }
    if report.clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The run `args` ask for, with `auth` and the checked times (connect
/// timeout, duration, session online and offline).
fn load_options(
    args: Args,
    auth: Option<emqx_load::LoadAuth>,
    times: (Duration, Option<Duration>, Duration, Duration),
) -> LoadOptions {
    let (connect_timeout, duration, session_online, session_offline) = times;
    LoadOptions {
        addrs: args.addrs,
        persistent: args.persistent,
        qos: args.qos,
        sessions: args.sessions,
        session_qos: args.session_qos,
        session_online,
        session_offline,
        idle: args.idle,
        publish_rate: args.rate,
        storm: args.storm,
        connect_timeout,
        duration,
        tls: args.tls_addr.zip(args.cafile).map(|(addr, ca)| LoadTls {
            addr,
            files: ClientFiles {
                ca,
                identity: args.certfile.zip(args.keyfile),
            },
            every: args.all_tls,
        }),
        ws: (args.ws_addr.is_some() || args.wss_addr.is_some()).then_some(LoadWs {
            ws: args.ws_addr,
            wss: args.wss_addr,
            path: args.ws_path,
            every: args.all_ws,
        }),
        v5: match args.v5 {
            true => emqx_load::V5Load::on(),
            false => emqx_load::V5Load::off(),
        },
        auth,
    }
}

#[cfg(target_os = "linux")]
mod signals {
    //! SIGINT/SIGTERM end the run with a report instead of killing it:
    //! the handler only sets a flag the main thread polls.

    use std::sync::atomic::{AtomicBool, Ordering};

    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

    static STOP: AtomicBool = AtomicBool::new(false);

    extern "C" fn on_signal(_: nix::libc::c_int) {
        STOP.store(true, Ordering::SeqCst);
    }

    pub fn install() {
        let action = SigAction::new(
            SigHandler::Handler(on_signal),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        for sig in [Signal::SIGINT, Signal::SIGTERM] {
            // SAFETY: the handler only stores to an atomic, which is
            // async-signal-safe.
            if let Err(e) = unsafe { sigaction(sig, &action) } {
                eprintln!("emqx-load: cannot handle {sig}: {e}");
            }
        }
    }

    pub fn stopped() -> bool {
        STOP.load(Ordering::SeqCst)
    }
}

#[cfg(not(target_os = "linux"))]
mod signals {
    //! No signal handling off Linux: the run ends at its duration.

    pub fn install() {}
    pub fn stopped() -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    //! The time options' errors, and the lines they print.

    use super::*;

    #[test]
    fn time_options_are_checked() {
        assert_eq!(seconds("duration", 1.5), Ok(Duration::from_millis(1500)));
        for bad in [-1.0, 1e19, f64::NAN, f64::INFINITY] {
            assert_eq!(
                seconds("duration", bad),
                Err(TimeError::OutOfRange("duration"))
            );
        }
        assert_eq!(
            TimeError::OutOfRange("duration").to_string(),
            "--duration must be between 0 and 31536000 seconds"
        );
        assert_eq!(
            TimeError::NotPositive("connect-timeout").to_string(),
            "--connect-timeout must be positive"
        );
    }
}
