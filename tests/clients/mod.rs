//! Clients this project did not write, driven through switches: paho-mqtt
//! persistent sessions (`tests/sessions.py`) and `mosquitto_sub -c`,
//! over plain TCP or TLS (tests/sessions.rs, tests/tls.rs).

// Each test file that includes this module uses part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, Stdio};

use emqx_testkit::clients::paho_python;
use emqx_testkit::BrokerHost;

const SESSIONS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sessions.py");
/// The MQTT 5 clients of `tests/sessions5.py`.
pub const SESSIONS5: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sessions5.py");

/// Switches back and forth `n` times; each must move the connections.
pub fn switch_back_and_forth(b: &BrokerHost, n: usize) {
    for i in 0..n {
        switch_back_and_forth_once(b, i);
    }
}

/// Switch `i` of [`switch_back_and_forth`]: up to 5.0.1 when `i` is
/// even, down to 5.0.0 when odd.
pub fn switch_back_and_forth_once(b: &BrokerHost, i: usize) {
    let args = if i.is_multiple_of(2) {
        ["upgrade", "5.0.1"]
    } else {
        ["downgrade", "5.0.0"]
    };
    let (out, err, code) = b.emqx(&args);
    assert_eq!(
        code,
        Some(0),
        "switch {i}: {out}{err}\nlog:\n{}",
        b.log_text()
    );
    assert!(
        err.contains("connections moved with their sessions"),
        "switch {i}: {err}"
    );
}

/// The paho clients of `tests/sessions.py`, started and subscribed.
pub struct Paho {
    child: Child,
    out: BufReader<ChildStdout>,
}

impl Paho {
    /// On `port`, publishing `rate` messages a second each; over TLS
    /// verifying against `ca` when given.
    pub fn start(port: u16, rate: u32, ca: Option<&std::path::Path>) -> Paho {
        Paho::run(SESSIONS, port, rate, ca)
    }

    /// As [`Paho::start`], speaking MQTT over WebSocket (`ws`, or `wss`
    /// with `ca`).
    pub fn start_websocket(port: u16, rate: u32, ca: Option<&std::path::Path>) -> Paho {
        Paho::run_with(SESSIONS, port, rate, ca, "websockets")
    }

    /// The clients of `script` (as `tests/sessions.py`'s arguments).
    pub fn run(script: &str, port: u16, rate: u32, ca: Option<&std::path::Path>) -> Paho {
        Paho::run_with(script, port, rate, ca, "tcp")
    }

    fn run_with(
        script: &str,
        port: u16,
        rate: u32,
        ca: Option<&std::path::Path>,
        transport: &str,
    ) -> Paho {
        let mut child = Command::new(paho_python())
            .env("PAHO_TRANSPORT", transport)
            .arg(script)
            .arg("127.0.0.1")
            .arg(port.to_string())
            .arg(rate.to_string())
            .args(ca)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "{script} did not start");
        Paho { child, out }
    }

    /// Stops publishing; what it counted.
    pub fn stop(mut self) -> serde_json::Value {
        self.child
            .stdin
            .take()
            .unwrap()
            .write_all(b"stop\n")
            .unwrap();
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        assert!(self.child.wait().unwrap().success());
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }
}

/// What `sessions.py` counted, checked: every message acked and
/// delivered to both subscribers once, in order, no client disconnected
/// or connected twice.
pub fn assert_paho_clean(got: &serde_json::Value) {
    let n = |k: &str| got[k].as_u64().unwrap();
    assert!(n("acked") > 0 && n("acked") == n("sent"), "{got}");
    // Each subscriber gets every message of each publisher.
    assert!(n("received") >= 2 * n("acked"), "{got}");
    for k in ["lost", "qos2_dup", "dup_without_flag", "out_of_order"] {
        assert_eq!(n(k), 0, "{k}: {got}");
    }
    for (client, d) in got["disconnects"].as_object().unwrap() {
        assert_eq!(d.as_u64(), Some(0), "{client} was disconnected: {got}");
    }
    for (client, c) in got["connects"].as_object().unwrap() {
        assert_eq!(c.as_u64(), Some(1), "{client} connected again: {got}");
    }
}

/// A child's output, line by line, every line kept.
pub struct Lines {
    out: BufReader<ChildStdout>,
    seen: Vec<String>,
}

impl Lines {
    /// Reads until a line meets `done`.
    pub fn until(&mut self, done: impl Fn(&str) -> bool) {
        loop {
            let mut line = String::new();
            assert!(
                self.out.read_line(&mut line).unwrap() > 0,
                "the client ended:\n{}",
                self.seen.join("\n")
            );
            let line = line.trim().to_string();
            let end = done(&line);
            self.seen.push(line);
            if end {
                return;
            }
        }
    }
}

/// `mosquitto_sub -c -q 1` on `port` (with `tls`: its TLS options, and
/// `mosquitto_pub` with them too) through ten switches: one CONNECT,
/// every message once, in order, each switch moving exactly it.
pub fn mosquitto_sub_through_ten_switches(b: &BrokerHost, port: u16, tls: &[&str]) {
    let port = port.to_string();
    let topic = "mosquitto/moved";
    // -d prints every packet: one CONNECT means it never reconnected.
    // Line-buffered, as into a terminal.
    let mut sub = Command::new("stdbuf")
        .args([
            "-oL",
            "mosquitto_sub",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-c",
            "-i",
            "moved-sub",
        ])
        .args(tls)
        .args(["-q", "1", "-t", topic, "-d"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("mosquitto_sub: {e} (scripts/test installs mosquitto-clients)"));
    let mut lines = Lines {
        out: BufReader::new(sub.stdout.take().unwrap()),
        seen: Vec::new(),
    };
    lines.until(|l| l.contains("received SUBACK"));
    let publish = |m: &str| {
        let ok = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &port, "-q", "1", "-t", topic])
            .args(tls)
            .args(["-m", m])
            .status()
            .unwrap();
        assert!(ok.success());
    };
    for i in 0..10usize {
        publish(&format!("m{i}"));
        lines.until(|l| l == format!("m{i}"));
        let args = if i.is_multiple_of(2) {
            ["-v", "upgrade", "5.0.1"]
        } else {
            ["-v", "downgrade", "5.0.0"]
        };
        let (out, err, code) = b.emqx(&args);
        assert_eq!(code, Some(0), "switch {i}: {out}{err}");
        assert!(
            err.contains(" 1 connections moved with their sessions"),
            "switch {i}: {err}"
        );
        // -v: the same figures as JSON.
        let json = err
            .lines()
            .find_map(|l| l.strip_prefix("note: switch: "))
            .unwrap_or_else(|| panic!("no switch line with -v: {err}"));
        let figures: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(figures["moved"], 1, "{figures}");
        assert_eq!(figures["draining"], 0, "{figures}");
        assert!(figures["pause_ms"].as_f64().unwrap() > 0.0, "{figures}");
        assert_eq!(figures["to"], args[2], "{figures}");
    }
    publish("m10");
    lines.until(|l| l == "m10");
    let _ = sub.kill();
    let _ = sub.wait();
    let all = lines.seen.join("\n");
    let connects = lines
        .seen
        .iter()
        .filter(|l| l.contains("sending CONNECT"))
        .count();
    assert_eq!(connects, 1, "mosquitto_sub reconnected:\n{all}");
    let messages: Vec<String> = lines
        .seen
        .iter()
        .filter(|l| l.starts_with('m'))
        .cloned()
        .collect();
    let expected: Vec<String> = (0..=10).map(|i| format!("m{i}")).collect();
    assert_eq!(messages, expected, "every message once, in order:\n{all}");
}
