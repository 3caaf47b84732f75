//! `mosquitto_sub -V 5` (Debian's mosquitto-clients 2.0.11) against the
//! reference broker and against Debian's mosquitto, side by side with the
//! same assertions: it receives, in order, a message from `mosquitto_pub
//! -V 5` with user properties, a message expiry and a content type
//! (`-D publish ...`), one from a paho-mqtt 2.1.0 MQTTv5 publisher with
//! its own user properties and expiry, and a plain QoS 0 one; printed with
//! `-F` (topic, QoS, payload, user properties, expiry, content type).
//! Installs `mosquitto-clients` with apt-get when it is missing, and
//! fails if it cannot. Run with `cargo test --test mosquitto_sub5` after
//! `cargo build --workspace --bins`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use emqx_testkit::clients::{paho_python, Mosquitto};
use emqx_testkit::fleet::ensure_debian_packages;
use emqx_testkit::RefBroker;

const FORMAT: &str = "MSG|%t|%q|%p|%P|%E|%C";

/// Publishes one MQTT 5 message with paho-mqtt: QoS 1, two user
/// properties, a message expiry of 120 s; waits for the PUBACK.
const PAHO_PUB: &str = r#"
import sys
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-pub5", protocol=mqtt.MQTTv5)
c.connect(sys.argv[1], int(sys.argv[2]))
c.loop_start()
p = Properties(PacketTypes.PUBLISH)
p.UserProperty = [("from", "paho"), ("n", "2")]
p.MessageExpiryInterval = 120
info = c.publish("sub5/paho", b"two", qos=1, properties=p)
info.wait_for_publish(10)
assert info.is_published()
c.disconnect()
c.loop_stop()
"#;

/// A running `mosquitto_sub` and its stdout, line by line.
struct Sub {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Sub {
    fn start(addr: SocketAddr, count: usize) -> Sub {
        // Line-buffered: a pipe would hold `-d`'s SUBACK line back.
        let mut child = Command::new("stdbuf")
            .args(["-oL", "mosquitto_sub"])
            .args(["-V", "5", "-h", "127.0.0.1", "-p", &addr.port().to_string()])
            .args(["-t", "sub5/#", "-q", "1", "-d", "-C", &count.to_string()])
            .args(["-F", FORMAT])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("mosquitto_sub");
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Sub { child, lines }
    }

    /// The next line, within 10 s; `None` once it ended.
    fn line(&self) -> Option<String> {
        self.lines.recv_timeout(Duration::from_secs(10)).ok()
    }

    /// Its `MSG|...` lines until it exits (bounded), and its status.
    fn messages(&mut self) -> (Vec<String>, bool) {
        let mut msgs = Vec::new();
        while let Some(l) = self.line() {
            if let Some(m) = l.strip_prefix("MSG|") {
                msgs.push(m.to_string());
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break Some(s);
            }
            if Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        (msgs, status.is_some_and(|s| s.success()))
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn mosquitto_pub(addr: SocketAddr, args: &[&str]) {
    run(Command::new("mosquitto_pub")
        .args(["-V", "5", "-h", "127.0.0.1", "-p", &addr.port().to_string()])
        .args(args));
}

/// The three messages through the broker at `addr`; `log` for failures.
fn check(addr: SocketAddr, log: impl Fn() -> String) {
    ensure_debian_packages(&["mosquitto-clients"]);
    let python = paho_python();
    let mut sub = Sub::start(addr, 3);
    // Subscribed once `-d` reports the SUBACK.
    loop {
        match sub.line() {
            Some(l) if l.contains("received SUBACK") => break,
            Some(_) => {}
            None => panic!("mosquitto_sub got no SUBACK{}", log()),
        }
    }
    mosquitto_pub(
        addr,
        &[
            "-t",
            "sub5/pub",
            "-q",
            "1",
            "-m",
            "one",
            "-D",
            "publish",
            "user-property",
            "k",
            "v",
            "-D",
            "publish",
            "user-property",
            "k",
            "w",
            "-D",
            "publish",
            "message-expiry-interval",
            "60",
            "-D",
            "publish",
            "content-type",
            "text/plain",
        ],
    );
    run(Command::new(python)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .args(["-c", PAHO_PUB, "127.0.0.1", &addr.port().to_string()]));
    mosquitto_pub(addr, &["-t", "sub5/plain", "-m", "three"]);
    let (msgs, ok) = sub.messages();
    let fields: Vec<Vec<&str>> = msgs.iter().map(|m| m.split('|').collect()).collect();
    let show = || format!("{msgs:#?}{}", log());
    assert!(ok, "mosquitto_sub -C 3 did not exit cleanly: {}", show());
    assert_eq!(fields.len(), 3, "three messages: {}", show());
    // topic, QoS, payload, user properties, expiry, content type.
    assert_eq!(
        fields[0][..4],
        ["sub5/pub", "1", "one", "k:v k:w"],
        "{}",
        show()
    );
    let expiry = |f: &[&str]| f[4].parse::<u32>().unwrap_or(0);
    assert!(
        (58..=60).contains(&expiry(&fields[0])) && fields[0][5] == "text/plain",
        "expiry 60 less the time in the broker, content type: {}",
        show()
    );
    assert_eq!(
        fields[1][..4],
        ["sub5/paho", "1", "two", "from:paho n:2"],
        "{}",
        show()
    );
    assert!(
        (118..=120).contains(&expiry(&fields[1])),
        "expiry 120: {}",
        show()
    );
    assert_eq!(
        fields[2],
        ["sub5/plain", "0", "three", "", "", ""],
        "no properties added: {}",
        show()
    );
}

#[test]
fn mosquitto_sub_v5_on_mosquitto() {
    let m = Mosquitto::start();
    check(m.addr, String::new);
}

#[test]
fn mosquitto_sub_v5_on_refbroker() {
    let b = RefBroker::start();
    check(b.mqtt(), || {
        format!("\nreference broker's log:\n{}", b.log())
    });
}
