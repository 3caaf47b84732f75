//! Load harness proving a broker switch refuses no connection and loses
//! no message: clean-session clients publishing to themselves at QoS 0, 1
//! and 2, persistent sessions (`clean_session=0`) that leave and come back
//! expecting their session, idle connections, and a connection storm. All
//! on one event loop thread, so one harness holds thousands of clients.
//! Every connection attempt ends in exactly one class (ok, refused, reset,
//! timed out, other error); every message is counted per class (see
//! [`Report`]).
//!
//! MQTT 5 clients come on request ([`LoadOptions::v5`],
//! [`LoadOptions::with_v5`]): persistent sessions with a Session Expiry
//! Interval, and shared subscriptions, every message with a topic alias,
//! a Message Expiry Interval and user properties, every client with a
//! Receive Maximum of 2; each counted in classes of its own ("v5-session-
//! qos1", "v5-shared-qos0", ...) with what MQTT 5 adds to check.
//!
//! With [`LoadOptions::auth`] every client connects with a username and
//! password, the topics name who publishes and who receives (so a
//! broker's ACL decides them with `%c` and `%u` patterns: see
//! [`LoadAuth`] for the `acl_file` it needs), and probes check that the
//! broker denies one topic to everyone (`denied_checks`, `denied_leaks`
//! in the [`Report`]).
//!
//! [`Load::start`] runs in the background; [`Load::snapshot`] reads the
//! counts; [`Load::stop`] drains, closes and returns the [`Report`].

mod auth;
mod class;
mod client;
mod conn;
mod event_loop;
mod ledger;
mod report;
mod stats;
mod traffic;
mod transport;
mod v5;
mod ws;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

pub use auth::{AuthError, LoadAuth, DENIED_PROBES};
pub use client::KEEP_ALIVE;
pub use emqx_tls::ClientFiles;

pub use report::{ClassReport, Latency, Report, SessionReport};
pub use stats::{ClassCounts, Outcome};
pub use transport::Transport;
pub use v5::{V5Load, MESSAGE_EXPIRY, RECEIVE_MAXIMUM, SESSION_EXPIRY};

use stats::Stats;

/// The retained topic every subscriber gets on SUBSCRIBE.
pub const VERSION_TOPIC: &str = "$SYS/broker/version";

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Broker listeners; connections go round-robin over them.
    pub addrs: Vec<SocketAddr>,
    /// Long-lived clean-session clients, each subscribed to its own topic
    /// and publishing to it.
    pub persistent: usize,
    /// Their QoS, in turn over the clients (each 0, 1 or 2).
    pub qos: Vec<u8>,
    /// Persistent-session clients: one ring per QoS, each publishing to
    /// the next, leaving and coming back with the same client id.
    pub sessions: usize,
    /// Their QoS, in turn (each 1 or 2).
    pub session_qos: Vec<u8>,
    /// About how long a session stays connected (0.5 to 1.5 times this).
    pub session_online: Duration,
    /// How long a session stays away.
    pub session_offline: Duration,
    /// Connections held with keep-alive pings only.
    pub idle: usize,
    /// Messages per second per publishing client (0: none).
    pub publish_rate: f64,
    /// Storm clients: each connects, sees the version, says DISCONNECT,
    /// over and over.
    pub storm: usize,
    /// Budget of one attempt: connect, CONNACK, SUBACK and the version.
    pub connect_timeout: Duration,
    /// How long to run; `None` = until stopped.
    pub duration: Option<Duration>,
    /// A TLS listener: clients take turns over it with the others
    /// ([`transport::offered`]; every other client with plain TCP alone).
    pub tls: Option<LoadTls>,
    /// WebSocket listeners: clients take turns over them too.
    pub ws: Option<LoadWs>,
    /// MQTT 5 clients (none by default; see [`LoadOptions::with_v5`]).
    pub v5: V5Load,
    /// Credentials for every client, and the denied probes ([`LoadAuth`];
    /// none by default: the clients connect anonymously).
    pub auth: Option<LoadAuth>,
}

/// A TLS listener for the load, and what its clients trust and show.
#[derive(Debug, Clone)]
pub struct LoadTls {
    pub addr: SocketAddr,
    pub files: emqx_tls::ClientFiles,
    /// Every client over TLS, not every other one.
    pub every: bool,
}

/// WebSocket listeners for the load: clients take turns over the plain,
/// TLS, ws and wss listeners there are (by slot: always the same ones).
#[derive(Debug, Clone)]
pub struct LoadWs {
    /// A `ws://` listener.
    pub ws: Option<SocketAddr>,
    /// A `wss://` listener; its clients trust what the TLS clients trust
    /// ([`LoadOptions::tls`], which it needs).
    pub wss: Option<SocketAddr>,
    /// The path both serve MQTT at (`/mqtt`).
    pub path: String,
    /// Every client over WebSocket (ws or wss), none over plain TCP or
    /// TLS.
    pub every: bool,
}

impl LoadOptions {
    /// The switch tests' and the soak's load on `addrs`: 8 live clients,
    /// the persistent sessions, the MQTT 5 clients of [`V5Load::on`], 2
    /// storm clients, 20 publishes a second, 3 s per attempt.
    pub fn switching(addrs: Vec<SocketAddr>) -> LoadOptions {
        LoadOptions {
            addrs,
            persistent: 8,
            publish_rate: 20.0,
            storm: 2,
            connect_timeout: Duration::from_secs(3),
            v5: V5Load::on(),
            ..LoadOptions::default()
        }
    }

    /// The move tests' load: as [`LoadOptions::switching`] with 4 live
    /// clients and no storm (its closing clients are not moved, by
    /// design, and would blur "nothing closed").
    pub fn moving(addrs: Vec<SocketAddr>) -> LoadOptions {
        LoadOptions {
            persistent: 4,
            storm: 0,
            ..LoadOptions::switching(addrs)
        }
    }

    /// The same load with the MQTT 5 clients of [`V5Load::on`] too (4
    /// sessions, a shared subscription group per QoS: 16 clients).
    /// On already in [`LoadOptions::switching`] and
    /// [`LoadOptions::moving`].
    pub fn with_v5(self) -> LoadOptions {
        LoadOptions {
            v5: V5Load::on(),
            ..self
        }
    }

    /// The same load with clients over WebSocket too, on the `ws://`
    /// listener at `ws.0` and the `wss://` one at `ws.1` (trusted as the
    /// TLS clients trust theirs), path `/mqtt`; `None`: as is.
    pub fn over_websocket(self, ws: Option<(SocketAddr, SocketAddr)>) -> LoadOptions {
        LoadOptions {
            ws: ws.map(|(ws, wss)| LoadWs {
                ws: Some(ws),
                wss: Some(wss),
                path: "/mqtt".into(),
                every: false,
            }),
            ..self
        }
    }

    /// The same load with every other client over TLS, on the listener
    /// at `tls.0` verified against the CA file `tls.1`; `None`: as is.
    pub fn over_tls(self, tls: Option<(SocketAddr, std::path::PathBuf)>) -> LoadOptions {
        LoadOptions {
            tls: tls.map(|(addr, ca)| LoadTls {
                addr,
                files: emqx_tls::ClientFiles { ca, identity: None },
                every: false,
            }),
            ..self
        }
    }
}

impl Default for LoadOptions {
    fn default() -> LoadOptions {
        LoadOptions {
            addrs: Vec::new(),
            persistent: 9,
            qos: vec![0, 1, 2],
            sessions: 6,
            session_qos: vec![1, 2],
            session_online: Duration::from_secs(1),
            session_offline: Duration::from_millis(200),
            idle: 0,
            publish_rate: 10.0,
            storm: 2,
            connect_timeout: Duration::from_secs(5),
            duration: None,
            tls: None,
            ws: None,
            v5: V5Load::off(),
            auth: None,
        }
    }
}

/// Distinguishes the client ids of runs in one process.
static RUNS: AtomicU64 = AtomicU64::new(0);

/// State shared by all threads of a run.
pub(crate) struct Shared {
    opts: LoadOptions,
    stats: Arc<Stats>,
    stop: AtomicBool,
    start: Instant,
    end: Option<Instant>,
    /// Prefix of every client id of this run.
    run_id: String,
    /// The TLS clients' configuration (files read at start).
    tls: Option<emqx_tls::TlsConfig>,
    /// The transports clients take in turn ([`transport::offered`]).
    transports: Vec<Transport>,
}

impl Shared {
    /// Stop requested or the duration passed.
    fn should_stop(&self) -> bool {
        self.stop.load(Ordering::SeqCst) || self.end.is_some_and(|end| Instant::now() >= end)
    }

    /// Seconds since start, not counting past the duration.
    fn elapsed(&self) -> f64 {
        let now = Instant::now();
        let until = self.end.map_or(now, |end| end.min(now));
        until.duration_since(self.start).as_secs_f64()
    }
}

/// A running load.
pub struct Load {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    stopped_at: Option<f64>,
}

impl Load {
    /// Starts the event loop thread. Without addresses nothing runs and
    /// the report stays empty.
    pub fn start(opts: LoadOptions) -> Load {
        let run = RUNS.fetch_add(1, Ordering::Relaxed);
        let start = Instant::now();
        let stats: Arc<Stats> = Arc::default();
        let tls = match opts
            .tls
            .as_ref()
            .map(|t| emqx_tls::TlsConfig::client(&t.files))
        {
            Some(Ok(config)) => Some(config),
            Some(Err(e)) => {
                // Counted, so the report cannot look clean without them.
                stats.record(&Outcome::Other(format!("the TLS clients: {e}")));
                None
            }
            None => None,
        };
        let no_tls = opts.tls.is_some() && tls.is_none();
        let wss_alone = opts.tls.is_none() && opts.ws.as_ref().is_some_and(|w| w.wss.is_some());
        if wss_alone {
            stats.record(&Outcome::Other(
                "wss clients without a TLS listener's CA to trust".into(),
            ));
        }
        let bad_auth = match opts.auth.as_ref().map(LoadAuth::validate) {
            Some(Err(e)) => {
                // Counted, so the report of a run that never ran cannot
                // look clean.
                stats.record(&Outcome::Other(format!("the credentials: {e}")));
                true
            }
            _ => false,
        };
        stats.auth.store(opts.auth.is_some(), Ordering::Relaxed);
        let opts_transports = transport::offered(&opts);
        let no_transport = opts_transports.is_empty();
        if no_transport {
            // Every client over WebSocket and TLS, and no wss listener.
            stats.record(&Outcome::Other(
                "no transport left: every client over WebSocket and TLS, and no wss listener"
                    .into(),
            ));
        }
        let shared = Arc::new(Shared {
            end: opts.duration.and_then(|d| start.checked_add(d)),
            run_id: format!("load-{}-{run}", std::process::id()),
            opts,
            stats,
            stop: AtomicBool::new(false),
            start,
            tls,
            transports: opts_transports,
        });
        let mut load = Load {
            shared: Arc::clone(&shared),
            thread: None,
            stopped_at: None,
        };
        if shared.opts.addrs.is_empty() || no_tls || wss_alone || no_transport || bad_auth {
            return load;
        }
        let s = Arc::clone(&shared);
        match thread::Builder::new()
            .name("load".into())
            .spawn(move || event_loop::run(&s))
        {
            Ok(h) => load.thread = Some(h),
            // Counted, so the report cannot look clean without clients.
            Err(e) => shared
                .stats
                .record(&Outcome::Other(format!("spawning the load thread: {e}"))),
        }
        load
    }

    /// The counts so far.
    pub fn snapshot(&self) -> Report {
        let elapsed = self.stopped_at.unwrap_or_else(|| self.shared.elapsed());
        Report::from_stats(&self.shared.stats, elapsed)
    }

    /// True once the loop has ended (the duration passed).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|h| h.is_finished())
    }

    /// Stops the run: publishing ends, offline sessions come back, what
    /// is on its way gets until the connect timeout plus a second to
    /// arrive; then every connection is closed and the report returned.
    pub fn stop(mut self) -> Report {
        self.stopped_at = Some(self.shared.elapsed());
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.thread.take() {
            if h.join().is_err() {
                self.shared
                    .stats
                    .record(&Outcome::Other("the load thread panicked".into()));
            }
        }
        self.snapshot()
    }
}

impl Drop for Load {
    /// A load dropped without stop() still ends its thread (detached).
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
    }
}
