//! Established MQTT sessions move with their sockets at every switch
//! (protocol 2), seen by clients this project did not write: paho-mqtt
//! persistent sessions through 50 switches under the load harness, and
//! `mosquitto_sub -c` through 10. Runs as root: brokers run as a real
//! non-root test user.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use emqx_load::{Load, LoadOptions};
use emqx_testkit::clients::paho_python;
use emqx_testkit::BrokerHost;

const SESSIONS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sessions.py");

/// Switches back and forth `n` times; each must move the connections.
fn switch_back_and_forth(b: &BrokerHost, n: usize) {
    for i in 0..n {
        let args = if i % 2 == 0 {
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
}

/// The paho clients of `tests/sessions.py`, started and subscribed.
struct Paho {
    child: Child,
    out: BufReader<ChildStdout>,
}

impl Paho {
    fn start(b: &BrokerHost, rate: u32) -> Paho {
        let mut child = Command::new(paho_python())
            .arg(SESSIONS)
            .arg("127.0.0.1")
            .arg(b.ports[0].to_string())
            .arg(rate.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "sessions.py did not start");
        Paho { child, out }
    }

    fn stop(mut self) -> serde_json::Value {
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

#[test]
fn paho_persistent_sessions_stay_connected_through_fifty_switches() {
    let b = BrokerHost::running("");
    let load = Load::start(LoadOptions {
        addrs: b.addrs(),
        persistent: 4,
        publish_rate: 20.0,
        storm: 1,
        connect_timeout: Duration::from_secs(3),
        ..LoadOptions::default()
    });
    let paho = Paho::start(&b, 50);
    switch_back_and_forth(&b, 50);
    std::thread::sleep(Duration::from_millis(300));
    let got = paho.stop();
    let report = load.stop();
    println!("paho: {got}\n{}", report.table());
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
    assert!(report.clean(), "{}", report.table());
    assert_eq!(report.closed_by_broker, 0, "{}", report.table());
    assert_eq!(report.sessions.lost, 0, "{}", report.table());
}

/// A child's output, line by line, every line kept.
struct Lines {
    out: BufReader<ChildStdout>,
    seen: Vec<String>,
}

impl Lines {
    /// Reads until a line meets `done`.
    fn until(&mut self, done: impl Fn(&str) -> bool) {
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

#[test]
fn mosquitto_sub_stays_connected_through_ten_switches() {
    let b = BrokerHost::running("");
    let port = b.ports[0].to_string();
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
            .args(["-m", m])
            .status()
            .unwrap();
        assert!(ok.success());
    };
    for i in 0..10 {
        publish(&format!("m{i}"));
        lines.until(|l| l == format!("m{i}"));
        let args = if i % 2 == 0 {
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

/// 10,000 persistent sessions (the most one test process holds here with
/// the broker's 10,000 fds beside) moved in one switch: every client is
/// still connected afterwards and receives on the subscription it made
/// before.
#[test]
fn ten_thousand_persistent_sessions_move_in_one_switch() {
    use emqx_mqtt::{read_packet, Packet};
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    use std::net::TcpStream;
    const N: usize = 10_000;
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    let b = BrokerHost::running("");
    let addr = b.addrs()[0];
    let mut clients = Vec::with_capacity(N);
    for i in 0..N {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut hello = Packet::connect(format!("scale-{i}"), false, 600).encode();
        hello.extend(
            Packet::Subscribe {
                packet_id: 1,
                filters: vec![("scale/all".into(), 1)],
            }
            .encode(),
        );
        c.write_all(&hello).unwrap();
        clients.push(c);
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let acks = [read_packet(c, 1024), read_packet(c, 1024)];
        assert!(
            matches!(acks[0], Ok(Some(Packet::ConnAck { code: 0, .. })))
                && matches!(acks[1], Ok(Some(Packet::SubAck { .. }))),
            "client {i}: {acks:?}"
        );
    }
    let (_, err, code) = b.emqx(&["upgrade", "5.0.1"]);
    assert_eq!(code, Some(0), "{err}");
    println!("{}", err.trim());
    assert!(
        err.contains(&format!(" {N} connections moved with their sessions")),
        "{err}"
    );
    let sent = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &b.ports[0].to_string()])
        .args(["-q", "1", "-t", "scale/all", "-m", "after"])
        .status()
        .unwrap();
    assert!(sent.success());
    for (i, c) in clients.iter_mut().enumerate() {
        match read_packet(c, 1024) {
            Ok(Some(Packet::Publish {
                topic,
                payload,
                packet_id: Some(id),
                ..
            })) => {
                assert_eq!((topic.as_str(), &payload[..]), ("scale/all", &b"after"[..]));
                c.write_all(&Packet::PubAck { packet_id: id }.encode())
                    .unwrap();
            }
            other => panic!("client {i} after the move: {other:?}"),
        }
    }
    assert_eq!(b.version_seen(0), "5.0.1");
}
