"""What the MQTT 5 scenarios of tests/mqtt5.py share: a paho-mqtt client
(MQTT 5 or 3.1.1, callback API 2) that records everything it is told, and
a few hand-built MQTT 5 packets on a raw socket for the wire details paho
hides: the reason codes of PUBREC and PUBREL, a server's DISCONNECT
(paho 2.1.0 reads its reason code only when properties follow it, and
reports 0 otherwise), a client that sends nothing, filters and
properties paho refuses to send.

Nothing here judges: a scenario collects observations, tests/mqtt5.rs
asserts on them. Only what stops a scenario from observing anything (no
CONNACK, a connection refused) raises Stop."""

import socket
import struct
import sys
import threading
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

HOST = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 1883
WAIT = 3.0
RUN = uuid.uuid4().hex[:8]
START = time.monotonic()
# What the running scenario observed: printed as JSON at its end.
OBS = {}


class Stop(Exception):
    """The scenario cannot go on (no CONNACK, no SUBACK, refused)."""


def now():
    """Seconds since the scenario started."""
    return round(time.monotonic() - START, 3)


def t(name):
    """A topic of this run only."""
    return f"m5/{RUN}/{name}"


def props(ptype, **values):
    """paho Properties of packet type `ptype` (a PacketTypes member)."""
    p = Properties(ptype)
    for k, v in values.items():
        setattr(p, k, v)
    return p


def opts(qos=1, **kw):
    """SubscribeOptions."""
    return SubscribeOptions(qos=qos, **kw)


def props_json(p):
    """Every property paho decoded, bytes as hex, tuples as lists."""
    if p is None:
        return {}
    out = {}
    for name in p.names:
        key = name.replace(" ", "")
        if hasattr(p, key):
            v = getattr(p, key)
            if isinstance(v, bytes):
                v = v.hex()
            elif isinstance(v, list):
                v = [list(x) if isinstance(x, tuple) else x for x in v]
            out[key] = v
    return out


def rc_of(rc):
    return rc.value if hasattr(rc, "value") else int(rc)


class Client:
    """A paho client on its own loop thread (no automatic reconnect, unlike
    loop_start), its CONNACK, messages, SUBACKs and disconnects recorded
    ("rc" of a disconnect as paho reports it: see above)."""

    def __init__(self, cid, v5=True, manual_ack=False, will=None):
        self.v5 = v5
        kw = {"protocol": mqtt.MQTTv5 if v5 else mqtt.MQTTv311}
        if not v5:
            kw["clean_session"] = True
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid,
                             manual_ack=manual_ack, **kw)
        if will:
            topic, payload, qos, wprops = will
            self.c.will_set(topic, payload, qos, False, properties=wprops)
        self.lock = threading.Lock()
        self.messages = []
        self.connack = None
        self.disconnects = []
        self.acks = {}
        self.stop = threading.Event()
        self.thread = None
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.c.on_disconnect = self._on_disconnect
        self.c.on_subscribe = self._on_ack

    def _on_connect(self, _c, _u, flags, rc, p=None):
        self.connack = {"rc": rc_of(rc), "session_present": bool(flags.session_present),
                        "props": props_json(p)}

    def _on_message(self, _c, _u, m):
        try:
            payload = m.payload.decode()
        except UnicodeDecodeError:
            payload = m.payload.hex()
        if len(payload) > 64:
            payload = f"<{len(payload)} bytes>"
        rec = {"topic": m.topic, "payload": payload,
               "qos": m.qos, "retain": bool(m.retain), "mid": m.mid, "t": now()}
        if self.v5:
            rec["props"] = props_json(m.properties)
        with self.lock:
            self.messages.append(rec)

    def _on_disconnect(self, _c, _u, flags, rc, p=None):
        self.disconnects.append({"rc": rc_of(rc), "props": props_json(p), "t": now(),
                                 "packet": bool(flags.is_disconnect_packet_from_server)})

    def _on_ack(self, _c, _u, mid, rcs, _p=None):
        self.acks[mid] = [rc_of(r) for r in rcs]

    def _loop(self):
        while not self.stop.is_set():
            if self.c.loop(timeout=0.02) != mqtt.MQTT_ERR_SUCCESS:
                return

    def connect(self, clean_start=True, keepalive=60, **connect_props):
        """Connects with CONNECT properties `connect_props`; waits for the
        CONNACK (a Stop unless it is a success)."""
        kw = {}
        if self.v5:
            kw["clean_start"] = clean_start
            if connect_props:
                kw["properties"] = props(PacketTypes.CONNECT, **connect_props)
        try:
            self.c.connect(HOST, PORT, keepalive=keepalive, **kw)
        except OSError as e:
            raise Stop(f"connect: {e}")
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()
        deadline = time.time() + WAIT
        while self.connack is None and time.time() < deadline and self.thread.is_alive():
            time.sleep(0.005)
        if self.connack is None or self.connack["rc"] != 0:
            raise Stop(f"CONNACK {self.connack}, disconnects {self.disconnects}")
        return self

    def _wait_ack(self, mid, what):
        deadline = time.time() + WAIT
        while mid not in self.acks:
            if time.time() > deadline:
                raise Stop(f"no {what}")
            time.sleep(0.005)
        return self.acks[mid]

    def subscribe(self, topic, options=None, **sub_props):
        """One SUBSCRIBE (options: a QoS or SubscribeOptions); the SUBACK's
        reason codes."""
        options = opts(1) if options is None else options
        p = props(PacketTypes.SUBSCRIBE, **sub_props) if sub_props else None
        if self.v5:
            _, mid = self.c.subscribe(topic, options=options, properties=p)
        else:
            _, mid = self.c.subscribe(topic, qos=options)
        return self._wait_ack(mid, f"SUBACK for {topic}")

    def publish(self, topic, payload, qos=1, retain=False, **pub_props):
        """Publishes; waits for the acknowledgement at QoS 1 and 2."""
        p = props(PacketTypes.PUBLISH, **pub_props) if pub_props else None
        info = self.c.publish(topic, payload, qos, retain, properties=p)
        if qos:
            info.wait_for_publish(WAIT)
            if not info.is_published():
                raise Stop(f"PUBLISH {topic} QoS {qos} not acknowledged")

    def got(self):
        with self.lock:
            return list(self.messages)

    def wait_for(self, n, timeout=WAIT):
        """The messages once there are `n` (or at the timeout)."""
        deadline = time.time() + timeout
        while time.time() < deadline and len(self.messages) < n:
            time.sleep(0.005)
        return self.got()

    def quiet(self, secs=0.3):
        """The messages after `secs` more."""
        time.sleep(secs)
        return self.got()

    def payloads(self):
        return [m["payload"] for m in self.got()]

    def ack(self, mid, qos=1):
        self.c.ack(mid, qos)

    def close(self, rc=None, **disconnect_props):
        """DISCONNECT (with reason code `rc` and properties), then stop."""
        reason = ReasonCode(PacketTypes.DISCONNECT, identifier=rc) if rc is not None else None
        p = props(PacketTypes.DISCONNECT, **disconnect_props) if disconnect_props else None
        if self.v5:
            self.c.disconnect(reasoncode=reason, properties=p)
        else:
            self.c.disconnect()
        self.thread.join(WAIT)
        self.stop.set()
        return self

    def kill(self):
        """Closes the socket without DISCONNECT, as a crash would."""
        self.stop.set()
        self.thread.join(WAIT)
        sock = self.c.socket()
        if sock is not None:
            sock.close()

    def alive(self):
        return self.thread.is_alive()


# Hand-built MQTT 5 packets.

def varint(n):
    out = b""
    while True:
        b = n % 128
        n //= 128
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def utf8(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">H", len(b)) + b


def packet(first, body):
    return bytes([first]) + varint(len(body)) + body


class Raw:
    """One MQTT 5 connection on a plain socket."""

    def __init__(self, cid, keepalive=60, clean_start=True, properties=b""):
        try:
            self.s = socket.create_connection((HOST, PORT), timeout=WAIT)
        except OSError as e:
            raise Stop(f"connect: {e}")
        flags = 0x02 if clean_start else 0
        var = b"\x00\x04MQTT\x05" + bytes([flags]) + struct.pack(">H", keepalive)
        self.send(packet(0x10, var + varint(len(properties)) + properties + utf8(cid)))

    def send(self, data):
        self.s.sendall(data)

    def _exact(self, n):
        out = b""
        while len(out) < n:
            chunk = self.s.recv(n - len(out))
            if not chunk:
                raise EOFError
            out += chunk
        return out

    def read(self, timeout=WAIT):
        """(packet type, flags, body); ("closed", ...) or ("timeout", ...)."""
        self.s.settimeout(timeout)
        try:
            first = self._exact(1)[0]
            n, mult = 0, 1
            while True:
                b = self._exact(1)[0]
                n += (b & 0x7F) * mult
                mult *= 128
                if not b & 0x80:
                    break
            return first >> 4, first & 0x0F, self._exact(n)
        except (socket.timeout, TimeoutError):
            return "timeout", 0, b""
        except (EOFError, ConnectionResetError, OSError):
            return "closed", 0, b""

    def connack(self):
        """{"rc", "session_present", "closed_after"} of the CONNACK."""
        kind, _, body = self.read()
        if kind != 2:
            raise Stop(f"no CONNACK: {kind} {body!r}")
        return {"rc": body[1], "session_present": bool(body[0] & 1)}

    def closed(self, timeout=WAIT):
        """Whether the server closes the connection within `timeout`
        (reading and discarding anything before)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            kind, _, _ = self.read(max(deadline - time.time(), 0.01))
            if kind == "closed":
                return True
            if kind == "timeout":
                return False
        return False

    def answer(self, timeout=WAIT, linger=1.0):
        """What the server does next, as JSON: {"type": "DISCONNECT", "rc"},
        {"type": "CONNACK", "rc", "session_present"}, {"type": "SUBACK" or
        "UNSUBACK", "codes"}, another packet's type, or {"type": "closed"}
        / {"type": "timeout"}; with "closed_after": whether the connection
        was closed within `linger` seconds after it."""
        kind, _, body = self.read(timeout)
        if kind == 14:
            out = {"type": "DISCONNECT", "rc": body[0] if body else 0}
        elif kind == 2:
            out = {"type": "CONNACK", "rc": body[1], "session_present": bool(body[0] & 1)}
        elif kind in (9, 11):
            n, i = read_varint(body, 2)
            out = {"type": "SUBACK" if kind == 9 else "UNSUBACK", "codes": list(body[i + n:])}
        else:
            out = {"type": kind if isinstance(kind, str) else f"packet {kind}"}
        out["closed_after"] = True if kind == "closed" else self.closed(linger)
        return out

    def close(self):
        self.s.close()


def read_varint(body, i):
    """The Variable Byte Integer at body[i], and the index after it."""
    n, mult = 0, 1
    while True:
        b = body[i]
        i += 1
        n += (b & 0x7F) * mult
        mult *= 128
        if not b & 0x80:
            return n, i


def ack_rc(body):
    """The reason code of a PUBACK/PUBREC/PUBREL/PUBCOMP body (0 when
    omitted, MQTT-3.4.2.1)."""
    return body[2] if len(body) > 2 else 0
