"""MQTT 5 clients of paho-mqtt (a client this project did not write) held
through switches. Each client has a session that outlives its connection
(Session Expiry Interval 300, Clean Start 0), takes at most 2 QoS 1/2
deliveries at once (Receive Maximum 2; acks are held back a few
milliseconds so that a third in flight would be seen) and up to 8 topic
aliases from the broker. Two subscribers (QoS 1 and QoS 2, subscription
identifier 11) and two members of a shared subscription
($share/grp/...); three publishers (QoS 1 and QoS 2 to the subscribers,
QoS 1 to the group), each naming its topic once with topic alias 1 and by
the alias alone after that, each message carrying user properties, a
content type and a message expiry of an hour.

Usage: sessions5.py HOST PORT [RATE]. Prints "ready" once every
subscription is acknowledged, publishes RATE messages a second per
publisher until a line (or the end) on stdin, waits for every
acknowledged message, and prints one JSON object of what it counted:
connects and disconnects per client, messages sent, acked, received,
lost, duplicated, out of order, with damaged properties, with a wrong
subscription identifier, with an alias never set, and deliveries past
the receive maximum. Exit 0 whatever it counted; the caller judges."""

import json
import sys
import threading
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

HOST = sys.argv[1]
PORT = int(sys.argv[2])
RATE = float(sys.argv[3]) if len(sys.argv) > 3 else 50.0
RUN = uuid.uuid4().hex[:8]
TOPIC = f"paho5/{RUN}"
SHARED = f"paho5-shared/{RUN}"
WAIT = 20.0
RECEIVE_MAX = 2
SUB_ID = 11
EXPIRY = 3600


class Peer:
    """One paho MQTT 5 client with a lasting session, counting callbacks."""

    def __init__(self, name):
        self.name = name
        self.c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"{name}-{RUN}",
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        self.lock = threading.Lock()
        self.connects = 0
        self.disconnects = 0
        self.connected = threading.Event()
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect

    def _on_connect(self, _c, _u, _flags, _rc, _props):
        with self.lock:
            self.connects += 1
        self.connected.set()

    def _on_disconnect(self, _c, _u, _flags, _rc, _props):
        with self.lock:
            self.disconnects += 1

    def start(self):
        p = Properties(PacketTypes.CONNECT)
        p.SessionExpiryInterval = 300
        p.ReceiveMaximum = RECEIVE_MAX
        p.TopicAliasMaximum = 8
        self.c.connect(HOST, PORT, keepalive=30, clean_start=False, properties=p)
        self.c.loop_start()
        if not self.connected.wait(WAIT):
            sys.exit(f"{self.name}: no CONNACK within {WAIT} s")

    def stop(self):
        self.c.disconnect()
        self.c.loop_stop()


class Subscriber(Peer):
    """Receives, resolving the broker's topic aliases, checking each
    message's properties, holding each ack back a little."""

    def __init__(self, name, qos, filt, topic, sub_id=None):
        super().__init__(name)
        self.qos, self.filt, self.topic, self.sub_id = qos, filt, topic, sub_id
        self.got = []  # (publisher, seq)
        self.aliases = {}  # alias: every topic it was set to
        self.named = []  # each message's topic, or its alias
        self.outstanding = 0
        self.errors = {"damaged": 0, "sub_id": 0, "receive_max": 0}
        self.subscribed = threading.Event()
        self.c.on_message = self._on_message
        self.c.on_subscribe = lambda *a: self.subscribed.set()

    def _topic(self, msg):
        """The topic, or for a message named by its alias alone the alias
        (resolved at the end: paho hands QoS 2 messages over at PUBREL,
        so one that set an alias can come after one that uses it)."""
        alias = getattr(msg.properties, "TopicAlias", None)
        if alias is not None and msg.topic:
            self.aliases.setdefault(alias, set()).add(msg.topic)
        if alias is not None and not msg.topic:
            return alias
        return msg.topic

    def alias_errors(self):
        """Messages whose topic was wrong, or whose alias was never set to
        exactly the topic."""
        with self.lock:
            return sum(
                0 if t == self.topic or self.aliases.get(t) == {self.topic} else 1
                for t in self.named
            )

    def _check(self, msg, who, seq):
        props = msg.properties
        users = dict(getattr(props, "UserProperty", []) or [])
        expiry = getattr(props, "MessageExpiryInterval", None)
        intact = (
            users == {"pub": who, "seq": str(seq)}
            and getattr(props, "ContentType", None) == "text/x-seq"
            and expiry is not None
            and 0 < expiry <= EXPIRY
        )
        ids = getattr(props, "SubscriptionIdentifier", None)
        want_ids = [self.sub_id] if self.sub_id else None
        return intact, (ids or None) == want_ids

    def _on_message(self, _c, _u, msg):
        who, seq = msg.payload.decode().split(":")
        with self.lock:
            topic = self._topic(msg)
            intact, ids_ok = self._check(msg, who, int(seq))
            self.named.append(topic)
            self.errors["damaged"] += 0 if intact else 1
            self.errors["sub_id"] += 0 if ids_ok else 1
            if msg.qos > 0:
                if self.outstanding >= RECEIVE_MAX:
                    self.errors["receive_max"] += 1
                self.outstanding += 1
            self.got.append((who, int(seq)))
        if msg.qos > 0:
            threading.Timer(0.005, self._ack, (msg.mid, msg.qos)).start()

    def _ack(self, mid, qos):
        with self.lock:
            self.outstanding -= 1
        self.c.ack(mid, qos)

    def subscribe(self):
        p = None
        if self.sub_id:
            p = Properties(PacketTypes.SUBSCRIBE)
            p.SubscriptionIdentifier = self.sub_id
        self.c.subscribe(self.filt, options=SubscribeOptions(qos=self.qos), properties=p)
        if not self.subscribed.wait(WAIT):
            sys.exit(f"{self.name}: no SUBACK within {WAIT} s")


class Publisher(Peer):
    """Publishes to its topic by topic alias 1 after the first message."""

    def __init__(self, name, qos, topic):
        super().__init__(name)
        self.qos, self.topic = qos, topic
        self.infos = []

    def publish(self, seq):
        p = Properties(PacketTypes.PUBLISH)
        p.UserProperty = [("pub", self.name), ("seq", str(seq))]
        p.ContentType = "text/x-seq"
        p.MessageExpiryInterval = EXPIRY
        p.TopicAlias = 1
        topic = self.topic if not self.infos else ""
        info = self.c.publish(topic, f"{self.name}:{seq}", self.qos, properties=p)
        self.infos.append(info)

    def acked(self):
        done = set()
        for i, info in enumerate(self.infos):
            try:
                if info.is_published():
                    done.add(i)
            except RuntimeError:  # not sent: the client was disconnected
                pass
        return done


def count(report, got, pub, acked):
    """Adds what one receiver (or a whole group) got of `pub` to `report`."""
    mine = [n for w, n in got if w == pub]
    seen, last = set(), -1
    for n in mine:
        report["received"] += 1
        if n in seen:
            report["dup"] += 1
            continue
        seen.add(n)
        report["out_of_order"] += 1 if n < last else 0
        last = max(last, n)
    report["lost"] += len(acked - seen)


def publish_until_stopped(pubs):
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    seq, began = 0, time.monotonic()
    while not stop.is_set():
        for p in pubs:
            p.publish(seq)
        seq += 1
        pause = began + seq / RATE - time.monotonic()
        if pause > 0:
            stop.wait(pause)
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline and any(len(p.acked()) < seq for p in pubs):
        time.sleep(0.05)
    return seq


def main():
    subs = [
        Subscriber("sub5-q1", 1, TOPIC, TOPIC, SUB_ID),
        Subscriber("sub5-q2", 2, TOPIC, TOPIC, SUB_ID),
    ]
    group = [Subscriber(f"shared5-{i}", 1, f"$share/grp/{SHARED}", SHARED) for i in (1, 2)]
    pubs = [Publisher("pub5-q1", 1, TOPIC), Publisher("pub5-q2", 2, TOPIC)]
    shared_pub = Publisher("pub5-shared", 1, SHARED)
    everyone = subs + group + pubs + [shared_pub]
    for p in everyone:
        p.start()
    for s in subs + group:
        s.subscribe()
    print("ready", flush=True)
    seq = publish_until_stopped(pubs + [shared_pub])
    acked = {p.name: p.acked() for p in pubs + [shared_pub]}
    time.sleep(1.0)
    for _ in range(int(WAIT * 20)):
        with_all = sum(len(s.got) for s in subs) >= 2 * sum(len(acked[p.name]) for p in pubs)
        in_group = sum(len(s.got) for s in group) >= len(acked[shared_pub.name])
        if with_all and in_group:
            break
        time.sleep(0.05)
    report = {"sent": seq * 3, "acked": sum(len(a) for a in acked.values())}
    for k in ["received", "lost", "dup", "out_of_order"]:
        report[k] = 0
    for s in subs:
        with s.lock:
            got = list(s.got)
        for p in pubs:
            count(report, got, p.name, acked[p.name])
    group_got = []
    for s in group:
        with s.lock:
            group_got += s.got
    group_got.sort(key=lambda x: x[1])
    count(report, group_got, shared_pub.name, acked[shared_pub.name])
    report["group_split"] = {s.name: len(s.got) for s in group}
    for k in ["damaged", "sub_id", "receive_max"]:
        report[k] = sum(s.errors[k] for s in subs + group)
    report["alias"] = sum(s.alias_errors() for s in subs + group)
    report["by_alias"] = sum(
        sum(1 for t in s.named if isinstance(t, int)) for s in subs + group
    )
    report["connects"] = {p.name: p.connects for p in everyone}
    report["disconnects"] = {p.name: p.disconnects for p in everyone}
    for p in everyone:
        p.stop()
    print(json.dumps(report), flush=True)


main()
