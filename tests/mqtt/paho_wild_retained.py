#!/usr/bin/python3
"""One MQTT 5.0 wildcard subscriber with chosen subscription options, for
tests/cluster_topics.rs (retained messages of topics homed on every node,
issue #21/#20).

  /usr/bin/python3 tests/mqtt/paho_wild_retained.py --port P --token T \
      --filter F --rh 0|1|2 --qos 0|1|2 --count N

Subscribes `F` once (a new subscription) with Retain Handling `rh` and
maximum QoS `qos`, takes `count` messages (each within 10 s), then waits
1.5 s for any more, and prints each as `MSG topic payload r<retain>
q<qos> ct:<content type>` (payloads are text), then "wild retained done".
Exit 1 if fewer than `count` came.
"""
import argparse
import queue
import sys
import threading
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.subscribeoptions import SubscribeOptions

WAIT = 10.0
NEGATIVE_WAIT = 1.5


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--filter", required=True)
    ap.add_argument("--rh", type=int, required=True)
    ap.add_argument("--qos", type=int, required=True)
    ap.add_argument("--count", type=int, required=True)
    a = ap.parse_args()

    c = mqtt.Client(client_id="w" + uuid.uuid4().hex[:10], protocol=mqtt.MQTTv5)
    c.username_pw_set("x", a.token)
    msgs = queue.Queue()
    subacks = queue.Queue()
    connected = threading.Event()
    c.on_connect = lambda *args: connected.set()
    c.on_message = lambda cl, u, m: msgs.put(m)
    c.on_subscribe = lambda cl, u, mid, *rest: subacks.put(mid)
    c.connect("127.0.0.1", a.port, clean_start=True)
    c.loop_start()
    if not connected.wait(WAIT):
        fail("no CONNACK")
    opts = SubscribeOptions(qos=a.qos, retainHandling=a.rh)
    _, mid = c.subscribe(a.filter, options=opts)
    if subacks.get(timeout=WAIT) != mid:
        fail("SUBACK mismatch")
    got = []
    for _ in range(a.count):
        try:
            got.append(msgs.get(timeout=WAIT))
        except queue.Empty:
            fail("wanted %d messages, got %s" % (a.count, [m.topic for m in got]))
    while True:
        try:
            got.append(msgs.get(timeout=NEGATIVE_WAIT))
        except queue.Empty:
            break
    for m in got:
        ct = getattr(m.properties, "ContentType", "") or ""
        print("MSG %s %s r%d q%d ct:%s" % (m.topic, m.payload.decode(), int(m.retain), m.qos, ct))
    c.disconnect()
    c.loop_stop()
    print("wild retained done")


if __name__ == "__main__":
    main()
