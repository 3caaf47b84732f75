//! `emqx-load`: drives persistent MQTT clients and a connection storm
//! against loopback broker listeners and prints what every connection
//! attempt ended in (see `emqx_load`).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use emqx_load::{Load, LoadOptions};

/// Load an MQTT broker and count refused, reset and timed-out connections.
///
/// Exit status: 0 when no connection was refused, reset or timed out,
/// 1 when one was (the report is printed either way), 2 on bad usage.
#[derive(Parser, Debug)]
#[command(name = "emqx-load", version)]
struct Args {
    /// Broker listener (loopback only); repeat for round-robin.
    #[arg(long = "addr", required = true)]
    addrs: Vec<SocketAddr>,
    /// Persistent clients publishing QoS 1 to themselves.
    #[arg(long, default_value_t = 20)]
    persistent: usize,
    /// QoS 1 messages per second per persistent client.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Connection storm threads.
    #[arg(long, default_value_t = 4)]
    storm: usize,
    /// Seconds to run; without it, until SIGINT/SIGTERM.
    #[arg(long)]
    duration: Option<f64>,
    /// Seconds one attempt may take (connect, CONNACK, SUBACK, version).
    #[arg(long, default_value_t = 5.0)]
    connect_timeout: f64,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

fn seconds(what: &str, v: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(v)
        .map_err(|_| format!("--{what} must be a non-negative number of seconds"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(a) = args.addrs.iter().find(|a| !a.ip().is_loopback()) {
        eprintln!("emqx-load: refusing non-loopback address {a}");
        return ExitCode::from(2);
    }
    let timings = seconds("connect-timeout", args.connect_timeout).and_then(|t| {
        let d = args.duration.map(|d| seconds("duration", d)).transpose()?;
        Ok((t, d))
    });
    let (connect_timeout, duration) = match timings {
        Ok(t) if !t.0.is_zero() => t,
        Ok(_) => {
            eprintln!("emqx-load: --connect-timeout must be positive");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("emqx-load: {e}");
            return ExitCode::from(2);
        }
    };
    signals::install();
    let load = Load::start(LoadOptions {
        addrs: args.addrs,
        persistent: args.persistent,
        publish_rate: args.rate,
        storm_threads: args.storm,
        connect_timeout,
        duration,
    });
    while !load.is_finished() && !signals::stopped() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let report = load.stop();
    if args.json {
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

/// SIGINT/SIGTERM end the run with a report instead of killing it.
#[cfg(target_os = "linux")]
mod signals {
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
    pub fn install() {}
    pub fn stopped() -> bool {
        false
    }
}
