"""One paho-mqtt 1.6.1 client for the test scripts next to this file
(paho_retained.py, paho_will.py; paho_check.py uses its kill_socket): connect (optionally with a will and a
5.0 Session Expiry), publish at QoS 1 and wait for the PUBACK, subscribe
and wait for the SUBACK, take messages, check that none comes, die
without DISCONNECT, close."""
import queue
import socket
import sys
import threading
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

WAIT = 10.0
NEGATIVE_WAIT = 1.5
PROTO = {"311": mqtt.MQTTv311, "5": mqtt.MQTTv5}


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def nonce():
    return uuid.uuid4().hex[:8]


def kill_socket(client):
    """Stops paho `client`'s network loop and closes its TCP socket without
    sending DISCONNECT, as a killed client would."""
    client.loop_stop()
    sock = client.socket()
    # Over WebSocket paho hands out its wrapper; the TCP socket is inside.
    sock = getattr(sock, "_socket", sock)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()


class Conn:
    """One client of 127.0.0.1:`port`; `will` = (topic, payload, qos,
    retain, properties)."""

    def __init__(self, port, version, token, will=None, session_expiry=0):
        self.version = version
        self.c = mqtt.Client(client_id="p" + uuid.uuid4().hex[:10], protocol=PROTO[version])
        self.c.username_pw_set("x", token)
        self.msgs = queue.Queue()
        self.acks = queue.Queue()
        self.subacks = queue.Queue()
        self.connected = threading.Event()
        self.c.on_connect = lambda *a: self.connected.set()
        self.c.on_message = lambda c, u, m: self.msgs.put(m)
        self.c.on_publish = lambda c, u, mid: self.acks.put(mid)
        self.c.on_subscribe = lambda c, u, mid, *rest: self.subacks.put(mid)
        if will:
            topic, payload, qos, retain, props = will
            self.c.will_set(topic, payload, qos, retain, properties=props)
        if version == "5":
            cp = None
            if session_expiry:
                cp = Properties(PacketTypes.CONNECT)
                cp.SessionExpiryInterval = session_expiry
            self.c.connect("127.0.0.1", port, clean_start=True, properties=cp)
        else:
            self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        if not self.connected.wait(WAIT):
            fail("no CONNACK")

    def publish(self, topic, payload, retain, props=None):
        info = self.c.publish(topic, payload, qos=1, retain=retain, properties=props)
        got = self.acks.get(timeout=WAIT)
        if got != info.mid:
            fail("PUBACK for %s, wanted %s" % (got, info.mid))

    def subscribe(self, topic, rh=0, rap=False):
        if self.version == "5":
            opts = SubscribeOptions(qos=1, retainHandling=rh, retainAsPublished=rap)
            _, mid = self.c.subscribe(topic, options=opts)
        else:
            _, mid = self.c.subscribe(topic, qos=1)
        if self.subacks.get(timeout=WAIT) != mid:
            fail("SUBACK mismatch")

    def take(self, n):
        """The next `n` messages."""
        out = []
        for _ in range(n):
            try:
                out.append(self.msgs.get(timeout=WAIT))
            except queue.Empty:
                fail("wanted %d messages, got %s" % (n, [(m.topic, m.payload) for m in out]))
        return out

    def take_one(self, what, wait=WAIT):
        """The next message, within `wait` seconds."""
        try:
            return self.msgs.get(timeout=wait)
        except queue.Empty:
            fail("%s: no message" % what)

    def nothing(self, what):
        try:
            m = self.msgs.get(timeout=NEGATIVE_WAIT)
            fail("%s: unexpected %s %r retain=%s" % (what, m.topic, m.payload, m.retain))
        except queue.Empty:
            pass

    def kill_socket(self):
        """Stop the network loop and close the socket without DISCONNECT."""
        kill_socket(self.c)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()
