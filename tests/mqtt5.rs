//! MQTT 5 behaviour (issue #22), side by side: each scenario of
//! `tests/mqtt5.py` (paho-mqtt 2.1.0 with `protocol=MQTTv5`, raw sockets
//! where paho hides the wire) runs against Debian's mosquitto and against
//! the reference broker, and one `check_*` function asserts on what the
//! clients observed, the same for both. Run with `cargo test --test mqtt5`
//! (after `cargo build --workspace --bins`); `mosquitto` or `refbroker` as
//! a filter picks one broker. Every DISCONNECT a server sends is read on
//! a raw socket: paho 2.1.0 reports reason 0 for one without properties.
//!
//! Where Debian 12's mosquitto 2.0.11 differs from what the issue asks,
//! and how the assertion handles it. Each is a field of
//! `mqtt5_spec::Quirks`, set for mosquitto only; the reference broker is
//! held to the issue:
//!
//! - Receive maximum (`refills_past_receive_maximum`): after a PUBACK of
//!   the oldest in-flight message, 2.0.11 moves up to the client's
//!   receive maximum of queued messages into flight again, ignoring those
//!   still unacknowledged (it counts only the in-flight messages before
//!   the acknowledged one): with a receive maximum of 2 the client saw 4
//!   unacknowledged. A bug, not a reading of the spec (MQTT-3.3.4-9);
//!   upstream fixed it in 2.0.13 (commit 330bf6ef, issue #2306). For
//!   mosquitto only the window before the first PUBACK is held to the
//!   maximum; every message must still arrive, in order.
//! - Session takeover (`takeover_closes_silently`): 2.0.11 closes the old
//!   connection without a DISCONNECT; 0x8E came in 2.0.15 (commit
//!   351911bd, issue #2607). Mosquitto may close silently; the reference
//!   broker must send DISCONNECT 0x8E.
//! - Keep-alive timeout (`keepalive_closes_silently`,
//!   `keepalive_check_secs`): mosquitto (2.0.11 to 2.0.22) only closes
//!   the connection, which MQTT 5 allows ("as if the network had
//!   failed"); the issue asks for DISCONNECT 0x8D first. And it looks
//!   at keep-alives once every 6 s of a whole-second clock (`last + 5 <
//!   now`: closed after 2.8 s here, 4.7 s in conformance.rs, for a
//!   keep-alive of 1 s), so it is allowed 1.5 s + 7 s; the reference
//!   broker 1.5 s + 1 s.
//! - An invalid topic filter in SUBSCRIBE (`invalid_filter_disconnects`):
//!   mosquitto answers DISCONNECT 0x81 (Malformed Packet) and closes,
//!   sending no SUBACK at all, a legitimate reading (0x8F is "correctly
//!   formed but not allowed"); the issue wants a SUBACK, so the reference
//!   broker must answer 0x8F or 0x80 for that filter and stay connected.
//!
//! Differences that are the spec's own latitude, asserted alike for both:
//! the CONNACK capability properties are read with MQTT 5's defaults when
//! absent (mosquitto sends only Receive Maximum 20 and Topic Alias Maximum
//! 10; Maximum QoS 2 cannot be sent at all); a PUBACK with no subscriber
//! may say 0x10 (mosquitto does); a CONNECT with bad properties may be
//! closed without a CONNACK (mosquitto does), but a reason code, when
//! sent, must be the one the spec names; mosquitto never sends topic
//! aliases to clients (allowed: "never above the client's maximum" holds);
//! AUTH: mosquitto without a plugin answers CONNACK 0x8C as the issue asks;
//! its timers run on whole seconds, so session expiry, will delay and
//! message expiry are checked with a second of slack, never early.

use std::collections::BTreeSet;

use serde_json::{json, Value};

mod mqtt5_spec;

use mqtt5_spec::wire::{
    check_auth, check_connack, check_disconnect_reasons, check_malformed, check_reason_codes,
};
use mqtt5_spec::{both_ids, id_sets, list, num, numbers, payloads, Observed, Target};

fn check_session_expiry(target: &Target) {
    let o = target.observe("session_expiry");
    o.expect(!o.session_present("new"), "a new session is not present");
    o.expect(o.session_present("resumed"), "clean start 0 resumes it");
    o.eq("resumed_got", json!(["kept"]), "its subscription");
    o.expect(
        !o.session_present("clean_start"),
        "clean start 1 discards it",
    );
    o.eq("clean_start_got", json!([]), "with its subscription");
    o.expect(
        !o.session_present("after_disconnect_expiry_0"),
        "DISCONNECT with Session Expiry Interval 0 ends the session",
    );
    o.expect(
        !o.session_present("after_expiry_0"),
        "no interval: it ends with the connection",
    );
    o.expect(
        o.session_present("within_2s"),
        "a 2 s session 0.5 s after a close",
    );
    o.expect(
        !o.session_present("after_2s"),
        "a 2 s session 3.5 s after a close",
    );
    o.eq("after_2s_got", json!([]), "what an expired session queued");
}

/// A forwarded Message Expiry Interval of 60 s, `at` seconds (at most)
/// after the publish and at least 2.2 s: the time waited taken off.
fn remaining(o: &Observed, m: &Value, what: &str) {
    let left = num(&m["props"]["MessageExpiryInterval"]);
    let at = num(&m["t"]);
    o.expect(
        left <= 58.0 && left >= 60.0 - at - 1.0,
        &format!("{what}: {left} s left after {at} s of 60"),
    );
}

fn check_message_expiry(target: &Target) {
    let o = target.observe("message_expiry");
    let live = list(o.get("live"));
    o.expect(
        payloads(o.get("live")) == ["short", "long", "none"],
        "live delivery",
    );
    let interval = |m: &Value| m["props"]["MessageExpiryInterval"].as_u64();
    o.expect(
        interval(&live[0]).is_some_and(|s| s <= 1),
        "live: 1 s at most",
    );
    o.expect(
        interval(&live[1]).is_some_and(|s| (59..=60).contains(&s)),
        "live: 60 s less nothing",
    );
    o.expect(interval(&live[2]).is_none(), "live: none added");
    o.expect(
        payloads(o.get("queued")) == ["long", "none"],
        "the 1 s one expired in the queue",
    );
    let queued = list(o.get("queued"));
    remaining(&o, &queued[0], "queued");
    o.expect(interval(&queued[1]).is_none(), "queued: none added");
    let retained = list(o.get("retained"));
    o.expect(
        retained.len() == 1
            && retained[0]["topic"]
                .as_str()
                .unwrap()
                .ends_with("/me/r/long"),
        "the 1 s retained message expired, the 60 s one not",
    );
    remaining(&o, &retained[0], "retained");
}

fn check_topic_alias(target: &Target) {
    let o = target.observe("topic_alias");
    o.expect(
        num(o.get("server_max")) >= 1.0,
        "the server takes topic aliases",
    );
    let inbound: Vec<(String, String)> = list(o.get("inbound"))
        .iter()
        .map(|m| {
            (
                m[0].as_str().unwrap().rsplit('/').next().unwrap().into(),
                m[1].as_str().unwrap().into(),
            )
        })
        .collect();
    let want = [("a", "1"), ("a", "2"), ("b", "3"), ("b", "4")].map(|(t, p)| (t.into(), p.into()));
    o.expect(
        inbound == want,
        "topic+alias, alias only, remapped, alias only",
    );
    o.eq(
        "over_max",
        json!({"type": "DISCONNECT", "rc": 0x94, "closed_after": true}),
        "an alias past the maximum",
    );
    for (sub, max) in [("max2", 2), ("max0", 0)] {
        let seen = o.get(sub);
        o.expect(
            seen["topics"] == *o.get("sent_topics"),
            &format!("{sub}: every message, its topic"),
        );
        o.expect(
            seen["disconnects"] == json!([]),
            &format!("{sub}: stays connected"),
        );
        for alias in list(&seen["aliases"]).iter().filter_map(Value::as_u64) {
            o.expect(
                (1..=max).contains(&alias),
                &format!("{sub}: the server used alias {alias}"),
            );
        }
    }
}

fn check_receive_maximum(target: &Target) {
    let o = target.observe("receive_maximum");
    o.eq(
        "payloads",
        json!(numbers(10)),
        "every queued message, in order",
    );
    let windows: Vec<u64> = list(o.get("unacked_when_stalled"))
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    let first = windows.iter().find(|w| **w > 0);
    o.expect(
        first.is_some_and(|w| *w <= 2),
        "before any PUBACK: 1 or 2 in flight",
    );
    if !target.quirks.refills_past_receive_maximum {
        o.expect(
            windows.iter().all(|w| *w <= 2),
            "never more than 2 unacknowledged",
        );
    }
}

fn check_max_packet_size(target: &Target) {
    let o = target.observe("max_packet_size");
    o.expect(
        payloads(o.get("big")) == ["<1000 bytes>", "<1000 bytes>", "small"],
        "no limit: all three",
    );
    o.expect(
        payloads(o.get("small")) == ["small"],
        "256 bytes: neither 1000-byte message",
    );
    o.eq(
        "small_disconnects",
        json!([]),
        "too big for it does not disconnect it",
    );
    o.eq(
        "small_after",
        json!(["small", "after"]),
        "and it still receives",
    );
}

fn check_will_delay(target: &Target) {
    let o = target.observe("will_delay");
    let wills = list(o.get("wills"));
    o.expect(
        wills.len() == 1,
        "one will: none for the client that came back",
    );
    let will = &wills[0];
    o.expect(
        will["topic"].as_str().unwrap().ends_with("/wd/gone"),
        "the will of the one that did not",
    );
    let after = num(&will["t"]) - num(o.get("killed_at"));
    o.expect(
        (1.9..=3.5).contains(&after),
        &format!("will after {after:.2} s, delay 2 s"),
    );
    let props = json!({"ContentType": "text/plain", "PayloadFormatIndicator": 1,
        "UserProperty": [["k", "v"], ["k", "w"]]});
    o.expect(
        will["props"] == props && will["payload"] == "will of gone",
        "its properties, untouched",
    );
}

fn check_subscription_options(target: &Target) {
    let o = target.observe("subscription_options");
    o.eq("no_local_self", json!(["from another"]), "no local");
    o.eq(
        "no_local_other",
        json!(["own", "from another"]),
        "without no local",
    );
    o.eq(
        "rap_1",
        json!([
            ["retained before", true],
            ["retained live", true],
            ["not retained", false]
        ]),
        "retain as published",
    );
    o.eq(
        "rap_0",
        json!([
            ["retained before", true],
            ["retained live", false],
            ["not retained", false]
        ]),
        "retain flag cleared on live delivery",
    );
    o.eq(
        "rh0",
        json!([["kept", true], ["kept", true]]),
        "retain handling 0: at every SUBSCRIBE",
    );
    o.eq(
        "rh1",
        json!([["kept", true]]),
        "retain handling 1: new subscriptions only",
    );
    o.eq("rh2", json!([]), "retain handling 2: never");
}

fn check_subscription_ids(target: &Target) {
    let o = target.observe("subscription_ids");
    o.eq("suback", json!([1]), "a subscription with an identifier");
    both_ids(&o, "both", 1, 2);
    o.expect(
        id_sets(o.get("deep")) == vec![vec![2]],
        "only the matching one's identifier",
    );
    o.expect(
        id_sets(o.get("plain")) == vec![Vec::<u64>::new(); 2],
        "none without one",
    );
    both_ids(&o, "replaced", 2, 3);
}

fn check_shared(target: &Target) {
    let o = target.observe("shared");
    o.eq(
        "suback",
        json!({"v5a": [1], "v5b": [1], "v311": [1]}),
        "SUBACKs",
    );
    let mut all: Vec<u64> = Vec::new();
    for member in o.get("members").as_object().unwrap().values() {
        all.extend(
            list(member)
                .iter()
                .filter_map(|p| p.as_str()?.parse::<u64>().ok()),
        );
    }
    all.sort();
    o.expect(
        all == (0..30).collect::<Vec<u64>>(),
        "each message to exactly one member",
    );
    o.eq(
        "non_shared",
        json!(numbers(30)),
        "a plain subscriber gets them all",
    );
}

fn check_properties(target: &Target) {
    let o = target.observe("properties");
    let v5 = list(o.get("v5"));
    o.expect(v5.len() == 4, "four messages");
    for m in v5 {
        let payload = m["payload"].as_str().unwrap_or_default();
        if let Some(qos) = payload.strip_prefix("{\"qos\":") {
            o.expect(
                m["props"] == *o.get("sent") && qos.starts_with(&m["qos"].to_string()),
                "at its QoS, every property, the order of user properties kept",
            );
        } else {
            let p = &m["props"];
            o.expect(
                *p == json!({}) || *p == json!({"PayloadFormatIndicator": 0}),
                "binary stays binary, nothing added",
            );
        }
    }
    let v311: BTreeSet<Option<&str>> = list(o.get("v311")).iter().map(|m| m[0].as_str()).collect();
    let v5: BTreeSet<Option<&str>> = v5.iter().map(|m| m["payload"].as_str()).collect();
    o.expect(v311 == v5, "a 3.1.1 subscriber gets the same payloads");
}

fn check_mixed(target: &Target) {
    let o = target.observe("mixed");
    let tails = |key: &str| -> Vec<String> {
        list(o.get(key))
            .iter()
            .map(|m| {
                format!(
                    "{} {}",
                    m[0].as_str().unwrap().rsplit('/').next().unwrap(),
                    m[1].as_str().unwrap()
                )
            })
            .collect()
    };
    let want = ["from3 from 3.1.1", "from5 from 5", "retained retained by 5"];
    o.expect(tails("v311") == want, "3.1.1 gets both");
    o.expect(tails("v5") == want, "5 gets both");
    let props: Vec<&Value> = list(o.get("v5")).iter().map(|m| &m[2]).collect();
    o.expect(
        *props[0] == json!({}) && props[1]["UserProperty"] == json!([["k", "v"]]),
        "properties only where the publisher set them",
    );
    o.eq(
        "v311_retained",
        json!([["retained by 5", true]]),
        "a retained message across versions",
    );
}

// One pair per scenario: issue #22's list, its malformed input, 3.1.1 beside 5.
side_by_side! {
    check_session_expiry: mosquitto_session_expiry_clean_start, refbroker_session_expiry_clean_start;
    check_message_expiry: mosquitto_message_expiry, refbroker_message_expiry;
    check_topic_alias: mosquitto_topic_aliases_both_ways, refbroker_topic_aliases_both_ways;
    check_receive_maximum: mosquitto_receive_maximum, refbroker_receive_maximum;
    check_max_packet_size: mosquitto_maximum_packet_size, refbroker_maximum_packet_size;
    check_will_delay: mosquitto_will_delay_and_properties, refbroker_will_delay_and_properties;
    check_subscription_options: mosquitto_subscription_options, refbroker_subscription_options;
    check_subscription_ids: mosquitto_subscription_identifiers, refbroker_subscription_identifiers;
    check_shared: mosquitto_shared_subscriptions, refbroker_shared_subscriptions;
    check_properties: mosquitto_properties_forwarded, refbroker_properties_forwarded;
    check_reason_codes: mosquitto_ack_reason_codes, refbroker_ack_reason_codes;
    check_disconnect_reasons: mosquitto_disconnect_reasons, refbroker_disconnect_reasons;
    check_connack: mosquitto_connack_properties, refbroker_connack_properties;
    check_auth: mosquitto_auth_refused, refbroker_auth_refused;
    check_malformed: mosquitto_malformed_properties, refbroker_malformed_properties;
    check_mixed: mosquitto_mqtt311_and_5_together, refbroker_mqtt311_and_5_together;
}
