//! The connection storm: threads that connect, see the version, say
//! DISCONNECT and close, over and over.

use std::time::{Duration, Instant};

use super::attempt::{handshake, send};
use super::stats::Outcome;
use super::Shared;
use emqx_mqtt::Packet;

/// Pause after a failed attempt, so a dead port is probed, not flooded.
const FAILURE_PAUSE: Duration = Duration::from_millis(10);

/// One storm thread's loop, until the run stops.
pub fn run(shared: &Shared, thread: usize) {
    let mut n: u64 = 0;
    while !shared.should_stop() {
        n += 1;
        let client_id = format!("{}-s{thread}-{n}", shared.run_id);
        let addr = shared.next_addr();
        let outcome = attempt(shared, addr, &client_id);
        let failed = outcome != Outcome::Ok;
        shared.stats.record(&outcome);
        if failed {
            shared.pause(FAILURE_PAUSE);
        }
    }
}

fn attempt(shared: &Shared, addr: std::net::SocketAddr, client_id: &str) -> Outcome {
    let timeout = shared.opts.connect_timeout;
    let mut est = match handshake(addr, client_id, &[], timeout, &shared.stats) {
        Ok(est) => est,
        Err(f) => return f.outcome,
    };
    shared.stats.version_seen(&est.version);
    // The DISCONNECT gets a deadline of its own: a reset before it is
    // written still fails the attempt.
    let deadline = Instant::now() + timeout;
    match send(&mut est.stream, &Packet::Disconnect, deadline) {
        Ok(()) => Outcome::Ok,
        Err(outcome) => outcome,
    }
}
