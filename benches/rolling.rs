//! A rolling upgrade of three hosts over Ansible (`tests/ansible.rs`'s
//! fleet: systemd sandboxes in network namespaces, over SSH), each broker
//! holding 1,000 connections (`BENCH_ROLLING_CONNS`) plus the load
//! harness's persistent sessions: the playbook's wall time and each
//! host's pause, against what EMQX's node evacuation would need for the
//! same connections with its documented defaults (computed, not
//! measured). Printed, not asserted. Needs root, openssh-server and the
//! helper's .deb (`scripts/build-packages`).

use std::time::Instant;

use emqx_load::{Load, LoadOptions};
use emqx_testkit::ansible::Controller;
use emqx_testkit::fleet::{helper_deb, Fleet};

/// EMQX's node evacuation defaults (`emqx ctl rebalance start
/// --evacuation`): wait for the load balancer, evict connections, wait
/// for clients to take their sessions over elsewhere, evict the sessions
/// left.
const WAIT_HEALTH_CHECK_S: f64 = 60.0;
const CONN_EVICT_RATE: f64 = 500.0;
const WAIT_TAKEOVER_S: f64 = 60.0;
const SESS_EVICT_RATE: f64 = 500.0;

fn main() {
    let conns: usize = std::env::var("BENCH_ROLLING_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let ctl = Controller::new();
    let fleet = Fleet::boot(3, &helper_deb(), "settle_secs = 0.1\n");
    let package = fleet.package("good", "5.0.1", "");
    let loads: Vec<Load> = fleet
        .hosts
        .iter()
        .map(|h| {
            Load::start(LoadOptions {
                idle: conns,
                ..LoadOptions::moving(vec![h.mqtt()])
            })
        })
        .collect();
    // Let every connection establish.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let started = Instant::now();
    let played = ctl.roll(
        &fleet.inventory(&[]),
        &[
            "-e".into(),
            "rolling_upgrade_version=5.0.1".into(),
            "-e".into(),
            format!("rolling_upgrade_package={}", package.display()),
        ],
    );
    let wall = started.elapsed().as_secs_f64();
    let reports: Vec<serde_json::Value> = loads
        .into_iter()
        .map(|l| serde_json::from_str(&l.stop().json()).unwrap_or_default())
        .collect();
    if played.code != Some(0) {
        eprintln!("the roll failed:\n{}", played.text);
        std::process::exit(1);
    }
    println!("rolling upgrade 5.0.0 -> 5.0.1 of 3 hosts, {conns} idle connections each plus the load harness's clients");
    println!("  ansible-playbook wall time (pre-flight, 3 moves one host at a time, health gates, summary): {wall:.1} s");
    for (h, report) in fleet.hosts.iter().zip(&reports) {
        let line = played
            .text
            .lines()
            // The summary's line, after the pre-flight's plan.
            .rfind(|l| l.contains(&format!("\"msg\": \"{}: ", h.name)))
            .unwrap_or("")
            .trim();
        println!(
            "  {line} | load: refused {}, closed by broker {}, sessions lost {}",
            report["refused"], report["closed_by_broker"], report["sessions"]["lost"]
        );
    }
    let per_node_low = WAIT_HEALTH_CHECK_S + conns as f64 / CONN_EVICT_RATE + WAIT_TAKEOVER_S;
    let per_node_high = per_node_low + conns as f64 / SESS_EVICT_RATE;
    println!(
        "  EMQX node evacuation with its defaults (COMPUTED, not measured: wait-health-check {WAIT_HEALTH_CHECK_S} s, \
         conn-evict-rate {CONN_EVICT_RATE}/s, wait-takeover {WAIT_TAKEOVER_S} s, sess-evict-rate {SESS_EVICT_RATE}/s): \
         {per_node_low:.0}-{per_node_high:.0} s per node, {:.0}-{:.0} s for 3 nodes one after the other",
        3.0 * per_node_low,
        3.0 * per_node_high
    );
}
