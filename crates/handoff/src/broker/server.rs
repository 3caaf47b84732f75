//! The handoff socket: hands the listeners to a privileged helper, says
//! which state schemas the broker moves (protocol 2), and reports its
//! commit or the outcome of its move. Each session runs on its own thread, so a peer that
//! hangs or misbehaves never stops the broker; each bad session logs one line.

use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sys::socket::{
    accept4, bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr,
};

use nix::sys::socket::{getsockname, getsockopt, sockopt, SockaddrLike, SockaddrStorage};

use super::mover::{MoveFailed, Moved};
use super::stop::{Stop, Wake};
use super::Schemas;
use crate::faults::step;
use crate::message::negotiate_upto;
use crate::{Channel, ChannelError, Message, MIN_PROTOCOL, PROTOCOL};

/// How long a peer has to say hello.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a session may stay silent after the hello (the helper waits for
/// the new broker to be ready meanwhile).
pub const SESSION_IDLE: Duration = Duration::from_secs(600);

/// What the server tells the broker.
#[derive(Debug)]
pub enum ServerEvent {
    /// A helper committed a switch: stop accepting, then say so on the
    /// sender (the helper is answered only then), drain, exit.
    Committed(Sender<()>),
    /// A helper committed a switch that moves the connections (protocol
    /// 2) to the broker at the other end of `channel`, in `schema`: stop
    /// accepting, move, and answer on `outcome`.
    Move {
        channel: Channel,
        schema: String,
        outcome: Sender<Result<Moved, MoveFailed>>,
    },
}

/// How long the server waits for the outcome of a move on top of its bound.
const MOVE_SLACK: Duration = Duration::from_secs(5);
/// How much longer it waits for a late outcome, answering nobody.
const LATE_OUTCOME: Duration = Duration::from_secs(60);

/// How long the server waits for the broker to stop accepting before it
/// answers a commit anyway.
const STOP_ACCEPTING_WAIT: Duration = Duration::from_secs(2);

/// What the server says of its broker.
#[derive(Debug, Clone)]
pub struct About {
    /// The release version (in the hello).
    pub version: String,
    /// The state schemas it exports and imports (protocol 2).
    pub schemas: Schemas,
    /// How long a move may take, freeze to go.
    pub move_bound: Duration,
    /// The newest protocol it speaks (below [`PROTOCOL`]: an older
    /// broker's behaviour, for tests of rollbacks).
    pub protocol: u32,
}

/// The running handoff server.
pub struct HandoffServer {
    stop: Arc<Stop>,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
}

struct Shared {
    version: String,
    protocol: u32,
    schemas: Schemas,
    move_bound: Duration,
    listeners: Vec<(String, TcpListener)>,
    connections: Arc<dyn Fn() -> usize + Send + Sync>,
    events: Sender<ServerEvent>,
    committed: AtomicBool,
    /// The helper has the answer to its commit: the process may exit.
    answered: (std::sync::Mutex<bool>, std::sync::Condvar),
}

impl Shared {
    /// Sends the answer to a commit, then lets [`HandoffServer::stop`]
    /// return: a broker that exits before this would leave the helper
    /// with no answer (a commit in doubt).
    fn answer(&self, ch: &Channel, message: &Message) {
        let _ = ch.send(message, &[]);
        let (done, cv) = &self.answered;
        if let Ok(mut d) = done.lock() {
            *d = true;
            cv.notify_all();
        }
    }
}

/// How long stopping waits for the answer to a commit to be sent.
const ANSWER_WAIT: Duration = Duration::from_secs(2);

impl HandoffServer {
    /// Binds `path` (mode 0600; a stale socket nobody answers on is
    /// replaced, a live one is an error) and serves it.
    pub fn start(
        path: &Path,
        about: About,
        listeners: Vec<(String, TcpListener)>,
        connections: Arc<dyn Fn() -> usize + Send + Sync>,
        events: Sender<ServerEvent>,
    ) -> std::io::Result<HandoffServer> {
        if path.exists() {
            if Channel::connect(path).is_ok() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    format!("another broker serves {}", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        let fd = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        bind(fd.as_raw_fd(), &UnixAddr::new(path)?)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        listen(&fd, Backlog::new(16)?)?;
        let stop = Arc::new(Stop::new()?);
        let waiter = Arc::clone(&stop);
        let shared = Arc::new(Shared {
            version: about.version,
            protocol: about.protocol,
            schemas: about.schemas,
            move_bound: about.move_bound,
            listeners,
            connections,
            events,
            committed: AtomicBool::new(false),
            answered: Default::default(),
        });
        let serving = Arc::clone(&shared);
        let thread = std::thread::spawn(move || serve(fd, &waiter, serving));
        Ok(HandoffServer {
            stop,
            thread: Some(thread),
            shared,
        })
    }

    /// Stops serving after a commit. The socket's name now belongs to the
    /// new broker, whose socket the helper renames over it: removing it
    /// here (even after checking its inode) raced that rename and could
    /// delete the new broker's socket. A stale file refuses connections,
    /// which the helper reads as "no broker here".
    /// After a commit, it first waits (at most [`ANSWER_WAIT`]) until the
    /// helper has been answered.
    pub fn stop(mut self) {
        if self.shared.committed.load(Ordering::SeqCst) {
            let (done, cv) = &self.shared.answered;
            if let Ok(d) = done.lock() {
                let _ = cv.wait_timeout_while(d, ANSWER_WAIT, |d| !*d);
            }
        }
        self.stop.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(fd: OwnedFd, stop: &Stop, shared: Arc<Shared>) {
    loop {
        match stop.wait(fd.as_fd()) {
            Ok(Wake::Ready) => {}
            Ok(Wake::Stopped) => return,
            Err(e) => {
                eprintln!("handoff: poll failed, no more handoffs: {e}");
                return;
            }
        }
        match accept4(&fd, SockFlag::SOCK_CLOEXEC) {
            Ok(conn) => {
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || {
                    if let Err(line) = session(&Channel::new(conn), &shared) {
                        eprintln!("handoff: {line}");
                    }
                });
            }
            Err(e) => eprintln!("handoff: accept failed: {e}"),
        }
    }
}

/// Why a session with the helper ended early: the line the broker logs.
#[derive(Debug)]
enum SessionEnd {
    /// SO_PEERCRED could not be read.
    NoCredentials(nix::errno::Errno),
    /// The peer is neither root nor this broker's user.
    Denied { who: String, me: u32 },
    /// The channel's timeout could not be set.
    Timeout {
        who: String,
        errno: nix::errno::Errno,
    },
    /// Refused, with the reason told to the peer.
    Ended { who: String, reason: String },
    /// A move whose outcome the helper was not told.
    Silent { who: String, why: String },
    /// The helper gave up, with its reason.
    GaveUp { who: String, reason: String },
}

impl std::fmt::Display for SessionEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionEnd::NoCredentials(e) => write!(f, "no peer credentials: {e}"),
            SessionEnd::Denied { who, me } => {
                write!(
                    f,
                    "refused {who}: only root or uid {me} may take the listeners"
                )
            }
            SessionEnd::Timeout { who, errno } => write!(f, "{who}: {errno}"),
            SessionEnd::Ended { who, reason } => write!(f, "session with {who} ended: {reason}"),
            SessionEnd::Silent { who, why } => write!(f, "session with {who}: {why}"),
            SessionEnd::GaveUp { who, reason } => write!(f, "{who} gave up: {reason}"),
        }
    }
}

/// One session; the error is the one line to log.
fn session(ch: &Channel, shared: &Shared) -> Result<(), SessionEnd> {
    let peer = ch.peer().map_err(SessionEnd::NoCredentials)?;
    let me = nix::unistd::geteuid().as_raw();
    let who = format!("pid {} uid {}", peer.pid(), peer.uid());
    if peer.uid() != 0 && peer.uid() != me {
        refuse(ch, "permission denied");
        return Err(SessionEnd::Denied { who, me });
    }
    let fail = |reason: String| {
        refuse(ch, &reason);
        SessionEnd::Ended {
            who: who.clone(),
            reason,
        }
    };
    let failed = |e: ChannelError| fail(e.to_string());
    let unset = |errno| SessionEnd::Timeout {
        who: who.clone(),
        errno,
    };
    ch.set_timeout(HELLO_TIMEOUT).map_err(unset)?;
    let spoken = match ch.recv().map_err(failed)? {
        (
            Message::Hello {
                protocol,
                min_protocol,
                ..
            },
            _,
        ) => match negotiate_upto(shared.protocol, min_protocol, protocol) {
            Some(v) => v,
            None => {
                return Err(fail(format!(
                "protocol {min_protocol}..{protocol} not spoken here ({MIN_PROTOCOL}..{PROTOCOL})"
            )))
            }
        },
        (other, _) => return Err(fail(format!("expected hello, got {other:?}"))),
    };
    ch.send(&Message::hello_upto(&shared.version, shared.protocol), &[])
        .map_err(failed)?;
    ch.set_timeout(SESSION_IDLE).map_err(unset)?;
    loop {
        let (message, mut fds) = match ch.recv() {
            Ok(m) => m,
            Err(ChannelError::Closed) => return Ok(()),
            Err(e) => return Err(failed(e)),
        };
        match message {
            Message::GetListeners => {
                let names = shared.listeners.iter().map(|(n, _)| n.clone()).collect();
                let fds: Vec<_> = shared.listeners.iter().map(|(_, l)| l.as_fd()).collect();
                ch.send(&Message::Listeners { names }, &fds)
                    .map_err(failed)?;
            }
            Message::GetSchemas if spoken >= 2 => {
                let Schemas { exports, imports } = shared.schemas.clone();
                let move_bound_ms =
                    u64::try_from(shared.move_bound.as_millis()).unwrap_or(u64::MAX);
                let answer = Message::Schemas {
                    exports,
                    imports,
                    move_bound_ms,
                };
                ch.send(&answer, &[]).map_err(failed)?;
            }
            Message::CommitMove { .. } | Message::Commit if step("old::commit").is_err() => {
                return Err(fail("fault injected at old::commit".into()));
            }
            Message::CommitMove { schema } if spoken >= 2 => {
                let channel = match (fds.pop(), fds.is_empty()) {
                    (Some(fd), true) => brokers_channel(fd).map_err(|why| fail(why.into()))?,
                    _ => return Err(fail("commit_move needs exactly one fd".into())),
                };
                if !shared.schemas.exports.contains(&schema) {
                    return Err(fail(format!("this broker does not export {schema}")));
                }
                return move_away(ch, shared, channel, schema).map_err(|e| match e {
                    Unmoved::Refused(why) => fail(why),
                    Unmoved::Silent(why) => SessionEnd::Silent {
                        who: who.clone(),
                        why,
                    },
                });
            }
            Message::Commit => {
                if shared.committed.swap(true, Ordering::SeqCst) {
                    return Err(fail("already committed to another switch".into()));
                }
                // Answer only once the broker has stopped accepting: a
                // client that connects after the helper returns must reach
                // the new broker, not one about to drain and close it.
                let (stopped, accepting_ended) = std::sync::mpsc::channel();
                let _ = shared.events.send(ServerEvent::Committed(stopped));
                let _ = accepting_ended.recv_timeout(STOP_ACCEPTING_WAIT);
                let connections = (shared.connections)() as u64;
                shared.answer(ch, &Message::Committed { connections });
                return Ok(());
            }
            Message::Error { reason } => return Err(SessionEnd::GaveUp { who, reason }),
            other => return Err(fail(format!("unexpected {other:?}"))),
        }
    }
}

/// Why [`move_away`] did not answer `moved` or `committed`.
enum Unmoved {
    /// Told to the helper: the broker serves on as before.
    Refused(String),
    /// Not told: the outcome is unknown (the helper reads the silence as
    /// a commit in doubt).
    Silent(String),
}

/// Runs a move for the helper and answers it: `moved`, `committed` (this
/// broker drains instead) or the error that left it serving.
fn move_away(
    ch: &Channel,
    shared: &Shared,
    channel: Channel,
    schema: String,
) -> Result<(), Unmoved> {
    if shared.committed.swap(true, Ordering::SeqCst) {
        return Err(Unmoved::Refused(
            "already committed to another switch".into(),
        ));
    }
    let (outcome, answer) = std::sync::mpsc::channel();
    let _ = shared.events.send(ServerEvent::Move {
        channel,
        schema,
        outcome,
    });
    let result = match answer.recv_timeout(shared.move_bound + MOVE_SLACK) {
        Ok(r) => r,
        Err(_) => {
            // Still waiting for the broker, so that a move that failed
            // late leaves it ready for the next switch; the helper has
            // its answer: none.
            if let Ok(Err(MoveFailed::Thawed(_))) = answer.recv_timeout(LATE_OUTCOME) {
                shared.committed.store(false, Ordering::SeqCst);
            }
            return Err(Unmoved::Silent("the move did not end in time".into()));
        }
    };
    match result {
        // Injected: moved, and the answer lost while this broker lives on.
        Ok(_) if step("old::answer").is_err() => {
            Err(Unmoved::Silent("fault injected at old::answer".into()))
        }
        Ok(m) => {
            let answer = Message::Moved {
                moved: m.moved as u64,
                drained: m.left as u64,
                drained_why: m.left_why.clone(),
                pause_us: u64::try_from(m.pause.as_micros()).unwrap_or(u64::MAX),
                closed_by_policy: m.closed_by_policy as u64,
            };
            shared.answer(ch, &answer);
            Ok(())
        }
        Err(MoveFailed::NoExport) => {
            let connections = (shared.connections)() as u64;
            shared.answer(ch, &Message::Committed { connections });
            Ok(())
        }
        Err(MoveFailed::Thawed(why)) => {
            shared.committed.store(false, Ordering::SeqCst);
            Err(Unmoved::Refused(format!(
                "the move failed, this broker serves on: {why}"
            )))
        }
    }
}

/// The brokers' channel a helper attached: a unix SOCK_SEQPACKET socket.
fn brokers_channel(fd: OwnedFd) -> Result<Channel, &'static str> {
    let kind = getsockopt(&fd, sockopt::SockType).map_err(|_| "the attached fd is no socket")?;
    let unix = getsockname::<SockaddrStorage>(fd.as_raw_fd())
        .ok()
        .and_then(|a| a.family())
        == Some(nix::sys::socket::AddressFamily::Unix);
    if kind != nix::sys::socket::SockType::SeqPacket || !unix {
        return Err("the attached fd is no unix SOCK_SEQPACKET socket");
    }
    Ok(Channel::new(fd))
}

/// Tells the peer why, then reads what it still sends until it closes (at
/// most a second): closing on unread data would reset the connection and
/// lose the reason.
fn refuse(ch: &Channel, reason: &str) {
    let message = Message::Error {
        reason: reason.to_string(),
    };
    let _ = ch.send(&message, &[]);
    let _ = nix::sys::socket::shutdown(ch.as_fd().as_raw_fd(), nix::sys::socket::Shutdown::Write);
    let _ = ch.set_timeout(Duration::from_secs(1));
    while ch.recv().is_ok() {}
}
