//! Moving established sessions vs. draining them (printed, not asserted):
//! N persistent-session clients (clean_session=0, subscribed at QoS 1)
//! held on broker 5.0.0, 32 of them probes receiving a tick every 5 ms;
//! then one `upgrade`. "move": 5.0.1 takes the connections (protocol 2).
//! "drain": 5.0.1 speaks protocol 1, the old way: the old broker closes
//! them, every client reconnects with its client id and counts whether
//! its session survived. Printed per N: the pause (freeze to go, from the
//! helper's report), the longest gap between two ticks any probe saw,
//! ticks the probes missed, connections closed, sessions lost, and the
//! time until every client was connected again; the per-session cost of
//! the pause, to extrapolate. BENCH_SESSIONS=1000,5000,15000 (default)
//! picks N. Runs as root (brokers run as a test user).

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use emqx_mqtt::{read_packet, Packet};
use emqx_testkit::BrokerHost;

// The TLS storm's latency watch is not used here.
#[allow(dead_code)]
mod common;

use common::{connect, number_after, ticker, timed_out};

const PROBES: usize = 32;

/// What a probe saw.
#[derive(Default)]
struct Probe {
    max_gap: Duration,
    ticks: Vec<u64>,
    reconnects: u64,
    sessions_lost: u64,
}

fn probe(addr: SocketAddr, i: usize, stop: Arc<AtomicBool>) -> Probe {
    let id = format!("probe-{i}");
    let mut seen = Probe::default();
    let mut c = connect(addr, &id, "bench/tick").unwrap().0;
    c.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut last: Option<Instant> = None;
    while !stop.load(Ordering::SeqCst) {
        match read_packet(&mut c, 1024) {
            Ok(Some(Packet::Publish {
                payload, packet_id, ..
            })) => {
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
                    let _ = c.write_all(&Packet::puback(id).encode());
                }
            }
            Ok(Some(_)) => {}
            Err(e) if timed_out(&e) => {}
            // Closed by the broker: back, with the same client id.
            _ => {
                seen.reconnects += 1;
                let (again, present) = loop {
                    match connect(addr, &id, "bench/tick") {
                        Ok(c) => break c,
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                };
                seen.sessions_lost += u64::from(!present);
                c = again;
                c.set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
            }
        }
    }
    seen
}

struct Row {
    mode: &'static str,
    n: usize,
    pause_ms: Option<f64>,
    switch_ms: u128,
    max_gap_ms: f64,
    missed: u64,
    closed: usize,
    lost: u64,
    back_ms: Option<u128>,
}

fn run(n: usize, mode: &'static str) -> Row {
    let mut b = BrokerHost::new("settle_secs = 0.2\n");
    b.drop_broker_release("5.0.0", true, "");
    let toml = if mode == "drain" {
        "handoff_protocol = 1\n"
    } else {
        ""
    };
    b.drop_broker_release("5.0.1", true, toml);
    assert_eq!(b.emqx(&["install", "5.0.0"]).2, Some(0));
    b.start();
    let addr = b.addrs()[0];
    let mut idle = Vec::with_capacity(n);
    for i in 0..n.saturating_sub(PROBES) {
        idle.push(connect(addr, &format!("idle-{i}"), "bench/idle").unwrap().0);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let probes: Vec<_> = (0..PROBES.min(n))
        .map(|i| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || probe(addr, i, stop))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let ticking = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || ticker(addr, stop))
    };
    std::thread::sleep(Duration::from_millis(500));
    let began = Instant::now();
    let (out, err, code) = b.emqx(&["upgrade", "5.0.1"]);
    let switch_ms = began.elapsed().as_millis();
    assert_eq!(code, Some(0), "{mode} {n}: {out}{err}");
    // Idle clients: still connected, or (drained) closed and back.
    let mut closed = 0;
    let mut lost = 0;
    let mut back = None;
    for (i, c) in idle.iter_mut().enumerate() {
        c.set_read_timeout(Some(Duration::from_millis(if mode == "drain" {
            5000
        } else {
            1
        })))
        .unwrap();
        match read_packet(c, 1024) {
            Err(e) if timed_out(&e) => continue,
            _ => {}
        }
        closed += 1;
        let (again, present) = connect(addr, &format!("idle-{i}"), "bench/idle").unwrap();
        lost += u64::from(!present);
        *c = again;
        back = Some(began.elapsed().as_millis());
    }
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
        switch_ms,
        max_gap_ms: max_gap.as_secs_f64() * 1000.0,
        missed,
        closed,
        lost,
        back_ms: back,
    }
}

fn main() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
    let sizes: Vec<usize> = std::env::var("BENCH_SESSIONS")
        .unwrap_or_else(|_| "1000,5000,15000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    println!("established persistent sessions at one `upgrade`: moved (protocol 2) vs. drained and reconnected (protocol 1)");
    println!(
        "{:<6} {:>6} {:>9} {:>10} {:>9} {:>8} {:>7} {:>6} {:>8} {:>11}",
        "mode",
        "N",
        "pause ms",
        "us/session",
        "switch ms",
        "max gap",
        "missed",
        "closed",
        "lost",
        "all back ms"
    );
    for n in sizes {
        let rows = [run(n, "move"), run(n, "drain")];
        for r in &rows {
            println!(
                "{:<6} {:>6} {:>9} {:>10} {:>9} {:>8.1} {:>7} {:>6} {:>8} {:>11}",
                r.mode,
                r.n,
                r.pause_ms.map(|p| format!("{p:.1}")).unwrap_or("-".into()),
                r.pause_ms
                    .map(|p| format!("{:.2}", p * 1000.0 / r.n as f64))
                    .unwrap_or("-".into()),
                r.switch_ms,
                r.max_gap_ms,
                r.missed,
                r.closed,
                r.lost,
                r.back_ms.map(|b| b.to_string()).unwrap_or("-".into()),
            );
        }
        let (m, d) = (&rows[0], &rows[1]);
        println!(
            "       N={}: longest gap {:.1} ms moved vs {:.1} ms drained ({:.1}x); {} vs {} sessions lost",
            n,
            m.max_gap_ms,
            d.max_gap_ms,
            d.max_gap_ms / m.max_gap_ms.max(0.001),
            m.lost,
            d.lost
        );
    }
    println!(
        "targets: pause under 50 ms at 10,000 sessions, under 75 ms at 15,000; linear in sessions"
    );
}
