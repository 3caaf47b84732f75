//! MQTT over WebSocket on the reference broker (issue #24, first part):
//! paho-mqtt with `transport="websockets"` over `ws://` and `wss://`, at
//! 3.1.1 and 5, publishing and receiving at QoS 1 and 2; and what a
//! WebSocket listener refuses (an HTTP request without the upgrade, a
//! wrong path, no `mqtt` subprotocol, garbage; a text frame, an unmasked
//! frame, an oversized one), each with its HTTP status or close code,
//! while the broker serves on.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use emqx_testkit::bins::bin;
use emqx_testkit::clients::paho_python;
use emqx_testkit::refbroker::RefBroker;
use emqx_testkit::Pki;

/// paho over WebSocket: connects at `version` (3 or 5) to `port`,
/// subscribes to its own topic at QoS 2, publishes 10 messages at QoS 1
/// and 10 at QoS 2 and prints how many came back, in order.
const PAHO: &str = r#"
import sys, time, ssl
import paho.mqtt.client as mqtt
port, version, ca = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
proto = mqtt.MQTTv5 if version == 5 else mqtt.MQTTv311
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"ws-{version}-{ca != ''}",
                protocol=proto, transport="websockets")
c.ws_set_options(path="/mqtt")
if ca:
    c.tls_set(ca_certs=ca)
got = []
c.on_message = lambda cl, u, m: got.append(m.payload.decode())
c.connect("127.0.0.1", port, 30)
c.loop_start()
deadline = time.time() + 10
while not c.is_connected() and time.time() < deadline:
    time.sleep(0.02)
c.subscribe("ws/t", qos=2)
time.sleep(0.3)
sent = []
for i in range(20):
    sent.append(str(i))
    c.publish("ws/t", str(i), qos=1 + i % 2).wait_for_publish(10)
while len(got) < 20 and time.time() < deadline:
    time.sleep(0.02)
c.disconnect()
c.loop_stop()
print("received", len(got), "in order" if got == sent else f"out of order {got}")
"#;

fn paho(port: u16, version: u8, ca: &str) -> String {
    let out = Command::new(paho_python())
        .args(["-c", PAHO, &port.to_string(), &version.to_string(), ca])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn broker(alt: &str, pki: &Pki) -> RefBroker {
    let server = pki.server();
    let (cert, key) = (server.cert.to_string_lossy(), server.key.to_string_lossy());
    RefBroker::start_serving(
        &bin("emqx-refbroker"),
        alt,
        &[
            ("EMQX_BROKER_VERSION", "5.0.0"),
            ("EMQX_LOG_LEVEL", "debug"),
            ("EMQX_SSL_CERTFILE", &cert),
            ("EMQX_SSL_KEYFILE", &key),
        ],
    )
}

#[test]
fn paho_over_ws_and_wss_at_both_levels() {
    let pki = Pki::new();
    let ca = pki.ca().to_string_lossy().into_owned();
    for (alt, ca) in [("ws", ""), ("wss", ca.as_str())] {
        let b = broker(alt, &pki);
        for version in [3, 5] {
            let said = paho(b.alt().port(), version, ca);
            assert!(
                said.contains("received 20 in order"),
                "{alt} v{version}: {said}\n{}",
                b.log()
            );
        }
    }
}

/// The raw answer to `bytes` on `addr`: what came back until the broker
/// closed (or 5 s).
fn answer(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

const UPGRADE: &str = "GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n";

/// The close code of the close frame after the 101 answer.
fn close_code(reply: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(reply);
    let at = text.find("\r\n\r\n")? + 4;
    let frame = &reply[at..];
    (frame.len() >= 4 && frame[0] == 0x88).then(|| u16::from_be_bytes([frame[2], frame[3]]))
}

#[test]
fn bad_requests_and_frames_get_their_status_or_close_code() {
    let pki = Pki::new();
    let b = broker("ws", &pki);
    let addr = b.alt();
    let status = |req: &str| {
        let reply = answer(addr, req.as_bytes());
        String::from_utf8_lossy(&reply)
            .split(' ')
            .nth(1)
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(status("GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n"), "426");
    assert_eq!(status(&UPGRADE.replace("/mqtt", "/other")), "404");
    assert_eq!(
        status(&UPGRADE.replace("Sec-WebSocket-Protocol: mqtt\r\n", "")),
        "400"
    );
    assert_eq!(
        status("\u{10}\u{c}\u{0}\u{4}MQTT\u{4}\u{2}\u{0}\u{3c}\u{0}\u{0}"),
        "400"
    );
    // After the upgrade: masked frames only, binary only, bounded.
    let frame = |head: &[u8], payload: &[u8]| [UPGRADE.as_bytes(), head, payload].concat();
    let text = frame(&[0x81, 0x82, 0, 0, 0, 0], b"hi");
    assert_eq!(close_code(&answer(addr, &text)), Some(1003));
    let unmasked = frame(&[0x82, 0x02], b"\xc0\x00");
    assert_eq!(close_code(&answer(addr, &unmasked)), Some(1002));
    let huge = frame(&[0x82, 0xff, 0, 0, 0, 0, 0, 0x20, 0, 0, 1, 2, 3, 4], b"");
    assert_eq!(close_code(&answer(addr, &huge)), Some(1009));
    // A ping is answered with its pong; a close is echoed.
    let ping = frame(
        &[
            0x89, 0x81, 0, 0, 0, 0, b'p', 0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8,
        ],
        b"",
    );
    let reply = answer(addr, &ping);
    let text = String::from_utf8_lossy(&reply);
    let at = text.find("\r\n\r\n").unwrap() + 4;
    assert_eq!(&reply[at..], [0x8a, 0x01, b'p', 0x88, 0x02, 0x03, 0xe8]);
    // A close code a peer may not send (1005) is answered with 1002,
    // and bytes after a close get no second close frame.
    let bad_close = frame(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xed, 0x82], b"");
    let reply = answer(addr, &bad_close);
    assert_eq!(close_code(&reply), Some(1002));
    let text = String::from_utf8_lossy(&reply);
    let at = text.find("\r\n\r\n").unwrap() + 4;
    assert_eq!(reply.len() - at, 4, "one close frame");
    // And it serves on.
    assert!(
        paho(addr.port(), 5, "").contains("received 20 in order"),
        "{}",
        b.log()
    );
}
