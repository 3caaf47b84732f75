//! The reference broker against Debian's mosquitto, same load generator,
//! same machine, one run (printed, never asserted):
//! (a) connections held (BENCH_CONNS, default 15,000) by several
//!     `emqx-load` processes (at most 5,000 each: a process may hold at
//!     most 20,000 fds here), with RSS per connection, and threads at 10
//!     connections and at all of them;
//! (b) fan-out: one publisher to BENCH_FANOUT (default 10,000) QoS 0
//!     subscribers, deliveries per second and p99 latency;
//! (c) fan-in: BENCH_PUBLISHERS (default 100) publishers to one subscriber,
//!     messages per second.
//! Ratios are ours / mosquitto's (memory: lower is better; rates: higher).
//! The fan-out and fan-in clients are one mio event loop in this process.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use emqx_mqtt::{decode, Packet};
use emqx_testkit::clients::Mosquitto;
use emqx_testkit::RefBroker;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn status(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn now_us(epoch: Instant) -> u64 {
    epoch.elapsed().as_micros() as u64
}

/// Many non-blocking MQTT clients on one poll.
struct Swarm {
    poll: Poll,
    conns: Vec<(TcpStream, Vec<u8>)>,
}

impl Swarm {
    fn new() -> Swarm {
        Swarm {
            poll: Poll::new().unwrap(),
            conns: Vec::new(),
        }
    }

    /// Connects `n` clients (CONNECT, then SUBSCRIBE to `filter` when
    /// given) in batches of [`BATCH`], each waiting for its CONNACKs and
    /// SUBACKs: a burst of thousands of SYNs would overflow a listen
    /// backlog (mosquitto's is 100) and measure SYN retransmission.
    fn connect(&mut self, addr: SocketAddr, n: usize, prefix: &str, filter: Option<&str>) {
        const BATCH: usize = 100;
        let want = if filter.is_some() { 2 } else { 1 };
        let mut from = 0;
        while from < n {
            let to = (from + BATCH).min(n);
            let first = self.conns.len();
            for i in from..to {
                let std = std::net::TcpStream::connect(addr).unwrap();
                std.set_nonblocking(true).unwrap();
                let _ = std.set_nodelay(true);
                let mut s = TcpStream::from_std(std);
                let mut bytes = Packet::connect(format!("{prefix}-{i}"), true, 0).encode();
                if let Some(f) = filter {
                    bytes.extend(Packet::subscribe(1, [(f, 0)]).encode());
                }
                // A few dozen bytes always fit a fresh socket's buffer.
                s.write_all(&bytes).unwrap();
                let token = Token(self.conns.len());
                self.poll
                    .registry()
                    .register(&mut s, token, Interest::READABLE)
                    .unwrap();
                self.conns.push((s, Vec::new()));
            }
            let batch = to - from;
            let mut acks = vec![0usize; batch];
            let mut done = 0;
            let deadline = Instant::now() + Duration::from_secs(60);
            self.run(deadline, |i, p, _| {
                if i >= first && matches!(p, Packet::ConnAck { .. } | Packet::SubAck { .. }) {
                    acks[i - first] += 1;
                    if acks[i - first] == want {
                        done += 1;
                    }
                }
                done < batch
            });
            assert_eq!(
                done, batch,
                "{prefix}: clients {from}..{to} did not all connect"
            );
            from = to;
        }
    }

    /// Polls and hands every packet to `on(client, packet, now)` until it
    /// returns false or `deadline`.
    fn run(&mut self, deadline: Instant, mut on: impl FnMut(usize, Packet, Instant) -> bool) {
        let mut events = Events::with_capacity(4096);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if Instant::now() >= deadline {
                return;
            }
            self.poll
                .poll(&mut events, Some(Duration::from_millis(50)))
                .unwrap();
            for ev in &events {
                let i = ev.token().0;
                let (s, pending) = &mut self.conns[i];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => pending.extend_from_slice(&buf[..n]),
                        Err(_) => break,
                    }
                }
                let now = Instant::now();
                let mut at = 0;
                while let Ok(Some((p, n))) = decode(&pending[at..], 1 << 20) {
                    at += n;
                    if !on(i, p, now) {
                        pending.drain(..at);
                        return;
                    }
                }
                pending.drain(..at);
            }
        }
    }
}

/// Open fds of `pid` (listeners, connections, the poll...).
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// (a): `conns` idle MQTT connections from `emqx-load` processes of at
/// most 5,000 each. Returns RSS per connection (bytes) and the broker's
/// threads with them all connected.
/// `before` is the broker's (RSS KiB, fds) with no client connected.
fn hold(name: &str, addr: SocketAddr, pid: u32, conns: usize, before: (u64, usize)) -> (f64, u64) {
    const PER_PROCESS: usize = 5_000;
    let (rss_before, fds_before) = before;
    let mut harnesses: Vec<Child> = Vec::new();
    let mut left = conns;
    while left > 0 {
        let n = left.min(PER_PROCESS);
        left -= n;
        let child = Command::new(emqx_testkit::bins::bin("emqx-load"))
            .args(["--addr", &addr.to_string(), "--idle", &n.to_string()])
            .args(["--persistent", "0", "--sessions", "0", "--storm", "0"])
            .args(["--connect-timeout", "30", "--json"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        harnesses.push(child);
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    while fds(pid) < fds_before + conns && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let connected_in = started.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let rss_after = status(pid, "VmRSS:");
    let threads = status(pid, "Threads:");
    let mut held = 0;
    for h in harnesses {
        let hpid = nix::unistd::Pid::from_raw(h.id() as i32);
        let _ = nix::sys::signal::kill(hpid, nix::sys::signal::Signal::SIGINT);
        let out = h.wait_with_output().unwrap();
        let report: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        held += report["held_max"].as_u64().unwrap_or(0);
        if report["ok"] != report["attempts"] {
            eprintln!("{name}: a harness saw failed attempts: {report}");
        }
    }
    eprintln!(
        "{name}: {conns} connections from {} emqx-load process(es) in {:.1} s, {held} held at once",
        conns.div_ceil(PER_PROCESS),
        connected_in.as_secs_f64()
    );
    if held < conns as u64 {
        eprintln!("{name}: only {held} of {conns} connections were held at once");
    }
    let per_conn = (rss_after.saturating_sub(rss_before)) as f64 * 1024.0 / conns as f64;
    (per_conn, threads)
}

struct Figures {
    rss_per_conn: f64,
    threads_idle: u64,
    threads: u64,
    fanout_rate: f64,
    fanout_p99_ms: f64,
    fanin_rate: f64,
}

fn measure(name: &str, addr: SocketAddr, pid: u32) -> Figures {
    let conns = env("BENCH_CONNS", 15_000);
    let fanout = env("BENCH_FANOUT", 10_000).min(conns);
    let publishers = env("BENCH_PUBLISHERS", 100);
    let messages = env("BENCH_MESSAGES", 100);
    std::thread::sleep(Duration::from_millis(200));
    let before = (status(pid, "VmRSS:"), fds(pid));
    let mut few = Swarm::new();
    few.connect(addr, 10, &format!("{name}-few"), None);
    let threads_idle = status(pid, "Threads:");
    drop(few);
    let (rss_per_conn, threads) = hold(name, addr, pid, conns, before);
    let (fanout_rate, p99) = fan_out(name, addr, fanout, messages);
    let fanin_rate = fan_in(name, addr, publishers, messages);
    Figures {
        rss_per_conn,
        threads_idle,
        threads,
        fanout_rate,
        fanout_p99_ms: p99,
        fanin_rate,
    }
}

/// (b): `fanout` subscribers on this process's event loop, one publisher
/// of `messages`: deliveries per second and the p99 latency in ms.
fn fan_out(name: &str, addr: SocketAddr, fanout: usize, messages: usize) -> (f64, f64) {
    let mut swarm = Swarm::new();
    swarm.connect(addr, fanout, &format!("{name}-sub"), Some("bench/fan"));
    let epoch = Instant::now();
    let mut publisher = std::net::TcpStream::connect(addr).unwrap();
    let _ = publisher.set_nodelay(true);
    let connect = Packet::connect(format!("{name}-pub"), true, 0);
    publisher.write_all(&connect.encode()).unwrap();
    let mut ack = [0u8; 4];
    publisher.read_exact(&mut ack).unwrap();
    let sender = std::thread::spawn(move || {
        for _ in 0..messages {
            let stamp = now_us(epoch).to_be_bytes().to_vec();
            let p = Packet::Publish {
                topic: "bench/fan".into(),
                payload: stamp,
                qos: 0,
                retain: false,
                dup: false,
                packet_id: None,
                properties: Default::default(),
            };
            publisher.write_all(&p.encode()).unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        publisher
    });
    let want = fanout * messages;
    let mut got = 0usize;
    let mut latencies = Vec::with_capacity(want);
    let started = Instant::now();
    let mut last = started;
    swarm.run(Instant::now() + Duration::from_secs(120), |_, p, now| {
        if let Packet::Publish { payload, .. } = p {
            if let Ok(stamp) = <[u8; 8]>::try_from(&payload[..]) {
                let sent = u64::from_be_bytes(stamp);
                latencies
                    .push(now.duration_since(epoch).as_micros() as u64 - sent.min(now_us(epoch)));
                got += 1;
                last = now;
            }
        }
        got < want
    });
    let _ = sender.join();
    latencies.sort_unstable();
    let p99 = latencies
        .get(latencies.len().saturating_sub(1) * 99 / 100)
        .copied()
        .unwrap_or(0) as f64
        / 1000.0;
    let fanout_rate = got as f64 / last.duration_since(started).as_secs_f64().max(1e-6);
    if got < want {
        eprintln!("{name}: fan-out delivered {got} of {want}");
    }
    drop(swarm);
    (fanout_rate, p99)
}

/// (c) fan-in: `publishers` threads, `messages * 10` QoS 0 each, to one
/// subscriber: messages per second.
fn fan_in(name: &str, addr: SocketAddr, publishers: usize, messages: usize) -> f64 {
    let mut sub = Swarm::new();
    sub.connect(addr, 1, &format!("{name}-sink"), Some("bench/in/+"));
    let per = messages * 10;
    // All publishers connect first; the clock starts when they all go.
    let go = std::sync::Arc::new(std::sync::Barrier::new(publishers + 1));
    let threads_in: Vec<_> = (0..publishers)
        .map(|i| {
            let name = name.to_string();
            let go = std::sync::Arc::clone(&go);
            std::thread::spawn(move || {
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                let c = Packet::connect(format!("{name}-in-{i}"), true, 0);
                s.write_all(&c.encode()).unwrap();
                let mut ack = [0u8; 4];
                s.read_exact(&mut ack).unwrap();
                let p = Packet::Publish {
                    topic: format!("bench/in/{i}"),
                    payload: vec![7; 32],
                    qos: 0,
                    retain: false,
                    dup: false,
                    packet_id: None,
                    properties: Default::default(),
                }
                .encode();
                let batch: Vec<u8> = p.iter().copied().cycle().take(p.len() * 10).collect();
                go.wait();
                for _ in 0..per / 10 {
                    s.write_all(&batch).unwrap();
                }
                s
            })
        })
        .collect();
    go.wait();
    let started = Instant::now();
    let want = publishers * per;
    let mut got = 0usize;
    let mut last = started;
    sub.run(Instant::now() + Duration::from_secs(60), |_, p, now| {
        if matches!(p, Packet::Publish { .. }) {
            got += 1;
            last = now;
        }
        got < want
    });
    for t in threads_in {
        let _ = t.join();
    }
    if got < want {
        eprintln!("{name}: fan-in delivered {got} of {want}");
    }
    got as f64 / last.duration_since(started).as_secs_f64().max(1e-6)
}

fn main() {
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard);
    let mut results: HashMap<&str, Figures> = HashMap::new();
    // BENCH_ONLY=refbroker measures ours alone (no ratios), for quick runs.
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    if only != "refbroker" {
        let m = Mosquitto::start();
        results.insert("mosquitto", measure("mosquitto", m.addr, m.pid()));
    }
    {
        let b = RefBroker::start();
        results.insert("refbroker", measure("refbroker", b.addrs[0], b.child.id()));
    }
    let o = &results["refbroker"];
    let Some(t) = results.get("mosquitto") else {
        println!(
            "refbroker alone: RSS/conn {:.0} B, threads {} -> {}, fan-out {:.0}/s p99 {:.1} ms, fan-in {:.0}/s",
            o.rss_per_conn, o.threads_idle, o.threads, o.fanout_rate, o.fanout_p99_ms, o.fanin_rate
        );
        return;
    };
    println!(
        "reference broker vs mosquitto: {} connections, fan-out to {}, fan-in from {}",
        env("BENCH_CONNS", 15_000),
        env("BENCH_FANOUT", 10_000),
        env("BENCH_PUBLISHERS", 100)
    );
    println!(
        "{:<28} {:>12} {:>12} {:>8}",
        "", "refbroker", "mosquitto", "ratio"
    );
    let row = |what: &str, ours: f64, theirs: f64| {
        println!(
            "{what:<28} {ours:>12.1} {theirs:>12.1} {:>8.2}",
            ours / theirs.max(1e-9)
        )
    };
    row("RSS per connection (bytes)", o.rss_per_conn, t.rss_per_conn);
    row(
        "threads at 10 connections",
        o.threads_idle as f64,
        t.threads_idle as f64,
    );
    row("threads at all of them", o.threads as f64, t.threads as f64);
    row("fan-out deliveries/s", o.fanout_rate, t.fanout_rate);
    row("fan-out p99 latency (ms)", o.fanout_p99_ms, t.fanout_p99_ms);
    row("fan-in messages/s", o.fanin_rate, t.fanin_rate);
}
