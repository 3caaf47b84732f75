//! One connection's sending side: a queue drained by its own writer thread
//! (a slow subscriber never slows a publisher down), and the graceful close
//! (FIN after the queued packets, never a reset).

use std::io::{BufWriter, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

use emqx_mqtt::Packet;

/// Bytes of deliveries a connection may have queued; beyond, new
/// deliveries to it are dropped (like EMQX's bounded message queue).
pub const QUEUE_BYTES: usize = 16 << 20;
/// A write blocked this long (the client reads nothing) ends the connection.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
const WRITER_STACK: usize = 128 * 1024;

enum Out {
    /// Bytes to write; `counted` ones are deliveries, bounded by [`QUEUE_BYTES`].
    Bytes { data: Arc<Vec<u8>>, counted: bool },
    /// Flush, send FIN, stop.
    Close,
}

/// A client connection as the rest of the broker sees it.
pub struct Conn {
    /// Connection number (unique in this process).
    pub id: u64,
    /// The listener that accepted it.
    pub listener: String,
    /// The peer's address.
    pub peer: String,
    tx: Sender<Out>,
    queued: Arc<AtomicUsize>,
    dropped: AtomicU64,
    next_id: AtomicU32,
    socket: TcpStream,
    closing: AtomicBool,
    finished: AtomicBool,
}

impl Conn {
    /// Starts the writer thread of `stream`.
    pub fn start(id: u64, listener: &str, stream: &TcpStream) -> std::io::Result<Arc<Conn>> {
        let _ = stream.set_nodelay(true);
        stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
        let socket = stream.try_clone()?;
        let writer = stream.try_clone()?;
        let (tx, rx) = mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&queued);
        std::thread::Builder::new()
            .name(format!("conn-{id}-writer"))
            .stack_size(WRITER_STACK)
            .spawn(move || write_loop(writer, &rx, &counter))?;
        Ok(Arc::new(Conn {
            id,
            listener: listener.to_string(),
            peer: stream
                .peer_addr()
                .map_or_else(|_| "?".into(), |a| a.to_string()),
            tx,
            queued,
            dropped: AtomicU64::new(0),
            next_id: AtomicU32::new(0),
            socket,
            closing: AtomicBool::new(false),
            finished: AtomicBool::new(false),
        }))
    }

    /// Queues a packet of the session's own (an acknowledgement): never dropped.
    pub fn send(&self, packet: &Packet) {
        let _ = self.tx.send(Out::Bytes {
            data: Arc::new(packet.encode()),
            counted: false,
        });
    }

    /// Queues a delivery; dropped (false) when the queue is full or closed.
    pub fn deliver(&self, data: Arc<Vec<u8>>) -> bool {
        let n = data.len();
        if self.closing() {
            return false;
        }
        if self.queued.fetch_add(n, Ordering::SeqCst) + n > QUEUE_BYTES {
            self.queued.fetch_sub(n, Ordering::SeqCst);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        self.tx
            .send(Out::Bytes {
                data,
                counted: true,
            })
            .is_ok()
    }

    /// Deliveries dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// A fresh packet identifier for a QoS 1 delivery (1..=65535, cycling).
    pub fn packet_id(&self) -> u16 {
        (self.next_id.fetch_add(1, Ordering::Relaxed) % 65_535) as u16 + 1
    }

    /// Starts closing: no more deliveries; the writer sends what is queued,
    /// then a FIN. The session ends at its next packet or at end of stream.
    pub fn close(&self) {
        if self.closing.swap(true, Ordering::SeqCst) {
            return;
        }
        if self.tx.send(Out::Close).is_err() {
            // The writer is gone (a failed write): send the FIN here.
            let _ = self.socket.shutdown(Shutdown::Write);
        }
    }

    /// Whether the connection is closing.
    pub fn closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// Ends the connection's I/O: a writer blocked on a client that reads
    /// nothing fails, a session blocked in a read sees end of stream.
    /// Shutdown sends a FIN, not a reset.
    pub fn force(&self) {
        let _ = self.socket.shutdown(Shutdown::Both);
    }

    /// Marks the session over (its socket released).
    pub fn set_finished(&self) {
        self.finished.store(true, Ordering::SeqCst);
    }

    /// Whether the session is over.
    pub fn finished(&self) -> bool {
        self.finished.load(Ordering::SeqCst)
    }
}

/// Writes the queue in batches, flushing when it runs dry.
fn write_loop(stream: TcpStream, rx: &Receiver<Out>, queued: &AtomicUsize) {
    let mut out = BufWriter::with_capacity(32 * 1024, stream);
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(item) = next {
            match item {
                Out::Bytes { data, counted } => {
                    if counted {
                        queued.fetch_sub(data.len(), Ordering::SeqCst);
                    }
                    if out.write_all(&data).is_err() {
                        return failed(out.get_ref());
                    }
                }
                Out::Close => {
                    let _ = out.flush();
                    let _ = out.get_ref().shutdown(Shutdown::Write);
                    return;
                }
            }
            next = rx.try_recv().ok();
        }
        if out.flush().is_err() {
            return failed(out.get_ref());
        }
    }
}

/// A write failed or timed out: end the reading side too, so the session
/// sees end of stream and closes.
fn failed(stream: &TcpStream) {
    let _ = stream.shutdown(Shutdown::Both);
}
