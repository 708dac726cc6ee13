#!/usr/bin/env python3
"""Server topic aliases toward a paho-mqtt 1.6.1 MQTT 5 client (issue #21
item 3): the receiver allows 2 aliases; the client resolves them itself
(paho hands the raw topic and the alias to on_message). Arguments: port,
receiver token, publisher token (mqtt.topics_open on)."""
import sys, time, threading
import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

port, rx_token, tx_token = int(sys.argv[1]), sys.argv[2], sys.argv[3]
topics = ["t/1", "t/2", "t/3"] * 2
got, names, done, subscribed = [], {}, threading.Event(), threading.Event()

def on_message(c, u, m):
    alias = getattr(m.properties, "TopicAlias", None)
    name = m.topic
    if alias is not None:
        if name:
            names[alias] = name
        else:
            name = names.get(alias, "?")
    got.append((m.topic, alias, name, m.payload.decode()))
    if len(got) == len(topics):
        done.set()

rx = mqtt.Client(client_id="alias-rx", protocol=mqtt.MQTTv5)
rx.username_pw_set("x", rx_token)
rx.on_message = on_message
rx.on_subscribe = lambda *a: subscribed.set()
p = Properties(PacketTypes.CONNECT)
p.TopicAliasMaximum = 2
rx.connect("127.0.0.1", port, properties=p)
rx.loop_start()
rx.subscribe([(t, 1) for t in topics[:3]])
assert subscribed.wait(10), "no SUBACK"
tx = mqtt.Client(client_id="alias-tx", protocol=mqtt.MQTTv5)
tx.username_pw_set("x", tx_token)
tx.connect("127.0.0.1", port)
tx.loop_start()
for i, t in enumerate(topics):
    tx.publish(t, f"m{i}", qos=1).wait_for_publish(10)
assert done.wait(20), f"got {got}"
for g in got:
    print(g)
# Each message resolves to the topic it was published to.
assert sorted((name, payload) for _, _, name, payload in got) == sorted(
    (t, f"m{i}") for i, t in enumerate(topics)), got
# Never above the client's maximum; some names were left out.
assert all(a is None or 1 <= a <= 2 for _, a, _, _ in got), got
assert any(topic == "" for topic, _, _, _ in got), got
print("ok")
