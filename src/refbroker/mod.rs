//! The reference broker: a small, real MQTT 3.1.1 broker on [`crate::broker`],
//! the stand-in for EMQX in the demo, the tests and the benchmarks. Its
//! release version is the retained `$SYS/broker/version` message.

mod router;
mod session;

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::broker::Service;
use crate::mqtt::Packet;

pub use router::Router;

/// The topic that carries the release version.
pub const VERSION_TOPIC: &str = "$SYS/broker/version";
/// The largest packet accepted.
pub const MAX_PACKET: usize = 1 << 20;

/// A connection's writing side, shared with the router.
pub struct Outbox {
    stream: Mutex<TcpStream>,
    next_id: Mutex<u16>,
}

impl Outbox {
    fn new(stream: TcpStream) -> Outbox {
        Outbox {
            stream: Mutex::new(stream),
            next_id: Mutex::new(0),
        }
    }

    /// Sends a packet; a failed write closes the connection's reading side.
    pub fn send(&self, packet: &Packet) -> bool {
        let Ok(mut s) = self.stream.lock() else {
            return false;
        };
        let ok = s.write_all(&packet.encode()).is_ok();
        if !ok {
            let _ = s.shutdown(Shutdown::Both);
        }
        ok
    }

    /// A fresh packet identifier for a QoS 1 delivery.
    pub fn packet_id(&self) -> u16 {
        let Ok(mut id) = self.next_id.lock() else {
            return 1;
        };
        *id = id.wrapping_add(1).max(1);
        *id
    }

    /// Closes gracefully: FIN now; the session reads on until the client closes.
    pub fn close(&self) {
        if let Ok(s) = self.stream.lock() {
            let _ = s.shutdown(Shutdown::Write);
        }
    }

    /// Closes at once (a client id taken over, a protocol error).
    pub fn kill(&self) {
        if let Ok(s) = self.stream.lock() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// The broker service.
pub struct RefBroker {
    router: Arc<Router>,
    live: Arc<AtomicUsize>,
}

impl RefBroker {
    /// A broker of release `version`.
    pub fn new(version: &str) -> RefBroker {
        let router = Arc::new(Router::default());
        router.retain(VERSION_TOPIC, version.as_bytes().to_vec(), 0);
        RefBroker {
            router,
            live: Arc::new(AtomicUsize::new(0)),
        }
    }
}

impl Service for RefBroker {
    fn serve(&self, _listener: &str, stream: TcpStream) {
        let router = Arc::clone(&self.router);
        let live = Arc::clone(&self.live);
        live.fetch_add(1, Ordering::SeqCst);
        std::thread::spawn(move || {
            session::run(stream, &router);
            live.fetch_sub(1, Ordering::SeqCst);
        });
    }

    fn connections(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    fn close_all(&self) {
        self.router.close_all();
    }
}
