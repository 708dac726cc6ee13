#!/usr/bin/python3
"""An MQTT 5 subscriber for tests/slow_consumers.rs (paho-mqtt 1.6.1).

  /usr/bin/python3 tests/mqtt/frozen_v5.py PORT TOKEN TOPIC

Connects (clean start), subscribes TOPIC at QoS 1, prints "ready" once the
SUBACK came, then reads until the server disconnects it. The test freezes
this process (SIGSTOP) after "ready" and thaws it (SIGCONT) later. Prints
"message N" per PUBLISH (N = the payload's leading number) and, when the
server ends the connection, "disconnect RC" with the MQTT 5 reason code of
its DISCONNECT (or of the local close), then exits. A watchdog ends it after
60 s.
"""
import sys
import threading

import paho.mqtt.client as mqtt

port, token, topic = int(sys.argv[1]), sys.argv[2], sys.argv[3]
done = threading.Event()


def on_connect(client, userdata, flags, rc, properties=None):
    client.subscribe(topic, 1)


def on_subscribe(client, userdata, mid, granted, properties=None):
    print("ready", flush=True)


def on_message(client, userdata, msg):
    print("message", msg.payload.split(b"-", 1)[0].decode(), flush=True)


def on_disconnect(client, userdata, rc, properties=None):
    print("disconnect", int(getattr(rc, "value", rc)), flush=True)
    done.set()


c = mqtt.Client(client_id="frozen-v5", protocol=mqtt.MQTTv5)
c.username_pw_set("u", token)
c.on_connect, c.on_subscribe = on_connect, on_subscribe
c.on_message, c.on_disconnect = on_message, on_disconnect
c.connect("127.0.0.1", port, keepalive=60, clean_start=True)
c.loop_start()
done.wait(60)
c.loop_stop()
