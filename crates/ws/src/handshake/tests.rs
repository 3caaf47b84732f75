//! The upgrade against RFC 6455's example and every refusal.

use super::*;

/// RFC 6455 §1.3's key and accept value.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

fn request(lines: &[&str]) -> Vec<u8> {
    let mut text = String::new();
    for l in lines {
        text.push_str(l);
        text.push_str("\r\n");
    }
    text.push_str("\r\n");
    text.into_bytes()
}

const GOOD: [&str; 7] = [
    "GET /mqtt HTTP/1.1",
    "Host: 127.0.0.1:8083",
    "Upgrade: websocket",
    "Connection: keep-alive, Upgrade",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version: 13",
    "Sec-WebSocket-Protocol: mqttv3.1, mqtt",
];

fn with(replace: &str, by: Option<&str>) -> Vec<u8> {
    let lines: Vec<&str> = GOOD
        .iter()
        .copied()
        .filter_map(|l| match l.starts_with(replace) {
            true => by,
            false => Some(l),
        })
        .collect();
    request(&lines)
}

fn status(u: Upgrade) -> u16 {
    match u {
        Upgrade::Refused {
            status, response, ..
        } => {
            let text = String::from_utf8(response).unwrap();
            assert!(text.starts_with(&format!("HTTP/1.1 {status} ")), "{text}");
            assert!(text.contains("Connection: close\r\n"), "{text}");
            status
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_good_request_is_upgraded_with_mqtt_and_the_rfc_accept_key() {
    let mut bytes = request(&GOOD);
    let len = bytes.len();
    bytes.extend_from_slice(&[0x82, 0x80]); // a frame already behind it
    match server_upgrade(&bytes, "/mqtt") {
        Upgrade::Accepted {
            consumed,
            response,
            subprotocol,
        } => {
            assert_eq!(consumed, len);
            assert_eq!(subprotocol, "mqtt", "mqtt is preferred");
            let text = String::from_utf8(response.clone()).unwrap();
            assert!(text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
            assert!(text.contains(&format!("Sec-WebSocket-Accept: {ACCEPT}\r\n")));
            assert_eq!(client_check(&response, KEY), Ok(Some(response.len())));
        }
        other => panic!("{other:?}"),
    }
    // A query string does not change the path; mqttv3.1 alone is taken.
    let q = with("GET", Some("GET /mqtt?x=1 HTTP/1.1"));
    assert!(matches!(
        server_upgrade(&q, "/mqtt"),
        Upgrade::Accepted { .. }
    ));
    let old = with(
        "Sec-WebSocket-Protocol",
        Some("Sec-WebSocket-Protocol: mqttv3.1"),
    );
    assert!(matches!(
        server_upgrade(&old, "/mqtt"),
        Upgrade::Accepted {
            subprotocol: "mqttv3.1",
            ..
        }
    ));
}

#[test]
fn every_prefix_of_a_request_asks_for_more() {
    let bytes = request(&GOOD);
    for n in 0..bytes.len() {
        assert_eq!(
            server_upgrade(&bytes[..n], "/mqtt"),
            Upgrade::Incomplete,
            "{n}"
        );
    }
}

#[test]
fn what_is_wrong_gets_its_status() {
    assert_eq!(status(server_upgrade(&request(&GOOD), "/other")), 404);
    assert_eq!(
        status(server_upgrade(
            &with("GET", Some("POST /mqtt HTTP/1.1")),
            "/mqtt"
        )),
        405
    );
    assert_eq!(status(server_upgrade(&with("Upgrade", None), "/mqtt")), 426);
    assert_eq!(
        status(server_upgrade(
            &with("Connection", Some("Connection: close")),
            "/mqtt"
        )),
        426
    );
    // RFC 6455 §4.1: HTTP/1.1 and a Host.
    let http10 = with("GET", Some("GET /mqtt HTTP/1.0"));
    assert_eq!(status(server_upgrade(&http10, "/mqtt")), 400);
    assert_eq!(status(server_upgrade(&with("Host", None), "/mqtt")), 400);
    let v8 = with("Sec-WebSocket-Version", Some("Sec-WebSocket-Version: 8"));
    assert_eq!(status(server_upgrade(&v8, "/mqtt")), 426);
    assert_eq!(
        status(server_upgrade(&with("Sec-WebSocket-Key", None), "/mqtt")),
        400
    );
    let short = with("Sec-WebSocket-Key", Some("Sec-WebSocket-Key: abc=="));
    assert_eq!(status(server_upgrade(&short, "/mqtt")), 400);
    let none = with("Sec-WebSocket-Protocol", None);
    assert_eq!(status(server_upgrade(&none, "/mqtt")), 400);
    let other = with(
        "Sec-WebSocket-Protocol",
        Some("Sec-WebSocket-Protocol: chat"),
    );
    assert_eq!(status(server_upgrade(&other, "/mqtt")), 400);
    // Names are case-sensitive: MQTT is not mqtt.
    let upper = with(
        "Sec-WebSocket-Protocol",
        Some("Sec-WebSocket-Protocol: MQTT"),
    );
    assert_eq!(status(server_upgrade(&upper, "/mqtt")), 400);
    assert_eq!(
        status(server_upgrade(b"\x10\x0c\x00\x04MQTT\x04", "/mqtt")),
        400
    );
    // A request that never ends is cut at the bound.
    let big = vec![b'a'; MAX_REQUEST + 1];
    assert_eq!(status(server_upgrade(&big, "/mqtt")), 431);
    let mut long = b"GET /mqtt HTTP/1.1\r\n".to_vec();
    while long.len() <= MAX_REQUEST {
        long.extend_from_slice(b"X-Pad: 0123456789\r\n");
    }
    assert_eq!(status(server_upgrade(&long, "/mqtt")), 431);
}

#[test]
fn a_client_checks_the_servers_answer() {
    let ok = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {ACCEPT}\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"
    );
    assert_eq!(client_check(&ok.as_bytes()[..10], KEY), Ok(None));
    assert_eq!(
        client_check(ok.as_bytes(), "AAAAAAAAAAAAAAAAAAAAAA=="),
        Err(AnswerError::WrongAccept)
    );
    assert_eq!(
        client_check(b"HTTP/1.1 404 Not Found\r\n\r\n", KEY),
        Err(AnswerError::Status(404))
    );
    let no_upgrade = ok.replace("Upgrade: websocket\r\n", "");
    assert_eq!(
        client_check(no_upgrade.as_bytes(), KEY),
        Err(AnswerError::NotUpgraded)
    );
    let deflate = ok.replace(
        "\r\n\r\n",
        "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
    );
    assert_eq!(
        client_check(deflate.as_bytes(), KEY),
        Err(AnswerError::Extension)
    );
    assert_eq!(client_key().len(), 24);
    assert_ne!(client_key(), client_key());
    let req = client_request("h", "/mqtt", KEY);
    assert!(matches!(
        server_upgrade(&req, "/mqtt"),
        Upgrade::Accepted { .. }
    ));
}
