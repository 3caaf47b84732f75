//! TLS sessions at a switch, printed, never asserted; every ratio against
//! a baseline of the same run:
//! (a) N persistent-session TLS clients (BENCH_TLS_SESSIONS, default
//!     1000,5000,10000; 32 of them probes receiving a QoS 1 tick every
//!     5 ms) through one `upgrade`: "move" (protocol 2: they keep their
//!     connection and TLS state) against "drain" (a protocol 1 release:
//!     closed, every client handshakes again and finds its session
//!     gone). Per N: the pause, the longest delivery gap any probe saw,
//!     ticks missed, connections closed, sessions lost, the time until
//!     all were back, and the new broker's CPU seconds (under a drain:
//!     mostly handshakes). And the floor: the same N fds alone passed
//!     from one process to another over SCM_RIGHTS (253 a message).
//! (b) BENCH_TLS_CONNS (default 5,000) idle TLS connections from
//!     `emqx-load --all-tls`, all at once (a handshake storm): RSS per
//!     connection, new TLS connections per second, and the delivery p50
//!     and p99 of 16 established TLS subscribers before, during and after
//!     the storm, the reference broker against Debian's mosquitto with a
//!     TLS listener.
//! Runs as root (brokers run as a test user).

use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use emqx_handoff::Channel;
use emqx_mqtt::Packet;
use emqx_testkit::clients::Mosquitto;
use emqx_testkit::procfs::cpu_secs;
use emqx_testkit::tls_client::{client_config, TlsClient};
use emqx_testkit::BrokerHost;
use emqx_tls::TlsConfig;

// Not every helper of the session benchmarks is used here.
#[allow(dead_code)]
mod common;

use common::{hold, latency, number_after, ticker};

const PROBES: usize = 32;
/// Established TLS clients timing deliveries through a handshake storm.
const LATENCY_CLIENTS: usize = 16;

fn sizes(var: &str, default: &str) -> Vec<usize> {
    std::env::var(var)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

/// A TLS client with a persistent session on `bench/...`, retried until
/// it connects; whether its session was there.
fn session(addr: SocketAddr, config: &TlsConfig, id: &str, topic: &str) -> (TlsClient, bool) {
    loop {
        match TlsClient::connect(addr, config, id, false) {
            Ok((c, true)) => {
                let _ = c.stream.set_read_timeout(Some(Duration::from_millis(200)));
                return (c, true);
            }
            Ok((mut c, false)) => {
                if c.subscribe(topic).is_ok() {
                    let _ = c.stream.set_read_timeout(Some(Duration::from_millis(200)));
                    return (c, false);
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// What a probe saw.
#[derive(Default)]
struct Probe {
    max_gap: Duration,
    ticks: Vec<u64>,
    reconnects: u64,
    sessions_lost: u64,
}

fn probe(addr: SocketAddr, config: TlsConfig, i: usize, stop: Arc<AtomicBool>) -> Probe {
    let id = format!("probe-{i}");
    let mut seen = Probe::default();
    let mut c = session(addr, &config, &id, "bench/tick").0;
    let mut last: Option<Instant> = None;
    while !stop.load(Ordering::SeqCst) {
        match c.recv() {
            Ok(Packet::Publish {
                payload, packet_id, ..
            }) => {
                let now = Instant::now();
                if let Some(l) = last {
                    seen.max_gap = seen.max_gap.max(now - l);
                }
                last = Some(now);
                if let Some(n) = std::str::from_utf8(&payload)
                    .ok()
                    .and_then(|s| s.parse().ok())
                {
                    seen.ticks.push(n);
                }
                if let Some(id) = packet_id {
                    let _ = c.send(&Packet::puback(id));
                }
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            // Closed by the broker: back, with the same client id.
            Err(_) => {
                seen.reconnects += 1;
                let (again, present) = session(addr, &config, &id, "bench/tick");
                seen.sessions_lost += u64::from(!present);
                c = again;
            }
        }
    }
    seen
}

struct Row {
    mode: &'static str,
    n: usize,
    pause_ms: Option<f64>,
    max_gap_ms: f64,
    missed: u64,
    closed: usize,
    lost: u64,
    back_ms: Option<u128>,
    new_cpu_s: f64,
}

fn host(mode: &str) -> BrokerHost {
    let mut b = BrokerHost::new("settle_secs = 0.2\n");
    b.with_tls();
    b.drop_broker_release("5.0.0", true, "");
    let toml = if mode == "drain" {
        "handoff_protocol = 1\n"
    } else {
        ""
    };
    b.drop_broker_release("5.0.1", true, toml);
    assert_eq!(b.emqx(&["install", "5.0.0"]).2, Some(0));
    b.start();
    b
}

fn run(n: usize, mode: &'static str) -> Row {
    let b = host(mode);
    let addr = b.tls_addr().unwrap();
    let config = client_config(&b.tls.as_ref().unwrap().pki.ca());
    let mut idle: Vec<TlsClient> = (0..n.saturating_sub(PROBES))
        .map(|i| session(addr, &config, &format!("idle-{i}"), "bench/idle").0)
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let probes: Vec<_> = (0..PROBES.min(n))
        .map(|i| {
            let (stop, config) = (Arc::clone(&stop), config.clone());
            std::thread::spawn(move || probe(addr, config, i, stop))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let plain = b.addrs()[0];
    let ticking = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || ticker(plain, stop))
    };
    std::thread::sleep(Duration::from_millis(500));
    let began = Instant::now();
    let (out, err, code) = b.emqx(&["upgrade", "5.0.1"]);
    assert_eq!(code, Some(0), "{mode} {n}: {out}{err}");
    let (mut closed, mut lost, mut back) = (0, 0, None);
    if mode == "move" {
        // A connection the switch closed has its end of stream by now.
        std::thread::sleep(Duration::from_millis(200));
    }
    for (i, c) in idle.iter_mut().enumerate() {
        let _ = match mode {
            "drain" => c.stream.set_read_timeout(Some(Duration::from_secs(5))),
            _ => c.stream.set_nonblocking(true),
        };
        match c.recv() {
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            _ => {}
        }
        closed += 1;
        let (again, present) = session(addr, &config, &format!("idle-{i}"), "bench/idle");
        lost += u64::from(!present);
        *c = again;
        back = Some(began.elapsed().as_millis());
    }
    // Until every client is served again (its handshakes, under a drain).
    let new_cpu_s = cpu_secs(b.broker_pid());
    std::thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::SeqCst);
    let sent = ticking.join().unwrap();
    let mut max_gap = Duration::ZERO;
    let mut missed = 0;
    for p in probes {
        let p = p.join().unwrap();
        max_gap = max_gap.max(p.max_gap);
        let got: std::collections::BTreeSet<u64> = p.ticks.iter().copied().collect();
        let first = got.iter().next().copied().unwrap_or(0);
        missed += (first..sent.saturating_sub(1))
            .filter(|t| !got.contains(t))
            .count() as u64;
        closed += p.reconnects as usize;
        lost += p.sessions_lost;
    }
    Row {
        mode,
        n,
        pause_ms: number_after(&err, "(pause "),
        max_gap_ms: max_gap.as_secs_f64() * 1000.0,
        missed,
        closed,
        lost,
        back_ms: back,
        new_cpu_s,
    }
}

/// The floor: `n` fds (sockets) passed from this process to a child,
/// 253 a message, until the child says it has them all.
fn fd_floor(n: usize) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("floor.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--fd-sink", &path.display().to_string(), &n.to_string()])
        .spawn()
        .unwrap();
    let (stream, _) = listener.accept().unwrap();
    let ch = Channel::new(OwnedFd::from(stream));
    let sockets: Vec<std::net::UdpSocket> = (0..n)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let began = Instant::now();
    for batch in sockets.chunks(253) {
        let fds: Vec<_> = batch.iter().map(|s| s.as_fd()).collect();
        ch.send_frame(b"f", &fds).unwrap();
    }
    let _ = ch.recv_frame(16, 0).unwrap();
    let took = began.elapsed();
    let _ = child.wait();
    took
}

/// The child's side of [`fd_floor`]: takes `n` fds, then answers.
fn fd_sink(path: &Path, n: usize) {
    let stream = std::os::unix::net::UnixStream::connect(path).unwrap();
    let ch = Channel::new(OwnedFd::from(stream));
    let mut got = 0;
    while got < n {
        // One byte a message, so a stream socket never merges two.
        let (_, fds) = ch.recv_frame(1, 253).unwrap();
        got += fds.len();
    }
    ch.send_frame(b"k", &[]).unwrap();
}

fn print_rows(rows: &[Row], floor: Duration) {
    for r in rows {
        println!(
            "{:<6} {:>6} {:>9} {:>10} {:>8.1} {:>7} {:>6} {:>6} {:>11} {:>9.2}",
            r.mode,
            r.n,
            r.pause_ms.map(|p| format!("{p:.1}")).unwrap_or("-".into()),
            format!("{:.2}", floor.as_secs_f64() * 1000.0),
            r.max_gap_ms,
            r.missed,
            r.closed,
            r.lost,
            r.back_ms.map(|b| b.to_string()).unwrap_or("-".into()),
            r.new_cpu_s,
        );
    }
    let (m, d) = (&rows[0], &rows[1]);
    let pause = m.pause_ms.unwrap_or(f64::NAN);
    println!(
        "       N={}: pause {:.1} ms = {:.1}x the fd-passing floor; longest gap {:.1} ms moved vs {:.1} ms drained ({:.1}x); {} vs {} sessions lost; new broker CPU until all served {:.2} s vs {:.2} s",
        m.n,
        pause,
        pause / (floor.as_secs_f64() * 1000.0).max(1e-6),
        m.max_gap_ms,
        d.max_gap_ms,
        d.max_gap_ms / m.max_gap_ms.max(0.001),
        m.lost,
        d.lost,
        m.new_cpu_s,
        d.new_cpu_s
    );
}

/// (b) for one broker: RSS per idle TLS connection (bytes) and new TLS
/// connections per second, `conns` of them from `emqx-load --all-tls`.
fn hold_tls(name: &str, addr: SocketAddr, ca: &Path, pid: u32, conns: usize) -> (f64, f64) {
    let (a, ca) = (addr.to_string(), ca.display().to_string());
    let args = ["--addr", &a, "--tls-addr", &a, "--all-tls", "--cafile", &ca];
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let (load, held) = hold(name, pid, &args, conns);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(load.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    );
    let _ = load.wait_with_output();
    (held.rss_per_conn, held.per_second)
}

/// `hold_tls` as a storm (every connection at once), with established
/// TLS clients timing deliveries before, during and after it.
fn storm(
    name: &str,
    plain: SocketAddr,
    tls: SocketAddr,
    ca: &Path,
    pid: u32,
    conns: usize,
) -> ((f64, f64), Vec<latency::Phase>) {
    let watch = latency::watch(plain, tls, &client_config(ca), LATENCY_CLIENTS);
    std::thread::sleep(Duration::from_secs(1));
    watch.phase(1);
    let held = hold_tls(name, tls, ca, pid, conns);
    watch.phase(2);
    std::thread::sleep(Duration::from_millis(500));
    (held, watch.finish())
}

fn memory_and_rate(conns: usize) {
    let b = BrokerHost::running_tls("");
    let ca = b.tls.as_ref().unwrap().pki.ca();
    let (ours, our_lat) = storm(
        "refbroker",
        b.addrs()[0],
        b.tls_addr().unwrap(),
        &ca,
        b.broker_pid(),
        conns,
    );
    drop(b);
    let pki = emqx_testkit::Pki::new();
    let m = Mosquitto::start_tls(&pki);
    let (theirs, their_lat) = storm(
        "mosquitto",
        m.addr,
        m.tls_addr.unwrap(),
        &pki.ca(),
        m.pid(),
        conns,
    );
    println!("idle TLS connections: reference broker vs mosquitto, {conns} connections");
    println!(
        "{:<32} {:>10} {:>10} {:>7}",
        "", "refbroker", "mosquitto", "ratio"
    );
    let row = |what: &str, a: f64, b: f64| {
        println!("{what:<32} {a:>10.1} {b:>10.1} {:>7.2}", a / b.max(1e-9));
    };
    row("RSS per TLS connection (bytes)", ours.0, theirs.0);
    row("new TLS connections per second", ours.1, theirs.1);
    for (phase, what) in [(0, "before"), (1, "during"), (2, "after")] {
        let (Some(a), Some(b)) = (our_lat.get(phase), their_lat.get(phase)) else {
            continue;
        };
        row(&format!("delivery p99 ms {what} the storm"), a.2, b.2);
        row(&format!("delivery p50 ms {what} the storm"), a.1, b.1);
    }
    let during = |l: &[latency::Phase]| l.get(1).map_or(0, |p| p.0);
    println!(
        "({LATENCY_CLIENTS} established TLS subscribers, a QoS 0 message every 2 ms: {} vs {} deliveries during the storm)",
        during(&our_lat),
        during(&their_lat)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--fd-sink") {
        let n = args.get(i + 2).and_then(|n| n.parse().ok()).unwrap_or(0);
        return fd_sink(Path::new(&args[i + 1]), n);
    }
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
    println!("established TLS sessions at one `upgrade`: moved (protocol 2) vs. drained and reconnected (protocol 1)");
    println!(
        "{:<6} {:>6} {:>9} {:>10} {:>8} {:>7} {:>6} {:>6} {:>11} {:>9}",
        "mode",
        "N",
        "pause ms",
        "floor ms",
        "max gap",
        "missed",
        "closed",
        "lost",
        "all back ms",
        "new CPU s"
    );
    for n in sizes("BENCH_TLS_SESSIONS", "1000,5000,10000") {
        let floor = fd_floor(n);
        let rows = [run(n, "move"), run(n, "drain")];
        print_rows(&rows, floor);
    }
    println!("targets: 10,000 TLS sessions move with a pause under 250 ms; the pause within 2x the fd-passing floor");
    for conns in sizes("BENCH_TLS_CONNS", "5000") {
        memory_and_rate(conns);
    }
    println!("target: memory per TLS connection no more than mosquitto's; established clients served during a handshake storm");
}
