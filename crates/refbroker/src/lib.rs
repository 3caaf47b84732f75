//! The reference broker: a real MQTT 3.1.1 broker on
//! [`emqx_handoff::broker`], the stand-in for EMQX in the demo, the tests
//! and the benchmarks, on plain TCP and TLS listeners. Its release
//! version is the retained `$SYS/broker/version` message.
//!
//! One event loop thread ([`event_loop`], mio) owns every listener and
//! every connection; the
//! state machine ([`broker`]) holds the sessions ([`session`]: kept for
//! `clean_session=0`, with their queued and in-flight QoS 1/2 messages),
//! the subscriptions and retained messages ([`router`]); [`wire`] is
//! what the two tell each other. Each connection's socket is reached
//! only through its [`transport`] (plain TCP or TLS; WebSocket is to sit
//! there too). QoS 0, 1 and 2, wills, keep-alive, takeover. The loop
//! accepts too: the thread count is the same at 10 connections and at
//! 15,000, with one listener or ten.

#[cfg(test)]
mod auth_tests;
pub mod broker;
#[cfg(test)]
mod broker_tests;
mod conns;
mod established;
pub mod event_loop;
pub mod router;
pub mod session;
pub mod settings;
pub mod snapshot;
#[cfg(test)]
mod snapshot_tests;
#[cfg(test)]
mod snapshot_tests_v5;
pub mod transport;
pub mod wire;

use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use emqx_handoff::broker::{ExportError, Exported, Schemas, Service};
use emqx_handoff::transfer::{Receiver, TransferError};
use emqx_handoff::Channel;
use emqx_tls::{Side, Spares};

use event_loop::{Cmd, Handle, Listening, MovedConn};

/// The topic that carries the release version.
pub const VERSION_TOPIC: &str = "$SYS/broker/version";
/// Retained count of connections closed for a malformed packet or a
/// protocol violation (3.1.1 says close; we also count).
pub const MALFORMED_TOPIC: &str = "$SYS/broker/connections/malformed";
/// The largest packet accepted (its remaining length).
pub const MAX_PACKET: usize = 1 << 20;
/// How long a new connection has to send CONNECT.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closing connection is read for its end of stream.
pub const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// Longest wait for the event loop's part of a move (freeze, go, import).
pub const MOVE_WAIT: Duration = Duration::from_secs(10);
/// The most TLS connections made ahead of a move.
const MAX_SPARES: usize = 100_000;
/// QoS 1/2 messages queued per session when `EMQX_MAX_QUEUED` is unset.
pub const DEFAULT_MAX_QUEUED: usize = 1000;

/// How the broker takes part in a move, beyond its defaults (tests).
#[derive(Debug, Clone, Default)]
pub struct Moving {
    /// The schemas it says it imports (default: its own).
    pub imports: Option<Vec<String>>,
    /// A pause in each import.
    pub import_delay: Duration,
}

/// The broker service.
pub struct RefBroker {
    handle: Handle,
    version: String,
    moving: Moving,
    /// What moved TLS connections continue under: the `ssl` listeners'
    /// configuration, or a bare one (none if it could not be made).
    import_tls: Option<emqx_tls::TlsConfig>,
    /// The names of the listeners under TLS (`ssl`, `wss`).
    ssl_listeners: Vec<String>,
    /// TLS connections made before a move for the ones it brings
    /// ([`Service::prepare_import`]); what the import does not take is
    /// dropped when the broker starts accepting.
    spares: Mutex<Spares>,
    /// Of the connections the last import took, those its policy refuses.
    closed_by_policy: std::sync::atomic::AtomicUsize,
}

impl RefBroker {
    /// A broker of release `version`, its version retained on
    /// [`VERSION_TOPIC`], queueing at most `max_queued` QoS 1/2 messages
    /// per session, moving as `moving` says, serving listeners as
    /// `listening` says, letting in and through what `auth` allows.
    pub fn start(
        version: &str,
        max_queued: usize,
        moving: Moving,
        listening: Listening,
        auth: broker::Auth,
    ) -> std::io::Result<RefBroker> {
        let import_tls = listening.import_config();
        let ssl_listeners = listening
            .kinds
            .iter()
            // ssl and wss: a wss connection moves its TLS state too.
            .filter(|(_, k)| k.is_tls())
            .map(|(n, _)| n.clone())
            .collect();
        let v = version.to_string();
        let handle = event_loop::start(
            move || {
                let broker = broker::Broker::new(&v, VERSION_TOPIC, max_queued).with_auth(auth);
                broker.log(format_args!("retained {VERSION_TOPIC} = {v}"));
                broker
            },
            listening,
        )?;
        Ok(RefBroker {
            handle,
            version: version.to_string(),
            moving,
            import_tls,
            ssl_listeners,
            spares: Mutex::new(Spares::default()),
            closed_by_policy: Default::default(),
        })
    }

    /// Logs one line with the broker's prefix.
    pub fn log(&self, line: std::fmt::Arguments<'_>) {
        log(&self.version, line);
    }
}

/// Logs one line of the broker of release `version` to stderr, with the
/// prefix every line of it has: `emqx-refbroker[VERSION]: `.
pub fn log(version: &str, line: std::fmt::Arguments<'_>) {
    eprintln!("emqx-refbroker[{version}]: {line}");
}

/// Whether per-connection lines are logged (`EMQX_LOG_LEVEL=debug`); off
/// by default, so that a connection storm cannot flood the journal and
/// get the unit rate-limited, switch notes and all.
static DEBUG: AtomicBool = AtomicBool::new(false);
/// Seconds between two summary lines (`EMQX_LOG_SUMMARY_SECS`; 0: none).
static SUMMARY_SECS: AtomicU64 = AtomicU64::new(DEFAULT_SUMMARY_SECS);
/// Seconds between two summary lines when `EMQX_LOG_SUMMARY_SECS` is unset.
pub const DEFAULT_SUMMARY_SECS: u64 = 60;

/// Sets how much this process logs: per-connection lines (`debug`), and
/// the summary line's period.
pub fn set_logging(debug: bool, summary_every: Duration) {
    DEBUG.store(debug, Ordering::Relaxed);
    SUMMARY_SECS.store(summary_every.as_secs(), Ordering::Relaxed);
}

/// [`log`], for a line about one connection: only at debug level.
pub fn debug(version: &str, line: std::fmt::Arguments<'_>) {
    if DEBUG.load(Ordering::Relaxed) {
        log(version, line);
    }
}

/// `m` locked, even if a thread panicked holding it (the spares are
/// only a cache).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The period of the summary line, if any.
pub fn summary_every() -> Option<Duration> {
    match SUMMARY_SECS.load(Ordering::Relaxed) {
        0 => None,
        s => Some(Duration::from_secs(s)),
    }
}

impl Service for RefBroker {
    fn serve(&self, listener: &str, stream: TcpStream) {
        let cmd = Cmd::Serve {
            listener: listener.to_string(),
            stream,
        };
        if !self.handle.send(cmd) {
            self.log(format_args!(
                "the event loop is gone: a connection on {listener} is dropped"
            ));
        }
    }

    fn prepare_import(&self, listeners: &[emqx_handoff::broker::Listener]) {
        let Some(config) = &self.import_tls else {
            return;
        };
        let ports: Vec<u16> = listeners
            .iter()
            .filter(|l| self.ssl_listeners.contains(&l.name))
            .filter_map(|l| l.socket.local_addr().ok())
            .map(|a| a.port())
            .collect();
        let expected = established::on_ports(&ports).min(MAX_SPARES);
        if expected == 0 {
            return;
        }
        let mut spares = lock(&self.spares);
        spares.fill(config, Side::Server, expected);
        self.log(format_args!(
            "TLS connections made ahead of the move: {} ({expected} established on the ssl and wss listeners)",
            spares.len()
        ));
    }

    fn accept(
        &self,
        listeners: Vec<emqx_handoff::broker::Listener>,
    ) -> Result<(), Vec<emqx_handoff::broker::Listener>> {
        // Whatever the move did not take is not needed any more.
        drop(std::mem::take(&mut *lock(&self.spares)));
        let names: Vec<String> = listeners.iter().map(|l| l.name.clone()).collect();
        if self.handle.send(Cmd::Listen(listeners)) {
            Ok(())
        } else {
            // The loop is gone with the listeners it was sent: nothing
            // accepts here any more (the broker's end is near).
            self.log(format_args!(
                "the event loop is gone: not accepting on {}",
                names.join(", ")
            ));
            Ok(())
        }
    }

    fn stop_accepting(&self) {
        let (tx, rx) = mpsc::channel();
        if self.handle.send(Cmd::StopAccepting(tx)) && rx.recv_timeout(MOVE_WAIT).is_err() {
            self.log(format_args!(
                "ERROR: the event loop did not stop accepting within {} s",
                MOVE_WAIT.as_secs()
            ));
        }
    }

    fn connections(&self) -> usize {
        self.handle.live.load(Ordering::SeqCst)
    }

    fn schemas(&self) -> Schemas {
        let own = || {
            snapshot::Schema::ALL
                .iter()
                .map(|s| s.name().to_string())
                .collect()
        };
        Schemas {
            exports: own(),
            imports: self.moving.imports.clone().unwrap_or_else(own),
        }
    }

    fn export(
        &self,
        ch: &Channel,
        schema: &str,
        deadline: Instant,
    ) -> Result<Exported, ExportError> {
        let Some(schema) = snapshot::Schema::parse(schema) else {
            return Err(ExportError::Failed(format!(
                "this broker does not export {schema}"
            )));
        };
        let ch = ch
            .try_clone()
            .map_err(|e| ExportError::Failed(format!("a copy of the channel: {e}")))?;
        let (tx, rx) = mpsc::channel();
        if !self.handle.send(Cmd::Export(ch, schema, deadline, tx)) {
            return Err(ExportError::Cannot);
        }
        // The loop keeps to the deadline (each packet's timeout is what is
        // left of it); this wait, a little longer, is for a loop stuck
        // elsewhere.
        let wait = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(1);
        rx.recv_timeout(wait).unwrap_or_else(|_| {
            // The loop, when it gets to it, finds nobody waiting and thaws.
            Err(ExportError::Failed(
                "the event loop did not export in time".into(),
            ))
        })
    }

    fn thaw(&self) {
        self.handle.send(Cmd::Thaw);
    }

    fn go(&self) -> usize {
        let (tx, rx) = mpsc::channel();
        if !self.handle.send(Cmd::Go(tx)) {
            return 0;
        }
        rx.recv_timeout(MOVE_WAIT).unwrap_or_else(|_| {
            self.log(format_args!(
                "ERROR: no go within {} s: the moved connections may still be open here",
                MOVE_WAIT.as_secs()
            ));
            0
        })
    }

    fn import(&self, state: &mut Receiver<'_>) -> Result<usize, TransferError> {
        std::thread::sleep(self.moving.import_delay);
        let Some(schema) = snapshot::Schema::parse(&state.schema) else {
            let own: Vec<&str> = snapshot::Schema::ALL.iter().map(|s| s.name()).collect();
            return Err(TransferError::Refused(format!(
                "cannot import {} (this broker imports {})",
                state.schema,
                own.join(", ")
            )));
        };
        let refused = |e: snapshot::ImportError| TransferError::Refused(e.to_string());
        let gone = || TransferError::Refused("the event loop is gone".into());
        let shared = event_loop::decode_shared(&state.shared, schema).map_err(refused)?;
        let mut spares = std::mem::take(&mut *lock(&self.spares));
        if !self.handle.send(Cmd::ImportShared(shared, schema)) {
            return Err(gone());
        }
        // Each batch is decoded and its transports adopted (a TLS
        // connection's s2n state is the costly part) here, while the loop
        // takes in the batch before.
        let mut outcome = Ok(());
        loop {
            match state.next_batch() {
                Ok(Some(batch)) => {
                    let conns = batch
                        .into_iter()
                        .map(|(fd, mut bytes)| {
                            MovedConn::adopt(
                                fd,
                                schema,
                                &mut bytes,
                                self.import_tls.as_ref(),
                                &mut spares,
                            )
                        })
                        .collect::<Result<Vec<_>, _>>();
                    match conns {
                        Ok(conns) => {
                            if !self.handle.send(Cmd::ImportBatch(conns)) {
                                break outcome = Err(gone());
                            }
                        }
                        Err(e) => break outcome = Err(refused(e)),
                    }
                }
                Ok(None) => break,
                Err(e) => break outcome = Err(e),
            }
        }
        let (tx, rx) = mpsc::channel();
        if !self.handle.send(Cmd::ImportEnd(tx)) {
            return Err(gone());
        }
        let imported = match rx.recv_timeout(MOVE_WAIT) {
            Ok(r) => r.map_err(refused).map(|i| {
                // Only a broker that exports logins (this build or newer)
                // reads the count; an older one would refuse the answer.
                if schema.carries_login() {
                    self.closed_by_policy.store(i.refused, Ordering::SeqCst);
                } else if i.refused > 0 {
                    log(
                        &self.version,
                        format_args!(
                            "move: {} moved connections without a login ({schema}) are closed by policy; the old broker cannot report it",
                            i.refused
                        ),
                    );
                }
                i.connections
            }),
            Err(_) => Err(TransferError::Refused(format!(
                "the import took over {} s",
                MOVE_WAIT.as_secs()
            ))),
        };
        // A failed stream drops what the loop took of it.
        match outcome {
            Ok(()) => imported,
            Err(e) => {
                if imported.is_ok() {
                    self.discard();
                }
                Err(e)
            }
        }
    }

    fn closed_by_policy(&self) -> usize {
        self.closed_by_policy.load(Ordering::SeqCst)
    }

    fn discard(&self) {
        self.closed_by_policy.store(0, Ordering::SeqCst);
        self.handle.send(Cmd::Discard);
    }

    fn close_all(&self) {
        let (tx, rx) = mpsc::channel();
        if self.handle.send(Cmd::CloseAll(tx)) {
            let _ = rx.recv_timeout(CLOSE_WAIT + Duration::from_secs(1));
        }
    }
}
