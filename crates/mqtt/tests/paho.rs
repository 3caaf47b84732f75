//! Interop with a client this project did not write: paho-mqtt (PyPI,
//! pinned as the testkit pins it) speaking MQTT 5 to a plain TCP listener
//! of this test. What paho sends (CONNECT with a will, SUBSCRIBE,
//! PUBLISH, PUBACK, DISCONNECT) is decoded by this codec and checked
//! field by field; what this codec encodes (CONNACK, SUBACK, PUBACK,
//! PUBLISH by topic and by alias) paho accepts, and its callbacks report
//! the reason codes and properties they read (`paho_v5.py`).

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use emqx_mqtt::{
    read_packet_as, Level, Packet, Properties, ReasonCode, RetainHandling, SubOptions, Will,
};

/// The paho-mqtt release of the testkit (`emqx_testkit::clients`); the
/// testkit depends on this crate, so this test makes the same pinned
/// virtual environment (in the same place, shared) itself.
const PAHO_VERSION: &str = "2.1.0";

/// The python of a virtual environment holding paho-mqtt, beside the
/// test binaries; made once (needs `python3-venv` and PyPI).
fn paho_python() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let mut dir = exe.parent().unwrap().to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let venv = dir.join(format!("paho-venv-{PAHO_VERSION}"));
    let spec = format!("paho-mqtt=={PAHO_VERSION}");
    let marker = venv.join(".installed");
    if !marker.exists() {
        let _ = std::fs::remove_dir_all(&venv);
        run(Command::new("/usr/bin/python3")
            .args(["-m", "venv"])
            .arg(&venv));
        run(Command::new(venv.join("bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .arg(&spec));
        std::fs::write(&marker, &spec).unwrap();
    }
    venv.join("bin/python")
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The paho process, killed if the test fails before it ends.
struct Paho(Option<Child>);

impl Drop for Paho {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The connection paho opens, within a minute.
fn accept(listener: &TcpListener, paho: &mut Paho) -> TcpStream {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok((s, _)) = listener.accept() {
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            return s;
        }
        if let Some(Ok(Some(status))) = paho.0.as_mut().map(Child::try_wait) {
            panic!("paho ended ({status}) before connecting");
        }
        assert!(Instant::now() < deadline, "paho did not connect");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn next(s: &mut TcpStream) -> Packet {
    match read_packet_as(s, 1 << 20, Level::V5) {
        Ok(Some(p)) => p,
        other => panic!("expected a packet from paho, got {other:?}"),
    }
}

fn send(s: &mut TcpStream, p: Packet) {
    s.write_all(&p.encode_as(Level::V5)).unwrap();
}

fn user(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// paho's CONNECT, decoded: level 5, its properties and will properties.
fn expect_connect(s: &mut TcpStream) {
    let want = Packet::Connect {
        level: Level::V5,
        client_id: "paho5".into(),
        keep_alive: 30,
        clean_session: true,
        username: None,
        password: None,
        will: Some(Will {
            properties: Properties {
                will_delay_interval: Some(5),
                content_type: Some("text/plain".into()),
                ..Properties::default()
            },
            ..Will::new("interop/will", "gone", 1, false)
        }),
        properties: Properties {
            session_expiry_interval: Some(300),
            receive_maximum: Some(10),
            topic_alias_maximum: Some(5),
            user_properties: user(&[("client", "paho")]),
            ..Properties::default()
        },
    };
    assert_eq!(next(s), want);
}

/// Our CONNACK, with every capability property.
fn connack() -> Packet {
    Packet::ConnAck {
        session_present: false,
        code: ReasonCode::SUCCESS,
        properties: Properties {
            session_expiry_interval: Some(300),
            receive_maximum: Some(20),
            maximum_qos: Some(1),
            retain_available: Some(true),
            assigned_client_identifier: Some("paho5-assigned".into()),
            topic_alias_maximum: Some(3),
            reason_string: Some("welcome".into()),
            user_properties: user(&[("server", "emqx-mqtt")]),
            wildcard_subscription_available: Some(true),
            subscription_identifier_available: Some(true),
            shared_subscription_available: Some(false),
            server_keep_alive: Some(25),
            ..Properties::default()
        },
    }
}

/// paho's SUBSCRIBE, decoded, answered with a SUBACK granting the first
/// filter and refusing the second.
fn subscribe(s: &mut TcpStream) {
    let Packet::Subscribe {
        packet_id,
        filters,
        properties,
    } = next(s)
    else {
        panic!("expected SUBSCRIBE")
    };
    let first = SubOptions {
        qos: 1,
        no_local: true,
        retain_as_published: true,
        retain_handling: RetainHandling::Never,
    };
    let second = SubOptions {
        qos: 2,
        retain_handling: RetainHandling::OnNewSubscription,
        ..SubOptions::default()
    };
    assert_eq!(
        filters,
        [
            ("interop/in".into(), first),
            ("interop/denied/#".into(), second)
        ]
    );
    assert_eq!(properties.subscription_identifiers, [42]);
    assert_eq!(properties.user_properties, user(&[("sub", "1")]));
    let refused = Properties {
        reason_string: Some("second refused".into()),
        user_properties: user(&[("k", "v")]),
        ..Properties::default()
    };
    let codes = vec![ReasonCode::GRANTED_QOS_1, ReasonCode::NOT_AUTHORIZED];
    send(
        s,
        Packet::SubAck {
            packet_id,
            codes,
            properties: refused,
        },
    );
}

/// paho's PUBLISH, decoded, acknowledged with "no matching subscribers".
fn publish(s: &mut TcpStream) {
    let Packet::Publish {
        topic,
        payload,
        qos: 1,
        retain: false,
        dup: false,
        packet_id: Some(packet_id),
        properties,
    } = next(s)
    else {
        panic!("expected a QoS 1 PUBLISH")
    };
    assert_eq!(
        (topic.as_str(), &payload[..]),
        ("interop/out", &b"{\"n\": 1}"[..])
    );
    let want = Properties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(120),
        content_type: Some("application/json".into()),
        response_topic: Some("interop/reply".into()),
        correlation_data: Some(b"\x01\x02corr".to_vec()),
        user_properties: user(&[("a", "1"), ("b", "2")]),
        ..Properties::default()
    };
    assert_eq!(properties, want);
    let why = Properties {
        reason_string: Some("nobody listens".into()),
        ..Properties::default()
    };
    send(
        s,
        Packet::PubAck {
            packet_id,
            reason: ReasonCode::NO_MATCHING_SUBSCRIBERS,
            properties: why,
        },
    );
}

/// Two messages to paho: by topic setting alias 2, then by the alias
/// alone; paho acknowledges the first and disconnects with reason 0x04.
fn deliver(s: &mut TcpStream) {
    let first = Properties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(60),
        content_type: Some("text/plain".into()),
        response_topic: Some("interop/reply".into()),
        correlation_data: Some(vec![0x0a, 0x0b]),
        subscription_identifiers: vec![42],
        topic_alias: Some(2),
        user_properties: user(&[("from", "server")]),
        ..Properties::default()
    };
    let mut p = Packet::publish("interop/in", "hello", 1, true, 9);
    if let Packet::Publish { properties, .. } = &mut p {
        *properties = first;
    }
    send(s, p);
    let mut p = Packet::publish("", "again", 0, false, 0);
    if let Packet::Publish { properties, .. } = &mut p {
        properties.subscription_identifiers = vec![42, 7];
        properties.topic_alias = Some(2);
    }
    send(s, p);
    assert_eq!(next(s), Packet::puback(9));
    let bye = Packet::Disconnect {
        reason: ReasonCode::DISCONNECT_WITH_WILL,
        properties: Properties::default(),
    };
    assert_eq!(next(s), bye);
}

/// What paho's callbacks reported, one JSON line each (sorted keys).
const PAHO_SAW: [&str; 6] = [
    r#"{"event": "connack", "props": {"AssignedClientIdentifier": "paho5-assigned", "MaximumQoS": 1, "ReasonString": "welcome", "ReceiveMaximum": 20, "RetainAvailable": 1, "ServerKeepAlive": 25, "SessionExpiryInterval": 300, "SharedSubscriptionAvailable": 0, "SubscriptionIdentifierAvailable": 1, "TopicAliasMaximum": 3, "UserProperty": [["server", "emqx-mqtt"]], "WildcardSubscriptionAvailable": 1}, "reason": 0, "session_present": false}"#,
    r#"{"codes": [1, 135], "event": "suback", "props": {"ReasonString": "second refused", "UserProperty": [["k", "v"]]}}"#,
    r#"{"event": "puback", "props": {"ReasonString": "nobody listens"}, "reason": 16}"#,
    r#"{"event": "message", "payload": "hello", "props": {"ContentType": "text/plain", "CorrelationData": "0a0b", "MessageExpiryInterval": 60, "PayloadFormatIndicator": 1, "ResponseTopic": "interop/reply", "SubscriptionIdentifier": [42], "TopicAlias": 2, "UserProperty": [["from", "server"]]}, "qos": 1, "retain": true, "topic": "interop/in"}"#,
    r#"{"event": "message", "payload": "again", "props": {"SubscriptionIdentifier": [42, 7], "TopicAlias": 2}, "qos": 0, "retain": false, "topic": ""}"#,
    r#"{"event": "done", "messages": 2}"#,
];

#[test]
fn paho_and_this_codec_understand_each_other_in_mqtt_5() {
    let python = paho_python();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/paho_v5.py");
    let child = Command::new(python)
        .arg(script)
        .arg(port.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut paho = Paho(Some(child));
    let mut s = accept(&listener, &mut paho);
    expect_connect(&mut s);
    send(&mut s, connack());
    subscribe(&mut s);
    publish(&mut s);
    deliver(&mut s);
    drop(s);
    let out = paho.0.take().unwrap().wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "paho failed: {stderr}");
    let saw: Vec<&str> = stdout.lines().collect();
    assert_eq!(saw, PAHO_SAW, "{stderr}");
}
