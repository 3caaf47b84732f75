//! The load harness against the reference broker and Debian's mosquitto on
//! loopback: a steady broker gives a clean report in every message class
//! (sessions resumed, nothing lost or duplicated), over plain TCP and
//! over every transport (TLS, ws, wss) at once; a closed port gives only
//! refusals, and a broker killed mid-load shows closed connections,
//! refusals, and every message accounted for.

use std::net::SocketAddr;
use std::thread::sleep;
use std::time::{Duration, Instant};

use emqx_load::{Load, LoadOptions, Report};
use emqx_testkit::clients::Mosquitto;
use emqx_testkit::{bins, free_port, Pki, RefBroker as Broker};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

fn options(addrs: Vec<SocketAddr>) -> LoadOptions {
    LoadOptions {
        addrs,
        persistent: 6,
        qos: vec![0, 1, 2],
        sessions: 4,
        session_qos: vec![1, 2],
        session_online: Duration::from_millis(600),
        session_offline: Duration::from_millis(150),
        idle: 3,
        publish_rate: 50.0,
        storm: 2,
        connect_timeout: CONNECT_TIMEOUT,
        duration: None,
        tls: None,
        ws: None,
        v5: emqx_load::V5Load::off(),
        auth: None,
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

const CLASSES: [&str; 5] = [
    "live-qos0",
    "live-qos1",
    "live-qos2",
    "session-qos1",
    "session-qos2",
];

/// Every message sent at QoS 1 or 2 is acknowledged or counted
/// unacknowledged, and nothing stays in flight after stop.
fn assert_accounted(r: &Report, ctx: &str) {
    for name in CLASSES {
        let c = r.class(name);
        assert_eq!(c.in_flight, 0, "{name}: {ctx}");
        if name != "live-qos0" {
            assert_eq!(
                c.acked + c.unacked_at_close + c.unacked_at_stop,
                c.sent,
                "{name}: {ctx}"
            );
        }
    }
}

/// What a steady broker must give: no failed attempt, no close, every
/// class clean with all it sent delivered, sessions resumed every time.
fn assert_steady(r: &Report, ctx: &str) {
    assert!(r.attempts > 50, "{ctx}");
    assert!(r.clean(), "{ctx}");
    assert_eq!((r.other_error, r.ok), (0, r.attempts), "{ctx}");
    assert_eq!(r.closed_by_broker, 0, "{ctx}");
    assert!(r.held_max >= 13, "6 live + 4 sessions + 3 idle: {ctx}");
    assert_accounted(r, ctx);
    for name in CLASSES {
        let c = r.class(name);
        assert!(c.clients > 0 && c.sent >= 50, "{name}: {ctx}");
        assert_eq!(c.lost + c.undelivered_at_stop, 0, "{name}: {ctx}");
        assert_eq!(c.unacked_at_close + c.unacked_at_stop, 0, "{name}: {ctx}");
        // A ring's publisher may start before its subscriber's first
        // SUBACK: what it sent then had no subscriber (excused, at most a
        // few per client on a loaded machine). Nothing else is missing.
        let excused = if name.starts_with("session") {
            3 * c.clients
        } else {
            0
        };
        assert!(c.lost_at_close <= excused, "{name}: {ctx}");
        assert_eq!(
            c.received + c.lost_at_close,
            c.sent,
            "{name}: every message arrives: {ctx}"
        );
        assert_eq!(
            c.dup_beyond_qos + c.out_of_order + c.misrouted,
            0,
            "{name}: {ctx}"
        );
    }
    let s = &r.sessions;
    assert!(s.left_gracefully > 0 && s.left_abruptly > 0, "{ctx}");
    // Every return found its session: subscriptions kept, what was
    // published meanwhile queued and delivered (received == sent above).
    assert!(
        s.resumed >= s.left_gracefully + s.left_abruptly - 4,
        "{ctx}"
    );
    assert_eq!(s.lost, 0, "{ctx}");
    // Abrupt leaves left deliveries unacknowledged and a message
    // unconfirmed: both came again with DUP, and exactly once at QoS 2.
    for name in ["session-qos1", "session-qos2"] {
        assert!(r.class(name).redelivered > 0, "{name}: {ctx}");
    }
    let lat = &r.connack_latency;
    assert!(lat.samples >= r.ok, "{ctx}");
    assert!(
        lat.p50_ms <= lat.p99_ms && lat.p99_ms <= lat.max_ms,
        "{ctx}"
    );
}

#[test]
fn steady_broker_gives_a_clean_report() {
    let mut broker = Broker::start();
    let load = Load::start(options(broker.addrs.to_vec()));
    sleep(Duration::from_secs(4));
    let r = stop(load);
    let logs = broker.log();
    broker.kill();
    let ctx = format!("{}\n{}\nbroker {logs}", r.table(), r.json());
    assert_steady(&r, &ctx);
    assert_eq!(r.versions_seen.len(), 1, "{ctx}");
    let n = r.versions_seen.get("5.0.0").copied().unwrap_or(0);
    assert!(n > 0, "{ctx}");
    let json: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
    assert_eq!(json["versions_seen"]["5.0.0"], n);
    assert_eq!(json["messages"]["session-qos2"]["dup_beyond_qos"], 0);
    assert_eq!(json["messages"]["session-qos2"]["clean"], true);
}

/// The same load against Debian's mosquitto gives the same clean report:
/// the harness's accounting is not fitted to the reference broker.
#[test]
fn mosquitto_gives_the_same_clean_report() {
    let m = Mosquitto::start();
    let load = Load::start(options(vec![m.addr]));
    sleep(Duration::from_secs(4));
    let r = stop(load);
    let ctx = format!("mosquitto:\n{}\n{}", r.table(), r.json());
    assert_steady(&r, &ctx);
    assert!(
        r.versions_seen
            .keys()
            .all(|v| v.starts_with("mosquitto version")),
        "{ctx}"
    );
}

/// The load over plain TCP, TLS, ws and wss in turn (`addrs`: plain,
/// TLS, ws, wss), trusting `pki`.
fn every_transport(addrs: &[SocketAddr], pki: &Pki) -> LoadOptions {
    options(vec![addrs[0]])
        .over_tls(Some((addrs[1], pki.ca())))
        .over_websocket(Some((addrs[2], addrs[3])))
}

/// A steady run over every transport at once: clean in every class, with
/// connections over each (by slot: a quarter over ws, a quarter wss).
fn assert_every_transport(r: &Report, ctx: &str) {
    assert_steady(r, ctx);
    assert!(r.tls > 0 && r.websocket > 0, "{ctx}");
    // TLS and wss clients are half; ws and wss clients half.
    assert!(r.tls * 3 > r.ok && r.websocket * 3 > r.ok, "{ctx}");
}

#[test]
fn every_transport_gives_a_clean_report() {
    let pki = Pki::new();
    let server = pki.server();
    let (cert, key) = (server.cert.to_string_lossy(), server.key.to_string_lossy());
    let broker = Broker::start_more(
        &bins::bin("emqx-refbroker"),
        "ssl",
        &["ws", "wss"],
        &[
            ("EMQX_BROKER_VERSION", "5.0.0"),
            ("EMQX_SSL_CERTFILE", &cert),
            ("EMQX_SSL_KEYFILE", &key),
        ],
    );
    let addrs = [
        broker.addrs[0],
        broker.addrs[1],
        broker.more[0],
        broker.more[1],
    ];
    let load = Load::start(every_transport(&addrs, &pki));
    sleep(Duration::from_secs(4));
    let r = stop(load);
    let ctx = format!("{}\n{}\nbroker {}", r.table(), r.json(), broker.log());
    assert_every_transport(&r, &ctx);
}

/// The same over mosquitto's `protocol websockets` listeners: the load's
/// WebSocket client is not fitted to our broker's server side.
#[test]
fn mosquitto_over_every_transport_gives_the_same_clean_report() {
    let pki = Pki::new();
    let m = Mosquitto::start_websocket(Some(&pki));
    let opt = |a: Option<SocketAddr>| a.unwrap();
    let addrs = [m.addr, opt(m.tls_addr), opt(m.ws_addr), opt(m.wss_addr)];
    let load = Load::start(every_transport(&addrs, &pki));
    sleep(Duration::from_secs(4));
    let r = stop(load);
    let ctx = format!("mosquitto:\n{}\n{}\n{}", r.table(), r.json(), m.log());
    assert_every_transport(&r, &ctx);
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
    assert!(CLASSES.iter().all(|c| r.class(c).sent == 0), "{ctx}");
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
    // Every live and idle client had a connection to lose (sessions may
    // be away at the kill).
    assert!(r.closed_by_broker >= 9, "{ctx}");
    assert!(r.refused > 0, "{ctx}");
    assert!(!r.clean(), "{ctx}");
    assert_accounted(&r, &ctx);
    // The sessions could not come back to collect what the dead broker
    // had taken: undelivered, not lost (nobody connected to receive it).
    for name in ["session-qos1", "session-qos2"] {
        assert_eq!(r.class(name).lost, 0, "{name}: {ctx}");
    }
    assert_eq!(r.held, 0, "{ctx}");
}

/// The binary: a short run prints one JSON report and exits 0 on a steady
/// broker; bad usage is one line on stderr and exit 2, with nothing run.
#[test]
fn the_binary_reports_json_and_refuses_bad_usage() {
    let mut broker = Broker::start();
    let bin = emqx_testkit::bins::bin("emqx-load");
    let addr = broker.addrs[0].to_string();
    let out = std::process::Command::new(&bin)
        .args([
            "--addr",
            &addr,
            "--duration",
            "1.5",
            "--json",
            "--rate",
            "20",
        ])
        .output()
        .unwrap();
    broker.kill();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    for class in [
        "live-qos0",
        "live-qos1",
        "live-qos2",
        "session-qos1",
        "session-qos2",
    ] {
        assert_eq!(v["messages"][class]["clean"], true, "{class}: {v:#}");
        assert!(
            v["messages"][class]["received"].as_u64().unwrap() > 0,
            "{v:#}"
        );
    }
    for bad in [
        &["--qos", "3"][..],
        &["--session-qos", "0"],
        &["--session-online", "-1"],
        &["--connect-timeout", "0"],
        &["--duration", "1e19"],
        &["--ws-addr", "127.0.0.1:2", "--ws-path", "mqtt"],
        &["--wss-addr", "127.0.0.1:2"],
        &["--ws-addr", "10.0.0.1:2"],
        &["--all-ws"],
    ] {
        let out = std::process::Command::new(&bin)
            .args(["--addr", "127.0.0.1:1"])
            .args(bad)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {err}");
        assert!(out.stdout.is_empty(), "{bad:?}");
        assert!(
            err.lines()
                .next()
                .is_some_and(|l| l.contains("error") || l.starts_with("emqx-load:")),
            "{bad:?}: {err}"
        );
    }
}
