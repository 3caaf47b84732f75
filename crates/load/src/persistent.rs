//! Persistent clients: one connection each, subscribed to their own topic,
//! publishing QoS 1 to it at a set rate and counting what is sent,
//! acknowledged and received back; reconnecting when the broker closes.

use std::collections::HashSet;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use super::attempt::{classify_packet_error, handshake, KEEP_ALIVE, MAX_PACKET};
use super::stats::{classify_io, Outcome};
use super::Shared;
use emqx_mqtt::{read_packet, Packet};

/// Pause after a failed attempt before the next one.
const FAILURE_PAUSE: Duration = Duration::from_millis(50);
/// Longest the writer sleeps before looking at the stop flag again.
const STEP: Duration = Duration::from_millis(20);
/// How long a stopping client waits for its in-flight PUBACKs.
const DRAIN: Duration = Duration::from_millis(500);
/// Most unacknowledged messages per connection; publishing pauses above.
const MAX_IN_FLIGHT: usize = 10_000;
/// Behind schedule by more than this, the schedule restarts from now
/// instead of bursting.
const MAX_LAG: Duration = Duration::from_secs(1);

/// One persistent client's loop, until the run stops.
pub fn run(shared: &Shared, index: usize) {
    let topic = format!("load/{index}");
    let client_id = format!("{}-p{index}", shared.run_id);
    let filters = [(topic.clone(), 1u8)];
    let timeout = shared.opts.connect_timeout;
    while !shared.should_stop() {
        let addr = shared.next_addr();
        match handshake(addr, &client_id, &filters, timeout, &shared.stats) {
            Ok(est) => {
                shared.stats.record(&Outcome::Ok);
                Session::new(shared, est.stream, &topic).run();
            }
            Err(f) => {
                // EOF or an error after CONNACK: the broker closed an
                // established connection (a timeout is ours, not its).
                if f.after_connack && f.outcome != Outcome::TimedOut {
                    let reason = match &f.outcome {
                        Outcome::Other(m) => m.clone(),
                        o => format!("{o:?} before SUBACK"),
                    };
                    shared.stats.closed(f.outcome == Outcome::Reset, &reason);
                }
                shared.stats.record(&f.outcome);
                shared.pause(FAILURE_PAUSE);
            }
        }
    }
}

/// Why a session ended.
enum End {
    /// The run is stopping.
    Stop,
    /// The connection was lost: reset?, reason.
    Lost(bool, String),
    /// (Writer side) the reader ended: its own end tells why.
    ReaderEnded,
}

/// An established connection of a persistent client.
struct Session<'a> {
    shared: &'a Shared,
    topic: &'a str,
    writer: Mutex<TcpStream>,
    /// Packet ids sent and not yet acknowledged.
    in_flight: Mutex<HashSet<u16>>,
    /// Set before our own DISCONNECT: what the reader sees then is ours.
    closing: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<'a> Session<'a> {
    fn new(shared: &'a Shared, stream: TcpStream, topic: &'a str) -> Session<'a> {
        Session {
            shared,
            topic,
            writer: Mutex::new(stream),
            in_flight: Mutex::new(HashSet::new()),
            closing: AtomicBool::new(false),
        }
    }

    /// Runs the connection until the run stops or the connection is lost,
    /// and accounts for what was still in flight.
    fn run(&self) {
        let reader = {
            let w = lock(&self.writer);
            let _ = w.set_write_timeout(Some(self.shared.opts.connect_timeout));
            // The reader blocks; shutdown() wakes it. The timeout only
            // bounds a broker that went silent.
            let _ = w.set_read_timeout(Some(Duration::from_secs(2 * u64::from(KEEP_ALIVE))));
            w.try_clone()
        };
        let reader = match reader {
            Ok(r) => r,
            Err(e) => {
                self.finish(End::Lost(false, format!("cloning the socket: {e}")));
                return;
            }
        };
        let (tx, rx) = mpsc::channel::<()>();
        let end = thread::scope(|s| {
            let handle = s.spawn(move || {
                let end = self.read(reader);
                let _ = tx.send(());
                end
            });
            let writer_end = self.write(&rx);
            if let End::Stop = writer_end {
                self.closing.store(true, Ordering::SeqCst);
                let mut w = lock(&self.writer);
                let _ = std::io::Write::write_all(&mut *w, &Packet::Disconnect.encode());
            }
            let _ = lock(&self.writer).shutdown(Shutdown::Both);
            let reader_end = handle
                .join()
                .unwrap_or_else(|_| Some(End::Lost(false, "reader thread panicked".into())));
            match (writer_end, reader_end) {
                (End::ReaderEnded, Some(end)) => end,
                (End::ReaderEnded, None) => End::Stop,
                (end, _) => end,
            }
        });
        self.finish(end);
    }

    /// Counts the end of the session.
    fn finish(&self, end: End) {
        let stats = &self.shared.stats;
        let left = lock(&self.in_flight).len();
        match end {
            End::Stop | End::ReaderEnded => stats.lose_in_flight(left, &stats.unacked_at_stop),
            End::Lost(reset, reason) => {
                stats.closed(reset, &reason);
                stats.lose_in_flight(left, &stats.unacked_at_close);
            }
        }
    }

    /// The reader: PUBACKs, our own messages coming back, acks for QoS 1
    /// deliveries. Returns how the connection ended (None: we closed it).
    fn read(&self, mut stream: TcpStream) -> Option<End> {
        let stats = &self.shared.stats;
        let lost = loop {
            match read_packet(&mut stream, MAX_PACKET) {
                Ok(Some(Packet::PubAck { packet_id })) => {
                    if lock(&self.in_flight).remove(&packet_id) {
                        stats.qos1_acked.fetch_add(1, Ordering::Relaxed);
                        stats.in_flight.fetch_sub(1, Ordering::Relaxed);
                    }
                }
                Ok(Some(Packet::Publish {
                    topic,
                    qos,
                    packet_id,
                    ..
                })) => {
                    if qos > 0 {
                        if let Some(id) = packet_id {
                            let ack = Packet::PubAck { packet_id: id }.encode();
                            let mut w = lock(&self.writer);
                            if let Err(e) = std::io::Write::write_all(&mut *w, &ack) {
                                break lost_io("writing PUBACK", &e);
                            }
                        }
                    }
                    if topic == self.topic {
                        stats.qos1_received.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => break End::Lost(false, "connection closed by broker".into()),
                Err(e) => {
                    let outcome = classify_packet_error("from an established connection", &e);
                    break match outcome {
                        Outcome::Reset => End::Lost(true, "connection reset by broker".into()),
                        Outcome::TimedOut => {
                            End::Lost(false, "broker silent past keep alive".into())
                        }
                        Outcome::Other(m) => End::Lost(false, m),
                        o => End::Lost(false, format!("{o:?}")),
                    };
                }
            }
        };
        if self.closing.load(Ordering::SeqCst) {
            None
        } else {
            Some(lost)
        }
    }

    /// The writer: publishes on schedule and pings, until the run stops
    /// (then waits a little for PUBACKs) or the reader ends.
    fn write(&self, reader_done: &mpsc::Receiver<()>) -> End {
        let rate = self.shared.opts.publish_rate;
        let period = (rate.is_finite() && rate > 0.0)
            .then(|| Duration::from_secs_f64((1.0 / rate).max(1e-6)));
        let mut next = Instant::now();
        let mut last_write = Instant::now();
        let mut packet_id: u16 = 0;
        let mut seq: u64 = 0;
        let ping_every = Duration::from_secs(u64::from(KEEP_ALIVE) / 2);
        loop {
            if self.shared.should_stop() {
                return self.drain(reader_done);
            }
            let wait = period.map_or(STEP, |_| next.saturating_duration_since(Instant::now()));
            match reader_done.recv_timeout(wait.min(STEP)) {
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return End::ReaderEnded,
                Err(RecvTimeoutError::Timeout) => {}
            }
            if self.shared.should_stop() {
                return self.drain(reader_done);
            }
            let now = Instant::now();
            let packet = match period {
                Some(p) if now >= next => {
                    next = if now.duration_since(next) > MAX_LAG {
                        now + p
                    } else {
                        next + p
                    };
                    match self.track(&mut packet_id) {
                        Some(id) => {
                            seq += 1;
                            Packet::Publish {
                                topic: self.topic.to_string(),
                                payload: seq.to_string().into_bytes(),
                                qos: 1,
                                retain: false,
                                dup: false,
                                packet_id: Some(id),
                            }
                        }
                        None => continue,
                    }
                }
                _ if now.duration_since(last_write) >= ping_every => Packet::PingReq,
                _ => continue,
            };
            let mut w = lock(&self.writer);
            if let Err(e) = std::io::Write::write_all(&mut *w, &packet.encode()) {
                return lost_io("writing", &e);
            }
            last_write = now;
        }
    }

    /// Takes a free packet id and counts the message as sent and in
    /// flight (before it is written: its PUBACK may beat the return of
    /// write()). None when too many are in flight.
    fn track(&self, packet_id: &mut u16) -> Option<u16> {
        let mut set = lock(&self.in_flight);
        if set.len() >= MAX_IN_FLIGHT {
            return None;
        }
        loop {
            *packet_id = packet_id.wrapping_add(1);
            if *packet_id != 0 && set.insert(*packet_id) {
                break;
            }
        }
        let stats = &self.shared.stats;
        stats.qos1_sent.fetch_add(1, Ordering::Relaxed);
        stats.in_flight.fetch_add(1, Ordering::Relaxed);
        Some(*packet_id)
    }

    /// Stopping: gives in-flight messages up to [`DRAIN`] to be acked.
    fn drain(&self, reader_done: &mpsc::Receiver<()>) -> End {
        let until = Instant::now() + DRAIN;
        while !lock(&self.in_flight).is_empty() && Instant::now() < until {
            match reader_done.recv_timeout(Duration::from_millis(5)) {
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return End::ReaderEnded,
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
        End::Stop
    }
}

fn lost_io(context: &str, e: &std::io::Error) -> End {
    let reset = classify_io(context, e) == Outcome::Reset;
    End::Lost(reset, format!("{context}: {e}"))
}
