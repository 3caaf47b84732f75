//! Load harness proving a broker switch refuses no connection: persistent
//! MQTT clients publishing QoS 1 to themselves, plus a connection storm,
//! every connection attempt ending in exactly one class (ok, refused,
//! reset, timed out, other error). Std threads only.
//!
//! [`Load::start`] runs in the background; [`Load::snapshot`] reads the
//! counts; [`Load::stop`] joins every thread and returns the [`Report`].

mod attempt;
mod persistent;
mod report;
mod stats;
mod storm;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

pub use attempt::VERSION_TOPIC;
pub use report::{Latency, Report};
pub use stats::Outcome;

use stats::Stats;

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Broker listeners; connections go round-robin over them.
    pub addrs: Vec<SocketAddr>,
    /// Persistent clients.
    pub persistent: usize,
    /// QoS 1 messages per second per persistent client (0: none).
    pub publish_rate: f64,
    /// Connection storm threads.
    pub storm_threads: usize,
    /// Budget of one attempt: connect, CONNACK, SUBACK and the version.
    pub connect_timeout: Duration,
    /// How long to run; `None` = until stopped.
    pub duration: Option<Duration>,
}

impl Default for LoadOptions {
    fn default() -> LoadOptions {
        LoadOptions {
            addrs: Vec::new(),
            persistent: 10,
            publish_rate: 10.0,
            storm_threads: 2,
            connect_timeout: Duration::from_secs(5),
            duration: None,
        }
    }
}

/// Distinguishes the client ids of runs in one process.
static RUNS: AtomicU64 = AtomicU64::new(0);

/// State shared by all threads of a run.
pub(crate) struct Shared {
    opts: LoadOptions,
    stats: Stats,
    stop: AtomicBool,
    start: Instant,
    end: Option<Instant>,
    next: AtomicUsize,
    /// Prefix of every client id of this run.
    run_id: String,
}

impl Shared {
    /// Stop requested or the duration passed.
    fn should_stop(&self) -> bool {
        self.stop.load(Ordering::SeqCst) || self.end.is_some_and(|end| Instant::now() >= end)
    }

    /// The next address, round-robin (addrs is never empty here).
    fn next_addr(&self) -> SocketAddr {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        self.opts.addrs[i % self.opts.addrs.len()]
    }

    /// Sleeps up to `d`, waking early when the run stops.
    fn pause(&self, d: Duration) {
        let until = Instant::now() + d;
        while !self.should_stop() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            thread::sleep(left.min(Duration::from_millis(10)));
        }
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
    threads: Vec<JoinHandle<()>>,
    stopped_at: Option<f64>,
}

impl Load {
    /// Starts the persistent clients and the storm threads. Without
    /// addresses nothing runs and the report stays empty.
    pub fn start(opts: LoadOptions) -> Load {
        let run = RUNS.fetch_add(1, Ordering::Relaxed);
        let start = Instant::now();
        let shared = Arc::new(Shared {
            end: opts.duration.map(|d| start + d),
            run_id: format!("load-{}-{run}", std::process::id()),
            opts,
            stats: Stats::default(),
            stop: AtomicBool::new(false),
            start,
            next: AtomicUsize::new(0),
        });
        let mut load = Load {
            shared: Arc::clone(&shared),
            threads: Vec::new(),
            stopped_at: None,
        };
        if shared.opts.addrs.is_empty() {
            return load;
        }
        for i in 0..shared.opts.persistent {
            let s = Arc::clone(&shared);
            load.spawn(format!("load-p{i}"), move || persistent::run(&s, i));
        }
        for i in 0..shared.opts.storm_threads {
            let s = Arc::clone(&shared);
            load.spawn(format!("load-s{i}"), move || storm::run(&s, i));
        }
        load
    }

    fn spawn(&mut self, name: String, f: impl FnOnce() + Send + 'static) {
        match thread::Builder::new().name(name).spawn(f) {
            Ok(h) => self.threads.push(h),
            // Counted, so the report cannot look clean with missing clients.
            Err(e) => self
                .shared
                .stats
                .record(&Outcome::Other(format!("spawning a load thread: {e}"))),
        }
    }

    /// The counts so far.
    pub fn snapshot(&self) -> Report {
        let elapsed = self.stopped_at.unwrap_or_else(|| self.shared.elapsed());
        Report::from_stats(&self.shared.stats, elapsed)
    }

    /// True once every thread has ended (the duration passed).
    pub fn is_finished(&self) -> bool {
        self.threads.iter().all(|h| h.is_finished())
    }

    /// Stops every loop, joins the threads (within about the connect
    /// timeout plus a second) and returns the final report.
    pub fn stop(mut self) -> Report {
        self.stopped_at = Some(self.shared.elapsed());
        self.shared.stop.store(true, Ordering::SeqCst);
        for h in std::mem::take(&mut self.threads) {
            if h.join().is_err() {
                self.shared
                    .stats
                    .record(&Outcome::Other("a load thread panicked".into()));
            }
        }
        self.snapshot()
    }
}

impl Drop for Load {
    /// A load dropped without stop() still ends its threads (detached).
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
    }
}
