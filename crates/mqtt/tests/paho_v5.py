"""paho-mqtt speaking MQTT 5 to the server of crates/mqtt/tests/paho.rs.

Connects (session expiry, receive maximum, topic alias maximum, a user
property, a will with properties), subscribes to two filters with options
and a subscription identifier, publishes at QoS 1 with message expiry,
content type, response topic, correlation data and user properties, takes
two messages, then disconnects with reason code 0x04. Each callback prints
one line of JSON (sorted keys) with the reason codes and properties paho
read: the test compares them with what it sent.
"""

import json
import sys

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

PORT = int(sys.argv[1])
messages = []


def props(p):
    """The properties paho read, by name (bytes as hex)."""
    out = {}
    if p is None:
        return out
    for name in p.names:
        attr = name.replace(" ", "")
        if hasattr(p, attr):
            value = getattr(p, attr)
            out[attr] = value.hex() if isinstance(value, bytes) else value
    return out


def emit(event, **fields):
    print(json.dumps({"event": event, **fields}, sort_keys=True), flush=True)


def on_connect(client, userdata, flags, reason_code, properties):
    emit("connack", reason=reason_code.value,
         session_present=flags.session_present, props=props(properties))
    sub = Properties(PacketTypes.SUBSCRIBE)
    sub.SubscriptionIdentifier = 42
    sub.UserProperty = ("sub", "1")
    client.subscribe([
        ("interop/in", SubscribeOptions(
            qos=1, noLocal=True, retainAsPublished=True,
            retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND)),
        ("interop/denied/#", SubscribeOptions(
            qos=2, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)),
    ], properties=sub)


def on_subscribe(client, userdata, mid, reason_codes, properties):
    emit("suback", codes=[rc.value for rc in reason_codes],
         props=props(properties))
    p = Properties(PacketTypes.PUBLISH)
    p.MessageExpiryInterval = 120
    p.ContentType = "application/json"
    p.ResponseTopic = "interop/reply"
    p.CorrelationData = b"\x01\x02corr"
    p.PayloadFormatIndicator = 1
    p.UserProperty = ("a", "1")
    p.UserProperty = ("b", "2")
    client.publish("interop/out", b'{"n": 1}', qos=1, properties=p)


def on_publish(client, userdata, mid, reason_code, properties):
    emit("puback", reason=reason_code.value, props=props(properties))


def on_message(client, userdata, message):
    emit("message", topic=message.topic, payload=message.payload.decode(),
         qos=message.qos, retain=message.retain,
         props=props(message.properties))
    messages.append(message)
    if len(messages) == 2:
        client.disconnect(
            reasoncode=ReasonCode(PacketTypes.DISCONNECT, identifier=4))


def main():
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                         client_id="paho5", protocol=mqtt.MQTTv5)
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_publish = on_publish
    client.on_message = on_message
    will = Properties(PacketTypes.WILLMESSAGE)
    will.WillDelayInterval = 5
    will.ContentType = "text/plain"
    client.will_set("interop/will", b"gone", qos=1, retain=False,
                    properties=will)
    connect = Properties(PacketTypes.CONNECT)
    connect.SessionExpiryInterval = 300
    connect.ReceiveMaximum = 10
    connect.TopicAliasMaximum = 5
    connect.UserProperty = ("client", "paho")
    client.connect("127.0.0.1", PORT, keepalive=30, clean_start=True,
                   properties=connect)
    client.loop_forever()
    emit("done", messages=len(messages))


main()
