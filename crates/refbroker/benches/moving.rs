//! What moving established connections costs on the broker side (issue
//! #12), measured in one process: `emqx-load --idle N` holds N MQTT
//! connections to event loop A; then freeze A, send its state through a
//! SOCK_SEQPACKET pair (`emqx_handoff::transfer`), import it into loop B,
//! go. Printed: the pause (freeze to go) and its parts, per session, and
//! whether every connection lived on (the harness saw no close). N is at
//! most 6,000 here: this process holds each server socket, its duplicate
//! in transit and the received one (3N fds of the 20,000 it may hold).
//! BENCH_MOVE=1000,5000 picks the sizes.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use emqx_handoff::transfer::Bounds;
use emqx_handoff::Channel;
use emqx_refbroker::broker::Broker;
use emqx_refbroker::event_loop::{self, Cmd, Frozen, Handle};

fn broker(v: &str) -> Handle {
    let v = v.to_string();
    event_loop::start(move || Broker::new(&v, "$SYS/broker/version", 1000)).unwrap()
}

fn run(n: usize) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let a = broker("5.0.0");
    let load = Command::new(emqx_testkit::bins::bin("emqx-load"))
        .args(["--addr", &addr.to_string(), "--idle", &n.to_string()])
        .args([
            "--persistent",
            "0",
            "--sessions",
            "0",
            "--storm",
            "0",
            "--json",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..n {
        let (stream, _) = l.accept().unwrap();
        a.send(Cmd::Serve {
            listener: "mqtt".into(),
            stream,
        });
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while a.live.load(Ordering::SeqCst) < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    let b = broker("5.0.1");
    let (pa, pb) = Channel::pair().unwrap();
    pb.set_timeout(Duration::from_secs(10)).unwrap();
    let t0 = Instant::now();
    let (tx, rx) = mpsc::channel();
    a.send(Cmd::Freeze(tx));
    let frozen = rx.recv().unwrap();
    let t_freeze = t0.elapsed();
    let moving = frozen.conns.len();
    let bounds = Bounds {
        max_conns: 20_000,
        max_bytes: 1 << 30,
    };
    let received = std::thread::scope(|s| {
        s.spawn(move || frozen.send(&pa).unwrap());
        Frozen::recv(&pb, &bounds).unwrap()
    });
    let t_sent = t0.elapsed();
    let (tx, rx) = mpsc::channel();
    b.send(Cmd::Import(received, tx));
    let imported = rx.recv().unwrap().unwrap();
    let t_import = t0.elapsed();
    let (tx, rx) = mpsc::channel();
    a.send(Cmd::Go(tx));
    let gone = rx.recv().unwrap();
    b.send(Cmd::Thaw);
    let pause = t0.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let on_new = b.live.load(Ordering::SeqCst);
    let on_old = a.live.load(Ordering::SeqCst);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(load.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    );
    let out = load.wait_with_output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{n:>6} {moving:>7} {imported:>8} {gone:>5} {:>9.1} {:>8.1} {:>9.1} {:>7.1} {:>10.1} {:>8} {:>9}",
        ms(pause),
        ms(t_freeze),
        ms(t_sent - t_freeze),
        ms(t_import - t_sent),
        pause.as_secs_f64() * 1e6 / n as f64,
        report["closed_by_broker"],
        format!("{on_new}/{on_old}"),
    );
}

fn main() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
    let sizes: Vec<usize> = std::env::var("BENCH_MOVE")
        .unwrap_or_else(|_| "1000,5000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    println!("moving established connections between two event loops of one process");
    println!(
        "{:>6} {:>7} {:>8} {:>5} {:>9} {:>8} {:>9} {:>7} {:>10} {:>8} {:>9}",
        "conns",
        "frozen",
        "imported",
        "go",
        "pause ms",
        "freeze",
        "transfer",
        "import",
        "us/session",
        "closed",
        "new/old"
    );
    for n in sizes {
        run(n);
    }
}
