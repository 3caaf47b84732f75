//! MQTT over WebSocket, printed, never asserted; every ratio against a
//! baseline of the same run (issue #24). N idle connections
//! (BENCH_WS_CONNS, default 5000) from `emqx-load --idle N`, over plain
//! TCP, over ws (`--all-ws`) and over wss (`--all-ws --all-tls`), each to
//! a fresh broker:
//! - RSS per connection: the reference broker against Debian's mosquitto
//!   (its `protocol websockets` listeners, libwebsockets), and per
//!   transport against plain TCP;
//! - new connections per second (the load connects all at once);
//! - on the reference broker, the pause of one `emqx upgrade 5.0.1` that
//!   moves them all (the helper's note), ws and wss against tcp, and
//!   whether every connection lived on (the load's report).
//!
//! Runs as root (brokers run as a test user).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use emqx_testkit::clients::Mosquitto;
use emqx_testkit::{BrokerHost, Pki};

// Not every helper of the session benchmarks is used here.
#[allow(dead_code)]
mod common;

use common::{hold, number_after, Held};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Transport {
    Tcp,
    Ws,
    Wss,
}

impl Transport {
    const ALL: [Transport; 3] = [Transport::Tcp, Transport::Ws, Transport::Wss];

    fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
        }
    }
}

/// Where a broker listens, and the CA its TLS listeners chain to.
struct Listeners {
    plain: SocketAddr,
    tls: SocketAddr,
    ws: SocketAddr,
    wss: SocketAddr,
    ca: PathBuf,
}

impl Listeners {
    /// `emqx-load` arguments putting every client on `t`.
    fn load_args(&self, t: Transport) -> Vec<String> {
        let s = |a: SocketAddr| a.to_string();
        let mut args = vec!["--addr".to_string(), s(self.plain)];
        if t != Transport::Tcp {
            args.extend(["--all-ws".into(), "--ws-addr".into(), s(self.ws)]);
        }
        if t == Transport::Wss {
            let ca = self.ca.display().to_string();
            args.extend(["--all-tls".into(), "--tls-addr".into(), s(self.tls)]);
            args.extend(["--wss-addr".into(), s(self.wss), "--cafile".into(), ca]);
        }
        args
    }
}

/// Stops the load; the connections the broker closed (its report).
fn stop(load: Child) -> u64 {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(load.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    );
    let out = load.wait_with_output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    report["closed_by_broker"].as_u64().unwrap_or(u64::MAX)
}

/// One transport on the reference broker.
struct Ours {
    held: Held,
    pause_ms: f64,
    moved: f64,
    closed: u64,
}

fn ours(t: Transport, conns: usize) -> Ours {
    let b = BrokerHost::running_tls("");
    let (ws, wss) = b.load_ws().unwrap();
    let at = Listeners {
        plain: b.addrs()[0],
        tls: b.tls_addr().unwrap(),
        ws,
        wss,
        ca: b.tls.as_ref().unwrap().pki.ca(),
    };
    let (load, held) = hold(t.name(), b.broker_pid(), &at.load_args(t), conns);
    let (_, err, code) = b.emqx(&["upgrade", "5.0.1"]);
    if code != Some(0) {
        eprintln!("{}: the upgrade failed: {err}", t.name());
    }
    // "..., N connections moved with their sessions (pause P ms), ..."
    let moved = err
        .find(" connections moved")
        .and_then(|at| err[..at].split_whitespace().last())
        .and_then(|n| n.parse::<f64>().ok())
        .unwrap_or(0.0);
    let pause_ms = number_after(&err, "(pause ").unwrap_or(f64::NAN);
    std::thread::sleep(Duration::from_millis(500));
    Ours {
        held,
        closed: stop(load),
        pause_ms,
        moved,
    }
}

fn theirs(t: Transport, conns: usize) -> Held {
    let pki = Pki::new();
    let m = Mosquitto::start_websocket(Some(&pki));
    let at = Listeners {
        plain: m.addr,
        tls: m.tls_addr.unwrap(),
        ws: m.ws_addr.unwrap(),
        wss: m.wss_addr.unwrap(),
        ca: pki.ca(),
    };
    let (mut load, held) = hold(t.name(), m.pid(), &at.load_args(t), conns);
    let _ = load.kill();
    let _ = load.wait();
    held
}

fn main() {
    let conns: usize = std::env::var("BENCH_WS_CONNS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(5000);
    let mut rows = Vec::new();
    for t in Transport::ALL {
        let o = ours(t, conns);
        let m = theirs(t, conns);
        rows.push((t, o, m));
    }
    println!("{conns} idle connections per transport: the reference broker vs Debian's mosquitto 2.0.11, and one `upgrade` moving them");
    println!(
        "{:<4} {:>12} {:>12} {:>6} {:>10} {:>10} {:>9} {:>9} {:>7} {:>7} {:>6}",
        "",
        "RSS/conn B",
        "mosquitto B",
        "ratio",
        "x tcp",
        "conn/s",
        "mosq/s",
        "pause ms",
        "x tcp",
        "moved",
        "closed"
    );
    let (tcp_rss, tcp_pause) = (rows[0].1.held.rss_per_conn, rows[0].1.pause_ms);
    for (t, o, m) in &rows {
        println!(
            "{:<4} {:>12.0} {:>12.0} {:>6.2} {:>10.2} {:>10.0} {:>9.0} {:>9.1} {:>7.2} {:>7} {:>6}",
            t.name(),
            o.held.rss_per_conn,
            m.rss_per_conn,
            o.held.rss_per_conn / m.rss_per_conn.max(1e-9),
            o.held.rss_per_conn / tcp_rss.max(1e-9),
            o.held.per_second,
            m.per_second,
            o.pause_ms,
            o.pause_ms / tcp_pause.max(1e-9),
            o.moved,
            o.closed
        );
    }
}
