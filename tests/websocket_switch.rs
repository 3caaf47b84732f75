//! MQTT over WebSocket through switches (issue #24): paho-mqtt persistent
//! sessions with `transport="websockets"` over ws and over wss
//! (clean_session=False, QoS 1 and 2 both ways, `tests/sessions.py`)
//! through 50 switches beside the load harness on the plain and TLS
//! listeners: every switch moves every connection, and paho sees no
//! disconnect, nothing lost, duplicated or out of order.

use emqx_load::{Load, LoadOptions};
use emqx_testkit::BrokerHost;

mod clients;

use clients::{assert_paho_clean, switch_back_and_forth, Paho};

#[test]
fn paho_over_ws_and_wss_keeps_its_sessions_through_fifty_switches() {
    let b = BrokerHost::running_tls("");
    let (ws, wss) = b.load_ws().map(|(a, b)| (a.port(), b.port())).unwrap();
    let ca = b.tls.as_ref().map(|t| t.pki.ca());
    let load = Load::start(
        LoadOptions::moving(b.addrs())
            .over_tls(b.load_tls())
            .over_websocket(b.load_ws()),
    );
    let plain = Paho::start_websocket(ws, 20, None);
    let secure = Paho::start_websocket(wss, 20, ca.as_deref());
    switch_back_and_forth(&b, 50);
    let (plain, secure) = (plain.stop(), secure.stop());
    println!("ws: {plain}\nwss: {secure}");
    assert_paho_clean(&plain);
    assert_paho_clean(&secure);
    let report = load.stop();
    let why: Vec<String> = b
        .log_text()
        .lines()
        .filter(|l| l.contains("draining") || l.contains("closing") || l.contains("left"))
        .map(str::to_string)
        .collect();
    let why = why.join("\n");
    assert!(report.connections_clean(), "{}\n{why}", report.table());
    assert_eq!(report.closed_by_broker, 0, "{}", report.table());
    assert_eq!(report.sessions.lost, 0, "{}", report.table());
}
