//! MQTT over WebSocket through switches (issue #24): paho-mqtt persistent
//! sessions with `transport="websockets"` over ws and over wss
//! (clean_session=False, QoS 1 and 2 both ways, `tests/sessions.py`)
//! through 50 switches beside the load harness on the plain and TLS
//! listeners: every switch moves every connection, and paho sees no
//! disconnect, nothing lost, duplicated or out of order.

use emqx_load::{Load, LoadOptions};
use emqx_testkit::{free_port, BrokerHost};

mod clients;

use clients::{assert_paho_clean, switch_back_and_forth, Paho};

#[test]
fn paho_over_ws_and_wss_keeps_its_sessions_through_fifty_switches() {
    let mut b = BrokerHost::new("");
    b.with_tls();
    let (ws, wss) = (free_port(), free_port());
    let tls_port = b.tls.as_ref().map(|t| t.port).unwrap_or(0);
    let listeners = format!(
        "mqtt=127.0.0.1:{},mqtt-alt=127.0.0.1:{},ssl=ssl://127.0.0.1:{tls_port},ws=ws://127.0.0.1:{ws},wss=wss://127.0.0.1:{wss}",
        b.ports[0], b.ports[1]
    );
    b.env.push(("EMQX_LISTENERS".into(), listeners));
    b.drop_broker_release("5.0.0", true, "");
    b.drop_broker_release("5.0.1", false, "");
    let (_, err, code) = b.emqx(&["install", "5.0.0"]);
    assert_eq!(code, Some(0), "{err}");
    b.start();
    let ca = b.tls.as_ref().map(|t| t.pki.ca());
    let load = Load::start(LoadOptions::moving(b.addrs()).over_tls(b.load_tls()));
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
