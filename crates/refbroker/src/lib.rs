//! The reference broker: a small, real MQTT 3.1.1 broker on [`emqx_handoff::broker`],
//! the stand-in for EMQX in the demo, the tests and the benchmarks. Its
//! release version is the retained `$SYS/broker/version` message.
//!
//! Each connection has a session thread that reads ([`session`]) and a
//! writer thread that drains its queue ([`conn`]); the [`router`] holds
//! the subscriptions and the retained messages. QoS 0 and 1, no stored
//! sessions (CONNACK never reports one), no wills.

mod conn;
mod router;
mod session;
pub mod settings;

use std::collections::HashMap;
use std::fmt;
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use emqx_handoff::broker::Service;

pub use conn::{Conn, QUEUE_BYTES};
pub use router::{Retained, Router};
pub use session::{CLOSE_WAIT, CONNECT_TIMEOUT};

/// The topic that carries the release version.
pub const VERSION_TOPIC: &str = "$SYS/broker/version";
/// The largest packet accepted (its remaining length).
pub const MAX_PACKET: usize = 1 << 20;
const SESSION_STACK: usize = 256 * 1024;

/// State shared by every connection.
struct Shared {
    version: String,
    router: Router,
    /// Client id -> its connection.
    clients: Mutex<HashMap<String, Arc<Conn>>>,
    /// Every live connection, by number.
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    live: AtomicUsize,
    next_conn: AtomicU64,
}

impl Shared {
    fn log(&self, line: fmt::Arguments<'_>) {
        eprintln!("emqx-refbroker[{}]: {line}", self.version);
    }

    /// Registers `conn` under `client_id`; a connection holding it already
    /// is taken over: closed gracefully, in the background.
    fn register(&self, client_id: &str, conn: &Arc<Conn>) {
        let old = self
            .clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(client_id.to_string(), Arc::clone(conn));
        if let Some(old) = old.filter(|o| o.id != conn.id) {
            self.log(format_args!(
                "client {client_id:?} connected again from {}: closing its connection from {}",
                conn.peer, old.peer
            ));
            let closer = std::thread::Builder::new()
                .name("takeover".into())
                .spawn(move || close_within(&[old], CLOSE_WAIT));
            if let Err(e) = closer {
                self.log(format_args!("cannot close the old connection: {e}"));
            }
        }
    }

    /// Forgets `client_id` if `conn` still holds it.
    fn unregister(&self, client_id: &str, conn: u64) {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if clients.get(client_id).is_some_and(|c| c.id == conn) {
            clients.remove(client_id);
        }
    }

    fn forget(&self, conn: u64) {
        self.conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&conn);
    }
}

/// Closes connections gracefully: FIN, then up to `wait` for their
/// sessions to read the clients' end of stream; the sessions of clients
/// that neither close nor stop sending are then ended (still no reset).
fn close_within(conns: &[Arc<Conn>], wait: Duration) {
    for c in conns {
        c.close();
    }
    let deadline = Instant::now() + wait;
    while conns.iter().any(|c| !c.finished()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    for c in conns.iter().filter(|c| !c.finished()) {
        c.force();
    }
}

/// Decrements the live count when a connection's thread ends, even by a panic.
struct Live(Arc<Shared>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The broker service.
pub struct RefBroker {
    shared: Arc<Shared>,
}

impl RefBroker {
    /// A broker of release `version`, its version retained on
    /// [`VERSION_TOPIC`].
    pub fn new(version: &str) -> RefBroker {
        let shared = Arc::new(Shared {
            version: version.to_string(),
            router: Router::default(),
            clients: Mutex::default(),
            conns: Mutex::default(),
            live: AtomicUsize::new(0),
            next_conn: AtomicU64::new(1),
        });
        shared.router.retain(VERSION_TOPIC, version.as_bytes(), 0);
        shared.log(format_args!("retained {VERSION_TOPIC} = {version}"));
        RefBroker { shared }
    }

    /// Logs one line with the broker's prefix.
    pub fn log(&self, line: fmt::Arguments<'_>) {
        self.shared.log(line);
    }
}

impl Service for RefBroker {
    fn serve(&self, listener: &str, stream: TcpStream) {
        let shared = &self.shared;
        shared.live.fetch_add(1, Ordering::SeqCst);
        let live = Live(Arc::clone(shared));
        let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
        let conn = match Conn::start(id, listener, &stream) {
            Ok(c) => c,
            Err(e) => {
                shared.log(format_args!("cannot serve a connection on {listener}: {e}"));
                return;
            }
        };
        shared
            .conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, Arc::clone(&conn));
        let (sh, c) = (Arc::clone(shared), Arc::clone(&conn));
        let spawned = std::thread::Builder::new()
            .name(format!("conn-{id}"))
            .stack_size(SESSION_STACK)
            .spawn(move || {
                let _live = live;
                session::run(&sh, &c, stream);
                sh.forget(c.id);
            });
        if let Err(e) = spawned {
            shared.log(format_args!(
                "cannot serve the connection from {} on {listener}: {e}",
                conn.peer
            ));
            conn.close();
            conn.force();
            shared.forget(id);
        }
    }

    fn connections(&self) -> usize {
        self.shared.live.load(Ordering::SeqCst)
    }

    fn close_all(&self) {
        let conns: Vec<Arc<Conn>> = self
            .shared
            .conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        if !conns.is_empty() {
            self.shared
                .log(format_args!("closing {} connections", conns.len()));
        }
        close_within(&conns, CLOSE_WAIT);
    }
}
