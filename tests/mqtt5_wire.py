"""The scenarios of tests/mqtt5.py about reason codes, the CONNACK and
what the server says when it closes: hand-built packets on a raw socket
where paho hides the wire (PUBREC's reason code, an invalid filter paho
refuses to send, a silent client that answers no ping), paho elsewhere.
Each fills OBS (tests/mqtt5_lib.py); tests/mqtt5.rs judges."""

import struct

from mqtt5_lib import OBS, RUN, Client, Raw, ack_rc, now, opts, packet, t, utf8, varint


def pid_rc(kind, body):
    """A PUBACK/PUBREC/PUBREL/PUBCOMP (or whatever came instead) as JSON."""
    ok = isinstance(kind, int) and len(body) >= 2
    return {"type": kind, "pid": struct.unpack(">H", body[:2])[0] if ok else None,
            "rc": ack_rc(body) if ok else None}


def subscribe(r, pid, *filters, qos=1):
    """A SUBSCRIBE on Raw connection `r`, no properties."""
    r.send(packet(0x82, struct.pack(">H", pid) + b"\x00"
                  + b"".join(utf8(f) + bytes([qos]) for f in filters)))


def reason_codes():
    sub = Client(f"rc-sub-{RUN}").connect()
    sub.subscribe(t("rc"), opts(2))
    r = Raw(f"rc-{RUN}")
    r.connack()
    acks = {}

    def publish(name, qos, pid, topic):
        body = utf8(topic) + struct.pack(">H", pid) + b"\x00" + name.encode()
        r.send(packet(0x30 | qos << 1, body))
        acks[name] = pid_rc(*r.read()[::2])

    publish("puback", 1, 1, t("rc"))
    publish("pubrec", 2, 2, t("rc"))
    r.send(packet(0x62, struct.pack(">H", 2)))
    acks["pubcomp"] = pid_rc(*r.read()[::2])
    publish("puback_no_subscriber", 1, 3, t("rc/nobody"))
    OBS["delivered"] = [m["payload"] for m in sub.wait_for(2)]
    # The server's PUBREL, for a QoS 2 message it sends.
    subscribe(r, 4, t("rc/q2"), qos=2)
    r.read()
    sub.publish(t("rc/q2"), "to raw", qos=2)
    kind, flags, body = r.read()
    if kind == 3 and flags & 0x06 == 0x04:
        topic_len = struct.unpack(">H", body[:2])[0]
        pid = body[2 + topic_len:4 + topic_len]
        r.send(packet(0x50, pid))
        acks["pubrel"] = pid_rc(*r.read()[::2])
        r.send(packet(0x70, pid))
    else:
        acks["pubrel"] = {"type": kind, "flags": flags}
    OBS["acks"] = acks
    # UNSUBSCRIBE of a filter never subscribed, next to one that was.
    subscribe(r, 5, t("rc/yes"))
    r.read()
    r.send(packet(0xA2, struct.pack(">H", 6) + b"\x00" + utf8(t("rc/yes")) + utf8(t("rc/never"))))
    OBS["unsuback"] = r.answer(linger=0.2)
    # SUBSCRIBE of a valid filter and an invalid one ('#' not last).
    subscribe(r, 7, t("rc/ok"), "a/#/b")
    OBS["invalid_filter"] = r.answer(linger=0.5)


def disconnect_reasons():
    watch = Client(f"dr-watch-{RUN}").connect()
    watch.subscribe(t("dr/#"))
    for rc in [0x04, 0x00]:
        will = (t(f"dr/will{rc:02x}"), f"will after DISCONNECT 0x{rc:02x}", 1, None)
        Client(f"dr-{rc}-{RUN}", will=will).connect().close(rc=rc)
    watch.wait_for(1)
    OBS["wills"] = [m["payload"] for m in watch.quiet(0.5)]
    # Takeover: the first connection is told why (raw: paho 2.1.0 reads a
    # DISCONNECT's reason code only when properties follow it).
    cid = f"dr-same-{RUN}"
    first = Raw(cid)
    first.connack()
    second = Client(cid).connect()
    OBS["takeover"] = first.answer()
    OBS["takeover"]["second_alive"] = second.alive()
    # Keep-alive 1 s, and then silence.
    k = Raw(f"dr-ka-{RUN}", keepalive=1)
    k.connack()
    start = now()
    OBS["keepalive"] = k.answer(timeout=10)
    OBS["keepalive"]["after"] = round(now() - start, 2)


def connack():
    a = Client("").connect()
    OBS["connack"] = a.connack
    b = Client("").connect()
    OBS["second_assigned"] = b.connack["props"].get("AssignedClientIdentifier")
    # What the capabilities promise, used.
    a.publish(t("cap/r"), "r", qos=1, retain=True)
    b.subscribe(t("cap/r"))
    OBS["retained"] = [[m["payload"], m["retain"]] for m in b.wait_for(1)]
    a.publish(t("cap/r"), "", retain=True)
    OBS["wildcard_suback"] = a.subscribe(t("cap/+/#"), opts(2))
    OBS["subscription_id_suback"] = a.subscribe(t("cap/id"), opts(1), SubscriptionIdentifier=5)
    OBS["shared_suback"] = a.subscribe("$share/cap/" + t("cap/s"), opts(1))
    a.publish(t("cap/q/2"), "qos 2", qos=2)
    OBS["qos2"] = [[m["payload"], m["qos"]] for m in a.wait_for(1)]


def prop_str(ident, value):
    return bytes([ident]) + utf8(value)


def auth():
    method = prop_str(0x15, "SCRAM-SHA-256") + prop_str(0x16, b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
    OBS["answer"] = Raw(f"au-{RUN}", properties=method).answer()


def malformed():
    """CONNECTs with bad properties, and a PUBLISH with one: each must get
    a reason code >= 0x80 (the spec names 0x81 or 0x82) or a close."""
    cases = {
        "duplicate_session_expiry": b"\x11\x00\x00\x00\x0a" * 2,
        "unknown_property": b"\x7f\x00\x01",
        "property_past_packet": b"\x26\x00\x01k\x00\x40v",
        "receive_maximum_0": b"\x21\x00\x00",
    }
    for name, p in cases.items():
        OBS[name] = Raw(f"mf-{name}-{RUN}", properties=p).answer()
    r = Raw(f"mf-pub-{RUN}")
    r.connack()
    dup = b"\x01\x01" * 2  # Payload Format Indicator twice
    r.send(packet(0x32, utf8(t("mf")) + b"\x00\x01" + varint(len(dup)) + dup + b"x"))
    OBS["publish_duplicate_property"] = r.answer()


WIRE = {f.__name__: f for f in [reason_codes, disconnect_reasons, connack, auth, malformed]}
