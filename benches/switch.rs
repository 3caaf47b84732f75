//! Switch benchmark (printed, not asserted): the same MQTT load against the
//! `restart` strategy and the listener handoff, side by side: refused and
//! reset connection attempts, CONNACK latency around the switch, and the
//! switch time split into the helper's own work and the new broker's start.
//! Runs as root (brokers run as a test user), like the switch tests.

use std::time::{Duration, Instant};

use emqx_load::{Load, LoadOptions, Report};
use emqx_testkit::BrokerHost;

struct Run {
    strategy: &'static str,
    report: Report,
    wall: Duration,
    ready_ms: Option<u64>,
    helper_ms: Option<u64>,
}

/// "... ready in N ms, helper work M ms, ..." from the switch's stderr note.
fn number_after(text: &str, label: &str) -> Option<u64> {
    let at = text.find(label)? + label.len();
    text[at..].split_whitespace().next()?.parse().ok()
}

fn run(strategy: &'static str) -> Run {
    let mut b = BrokerHost::new(&format!("strategy = \"{strategy}\"\nsettle_secs = 0.2\n"));
    b.drop_broker_release("5.0.0", true, "");
    b.drop_broker_release("5.0.1", true, "");
    assert_eq!(b.emqx(&["install", "5.0.0"]).2, Some(0));
    b.start();
    let load = Load::start(LoadOptions {
        addrs: b.addrs(),
        persistent: 20,
        publish_rate: 10.0,
        storm: 4,
        connect_timeout: Duration::from_secs(5),
        ..LoadOptions::default()
    });
    std::thread::sleep(Duration::from_secs(1));
    let started = Instant::now();
    let (out, err, code) = b.emqx(&["upgrade", "5.0.1"]);
    let wall = started.elapsed();
    assert_eq!(code, Some(0), "{strategy}: {out}{err}\n{}", b.log_text());
    std::thread::sleep(Duration::from_millis(1500));
    let report = load.stop();
    Run {
        strategy,
        report,
        wall,
        ready_ms: number_after(&err, "ready in "),
        helper_ms: number_after(&err, "helper work "),
    }
}

fn ms(v: Option<u64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

fn main() {
    println!("switch benchmark: 20 live clients (QoS 0/1/2, 10 msg/s each), 6 persistent sessions, 4 storm clients");
    println!(
        "(CONNECT/CONNACK/version/DISCONNECT loops); 1 s of load, `upgrade 5.0.1`, 1.5 s more\n"
    );
    let runs = [run("restart"), run("handoff")];
    println!(
        "{:<9} {:>8} {:>8} {:>8} {:>9} {:>8} {:>8} {:>9} {:>9} {:>10} {:>8}",
        "strategy",
        "attempts",
        "refused",
        "reset",
        "timed out",
        "p99 ms",
        "max ms",
        "closed",
        "switch ms",
        "helper ms",
        "start ms"
    );
    for r in &runs {
        let p = &r.report;
        println!(
            "{:<9} {:>8} {:>8} {:>8} {:>9} {:>8.1} {:>8.1} {:>9} {:>9} {:>10} {:>8}",
            r.strategy,
            p.attempts,
            p.refused,
            p.reset,
            p.timed_out,
            p.connack_latency.p99_ms.unwrap_or(0.0),
            p.connack_latency.max_ms.unwrap_or(0.0),
            p.closed_by_broker,
            r.wall.as_millis(),
            ms(r.helper_ms),
            ms(r.ready_ms),
        );
    }
    let (restart, handoff) = (&runs[0].report, &runs[1].report);
    println!(
        "\nrefused: restart {} vs handoff {}; max CONNACK {:.1} ms vs {:.1} ms ({:.1}x)",
        restart.refused,
        handoff.refused,
        restart.connack_latency.max_ms.unwrap_or(0.0),
        handoff.connack_latency.max_ms.unwrap_or(0.0),
        restart.connack_latency.max_ms.unwrap_or(0.0)
            / handoff.connack_latency.max_ms.unwrap_or(0.0).max(0.001)
    );
    println!("target: handoff 0 refused where restart refuses; helper overhead under 20 ms");
    for r in &runs {
        println!("\n{}:\n{}", r.strategy, r.report.table());
    }
}
