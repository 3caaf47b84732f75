"""MQTT 5 behaviour of a broker as clients this project did not write see
it: paho-mqtt (MQTTv5, callback API 2), and hand-built packets on a raw
socket where paho hides the wire (tests/mqtt5_lib.py).

Usage: mqtt5.py HOST PORT SCENARIO. Prints one JSON object: what each
client observed (topics, payloads, properties, reason codes, session
present, timings in seconds since the scenario started). It judges
nothing: tests/mqtt5.rs runs each scenario against Debian's mosquitto and
the reference broker and asserts the same things on both. Exit 1 with
{"error": ...} when a scenario cannot observe at all (no CONNACK...)."""

import json
import struct
import sys
import time

from mqtt5_lib import (OBS, RUN, WAIT, Client, PacketTypes, Raw, Stop, now, opts, packet, props, t,
                       utf8, varint)
from mqtt5_wire import WIRE


def session_expiry():
    cid = f"se-{RUN}"
    pub = Client(f"se-pub-{RUN}").connect()
    a = Client(cid).connect(clean_start=True, SessionExpiryInterval=60)
    OBS["new"] = a.connack
    a.subscribe(t("se"))
    a.close()
    b = Client(cid).connect(clean_start=False, SessionExpiryInterval=60)
    OBS["resumed"] = b.connack
    pub.publish(t("se"), "kept")
    OBS["resumed_got"] = [m["payload"] for m in b.wait_for(1)]
    b.close()
    c = Client(cid).connect(clean_start=True, SessionExpiryInterval=60)
    OBS["clean_start"] = c.connack
    pub.publish(t("se"), "after clean start")
    OBS["clean_start_got"] = [m["payload"] for m in c.quiet(0.3)]
    # DISCONNECT may shorten the interval: 0 ends the session now.
    c.close(SessionExpiryInterval=0)
    d = Client(cid).connect(clean_start=False, SessionExpiryInterval=60)
    OBS["after_disconnect_expiry_0"] = d.connack
    d.close(SessionExpiryInterval=0)
    # No interval (0): the session ends with the connection.
    e = Client(cid).connect(clean_start=True)
    e.close()
    f = Client(cid).connect(clean_start=False)
    OBS["after_expiry_0"] = f.connack
    f.close()
    # 2 s: present 0.5 s after a close, gone 3.5 s after one, with what it queued.
    g = Client(cid).connect(clean_start=True, SessionExpiryInterval=2)
    g.subscribe(t("se2"))
    g.close()
    time.sleep(0.5)
    h = Client(cid).connect(clean_start=False, SessionExpiryInterval=2)
    OBS["within_2s"] = h.connack
    h.close()
    closed = time.monotonic()
    pub.publish(t("se2"), "queued in an expiring session")
    time.sleep(3.5 - (time.monotonic() - closed))
    i = Client(cid).connect(clean_start=False, SessionExpiryInterval=2)
    OBS["after_2s"] = dict(i.connack, offline_secs=round(time.monotonic() - closed, 2))
    OBS["after_2s_got"] = [m["payload"] for m in i.quiet(0.3)]
    i.close()


def message_expiry():
    cid = f"me-{RUN}"
    off = Client(cid).connect(SessionExpiryInterval=60)
    off.subscribe(t("me"))
    off.close()
    live = Client(f"me-live-{RUN}").connect()
    live.subscribe(t("me"))
    pub = Client(f"me-pub-{RUN}").connect()
    sent = time.monotonic()
    pub.publish(t("me"), "short", MessageExpiryInterval=1)
    pub.publish(t("me"), "long", MessageExpiryInterval=60)
    pub.publish(t("me"), "none")
    pub.publish(t("me/r/short"), "short", retain=True, MessageExpiryInterval=1)
    pub.publish(t("me/r/long"), "long", retain=True, MessageExpiryInterval=60)
    OBS["live"] = live.wait_for(3)
    time.sleep(2.2 - (time.monotonic() - sent))
    back = Client(cid).connect(clean_start=False, SessionExpiryInterval=60)
    back.wait_for(2)
    OBS["queued"] = back.quiet(0.3)
    late = Client(f"me-late-{RUN}").connect()
    late.subscribe(t("me/r/+"))
    OBS["retained"] = late.quiet(0.3)
    OBS["waited"] = round(time.monotonic() - sent, 3)
    pub.publish(t("me/r/long"), "", retain=True)


def topic_alias():
    pub = Client(f"ta-pub-{RUN}").connect()
    OBS["server_max"] = pub.connack["props"].get("TopicAliasMaximum", 0)
    sub = Client(f"ta-sub-{RUN}").connect()
    sub.subscribe(t("ta/#"))
    # Client to server: set, use, remap, use.
    pub.publish(t("ta/a"), "1", TopicAlias=1)
    pub.publish("", "2", TopicAlias=1)
    pub.publish(t("ta/b"), "3", TopicAlias=1)
    pub.publish("", "4", TopicAlias=1)
    OBS["inbound"] = [[m["topic"], m["payload"]] for m in sub.wait_for(4)]
    # An alias past the server's maximum (raw: paho 2.1.0 reads a DISCONNECT's
    # reason code only when properties follow it).
    bad = Raw(f"ta-bad-{RUN}")
    bad.connack()
    alias = b"\x23" + struct.pack(">H", OBS["server_max"] + 1)
    bad.send(packet(0x32, utf8(t("ta/c")) + b"\x00\x01" + varint(len(alias)) + alias + b"over"))
    OBS["over_max"] = bad.answer()
    # Server to client: aliases within what each subscriber allows.
    subs = {}
    for name, mx in [("max2", 2), ("max0", 0)]:
        c = Client(f"ta-{name}-{RUN}")
        subs[name] = c.connect(**({"TopicAliasMaximum": mx} if mx else {}))
        c.subscribe(t("tb/#"))
    topics = [t(f"tb/{i}") for i in range(4)]
    for rnd in range(3):
        for tp in topics:
            pub.publish(tp, f"{rnd}")
    for name, c in subs.items():
        aliases, resolved, known = [], [], {}
        for m in c.wait_for(12):
            alias = m["props"].get("TopicAlias")
            aliases.append(alias)
            if alias is not None and m["topic"]:
                known[alias] = m["topic"]
            resolved.append(m["topic"] or known.get(alias, f"<unknown alias {alias}>"))
        OBS[name] = {"aliases": aliases, "topics": resolved, "disconnects": c.disconnects}
    OBS["sent_topics"] = [tp for _ in range(3) for tp in topics]


def receive_maximum():
    cid = f"rm-{RUN}"
    s = Client(cid).connect(SessionExpiryInterval=60)
    s.subscribe(t("rm"))
    s.close()
    pub = Client(f"rm-pub-{RUN}").connect()
    for i in range(10):
        pub.publish(t("rm"), str(i))
    s = Client(cid, manual_ack=True).connect(clean_start=False, SessionExpiryInterval=60,
                                           ReceiveMaximum=2)
    # Each time nothing more comes: how many are unacknowledged; then ack them all.
    seen, windows = 0, []
    deadline = time.time() + 10
    while seen < 10 and time.time() < deadline:
        got = s.quiet(0.2)
        windows.append(len(got) - seen)
        for m in got[seen:]:
            s.ack(m["mid"])
        seen = len(got)
    OBS["unacked_when_stalled"] = windows
    OBS["payloads"] = s.payloads()


def max_packet_size():
    small = Client(f"mps-small-{RUN}").connect(MaximumPacketSize=256)
    small.subscribe(t("mps"))
    big = Client(f"mps-big-{RUN}").connect()
    big.subscribe(t("mps"))
    pub = Client(f"mps-pub-{RUN}").connect()
    pub.publish(t("mps"), "x" * 1000, qos=1)
    pub.publish(t("mps"), "y" * 1000, qos=0)
    pub.publish(t("mps"), "small", qos=1)
    OBS["big"] = big.wait_for(3)
    OBS["small"] = small.quiet(0.3)
    OBS["small_disconnects"] = small.disconnects
    pub.publish(t("mps"), "after", qos=1)
    OBS["small_after"] = [m["payload"] for m in small.wait_for(len(OBS["small"]) + 1)]


def will_delay():
    watch = Client(f"wd-watch-{RUN}").connect()
    watch.subscribe(t("wd/#"))
    will_props = {"WillDelayInterval": 2, "ContentType": "text/plain",
                  "UserProperty": [("k", "v"), ("k", "w")], "PayloadFormatIndicator": 1}
    clients = {}
    for name in ["back", "gone"]:
        will = (t(f"wd/{name}"), f"will of {name}", 1, props(PacketTypes.WILLMESSAGE, **will_props))
        clients[name] = Client(f"wd-{name}-{RUN}", will=will).connect(SessionExpiryInterval=30)
    for c in clients.values():
        c.kill()
    killed = now()
    time.sleep(0.5)
    Client(f"wd-back-{RUN}").connect(clean_start=False, SessionExpiryInterval=30)
    watch.wait_for(1, timeout=4.0)
    OBS["killed_at"] = killed
    OBS["wills"] = watch.quiet(max(0.0, killed + 3.5 - now()))


def subscription_options():
    pub = Client(f"so-pub-{RUN}").connect()
    # No local.
    me = Client(f"so-me-{RUN}").connect()
    me.subscribe(t("nl"), opts(1, noLocal=True))
    other = Client(f"so-other-{RUN}").connect()
    other.subscribe(t("nl"))
    me.publish(t("nl"), "own")
    pub.publish(t("nl"), "from another")
    OBS["no_local_self"] = [m["payload"] for m in me.quiet(0.3)]
    OBS["no_local_other"] = [m["payload"] for m in other.wait_for(2)]
    # Retain as published.
    pub.publish(t("rap"), "retained before", retain=True)
    rap, plain = Client(f"so-rap-{RUN}").connect(), Client(f"so-norap-{RUN}").connect()
    rap.subscribe(t("rap"), opts(1, retainAsPublished=True))
    plain.subscribe(t("rap"), opts(1, retainAsPublished=False))
    rap.wait_for(1)
    plain.wait_for(1)
    pub.publish(t("rap"), "retained live", retain=True)
    pub.publish(t("rap"), "not retained")
    for name, c in [("rap_1", rap), ("rap_0", plain)]:
        OBS[name] = [[m["payload"], m["retain"]] for m in c.wait_for(3)]
    pub.publish(t("rap"), "", retain=True)
    # Retain handling 0, 1, 2, each subscribing twice.
    pub.publish(t("rh"), "kept", retain=True)
    for rh in range(3):
        c = Client(f"so-rh{rh}-{RUN}").connect()
        c.subscribe(t("rh"), opts(1, retainHandling=rh))
        c.quiet(0.2)
        c.subscribe(t("rh"), opts(1, retainHandling=rh))
        OBS[f"rh{rh}"] = [[m["payload"], m["retain"]] for m in c.quiet(0.3)]
    pub.publish(t("rh"), "", retain=True)


def subscription_ids():
    s = Client(f"si-{RUN}").connect()
    plain = Client(f"si-plain-{RUN}").connect()
    OBS["suback"] = s.subscribe(t("si/+"), SubscriptionIdentifier=1)
    s.subscribe(t("si/#"), SubscriptionIdentifier=2)
    plain.subscribe(t("si/#"))
    pub = Client(f"si-pub-{RUN}").connect()
    pub.publish(t("si/x"), "both")
    pub.publish(t("si/a/b"), "deep")
    s.wait_for(3)
    got = s.quiet(0.3)
    OBS["both"] = [ids(m) for m in got if m["payload"] == "both"]
    OBS["deep"] = [ids(m) for m in got if m["payload"] == "deep"]
    OBS["plain"] = [ids(m) for m in plain.wait_for(2)]
    # A new SUBSCRIBE of the same filter replaces its identifier.
    s.subscribe(t("si/+"), SubscriptionIdentifier=3)
    n = len(s.got())
    pub.publish(t("si/y"), "replaced")
    s.wait_for(n + 2)
    OBS["replaced"] = [ids(m) for m in s.quiet(0.3)[n:]]


def ids(message):
    """The subscription identifiers a delivery carries."""
    return message["props"].get("SubscriptionIdentifier", [])


def shared():
    group = "$share/g/" + t("sh")
    members = {"v5a": Client(f"sh-a-{RUN}"), "v5b": Client(f"sh-b-{RUN}"),
               "v311": Client(f"sh-c-{RUN}", v5=False)}
    OBS["suback"] = {}
    for name, c in members.items():
        c.connect()
        OBS["suback"][name] = c.subscribe(group, opts(1) if c.v5 else 1)
    every = Client(f"sh-all-{RUN}").connect()
    every.subscribe(t("sh"))
    pub = Client(f"sh-pub-{RUN}").connect()
    for i in range(30):
        pub.publish(t("sh"), str(i))
    every.wait_for(30)
    deadline = time.time() + WAIT
    while sum(len(c.got()) for c in members.values()) < 30 and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)
    OBS["members"] = {name: c.payloads() for name, c in members.items()}
    OBS["non_shared"] = every.payloads()


def properties():
    sub5, sub3 = Client(f"pr-5-{RUN}").connect(), Client(f"pr-3-{RUN}", v5=False).connect()
    sub5.subscribe(t("pr"), opts(2))
    sub3.subscribe(t("pr"), 2)
    pub = Client(f"pr-pub-{RUN}").connect()
    sent = {"UserProperty": [["a", "1"], ["b", "2"], ["a", "3"]], "ResponseTopic": t("pr/reply"),
            "CorrelationData": b"\x00\x01corr\xff", "ContentType": "application/json",
            "PayloadFormatIndicator": 1}
    for qos in range(3):
        pub.publish(t("pr"), f'{{"qos":{qos}}}', qos=qos,
                    **dict(sent, UserProperty=[tuple(u) for u in sent["UserProperty"]]))
    pub.publish(t("pr"), b"\xff\xfe binary", qos=1, PayloadFormatIndicator=0)
    OBS["sent"] = dict(sent, CorrelationData=sent["CorrelationData"].hex())
    OBS["v5"] = sub5.wait_for(4)
    OBS["v311"] = [[m["payload"], m["qos"]] for m in sub3.wait_for(4)]


def mixed():
    v3, v5 = Client(f"mx-3-{RUN}", v5=False).connect(), Client(f"mx-5-{RUN}").connect()
    v3.subscribe(t("mx/#"), 1)
    v5.subscribe(t("mx/#"))
    v3.publish(t("mx/from3"), "from 3.1.1", qos=1)
    v5.publish(t("mx/from5"), "from 5", qos=1, UserProperty=("k", "v"))
    v5.publish(t("mx/retained"), "retained by 5", qos=1, retain=True)
    late3 = Client(f"mx-3late-{RUN}", v5=False).connect()
    late3.subscribe(t("mx/retained"), 1)
    OBS["v311"] = [[m["topic"], m["payload"]] for m in v3.wait_for(3)]
    OBS["v5"] = [[m["topic"], m["payload"], m["props"]] for m in v5.wait_for(3)]
    OBS["v311_retained"] = [[m["payload"], m["retain"]] for m in late3.wait_for(1)]
    v5.publish(t("mx/retained"), "", retain=True)


SCENARIOS = {f.__name__: f for f in [
    session_expiry, message_expiry, topic_alias, receive_maximum, max_packet_size,
    will_delay, subscription_options, subscription_ids, shared, properties, mixed,
]}
SCENARIOS.update(WIRE)

if __name__ == "__main__":
    name = sys.argv[3]
    try:
        SCENARIOS[name]()
    except Stop as e:
        print(json.dumps({"error": str(e), "observed": OBS}))
        sys.exit(1)
    print(json.dumps(OBS))
