//! The checks of the wire-level scenarios (`tests/mqtt5_wire.py`):
//! acknowledgement reason codes, DISCONNECT reasons both ways, the
//! CONNACK's properties, AUTH, malformed properties. The quirks they
//! allow mosquitto are listed at the top of `tests/mqtt5.rs`.

use serde_json::json;

use super::{num, Target};

pub fn check_reason_codes(target: &Target) {
    let o = target.observe("reason_codes");
    let acks = o.get("acks");
    for (k, kind, pid) in [("puback", 4, 1), ("pubrec", 5, 2), ("pubcomp", 7, 2)] {
        o.expect(
            acks[k] == json!({"type": kind, "pid": pid, "rc": 0}),
            &format!("{k}: success"),
        );
    }
    let nobody = &acks["puback_no_subscriber"];
    o.expect(
        nobody["rc"] == 0 || nobody["rc"] == 0x10,
        "no subscriber: 0x00 or 0x10",
    );
    let pubrel = &acks["pubrel"];
    o.expect(
        pubrel["type"] == 6 && pubrel["rc"] == 0,
        "the server's PUBREL: success",
    );
    o.eq("delivered", json!(["puback", "pubrec"]), "both delivered");
    o.eq(
        "unsuback",
        json!({"type": "UNSUBACK", "codes": [0, 0x11], "closed_after": false}),
        "UNSUBACK: 0x11 for the filter never subscribed",
    );
    let bad = o.get("invalid_filter");
    if target.quirks.invalid_filter_disconnects {
        o.expect(
            *bad == json!({"type": "DISCONNECT", "rc": 0x81, "closed_after": true}),
            "'#' not last",
        );
    } else {
        let codes = &bad["codes"];
        o.expect(
            bad["type"] == "SUBACK" && codes[0] == 1 && (codes[1] == 0x8F || codes[1] == 0x80),
            "'#' not last: SUBACK 0x8F or 0x80 for it, the valid one granted",
        );
        o.expect(bad["closed_after"] == false, "and the connection stays");
    }
}

pub fn check_disconnect_reasons(target: &Target) {
    let o = target.observe("disconnect_reasons");
    o.eq(
        "wills",
        json!(["will after DISCONNECT 0x04"]),
        "0x04 sends the will, 0x00 not",
    );
    let takeover = o.get("takeover");
    let told = takeover["type"] == "DISCONNECT" && takeover["rc"] == 0x8E;
    let silent = takeover["type"] == "closed";
    o.expect(
        told || (silent && target.quirks.takeover_closes_silently),
        "takeover: DISCONNECT 0x8E",
    );
    o.expect(
        takeover["closed_after"] == true && takeover["second_alive"] == true,
        "the new one serves",
    );
    let ka = o.get("keepalive");
    let told = ka["type"] == "DISCONNECT" && ka["rc"] == 0x8D;
    let silent = ka["type"] == "closed";
    o.expect(
        told || (silent && target.quirks.keepalive_closes_silently),
        "keep-alive: DISCONNECT 0x8D",
    );
    let bound = 1.5 + target.quirks.keepalive_check_secs;
    let after = num(&ka["after"]);
    o.expect(
        (1.0..=bound).contains(&after),
        &format!("keep-alive 1 s: closed after {after} s"),
    );
}

pub fn check_connack(target: &Target) {
    let o = target.observe("connack");
    let connack = o.get("connack");
    let p = &connack["props"];
    let assigned = p["AssignedClientIdentifier"].as_str().unwrap_or_default();
    o.expect(
        connack["rc"] == 0 && !assigned.is_empty(),
        "an empty client id gets one assigned",
    );
    o.expect(
        o.get("second_assigned").as_str() != Some(assigned),
        "each a different one",
    );
    // Absent means available (MQTT 5 §3.2.2.3); the issue wants each.
    for k in [
        "RetainAvailable",
        "WildcardSubscriptionAvailable",
        "SubscriptionIdentifiersAvailable",
        "SharedSubscriptionAvailable",
    ] {
        o.expect(p[k].is_null() || p[k] == 1, k);
    }
    o.expect(p["MaximumQoS"].is_null(), "QoS 2 (Maximum QoS absent)");
    o.expect(num(&p["TopicAliasMaximum"]) >= 1.0, "Topic Alias Maximum");
    o.expect(
        p["ReceiveMaximum"].is_null() || num(&p["ReceiveMaximum"]) >= 1.0,
        "Receive Maximum",
    );
    // And what they promise holds.
    o.eq("retained", json!([["r", true]]), "retain available");
    o.eq("wildcard_suback", json!([2]), "wildcards available");
    o.eq(
        "subscription_id_suback",
        json!([1]),
        "subscription identifiers available",
    );
    o.eq(
        "shared_suback",
        json!([1]),
        "shared subscriptions available",
    );
    o.eq("qos2", json!([["qos 2", 2]]), "QoS 2 both ways");
}

pub fn check_auth(target: &Target) {
    let o = target.observe("auth");
    let want =
        json!({"type": "CONNACK", "rc": 0x8C, "session_present": false, "closed_after": true});
    o.eq("answer", want, "enhanced authentication is refused");
}

pub fn check_malformed(target: &Target) {
    let o = target.observe("malformed");
    for (case, packet, rc) in [
        ("duplicate_session_expiry", "CONNACK", 0x82),
        ("unknown_property", "CONNACK", 0x81),
        ("property_past_packet", "CONNACK", 0x81),
        ("receive_maximum_0", "CONNACK", 0x82),
        ("publish_duplicate_property", "DISCONNECT", 0x82),
    ] {
        let got = o.get(case);
        let coded = got["type"] == packet && got["rc"] == rc;
        o.expect(got["closed_after"] == true, &format!("{case}: closed"));
        o.expect(
            coded || got["type"] == "closed",
            &format!("{case}: {packet} {rc:#x} or a close"),
        );
    }
}
