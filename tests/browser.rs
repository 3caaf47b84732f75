//! MQTT over WebSocket in a real browser through switches (issue #24):
//! Debian's Chromium, headless, opens a page served here that loads
//! MQTT.js (npm's `mqtt`, pinned, its browser bundle served from
//! loopback) and holds a persistent session over ws and one over wss (the
//! test CA trusted in that browser's profile). A paho-mqtt client
//! publishes numbered messages at QoS 1 and 2 to each; the page reports
//! each message and each connection event back by publishing it
//! (`tests/browser/page.html`, `tests/browser.py`). Through 20 switches
//! under the load harness (its ws and wss clients too): MQTT.js never
//! sees `offline`, `close`, `reconnect` or an error, connects once per
//! session, and every message arrives once, in order. Through a switch by
//! the restart strategy the same page does see its sessions drop.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex, MutexGuard};
use std::time::Duration;

use emqx_load::{Load, LoadOptions};
use emqx_testkit::browser::{mqtt_js_bundle, Chromium, StaticServer};
use emqx_testkit::clients::paho_python;
use emqx_testkit::BrokerHost;
use serde_json::Value;

mod clients;

use clients::switch_back_and_forth;

const PAGE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/page.html");
const DRIVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser.py");

/// The paho side (`tests/browser.py`), its stdout read line by line on a
/// thread of its own, so a silent driver fails the test instead of
/// hanging it.
struct Driver {
    child: Child,
    lines: mpsc::Receiver<String>,
}

/// Longest wait for one line of the driver (its own waits are shorter).
const LINE_WAIT: Duration = Duration::from_secs(120);

impl Driver {
    fn start(port: u16, run: &str) -> Driver {
        let mut child = Command::new(paho_python())
            .args([DRIVER, "127.0.0.1", &port.to_string(), run, "20"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                if tx.send(line.trim().to_string()).is_err() {
                    return;
                }
            }
        });
        Driver { child, lines }
    }

    /// The next line it prints.
    fn line(&mut self) -> String {
        match self.lines.recv_timeout(LINE_WAIT) {
            Ok(line) => line,
            Err(e) => panic!("tests/browser.py printed nothing in {LINE_WAIT:?}: {e}"),
        }
    }

    /// Stops publishing; what the page reported.
    fn stop(mut self) -> Value {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(b"stop\n").unwrap();
        let line = self.line();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "tests/browser.py did not exit"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success());
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the page reported for one session, checked: subscribed once
/// (one connect), no drop event, every message once and in order at the
/// QoS it was published with.
fn assert_page_clean(got: &Value, name: &str) {
    let page = &got["pages"][name];
    assert_eq!(page["events"], Value::Array(vec![]), "{name}: {got:#}");
    let subscribed = page["subscribed"].as_array().unwrap();
    assert_eq!(subscribed.len(), 1, "{name} connected again: {got:#}");
    assert_eq!(subscribed[0]["connects"], 1, "{got:#}");
    let topics = page["topics"].as_object().unwrap();
    assert_eq!(topics.len(), 2, "{got:#}");
    for (topic, t) in topics {
        let n = |k: &str| t[k].as_u64().unwrap();
        assert!(n("sent") > 50, "{topic}: {got:#}");
        assert_eq!(n("received"), n("sent"), "{topic}: {got:#}");
        for k in ["lost", "duplicated", "out_of_order", "with_dup_flag"] {
            assert_eq!(n(k), 0, "{topic} {k}: {got:#}");
        }
        let qos = if topic.ends_with("q1") { 1 } else { 2 };
        assert_eq!(t["qos"], serde_json::json!([qos]), "{topic}: {got:#}");
    }
}

/// MQTT.js in Chromium on `b`'s ws and wss listeners, reporting to the
/// paho driver, both ready.
struct Browser {
    driver: Driver,
    chromium: Chromium,
    _http: StaticServer,
    _turn: MutexGuard<'static, ()>,
}

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

impl Browser {
    fn open(b: &BrokerHost) -> Browser {
        // One browser at a time: two Chromiums, brokers and loads would
        // crowd the machine's 2 cores.
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let (ws, wss) = b.load_ws().unwrap();
        let ca = b.tls.as_ref().map(|t| t.pki.ca()).unwrap();
        let bundle = std::fs::read(mqtt_js_bundle()).unwrap();
        let page = std::fs::read(PAGE).unwrap();
        let http = StaticServer::serve(vec![
            ("/".into(), "text/html", page),
            ("/mqtt.min.js".into(), "text/javascript", bundle),
        ]);
        let run = format!("r{}", std::process::id());
        let mut driver = Driver::start(b.addrs()[0].port(), &run);
        assert_eq!(driver.line(), "listening");
        let url = format!(
            "http://{}/?run={run}&ws={}&wss={}",
            http.addr,
            ws.port(),
            wss.port()
        );
        let chromium = Chromium::open(&url, &ca);
        let ready = driver.line();
        assert_eq!(ready, "ready", "{ready}\nchromium:\n{}", chromium.log());
        Browser {
            driver,
            chromium,
            _http: http,
            _turn: turn,
        }
    }

    /// Stops the driver: what the page reported, and the page's console.
    fn stop(mut self) -> (Value, Vec<String>) {
        let got = self.driver.stop();
        assert!(
            self.chromium.running(),
            "chromium exited:\n{}",
            self.chromium.log()
        );
        let console = self
            .chromium
            .log()
            .lines()
            .filter(|l| l.contains("page: "))
            .map(str::to_string)
            .collect();
        (got, console)
    }
}

#[test]
fn mqtt_js_in_chromium_keeps_its_ws_and_wss_sessions_through_twenty_switches() {
    let b = BrokerHost::running_tls("");
    let browser = Browser::open(&b);
    let load = Load::start(
        LoadOptions::moving(b.addrs())
            .over_tls(b.load_tls())
            .over_websocket(b.load_ws()),
    );
    switch_back_and_forth(&b, 20);
    let (got, console) = browser.stop();
    println!("{}\n{got}", console.join("\n"));
    for name in ["ws", "wss"] {
        assert_page_clean(&got, name);
    }
    for (who, d) in got["disconnects"].as_object().unwrap() {
        assert_eq!(d, 0, "paho {who} was disconnected: {got:#}");
    }
    // The console agrees: one connect per session, no event.
    let said = |what: &str| console.iter().filter(|l| l.contains(what)).count();
    assert_eq!(said(": connected ("), 2, "{}", console.join("\n"));
    assert_eq!(said(": connected (1)"), 2, "{}", console.join("\n"));
    assert_eq!(said(": event "), 0, "{}", console.join("\n"));
    let report = load.stop();
    assert!(report.connections_clean(), "{}", report.table());
    assert_eq!(report.closed_by_broker, 0, "{}", report.table());
    assert_eq!(report.sessions.lost, 0, "{}", report.table());
}

/// The same page through one switch by the restart strategy (stop, then
/// start): the page sees its connections drop and come back, as it
/// would through any switch that drained them; so the test above can
/// fail.
#[test]
fn mqtt_js_in_chromium_sees_a_restart_drop_its_sessions() {
    let b = BrokerHost::running_tls("strategy = \"restart\"\n");
    let browser = Browser::open(&b);
    let (out, err, code) = b.emqx(&["upgrade", "5.0.1"]);
    assert_eq!(code, Some(0), "{out}{err}");
    // MQTT.js reconnects after its 1 s reconnect period.
    std::thread::sleep(Duration::from_secs(3));
    let (got, console) = browser.stop();
    let console = console.join("\n");
    println!("{console}\n{got}");
    for name in ["ws", "wss"] {
        for event in ["close", "reconnect"] {
            let line = format!("page: {name}: event {event}");
            assert!(console.contains(&line), "{line}:\n{console}");
        }
        let again = format!("page: {name}: connected (2)");
        assert!(console.contains(&again), "{again}:\n{console}");
    }
    let drops: u64 = got["disconnects"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(Value::as_u64)
        .sum();
    assert!(drops > 0, "paho saw no disconnect: {got:#}");
}
