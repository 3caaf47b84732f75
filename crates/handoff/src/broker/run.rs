//! A broker's whole life under the helper: take the listeners, serve the
//! handoff socket, say ready, take the old broker's connections when a
//! switch brought them (protocol 2), accept; on a commit move the
//! connections away or drain them, and return.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::socket::{getsockopt, sockopt, SockType};

use super::mover::{self, Imported, MoveFailed, Moved};
use super::server::{About, HandoffServer, ServerEvent};
use super::{accept, lease, store_listeners, take_listeners, Listener, Service};
use crate::env::{HANDOFF_SOCKET, MOVE_FD_ENV};
use crate::transfer::Bounds;
use crate::Channel;

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
    /// How long a move may take, freeze to go (export and import), before
    /// the old broker thaws and the switch fails.
    pub move_bound: Duration,
    /// What this broker imports at most.
    pub import: Bounds,
    /// The newest handoff protocol it speaks (normally [`crate::PROTOCOL`]; 1
    /// behaves as a broker from before session moves: it neither takes
    /// nor gives connections).
    pub protocol: u32,
}

/// [`Options::move_bound`] unless configured.
pub const DEFAULT_MOVE_BOUND: Duration = Duration::from_secs(10);
/// The longest move bound a broker keeps (a longer one is cut to it): the
/// helper waits for a move's answer at most this and its slack, so a
/// broker never works on past the wait.
pub const MAX_MOVE_BOUND: Duration = Duration::from_secs(60);

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
    /// Connections live at commit (after a move: those not moved).
    pub at_commit: usize,
    /// Connections still open when the drain bound passed (then closed).
    pub closed: usize,
    /// The move, when the connections went to the new broker.
    pub moved: Option<Moved>,
}

/// Runs a broker until a helper commits a switch away from it: takes the
/// listeners, serves the handoff socket, notifies `READY=1`, imports the
/// old broker's connections when the helper passed a channel to it, and
/// accepts; on commit stops accepting, then moves its connections or
/// drains them for at most `options.drain`.
/// Call it before starting other threads (it reads and clears `LISTEN_*`).
pub fn run(options: Options, service: Arc<dyn Service>) -> std::io::Result<Drained> {
    // Fault tests only: the `old::`/`new::` steps FAILPOINTS arms.
    let _faults = crate::faults::setup();
    let old = lease::watch_from_env()?;
    // A broker of protocol 1 takes no connections: its end closes here.
    let incoming = take_channel()?.filter(|_| options.protocol >= 2);
    if let Some(ch) = &incoming {
        mover::make_room(ch, options.import.max_conns);
    }
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
    // The bound this broker states and keeps to.
    let move_bound = options.move_bound.min(MAX_MOVE_BOUND);
    let about = About {
        version: options.version.clone(),
        schemas: service.schemas(),
        move_bound,
        protocol: options.protocol,
    };
    let server = HandoffServer::start(&options.handoff_path, about, handoff_fds, counter, events)?;
    if incoming.is_some() {
        service.prepare_import(&listeners);
    }
    // Ready first, then accept: a new broker that is killed for not becoming
    // ready in time never held a client connection.
    std::thread::sleep(options.ready_delay);
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    if let Some(ch) = incoming {
        if let Err(e) = take_over(&ch, &*service, &options, old.as_ref()) {
            server.stop();
            return Err(e);
        }
    }
    let acceptors = accept::Accepting::start(copies(&listeners)?, Arc::clone(&service))?;
    let moved = serve_until_commit(&commits, acceptors, &listeners, &service, move_bound)?;
    // Committed: no session any more (once the helper has its answer),
    // so that nobody takes a draining broker for the one that serves.
    server.stop();
    let (at_commit, closed) = drain(&*service, options.drain);
    Ok(Drained {
        at_commit,
        closed,
        moved,
    })
}

/// Takes over the old broker's connections over `ch` before accepting
/// (meanwhile attempts wait in the backlog); its lines start with
/// "move:" ("handoff:" lines are a handoff session's errors). A refused
/// import hands systemd's main process back and is the broker's end.
fn take_over(
    ch: &Channel,
    service: &dyn Service,
    options: &Options,
    old: Option<&crate::Pinned>,
) -> std::io::Result<()> {
    match mover::import(ch, service, &options.import, old) {
        // A drain: accept once the helper confirmed (right before its
        // commit), never beside an old broker a dead helper left.
        Imported::Nothing => lease::wait_confirmed(mover::OFFER_WAIT),
        Imported::OldDrains => {
            eprintln!("move: the old broker drains its connections instead; accepting");
            publish(&options.handoff_path);
        }
        Imported::OldGone => {
            eprintln!("move: the old broker died in the middle of its state; accepting");
            publish(&options.handoff_path);
        }
        Imported::Serving { connections, go } => {
            eprintln!(
                "move: serving {connections} connections moved from the old broker{}",
                if go {
                    ""
                } else {
                    " (it died before saying go)"
                }
            );
            publish(&options.handoff_path);
        }
        Imported::Refused(why) => {
            lease::hand_back(old);
            return Err(std::io::Error::other(format!(
                "taking over the old broker's connections: {why}"
            )));
        }
    }
    Ok(())
}

/// Accepts until a commit: a drain's (`None`), or a move's that went
/// (its figures); a move that fails serves on, accepting again.
fn serve_until_commit(
    commits: &mpsc::Receiver<ServerEvent>,
    mut acceptors: accept::Accepting,
    listeners: &[Listener],
    service: &Arc<dyn Service>,
    move_bound: Duration,
) -> std::io::Result<Option<Moved>> {
    loop {
        match commits.recv() {
            Ok(ServerEvent::Committed(stopped)) => {
                acceptors.stop();
                let _ = stopped.send(());
                return Ok(None);
            }
            Ok(ServerEvent::Move {
                channel,
                outcome,
                schema,
                ..
            }) => {
                acceptors.stop();
                let result = mover::export(&channel, &**service, &schema, move_bound);
                drop(channel);
                match result {
                    Ok(m) => {
                        let _ = outcome.send(Ok(m.clone()));
                        return Ok(Some(m));
                    }
                    Err(MoveFailed::NoExport) => {
                        let _ = outcome.send(Err(MoveFailed::NoExport));
                        return Ok(None);
                    }
                    Err(failed) => {
                        // Told first: the helper must not wait on our
                        // accept loops to learn that we serve on.
                        let _ = outcome.send(Err(failed));
                        acceptors = accept_again(listeners, service)?;
                    }
                }
            }
            Err(_) => return Err(std::io::Error::other("the handoff server stopped")),
        }
    }
}

/// Lets the connections left after a commit drain for at most `bound`,
/// then closes the rest: how many were live at the commit, and how many
/// were still open at the bound.
fn drain(service: &dyn Service, bound: Duration) -> (usize, usize) {
    let at_commit = service.connections();
    let deadline = Instant::now() + bound;
    while service.connections() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let closed = service.connections();
    service.close_all();
    let wait_close = Instant::now() + Duration::from_secs(2);
    while service.connections() > 0 && Instant::now() < wait_close {
        std::thread::sleep(Duration::from_millis(10));
    }
    (at_commit, closed)
}

/// Accepting again after a move that failed: retried for a few seconds
/// (a full fd table frees up as connections close), since a broker that
/// gives up here exits with every connection it just kept.
fn accept_again(
    listeners: &[Listener],
    service: &Arc<dyn Service>,
) -> std::io::Result<accept::Accepting> {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        match copies(listeners).and_then(|l| accept::Accepting::start(l, Arc::clone(service))) {
            Ok(a) => return Ok(a),
            Err(e) if Instant::now() < until => {
                eprintln!("move: accepting again after the failed move: {e}; retrying");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    }
}

/// The listeners again, for another round of accepting.
fn copies(listeners: &[Listener]) -> std::io::Result<Vec<Listener>> {
    listeners
        .iter()
        .map(|l| {
            Ok(Listener {
                name: l.name.clone(),
                socket: l.socket.try_clone()?,
                inherited: l.inherited,
            })
        })
        .collect()
}

/// Takes the brokers' channel named by [`MOVE_FD_ENV`] (and clears the
/// variable): only a SOCK_SEQPACKET socket is one.
fn take_channel() -> std::io::Result<Option<Channel>> {
    let fd = lease::take_fd(MOVE_FD_ENV, "a SOCK_SEQPACKET socket", |fd| {
        getsockopt(&fd, sockopt::SockType).map(|kind| kind == SockType::SeqPacket)
    })?;
    Ok(fd.map(Channel::new))
}

/// Past `going` (or with the old broker dead) nothing can undo the
/// switch: this broker publishes its own handoff socket at
/// [`HANDOFF_SOCKET`] beside it, as the helper does after the commit
/// (whichever comes first), so that a helper killed now still leaves it
/// where the next switch looks.
fn publish(path: &std::path::Path) {
    let Some(dir) = path.parent() else { return };
    if path.file_name().is_some_and(|n| n == HANDOFF_SOCKET) {
        return;
    }
    match std::fs::rename(path, dir.join(HANDOFF_SOCKET)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            eprintln!("move: publishing the handoff socket: {e}")
        }
        _ => {}
    }
}
