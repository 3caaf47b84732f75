//! What the session benchmarks share: a plain persistent-session
//! client, the QoS 1 ticker the probes listen to, the pause read off
//! the helper's note, and idle connections held by `emqx-load`.

pub mod latency;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use emqx_mqtt::{read_packet, Packet, PacketError, ReasonCode};
use emqx_testkit::procfs::{fds, status};

/// Between two ticks.
pub const TICK: Duration = Duration::from_millis(5);

/// A persistent-session client, connected and subscribed; whether the
/// broker still had its session.
pub fn connect(addr: SocketAddr, id: &str, filter: &str) -> std::io::Result<(TcpStream, bool)> {
    let mut c = TcpStream::connect(addr)?;
    c.set_read_timeout(Some(Duration::from_secs(20)))?;
    c.set_nodelay(true)?;
    c.write_all(&Packet::connect(id, false, 600).encode())?;
    let present = match read_packet(&mut c, 1024) {
        Ok(Some(Packet::ConnAck {
            code: ReasonCode::SUCCESS,
            session_present,
            ..
        })) => session_present,
        other => return Err(std::io::Error::other(format!("{id}: {other:?}"))),
    };
    if !present {
        let sub = Packet::subscribe(1, [(filter, 1)]);
        c.write_all(&sub.encode())?;
        match read_packet(&mut c, 1024) {
            Ok(Some(Packet::SubAck { .. })) => {}
            other => return Err(std::io::Error::other(format!("{id}: {other:?}"))),
        }
    }
    Ok((c, present))
}

/// A read that found nothing within its timeout (at a packet boundary:
/// the packets here are small and come whole).
pub fn timed_out(e: &PacketError) -> bool {
    matches!(e, PacketError::Io(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut))
}

/// Publishes tick 0, 1, 2... at QoS 1 every [`TICK`]; reconnects when its
/// connection closes. Returns the last tick sent.
pub fn ticker(addr: SocketAddr, stop: Arc<AtomicBool>) -> u64 {
    let mut n = 0u64;
    let mut c = connect(addr, "ticker", "bench/none").unwrap().0;
    while !stop.load(Ordering::SeqCst) {
        let p = Packet::Publish {
            topic: "bench/tick".into(),
            payload: n.to_string().into_bytes(),
            qos: 1,
            retain: false,
            dup: false,
            packet_id: Some((n % 60_000 + 1) as u16),
            properties: Default::default(),
        };
        // PUBACKs pile up unread in the kernel: fine for a benchmark.
        if c.write_all(&p.encode()).is_err() {
            c = loop {
                match connect(addr, "ticker", "bench/none") {
                    Ok((c, _)) => break c,
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            };
            continue;
        }
        n += 1;
        std::thread::sleep(TICK);
    }
    n
}

/// A number after `label` in the helper's note ("... (pause 12.3 ms) ...").
pub fn number_after(text: &str, label: &str) -> Option<f64> {
    let at = text.find(label)? + label.len();
    let word = text[at..].split_whitespace().next()?;
    word.trim_end_matches([')', ',']).parse().ok()
}

/// What holding N idle connections cost a broker.
#[derive(Clone, Copy)]
pub struct Held {
    pub rss_per_conn: f64,
    pub per_second: f64,
}

/// Starts `emqx-load` with `args` and `conns` idle clients against the
/// broker `pid`; waits until the broker holds them (120 s at most).
pub fn hold(name: &str, pid: u32, args: &[String], conns: usize) -> (Child, Held) {
    std::thread::sleep(Duration::from_millis(200));
    let (rss0, fds0) = (status(pid, "VmRSS:"), fds(pid));
    let load = Command::new(emqx_testkit::bins::bin("emqx-load"))
        .args(args)
        .args(["--idle", &conns.to_string()])
        .args(["--persistent", "0", "--sessions", "0", "--storm", "0"])
        .args(["--connect-timeout", "30", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let began = Instant::now();
    let deadline = began + Duration::from_secs(120);
    while fds(pid) < fds0 + conns && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = began.elapsed().as_secs_f64();
    if fds(pid) < fds0 + conns {
        eprintln!(
            "{name}: {} of {conns} connections held",
            fds(pid).saturating_sub(fds0)
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    let rss = status(pid, "VmRSS:");
    let held = Held {
        rss_per_conn: rss.saturating_sub(rss0) as f64 * 1024.0 / conns as f64,
        per_second: conns as f64 / took,
    };
    (load, held)
}
