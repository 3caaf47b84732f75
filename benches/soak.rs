//! Soak (printed, not asserted; `scripts/soak N`): N direct switches back
//! and forth (`upgrade 5.0.1`, `downgrade 5.0.0`) under the load harness
//! with persistent-session clients. Printed: switches failed, connection
//! attempts refused / reset / timed out, connections closed by a broker,
//! sessions lost, QoS 1/2 messages lost and duplicated beyond their QoS,
//! the pause of each move (p50 / p99 / max), and the running broker's
//! RSS and open fds after the first switch and after the last (a leak
//! grows them). Then the same number of `systemctl reload emqx` in the
//! systemd sandbox under the harness there (each reload a fresh broker
//! of the current release, moved to as the unit's ExecReload), with the
//! same figures from its report and the journal. SOAK_SWITCHES=N
//! (default 1,000). Runs as root (brokers run as a test user).

use std::time::{Duration, Instant};

use emqx_load::{Load, LoadOptions};
use emqx_testkit::{BrokerHost, Sandbox};

/// The pause in the helper's note ("... (pause 0.3 ms) ...").
fn pause_ms(err: &str) -> Option<f64> {
    let at = err.find("(pause ")? + "(pause ".len();
    err[at..].split_whitespace().next()?.parse().ok()
}

/// VmRSS in KiB and the number of open fds of `pid`.
fn footprint(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    (rss, fds)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The pauses of the moves the journal of `sb` holds, sorted.
fn journal_pauses(sb: &Sandbox) -> Vec<f64> {
    // The reload's notes go to the journal natively, or through its
    // stderr stream when the native socket is busy: take both.
    let text = sb.ok(
        "journalctl --sync; journalctl --no-pager -o cat | grep 'connections moved with their sessions' || true",
    );
    let mut pauses: Vec<f64> = text.lines().filter_map(pause_ms).collect();
    pauses.sort_by(|a, b| a.total_cmp(b));
    pauses
}

/// `n` reloads in the systemd sandbox under its load harness.
fn through_systemd(n: usize) {
    let sb = Sandbox::with_emqx("soak", "settle_secs = 0.05", 0.1);
    sb.add_release("5.0.0", true, "");
    sb.ok("emqx-relup install 5.0.0 && systemctl start emqx");
    sb.wait_active(Duration::from_secs(10));
    let inside = |pid: u32| {
        sb.ok(&format!(
            "echo $(awk '/^VmRSS/ {{print $2}}' /proc/{pid}/status) / $(ls /proc/{pid}/fd | wc -l)"
        ))
        .trim()
        .to_string()
    };
    let load = sb.start_load();
    let began = Instant::now();
    sb.ok("systemctl reload emqx");
    let after_first = inside(sb.main_pid());
    let out = sb.ok(&format!(
        "fails=0; for i in $(seq {}); do systemctl reload emqx || fails=$((fails+1)); done; echo $fails",
        n.saturating_sub(1)
    ));
    let secs = began.elapsed().as_secs_f64();
    let last = inside(sb.main_pid());
    let report = sb.stop_load(load);
    let pauses = journal_pauses(&sb);
    println!("\nsoak: {n} x systemctl reload in {secs:.0} s, under the sandbox's load harness");
    println!("reloads failed                 {}", out.trim());
    for key in [
        "attempts",
        "refused",
        "reset",
        "timed_out",
        "closed_by_broker",
    ] {
        println!("{key:<30} {}", report[key]);
    }
    println!("{:<30} {}", "sessions lost", report["sessions"]["lost"]);
    for class in ["session-qos1", "session-qos2", "live-qos1", "live-qos2"] {
        let c = &report["messages"][class];
        println!(
            "{:<30} {} / {}",
            format!("{class} lost / dup beyond"),
            c["lost"],
            c["dup_beyond_qos"]
        );
    }
    println!(
        "pause ms p50 / p99 / max       {:.2} / {:.2} / {:.2} (of the {} reloads whose note journald kept: it rate-limits the unit, whose brokers log every connection)",
        percentile(&pauses, 0.5),
        percentile(&pauses, 0.99),
        pauses.last().copied().unwrap_or(0.0),
        pauses.len()
    );
    println!("broker RSS KiB / fds           {after_first} after the first reload, {last} after the last");
}

fn main() {
    let n: usize = std::env::var("SOAK_SWITCHES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    direct(n);
    through_systemd(n);
}

fn direct(n: usize) {
    let b = BrokerHost::running("settle_secs = 0.05\n");
    let load = Load::start(LoadOptions {
        addrs: b.addrs(),
        persistent: 8,
        publish_rate: 20.0,
        storm: 2,
        connect_timeout: Duration::from_secs(3),
        ..LoadOptions::default()
    });
    std::thread::sleep(Duration::from_millis(500));
    let began = Instant::now();
    let mut pauses = Vec::with_capacity(n);
    let mut failed = Vec::new();
    let mut first = None;
    for i in 0..n {
        let args = if i % 2 == 0 {
            ["upgrade", "5.0.1"]
        } else {
            ["downgrade", "5.0.0"]
        };
        let (out, err, code) = b.emqx(&args);
        if code != Some(0) {
            failed.push(format!("switch {i}: {}{}", out.trim(), err.trim()));
            continue;
        }
        match pause_ms(&err) {
            Some(p) => pauses.push(p),
            None => failed.push(format!("switch {i} moved nothing: {}", err.trim())),
        }
        if i == 0 {
            first = Some(footprint(b.broker_pid()));
        }
        if (i + 1) % 100 == 0 {
            eprintln!("{} switches, {:.0} s", i + 1, began.elapsed().as_secs_f64());
        }
    }
    let last = footprint(b.broker_pid());
    let report = load.stop();
    pauses.sort_by(|a, b| a.total_cmp(b));
    let class = |c: &str| report.class(c);
    let (q1, q2) = (class("session-qos1"), class("session-qos2"));
    println!(
        "soak: {n} direct switches in {:.0} s, under load (8 live clients, 6 persistent sessions, 2 storm clients)",
        began.elapsed().as_secs_f64()
    );
    println!("switches failed                {}", failed.len());
    println!(
        "attempts                       {} (refused {}, reset {}, timed out {})",
        report.attempts, report.refused, report.reset, report.timed_out
    );
    println!("closed by a broker             {}", report.closed_by_broker);
    println!("sessions lost                  {}", report.sessions.lost);
    println!(
        "QoS 1 lost / dup beyond QoS    {} / {} (live {} / {})",
        q1.lost,
        q1.dup_beyond_qos,
        class("live-qos1").lost,
        class("live-qos1").dup_beyond_qos
    );
    println!(
        "QoS 2 lost / dup beyond QoS    {} / {} (live {} / {})",
        q2.lost,
        q2.dup_beyond_qos,
        class("live-qos2").lost,
        class("live-qos2").dup_beyond_qos
    );
    println!(
        "pause ms p50 / p99 / max       {:.2} / {:.2} / {:.2}",
        percentile(&pauses, 0.5),
        percentile(&pauses, 0.99),
        pauses.last().copied().unwrap_or(0.0)
    );
    if let Some((rss, fds)) = first {
        println!(
            "broker RSS KiB / fds           {rss} / {fds} after the first switch, {} / {} after the last",
            last.0, last.1
        );
    }
    for f in failed.iter().take(5) {
        println!("  {f}");
    }
    println!("\n{}", report.table());
}
