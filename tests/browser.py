"""The paho-mqtt side of tests/browser.rs (MQTT.js in Chromium): a
publisher sending numbered messages at QoS 1 and at QoS 2 to each of the
page's sessions ("ws" and "wss"), and a collector of what the page reports
back (each message it got, each connection event). Both clients hold
persistent sessions over plain TCP. Usage: browser.py HOST PORT RUN
[RATE]. Prints "listening" once the collector is subscribed (start the
page then), "ready" once both of the page's sessions report their
subscription, publishes RATE messages a second per topic until a line (or
the end) on stdin, waits up to 20 s for the page to report every message,
and prints one JSON object: per session the page's reports (messages per
topic, lost, duplicated, out of order, connects and drop events), and the
paho clients' own disconnects. Exit 0 whatever it counted; the caller
judges."""

import json
import sys
import threading
import time

import paho.mqtt.client as mqtt

HOST = sys.argv[1]
PORT = int(sys.argv[2])
RUN = sys.argv[3]
RATE = float(sys.argv[4]) if len(sys.argv) > 4 else 10.0
NAMES = ["ws", "wss"]
QOS = [1, 2]
WAIT = 20.0


def topic(name, qos):
    return f"browser/{RUN}/in/{name}/q{qos}"


class Page:
    """What one of the page's sessions reported."""

    def __init__(self, name):
        self.got = {topic(name, q): [] for q in QOS}
        self.events = []
        self.subscribed = []


lock = threading.Lock()
pages = {n: Page(n) for n in NAMES}
sent = {topic(n, q): 0 for n in NAMES for q in QOS}
disconnects = {"collector": 0, "publisher": 0}
acked = {"all": 0}


def client(name):
    c = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"browser-{name}-{RUN}",
        clean_session=False,
        protocol=mqtt.MQTTv311,
    )

    def on_disconnect(_c, _u, _f, rc, _p):
        with lock:
            disconnects[name] += 1

    c.on_disconnect = on_disconnect
    return c


def on_report(_c, _u, msg):
    name = msg.topic.rsplit("/", 1)[-1]
    try:
        r = json.loads(msg.payload)
    except ValueError:
        r = {"event": "unreadable report", "detail": repr(msg.payload[:80])}
    with lock:
        page = pages.get(name)
        if page is None:
            return
        if "seq" in r:
            page.got.setdefault(r["topic"], []).append((r["seq"], r["qos"], r["dup"]))
        elif r.get("event") == "subscribed":
            page.subscribed.append(r)
        else:
            page.events.append(r)


def summary():
    out = {"disconnects": disconnects, "sent": sent, "acked": acked, "pages": {}}
    for name, page in pages.items():
        topics = {}
        for t, got in page.got.items():
            seqs = [s for s, _, _ in got]
            n = sent.get(t, 0)
            topics[t] = {
                "sent": n,
                "received": len(seqs),
                "lost": len(set(range(n)) - set(seqs)),
                "duplicated": len(seqs) - len(set(seqs)),
                "out_of_order": sum(1 for a, b in zip(seqs, seqs[1:]) if b <= a),
                "with_dup_flag": sum(1 for _, _, d in got if d),
                "qos": sorted({q for _, q, _ in got}),
            }
        out["pages"][name] = {
            "topics": topics,
            "events": page.events,
            "subscribed": page.subscribed,
        }
    return out


def all_reported():
    with lock:
        return all(
            len(page.got.get(t, [])) >= n
            for page in pages.values()
            for t, n in sent.items()
            if t in page.got
        )


def main():
    collector = client("collector")
    subscribed = threading.Event()
    collector.on_message = on_report
    collector.on_subscribe = lambda *_a: subscribed.set()
    collector.connect(HOST, PORT, keepalive=30)
    collector.loop_start()
    collector.subscribe(f"browser/{RUN}/report/+", qos=1)
    if not subscribed.wait(10):
        print(json.dumps({"error": "the collector got no SUBACK"}), flush=True)
        return
    print("listening", flush=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        with lock:
            if all(pages[n].subscribed for n in NAMES):
                break
        time.sleep(0.05)
    else:
        print(json.dumps({"error": "the page never subscribed", **summary()}), flush=True)
        return
    print("ready", flush=True)
    publisher = client("publisher")

    def on_publish(_c, _u, _mid, _rc, _p):
        # Not paho's lock and ours in two orders: publish() is called
        # without ours held.
        with lock:
            acked["all"] += 1

    publisher.on_publish = on_publish
    publisher.connect(HOST, PORT, keepalive=30)
    publisher.loop_start()
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    while not stop.is_set():
        for name in NAMES:
            for q in QOS:
                t = topic(name, q)
                with lock:
                    n = sent[t]
                    sent[t] += 1
                publisher.publish(t, str(n), qos=q)
        stop.wait(1.0 / RATE)
    deadline = time.time() + WAIT
    while time.time() < deadline and not (all_reported() and acked["all"] >= sum(sent.values())):
        time.sleep(0.05)
    time.sleep(0.5)  # a late duplicate or event shows too
    with lock:
        print(json.dumps(summary()), flush=True)
    publisher.disconnect()
    collector.disconnect()


main()
