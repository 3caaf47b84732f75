//! The broker side of a switch (public API): inherit or bind listeners,
//! serve the handoff socket, report readiness, and on commit stop
//! accepting, drain and return.
//!
//! A broker implements [`Service`] and calls [`run`]; see the reference
//! broker (`crates/refbroker`) for a complete one.
//!
//! Modules: `listeners` (inherit or bind), `server` (the handoff socket),
//! `accept` (stoppable accept loops), `lease` (the helper's lease on a
//! broker it starts), `stop` (the stop pipe).

mod accept;
mod lease;
mod listeners;
mod server;
mod stop;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use listeners::{store_listeners, take_listeners, Listener};
pub use server::{HandoffServer, ServerEvent};

/// What the library needs from a broker.
///
/// The last five methods are protocol 2 (moving established sessions to
/// the next release, issue #12); their defaults say "cannot move", so a
/// broker that implements nothing drains as before. The library does not
/// call them yet.
pub trait Service: Send + Sync + 'static {
    /// Serves one accepted connection (on its own thread or otherwise);
    /// must not block for long.
    fn serve(&self, listener: &str, stream: TcpStream);
    /// Live connections.
    fn connections(&self) -> usize;
    /// Closes every connection gracefully (end of the drain).
    fn close_all(&self);
    /// The state schemas this broker exports and imports.
    fn schemas(&self) -> Schemas {
        Schemas::default()
    }
    /// Stops every connection at a packet boundary and exports the whole
    /// state, every byte and fd left as it was; `None` when it cannot.
    fn freeze(&self) -> Option<Export> {
        None
    }
    /// Resumes after a freeze as if nothing happened (the move failed).
    fn thaw(&self) {}
    /// The exported connections belong to the importer now: close our
    /// copies with close() (never shutdown()), fire no will; how many.
    fn go(&self) -> usize {
        0
    }
    /// Takes over another broker's state (a schema of `schemas().imports`)
    /// without sending a byte; how many connections it took. They stay
    /// frozen until [`Service::thaw`], which the caller sends only after
    /// the exporter's go: one socket never has two brokers serving it.
    fn import(&self, state: crate::transfer::Transfer) -> Result<usize, String> {
        Err(format!("this broker imports no state ({})", state.schema))
    }
}

/// The state schemas a broker can export and import (e.g. `refbroker/1`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schemas {
    pub exports: Vec<String>,
    pub imports: Vec<String>,
}

/// A frozen broker's state in its own schema, ready for
/// [`crate::transfer::send`].
#[derive(Debug, Default)]
pub struct Export {
    pub schema: String,
    /// Broker-wide state.
    pub shared: Vec<u8>,
    /// Each connection's socket (a duplicate) and state.
    pub conns: Vec<(std::os::fd::OwnedFd, Vec<u8>)>,
    /// Connections not exported (they drain as before).
    pub left: usize,
}

impl Export {
    /// Sends it over the brokers' direct channel.
    pub fn send(&self, ch: &crate::Channel) -> Result<(), crate::ChannelError> {
        use std::os::fd::AsFd;
        let conns: Vec<(std::os::fd::BorrowedFd<'_>, &[u8])> = self
            .conns
            .iter()
            .map(|(fd, s)| (fd.as_fd(), &s[..]))
            .collect();
        crate::transfer::send(ch, &self.schema, &self.shared, &conns)
    }
}

/// How a broker runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The release version, told to the helper in the hello.
    pub version: String,
    /// Listeners to bind when none is inherited under that name.
    pub listeners: Vec<(String, SocketAddr)>,
    /// The handoff socket to serve.
    pub handoff_path: PathBuf,
    /// How long connections may drain after a commit.
    pub drain: Duration,
    /// A pause before reporting ready (a slow start, for tests and demos).
    pub ready_delay: Duration,
}

impl Options {
    /// The handoff socket path from the environment: `EMQX_HANDOFF_SOCKET`
    /// (set by the helper during a switch), else `handoff.sock` in
    /// `EMQX_RUNTIME_DIR` (default `/run/emqx`).
    pub fn handoff_path_from_env() -> PathBuf {
        crate::env::handoff_path()
    }
}

/// What ended [`run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drained {
    /// Connections live at commit.
    pub at_commit: usize,
    /// Connections still open when the drain bound passed (then closed).
    pub closed: usize,
}

/// Runs a broker until a helper commits a switch away from it: takes the
/// listeners, serves the handoff socket, accepts, notifies `READY=1`; on
/// commit stops accepting and drains for at most `options.drain`.
/// Call it before starting other threads (it reads and clears `LISTEN_*`).
pub fn run(options: Options, service: Arc<dyn Service>) -> std::io::Result<Drained> {
    lease::watch_from_env()?;
    let listeners = take_listeners(&options.listeners)?;
    // Not fatal: without the store a crash refuses connections until the
    // restart, as any broker's would.
    if let Err(e) = store_listeners(&listeners) {
        eprintln!("listeners not stored with systemd (FDSTORE=1): {e}");
    }
    let (events, commits) = mpsc::channel();
    let handoff_fds = listeners
        .iter()
        .map(|l| Ok((l.name.clone(), l.socket.try_clone()?)))
        .collect::<std::io::Result<Vec<(String, TcpListener)>>>()?;
    let counter = {
        let service = Arc::clone(&service);
        Arc::new(move || service.connections()) as Arc<dyn Fn() -> usize + Send + Sync>
    };
    let server = HandoffServer::start(
        &options.handoff_path,
        options.version.clone(),
        handoff_fds,
        counter,
        events,
    )?;
    // Ready first, then accept: a new broker that is killed for not becoming
    // ready in time never held a client connection.
    std::thread::sleep(options.ready_delay);
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let acceptors = accept::Acceptors::start(listeners, Arc::clone(&service))?;
    // Wait for a commit: the only way out of serving besides a signal.
    match commits.recv() {
        Ok(ServerEvent::Committed(stopped)) => {
            acceptors.stop();
            let _ = stopped.send(());
        }
        Err(_) => return Err(std::io::Error::other("the handoff server stopped")),
    }
    let at_commit = service.connections();
    let deadline = Instant::now() + options.drain;
    while service.connections() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let closed = service.connections();
    service.close_all();
    let wait_close = Instant::now() + Duration::from_secs(2);
    while service.connections() > 0 && Instant::now() < wait_close {
        std::thread::sleep(Duration::from_millis(10));
    }
    server.stop();
    Ok(Drained { at_commit, closed })
}
