#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: 2026 emqx-relup developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Ansible module mqtt_probe: an MQTT 3.1.1 client that connects,
subscribes and receives its own QoS 1 message (a health gate)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: mqtt_probe
short_description: Prove an MQTT broker serves, by receiving its own message
version_added: 1.0.0
description:
  - Connects to an MQTT broker (MQTT 3.1.1, clean session), subscribes to a
    topic of its own at QoS 1, publishes one message to it at QoS 1 and waits
    until the broker delivers it back; then disconnects.
  - Fails naming the step that did not happen within O(timeout).
  - Reads only; it never changes the host (C(changed) is always false).
author:
  - emqx-relup developers (@emqx-relup)
options:
  host:
    description: The broker's address.
    type: str
    default: 127.0.0.1
  port:
    description: Its MQTT port.
    type: int
    default: 1883
  timeout:
    description: Seconds the whole probe may take.
    type: float
    default: 5
  topic:
    description: The topic to use; by default one of its own, C(emqx-relup/probe/<client id>).
    type: str
attributes:
  check_mode:
    support: full
    description: It changes nothing, so it runs in check mode too.
  diff_mode:
    support: none
seealso:
  - module: emqx.relup.emqx_release
"""

EXAMPLES = r"""
- name: The broker takes a connection and routes a message
  emqx.relup.mqtt_probe:
    port: 1883
"""

RETURN = r"""
client_id:
  description: The client id the probe used.
  returned: success
  type: str
  sample: emqx-relup-probe-1a2b3c4d
round_trip_ms:
  description: From CONNECT to receiving its own message, in milliseconds.
  returned: success
  type: float
  sample: 1.8
"""

import binascii
import os
import socket
import struct
import time

from ansible.module_utils.basic import AnsibleModule


class ProbeError(Exception):
    """A step of the probe that did not happen."""


def utf8(text):
    data = text.encode("utf-8")
    return struct.pack("!H", len(data)) + data


def packet(kind, body):
    """A control packet: fixed header (type and flags), remaining length, body."""
    length = len(body)
    encoded = bytearray()
    while True:
        byte = length % 128
        length //= 128
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            break
    return bytes([kind]) + bytes(encoded) + body


class Conn(object):
    """One connection, reading whole packets before a deadline."""

    def __init__(self, host, port, deadline):
        self.deadline = deadline
        self.sock = socket.create_connection((host, port), timeout=self.left("connect"))
        self.buf = b""

    def left(self, step):
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise ProbeError("timed out at %s" % step)
        return remaining

    def read(self, n, step):
        while len(self.buf) < n:
            self.sock.settimeout(self.left(step))
            try:
                chunk = self.sock.recv(4096)
            except socket.timeout:
                raise ProbeError("timed out at %s" % step)
            if not chunk:
                raise ProbeError("the broker closed the connection at %s" % step)
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def packet(self, step):
        """The next packet: (first byte, body)."""
        first = self.read(1, step)[0]
        length, shift = 0, 0
        while True:
            byte = self.read(1, step)[0]
            length += (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        return first, self.read(length, step)

    def expect(self, kind, step):
        """Reads packets until one of `kind` (the high nibble) arrives."""
        while True:
            first, body = self.packet(step)
            if first >> 4 == kind:
                return first, body

    def send(self, data):
        self.sock.settimeout(self.left("sending"))
        self.sock.sendall(data)


def probe(host, port, topic, client_id, timeout):
    started = time.monotonic()
    conn = Conn(host, port, started + timeout)
    try:
        conn.send(packet(0x10, utf8("MQTT") + b"\x04\x02" + struct.pack("!H", 30) + utf8(client_id)))
        _, body = conn.expect(2, "CONNACK")
        if len(body) < 2 or body[1] != 0:
            raise ProbeError("the broker refused the connection (CONNACK code %s)" % (body[1:2] or b"?")[0])
        conn.send(packet(0x82, struct.pack("!H", 1) + utf8(topic) + b"\x01"))
        _, body = conn.expect(9, "SUBACK")
        if body[-1:] == b"\x80":
            raise ProbeError("the broker refused the subscription to %s" % topic)
        payload = client_id.encode("utf-8")
        conn.send(packet(0x32, utf8(topic) + struct.pack("!H", 2) + payload))
        while True:
            first, body = conn.expect(3, "receiving its own message")
            qos = (first >> 1) & 3
            name_len = struct.unpack("!H", body[:2])[0]
            rest = body[2 + name_len:]
            if qos:
                packet_id, rest = rest[:2], rest[2:]
                conn.send(packet(0x40, packet_id))
            if rest == payload:
                break
        conn.send(packet(0xE0, b""))
    finally:
        conn.sock.close()
    return (time.monotonic() - started) * 1000.0


def main():
    module = AnsibleModule(
        argument_spec=dict(
            host=dict(type="str", default="127.0.0.1"),
            port=dict(type="int", default=1883),
            timeout=dict(type="float", default=5.0),
            topic=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    client_id = "emqx-relup-probe-" + binascii.hexlify(os.urandom(4)).decode("ascii")
    topic = p["topic"] or "emqx-relup/probe/" + client_id
    try:
        ms = probe(p["host"], p["port"], topic, client_id, p["timeout"])
    except (ProbeError, OSError) as e:
        module.fail_json(msg="MQTT probe of %s:%s: %s" % (p["host"], p["port"], e), client_id=client_id)
    module.exit_json(changed=False, client_id=client_id, round_trip_ms=round(ms, 2))


if __name__ == "__main__":
    main()
