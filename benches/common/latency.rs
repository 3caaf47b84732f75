//! Delivery latency of established clients while something else loads
//! the broker (a TLS handshake storm): a plain publisher stamps QoS 0
//! messages with the time they left, every 2 ms; established TLS
//! subscribers record how long each took, tagged with the phase the
//! caller is in (before, during, after). Percentiles per phase.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use emqx_mqtt::Packet;
use emqx_testkit::tls_client::TlsClient;
use emqx_tls::TlsConfig;

use super::connect;

const TOPIC: &str = "bench/latency";
const EVERY: Duration = Duration::from_millis(2);

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// One phase: deliveries, p50 and p99 in ms.
pub type Phase = (usize, f64, f64);

/// Publisher and subscribers at work; [`Watch::phase`] tags what comes.
pub struct Watch {
    stop: Arc<AtomicBool>,
    phase: Arc<AtomicUsize>,
    publisher: JoinHandle<()>,
    subscribers: Vec<JoinHandle<Vec<(usize, u64)>>>,
}

/// Starts `k` TLS subscribers on `tls` and a plain publisher on `plain`.
pub fn watch(plain: SocketAddr, tls: SocketAddr, config: &TlsConfig, k: usize) -> Watch {
    let stop = Arc::new(AtomicBool::new(false));
    let phase = Arc::new(AtomicUsize::new(0));
    let subscribers = (0..k)
        .map(|i| {
            let mut c = TlsClient::connect(tls, config, &format!("latency-{i}"), true)
                .unwrap()
                .0;
            c.send(&Packet::subscribe(1, [(TOPIC, 0)])).unwrap();
            let _ = c.stream.set_read_timeout(Some(Duration::from_millis(100)));
            let (stop, phase) = (Arc::clone(&stop), Arc::clone(&phase));
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    if let Ok(Packet::Publish { payload, .. }) = c.recv() {
                        let sent: Option<u64> = std::str::from_utf8(&payload)
                            .ok()
                            .and_then(|s| s.parse().ok());
                        if let Some(sent) = sent {
                            let p = phase.load(Ordering::SeqCst);
                            seen.push((p, now_us().saturating_sub(sent)));
                        }
                    }
                }
                seen
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let publisher = {
        let stop = Arc::clone(&stop);
        let mut c = connect(plain, "latency-pub", "bench/none").unwrap().0;
        std::thread::spawn(move || {
            use std::io::Write;
            while !stop.load(Ordering::SeqCst) {
                let p = Packet::publish(TOPIC, now_us().to_string(), 0, false, 0);
                if c.write_all(&p.encode()).is_err() {
                    return;
                }
                std::thread::sleep(EVERY);
            }
        })
    };
    Watch {
        stop,
        phase,
        publisher,
        subscribers,
    }
}

impl Watch {
    /// What comes from now on is of phase `p`.
    pub fn phase(&self, p: usize) {
        self.phase.store(p, Ordering::SeqCst);
    }

    /// Stops; per phase (0, 1, 2...): deliveries, p50 and p99 in ms.
    pub fn finish(self) -> Vec<Phase> {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.publisher.join();
        let mut all: Vec<(usize, u64)> = Vec::new();
        for s in self.subscribers {
            all.extend(s.join().unwrap_or_default());
        }
        let phases = all.iter().map(|(p, _)| *p + 1).max().unwrap_or(0);
        (0..phases)
            .map(|p| {
                let mut v: Vec<u64> = all
                    .iter()
                    .filter(|(q, _)| *q == p)
                    .map(|(_, l)| *l)
                    .collect();
                v.sort_unstable();
                let at = |q: f64| {
                    v.get(((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1)))
                        .map_or(f64::NAN, |us| *us as f64 / 1000.0)
                };
                (v.len(), at(0.50), at(0.99))
            })
            .collect()
    }
}
