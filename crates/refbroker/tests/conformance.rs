//! MQTT 3.1.1 behaviour through clients this project did not write
//! (paho-mqtt, raw sockets where paho will not send what a test needs),
//! each scenario of `conformance.py` against the reference broker and
//! against Debian's mosquitto, so a difference shows side by side.

use std::net::SocketAddr;
use std::process::Command;

use emqx_testkit::clients::{paho_python, Mosquitto};
use emqx_testkit::RefBroker;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/conformance.py");

fn scenario(addr: SocketAddr, name: &str, env: &[(&str, &str)]) -> Result<String, String> {
    let out = Command::new(paho_python())
        .envs(env.iter().copied())
        .arg(SCRIPT)
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .arg(name)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text.trim().to_string())
    } else {
        Err(text)
    }
}

/// Runs `name` against both brokers; both must meet the spec.
fn both(name: &str) {
    both_with(name, &[], &[]);
}

/// [`both`], with environment for the scenario per broker (a documented
/// allowance for one of them).
fn both_with(name: &str, mine_env: &[(&str, &str)], theirs_env: &[(&str, &str)]) {
    let ours = RefBroker::start();
    let mosquitto = Mosquitto::start();
    let theirs = scenario(mosquitto.addr, name, theirs_env);
    let mine = scenario(ours.addrs[0], name, mine_env);
    eprintln!("{name}: mosquitto {theirs:?}; refbroker {mine:?}");
    assert!(theirs.is_ok(), "mosquitto fails {name}: {theirs:?}");
    assert!(
        mine.is_ok(),
        "refbroker fails {name}: {mine:?}\n{}",
        ours.log()
    );
}

#[test]
fn qos2_is_delivered_exactly_once() {
    both("qos2_exactly_once");
}

#[test]
fn retained_messages_are_set_replaced_and_deleted() {
    both("retained");
}

#[test]
fn an_offline_persistent_session_queues_and_resumes() {
    both("offline_queue");
}

#[test]
fn unacknowledged_messages_are_redelivered_with_dup() {
    both("redelivery");
}

#[test]
fn a_will_follows_an_abnormal_close_and_never_a_disconnect() {
    both("will_abnormal");
}

#[test]
fn keep_alive_expiry_publishes_the_will() {
    // The spec: disconnect after 1.5 x keep-alive. Mosquitto 2.0.11 checks
    // its timers coarsely (measured here: 4.7 s for keep-alive 1 s), so it
    // is allowed 8 s; the reference broker must be within 2.5 s (its timer
    // ticks every 100 ms).
    both_with(
        "keepalive_will",
        &[("KEEPALIVE_BOUND", "2.5")],
        &[("KEEPALIVE_BOUND", "8")],
    );
}

#[test]
fn a_second_connection_takes_the_client_id_over() {
    both("takeover");
}

#[test]
fn wildcards_do_not_match_dollar_topics() {
    both("dollar_topics");
}

#[test]
fn an_empty_client_id_needs_a_clean_session() {
    both("zero_length_id");
}

#[test]
fn overlapping_subscriptions_deliver_at_the_highest_qos() {
    both("overlapping");
}

#[test]
fn unsubscribe_stops_delivery() {
    both("unsubscribe");
}

/// Also: the reference broker counts them, retained on
/// `$SYS/broker/connections/malformed` (mosquitto has no such topic).
#[test]
fn malformed_packets_close_the_connection() {
    let ours = RefBroker::start();
    let read = || {
        let out = Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &ours.addrs[0].port().to_string()])
            .args([
                "-t",
                "$SYS/broker/connections/malformed",
                "-C",
                "1",
                "-W",
                "3",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(read(), "", "nothing counted yet");
    let mine = scenario(ours.addrs[0], "malformed", &[]);
    assert!(
        mine.is_ok(),
        "refbroker fails malformed: {mine:?}\n{}",
        ours.log()
    );
    assert_eq!(read(), "2", "both bad connections counted\n{}", ours.log());
    both("malformed");
}
