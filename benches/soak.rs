//! Soak (printed, not asserted; `scripts/soak N`): N direct switches back
//! and forth (`upgrade 5.0.1`, `downgrade 5.0.0`) under the load harness
//! with persistent-session clients. Printed: switches failed, connection
//! attempts refused / reset / timed out, connections closed by a broker,
//! sessions lost, QoS 1/2 messages lost and duplicated beyond their QoS,
//! the pause of each move (p50 / p99 / max), and the running broker's
//! RSS and open fds after the first switch and after the last (a leak
//! grows them), and the helper's own peak RSS and fds at the first and
//! the last (its `-v` note). Then the same number of reloads in the
//! systemd sandbox under the harness there (each a fresh broker of the
//! current release, moved to by the unit's ExecReload; the first and the
//! last through `emqx-relup reload`, the others `systemctl reload emqx`),
//! with the same figures, the pauses from the unit's status text. SOAK_SWITCHES=N
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

/// The pause in the unit's status text after a reload ("... pause 912
/// us"), in ms.
fn status_pause_ms(line: &str) -> Option<f64> {
    let us = line.strip_suffix(" us")?.rsplit_once("pause ")?.1;
    us.parse::<f64>().ok().map(|us| us / 1000.0)
}

/// The helper's own peak RSS (KiB) and open fds from its `-v` note.
fn helper_footprint(err: &str) -> Option<(u64, u64)> {
    let json = err.lines().find_map(|l| l.strip_prefix("note: switch: "))?;
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    Some((
        v["helper_peak_rss_kib"].as_u64()?,
        v["helper_fds"].as_u64()?,
    ))
}

/// "RSS KiB / fds" of a footprint, or what is missing.
fn shown(f: Option<(u64, u64)>) -> String {
    f.map_or("not reported".into(), |(rss, fds)| format!("{rss} / {fds}"))
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
    // The first and the last through the administrator's `reload` (its
    // own footprint in its -v note), the others `systemctl reload`; each
    // move's pause from the unit's status text, which the unit's helper
    // sets at the end of its switch.
    let admin = |what: &str| {
        let out = sb.sh("emqx-relup -v reload");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "{what} reload: {err}");
        helper_footprint(&err)
    };
    let status = "systemctl show -p StatusText --value emqx";
    let helper_first = admin("first");
    let mut lines = sb.ok(status);
    let after_first = inside(sb.main_pid());
    lines.push_str(&sb.ok(&format!(
        "fails=0; for i in $(seq {}); do systemctl reload emqx || fails=$((fails+1)); {status}; done; echo failed $fails",
        n.saturating_sub(2)
    )));
    let helper_last = admin("last");
    lines.push_str(&sb.ok(status));
    let secs = began.elapsed().as_secs_f64();
    let last = inside(sb.main_pid());
    let report = sb.stop_load(load);
    // Every reload's note (the unit's helper's) must be in the journal:
    // brokers that logged each connection got the unit rate-limited, and
    // journald dropped switch notes with the rest.
    let count = |which: &str, pattern: &str| -> usize {
        sb.ok(&format!(
            "journalctl --sync; journalctl --no-pager -o cat {which} | grep -cE '{pattern}' || true"
        ))
        .trim()
        .parse()
        .unwrap_or(0)
    };
    let notes = count("-u emqx", "handed its listeners to");
    let tagged = count("-t emqx-relup", "handed its listeners to");
    let suppressed = count("", "^Suppressed [0-9]+ messages");
    let failed = lines
        .lines()
        .find_map(|l| l.strip_prefix("failed "))
        .unwrap_or("?")
        .to_string();
    let mut pauses: Vec<f64> = lines.lines().filter_map(status_pause_ms).collect();
    pauses.sort_by(|a, b| a.total_cmp(b));
    println!("\nsoak: {n} x systemctl reload in {secs:.0} s, under the sandbox's load harness");
    println!("reloads failed                 {failed}");
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
        "pause ms p50 / p99 / max       {:.2} / {:.2} / {:.2} (of {} moves, from the unit's status text)",
        percentile(&pauses, 0.5),
        percentile(&pauses, 0.99),
        pauses.last().copied().unwrap_or(0.0),
        pauses.len()
    );
    println!("broker RSS KiB / fds           {after_first} after the first reload, {last} after the last");
    println!("switch notes in the journal    {notes} of {n} under the unit, {tagged} under emqx-relup (journald suppressed messages {suppressed} times)");
    println!(
        "helper peak RSS KiB / fds      {} at the first reload, {} at the last (the administrator's)",
        shown(helper_first),
        shown(helper_last)
    );
    assert_eq!(notes, n, "switch notes missing from the journal");
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
    let b = BrokerHost::running_tls("settle_secs = 0.05\n");
    let load = Load::start(
        LoadOptions::switching(b.addrs())
            .over_tls(b.load_tls())
            .over_websocket(b.load_ws()),
    );
    std::thread::sleep(Duration::from_millis(500));
    let began = Instant::now();
    let mut pauses = Vec::with_capacity(n);
    let mut failed = Vec::new();
    let mut first = None;
    let (mut helper_first, mut helper_last) = (None, None);
    for i in 0..n {
        let args = if i % 2 == 0 {
            ["-v", "upgrade", "5.0.1"]
        } else {
            ["-v", "downgrade", "5.0.0"]
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
            helper_first = helper_footprint(&err);
        }
        if i + 1 == n {
            helper_last = helper_footprint(&err);
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
    println!(
        "helper peak RSS KiB / fds      {} at the first switch, {} at the last",
        shown(helper_first),
        shown(helper_last)
    );
    for f in failed.iter().take(5) {
        println!("  {f}");
    }
    println!("\n{}", report.table());
}
