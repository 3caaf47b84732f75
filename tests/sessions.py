"""Persistent-session clients of paho-mqtt (a client this project did not
write) held through switches: two subscribers with clean_session=False
(one subscribed at QoS 1, one at QoS 2) and two publishers (QoS 1 and
QoS 2) on one topic. Usage: sessions.py HOST PORT [RATE [CAFILE]]; with
CAFILE every client connects over TLS, verifying the broker against it
(subscriber 1 and publisher 1 on TLS 1.2, the others on TLS 1.3), and
the report names the version each negotiated. With PAHO_TRANSPORT=
websockets in the environment they speak MQTT over WebSocket (path
/mqtt; over TLS with CAFILE). Prints "ready"
once both subscriptions are acknowledged, publishes RATE messages a second
per publisher until a line (or the end) on stdin, waits for every
acknowledged message, and prints one JSON object of what it counted:
connects and disconnect callbacks per client, messages sent, acked,
delivered, lost, duplicated (with and without DUP, at QoS 2), and out of
per-publisher order. Exit 0 whatever it counted; the caller judges."""

import json
import os
import ssl
import sys
import threading
import time
import uuid

import paho.mqtt.client as mqtt

HOST = sys.argv[1]
PORT = int(sys.argv[2])
RATE = float(sys.argv[3]) if len(sys.argv) > 3 else 50.0
CAFILE = sys.argv[4] if len(sys.argv) > 4 else None
RUN = uuid.uuid4().hex[:8]
TOPIC = f"paho-sessions/{RUN}"
WAIT = 20.0
TRANSPORT = os.environ.get("PAHO_TRANSPORT", "tcp")


class Peer:
    """One paho client with a persistent session, counting its callbacks."""

    def __init__(self, name, tls12=False):
        self.name = name
        self.c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"{name}-{RUN}",
            clean_session=False,
            protocol=mqtt.MQTTv311,
            transport=TRANSPORT,
        )
        if TRANSPORT == "websockets":
            self.c.ws_set_options(path="/mqtt")
        if CAFILE:
            ctx = ssl.create_default_context(cafile=CAFILE)
            if tls12:
                ctx.maximum_version = ssl.TLSVersion.TLSv1_2
            else:
                ctx.minimum_version = ssl.TLSVersion.TLSv1_3
            self.c.tls_set_context(ctx)
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
        self.c.connect(HOST, PORT, keepalive=30)
        self.c.loop_start()
        if not self.connected.wait(WAIT):
            sys.exit(f"{self.name}: no CONNACK within {WAIT} s")

    def tls_version(self):
        sock = self.c.socket()
        # Over WebSocket paho wraps the TLS socket: ask the one inside.
        sock = getattr(sock, "_socket", sock)
        version = getattr(sock, "version", None)
        return version() if CAFILE and callable(version) else None

    def stop(self):
        self.c.disconnect()
        self.c.loop_stop()


class Subscriber(Peer):
    def __init__(self, name, qos, tls12=False):
        super().__init__(name, tls12)
        self.qos = qos
        self.got = []  # (publisher, seq, dup)
        self.subscribed = threading.Event()
        self.c.on_message = self._on_message
        self.c.on_subscribe = lambda *a: self.subscribed.set()

    def _on_message(self, _c, _u, msg):
        who, seq = msg.payload.decode().split(":")
        with self.lock:
            self.got.append((who, int(seq), bool(msg.dup)))

    def subscribe(self):
        self.c.subscribe(TOPIC, self.qos)
        if not self.subscribed.wait(WAIT):
            sys.exit(f"{self.name}: no SUBACK within {WAIT} s")


class Publisher(Peer):
    def __init__(self, name, qos, tls12=False):
        super().__init__(name, tls12)
        self.qos = qos
        self.infos = []

    def publish(self, seq):
        self.infos.append(self.c.publish(TOPIC, f"{self.name}:{seq}", self.qos))

    def acked(self):
        return [i for i, info in enumerate(self.infos) if info.is_published()]


def main():
    subs = [Subscriber("sub-q1", 1, tls12=True), Subscriber("sub-q2", 2)]
    pubs = [Publisher("pub-q1", 1, tls12=True), Publisher("pub-q2", 2)]
    for p in subs + pubs:
        p.start()
    for s in subs:
        s.subscribe()
    print("ready", flush=True)
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    seq = 0
    began = time.monotonic()
    while not stop.is_set():
        for p in pubs:
            p.publish(seq)
        seq += 1
        pause = began + seq / RATE - time.monotonic()
        if pause > 0:
            stop.wait(pause)
    # Every message sent is acked in the end (a session keeps it).
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline and any(len(p.acked()) < seq for p in pubs):
        time.sleep(0.05)
    acked = {p.name: set(p.acked()) for p in pubs}

    def complete():
        for s in subs:
            with s.lock:
                have = {(w, n) for w, n, _ in s.got}
            for p in pubs:
                if any((p.name, n) not in have for n in acked[p.name]):
                    return False
        return True

    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline and not complete():
        time.sleep(0.05)
    report = {"sent": seq * len(pubs), "acked": sum(len(a) for a in acked.values())}
    for k in ["received", "lost", "dup", "dup_without_flag", "qos2_dup", "out_of_order"]:
        report[k] = 0
    for s in subs:
        with s.lock:
            got = list(s.got)
        for p in pubs:
            mine = [(n, dup) for w, n, dup in got if w == p.name]
            seen = set()
            last = -1
            for n, dup in mine:
                report["received"] += 1
                if n in seen:
                    report["dup"] += 1
                    report["dup_without_flag"] += 0 if dup else 1
                    report["qos2_dup"] += 1 if min(s.qos, p.qos) == 2 else 0
                    continue
                seen.add(n)
                if n < last:
                    report["out_of_order"] += 1
                last = max(last, n)
            report["lost"] += len(acked[p.name] - seen)
    report["connects"] = {p.name: p.connects for p in subs + pubs}
    report["disconnects"] = {p.name: p.disconnects for p in subs + pubs}
    report["tls"] = {p.name: p.tls_version() for p in subs + pubs}
    for p in subs + pubs:
        p.stop()
    print(json.dumps(report), flush=True)


main()
