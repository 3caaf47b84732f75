//! The load harness against the reference broker on loopback: a steady
//! broker gives a clean report, a closed port gives only refusals, and a
//! broker killed mid-load shows closed connections and refusals.

use std::net::SocketAddr;
use std::thread::sleep;
use std::time::{Duration, Instant};

use emqx_load::{Load, LoadOptions, Report};
use emqx_testkit::{free_port, RefBroker as Broker};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

fn options(addrs: Vec<SocketAddr>) -> LoadOptions {
    LoadOptions {
        addrs,
        persistent: 5,
        publish_rate: 20.0,
        storm_threads: 2,
        connect_timeout: CONNECT_TIMEOUT,
        duration: None,
    }
}

/// Stops the load, checking that stop() joins in about the connect
/// timeout plus a second (with slack for a busy machine).
fn stop(load: Load) -> Report {
    let t = Instant::now();
    let report = load.stop();
    let took = t.elapsed();
    assert!(
        took < CONNECT_TIMEOUT + Duration::from_secs(3),
        "stop took {took:?}"
    );
    println!("{}", report.table());
    report
}

#[test]
fn steady_broker_gives_a_clean_report() {
    let mut broker = Broker::start();
    let load = Load::start(options(broker.addrs.to_vec()));
    sleep(Duration::from_secs(3));
    let r = stop(load);
    let logs = broker.log();
    broker.kill();
    let ctx = format!("{}\n{}\nbroker {logs}", r.table(), r.json());
    assert!(r.attempts > 50, "{ctx}");
    assert!(r.clean(), "{ctx}");
    assert_eq!(r.other_error, 0, "{ctx}");
    assert_eq!(r.ok, r.attempts, "{ctx}");
    assert_eq!(r.closed_by_broker, 0, "{ctx}");
    assert_eq!(r.unacked_at_close, 0, "{ctx}");
    assert_eq!(r.qos1_in_flight, 0, "{ctx}");
    // Every message sent is acknowledged, but for those in flight at stop.
    assert_eq!(r.qos1_acked + r.unacked_at_stop, r.qos1_sent, "{ctx}");
    assert!(r.unacked_at_stop <= 5, "{ctx}");
    assert!(r.qos1_sent >= 100, "{ctx}");
    assert!(r.qos1_received > 0, "{ctx}");
    assert!(r.qos1_received <= r.qos1_sent, "{ctx}");
    assert_eq!(r.versions_seen.len(), 1, "{ctx}");
    let n = r.versions_seen.get("5.0.0").copied().unwrap_or(0);
    assert!(n > 0, "{ctx}");
    let lat = &r.connack_latency;
    assert!(lat.samples >= r.ok, "{ctx}");
    assert!(
        lat.p50_ms <= lat.p99_ms && lat.p99_ms <= lat.max_ms,
        "{ctx}"
    );
    let json: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
    assert_eq!(json["versions_seen"]["5.0.0"], n);
}

#[test]
fn closed_port_gives_only_refusals() {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let load = Load::start(options(vec![addr]));
    sleep(Duration::from_secs(1));
    let r = stop(load);
    let ctx = r.table();
    assert!(r.attempts > 0, "{ctx}");
    assert_eq!(r.refused, r.attempts, "{ctx}");
    assert_eq!(r.ok, 0, "{ctx}");
    assert!(!r.clean(), "{ctx}");
    assert_eq!(r.qos1_sent, 0, "{ctx}");
    assert!(r.versions_seen.is_empty(), "{ctx}");
}

#[test]
fn duration_ends_the_run() {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let load = Load::start(LoadOptions {
        duration: Some(Duration::from_millis(300)),
        ..options(vec![addr])
    });
    let until = Instant::now() + CONNECT_TIMEOUT + Duration::from_secs(3);
    while !load.is_finished() {
        assert!(Instant::now() < until, "the load outlived its duration");
        sleep(Duration::from_millis(20));
    }
    let r = load.stop();
    assert!(r.attempts > 0 && r.elapsed_s <= 0.3 + 1e-9, "{}", r.table());
}

#[test]
fn killed_broker_shows_closes_then_refusals() {
    let mut broker = Broker::start();
    let load = Load::start(options(broker.addrs.to_vec()));
    sleep(Duration::from_secs(1));
    let before = load.snapshot();
    let ctx = format!("before the kill:\n{}", before.table());
    assert!(before.ok > 0 && before.clean(), "{ctx}");
    assert_eq!(before.closed_by_broker, 0, "{ctx}");
    broker.kill();
    sleep(Duration::from_secs(1));
    let r = stop(load);
    let ctx = format!("{ctx}\nat stop:\n{}", r.table());
    // Every persistent client had an established connection to lose.
    assert!(r.closed_by_broker >= 5, "{ctx}");
    assert!(r.refused > 0, "{ctx}");
    assert!(!r.clean(), "{ctx}");
    // Nothing is hidden: each message sent is acked or counted lost.
    assert_eq!(
        r.qos1_acked + r.unacked_at_close + r.unacked_at_stop,
        r.qos1_sent,
        "{ctx}"
    );
}
