#!/usr/bin/python3
"""Wills with paho-mqtt 1.6.1 (issue #21: Will Retain and will properties).

  /usr/bin/python3 tests/mqtt/paho_will.py --port P --room N \
      --token-a TA --user-a UA --token-b TB --user-b UB --token-c TC

Token A's connections carry the wills and are killed (socket closed without
DISCONNECT); B and C subscribe. The server has mqtt.topics_open. Checks:

- retain (3.1.1 and 5.0), for a free-form topic and a room: a will with
  Will Retain 1 is delivered live and then becomes the retained message: a
  NEW subscriber gets it with RETAIN 1 and the identical payload (also a
  QoS 0 one, and for a free-form topic an empty one clears it); a will with
  Will Retain 0 is delivered and does not become retained.
- props (5.0): the will's Payload Format Indicator, Message Expiry
  Interval, Content Type, Response Topic, Correlation Data and User
  Properties (in their order, then the gateway's `from`) reach a live
  subscriber of a free-form topic and, retained, a new subscriber; a will
  to an inbox with a Will Delay Interval carries them too, its Message
  Expiry Interval counted from when the will is published (it outlives
  its delay, so it is not expired when it arrives).

Exit 0 and "all will checks passed" on success.
"""
import argparse
import queue
import time

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from paho_conn import NEGATIVE_WAIT, WAIT, Conn, fail, nonce


def die_with_will(args, version, will, session_expiry=0):
    """Connects as A with `will` and kills the connection."""
    Conn(args.port, version, args.token_a, will, session_expiry).kill_socket()


def live(sub, topic, payload, what):
    """`sub` gets the will `payload` on `topic`: the will was published."""
    m = sub.take_one(what)
    if (m.topic, m.payload) != (topic, payload):
        fail("%s: got %s %r, wanted %s %r" % (what, m.topic, m.payload, topic, payload))
    return m


def retained(args, version, topic, payload, what, only=False):
    """A new subscriber of `topic` gets `payload` as its retained message
    (RETAIN 1), and nothing else. The retained message is set once the
    will is stored, after the live delivery that told us it was published:
    a subscriber that came too early (nothing, or the previous retained
    message) is closed and a new one tries again, until WAIT is over.
    `only`: also check that nothing else comes."""
    deadline = time.time() + WAIT
    while True:
        sub = Conn(args.port, version, args.token_c)
        sub.subscribe(topic)
        try:
            m = sub.msgs.get(timeout=1.0)
        except queue.Empty:
            m = None
        if m is not None and m.payload == payload:
            if not m.retain or m.topic != topic:
                fail("%s: %s %r retain=%s" % (what, m.topic, m.payload, m.retain))
            if only:
                sub.nothing(what + " (one retained message)")
            return sub, m
        sub.close()
        if time.time() > deadline:
            got = None if m is None else (m.topic, m.payload, m.retain)
            fail("%s: no retained %r, got %s" % (what, payload, got))


def check_retain(args, version, topic):
    what = "v%s %s" % (version, topic)
    watcher = Conn(args.port, version, args.token_b)
    watcher.subscribe(topic)
    first = ("first-" + nonce()).encode()
    die_with_will(args, version, (topic, first, 1, True, None))
    m = live(watcher, topic, first, what + " retained will, live")
    if m.retain:
        fail(what + ": a live will came with RETAIN 1 (Retain As Published 0)")
    sub, _ = retained(args, version, topic, first, what + " retained will", only=True)
    sub.close()
    # Will Retain 0: delivered, and the retained message stays the first.
    plain = ("plain-" + nonce()).encode()
    die_with_will(args, version, (topic, plain, 1, False, None))
    live(watcher, topic, plain, what + " plain will, live")
    sub, _ = retained(args, version, topic, first, what + " after a plain will", only=True)
    sub.close()
    # QoS 0 with Will Retain 1: set once the topic or room accepted it.
    zero = ("zero-" + nonce()).encode()
    die_with_will(args, version, (topic, zero, 0, True, None))
    live(watcher, topic, zero, what + " QoS 0 retained will, live")
    sub, m = retained(args, version, topic, zero, what + " QoS 0 retained will")
    if m.qos != 0:
        fail("%s: QoS 0 retained will came at QoS %d" % (what, m.qos))
    sub.close()
    if not topic.startswith("room/"):
        # An empty retained will clears the topic's retained message.
        die_with_will(args, version, (topic, b"", 1, True, None))
        live(watcher, topic, b"", what + " empty retained will, live")
        deadline = time.time() + WAIT
        while True:
            sub = Conn(args.port, version, args.token_c)
            sub.subscribe(topic)
            try:
                m = sub.msgs.get(timeout=NEGATIVE_WAIT)
            except queue.Empty:
                m = None
            sub.close()
            if m is None:
                break
            if time.time() > deadline:
                fail("%s: not cleared, got %r" % (what, m.payload))
    watcher.close()


def will_props(expiry):
    p = Properties(PacketTypes.WILLMESSAGE)
    p.PayloadFormatIndicator = 1
    p.MessageExpiryInterval = expiry
    p.ContentType = "text/x-will"
    p.ResponseTopic = "resp/" + nonce()
    p.CorrelationData = b"\x00\x01corr\xff"
    p.UserProperty = [("k", "1"), ("a", "2"), ("k", "3")]
    return p


def check_props(m, sent, user_a, what, min_expiry):
    p = m.properties
    got = {
        "format": getattr(p, "PayloadFormatIndicator", None),
        "type": getattr(p, "ContentType", None),
        "response": getattr(p, "ResponseTopic", None),
        "correlation": getattr(p, "CorrelationData", None),
    }
    want = {
        "format": 1,
        "type": sent.ContentType,
        "response": sent.ResponseTopic,
        "correlation": sent.CorrelationData,
    }
    if got != want:
        fail("%s: properties %s, wanted %s" % (what, got, want))
    users = list(getattr(p, "UserProperty", []) or [])
    if users != sent.UserProperty + [("from", str(user_a))]:
        fail("%s: user properties %s" % (what, users))
    left = getattr(p, "MessageExpiryInterval", None)
    if left is None or not (min_expiry <= left <= sent.MessageExpiryInterval):
        fail("%s: Message Expiry Interval %s, wanted %d..%d"
             % (what, left, min_expiry, sent.MessageExpiryInterval))


def check_will_properties(args):
    topic = "wp/" + nonce()
    watcher = Conn(args.port, "5", args.token_b)
    watcher.subscribe(topic)
    sent = will_props(600)
    body = ("props-" + nonce()).encode()
    die_with_will(args, "5", (topic, body, 1, True, sent))
    m = live(watcher, topic, body, "will properties, live")
    check_props(m, sent, args.user_a, "will properties, live", 599)
    sub, m = retained(args, "5", topic, body, "will properties, retained")
    check_props(m, sent, args.user_a, "will properties, retained", 590)
    sub.close()
    watcher.close()
    # To an inbox, delayed 2 s, expiring 3 s after it is published: had
    # the expiry counted from the connection's end, 1 s would be left.
    inbox = "user/%d" % args.user_b
    receiver = Conn(args.port, "5", args.token_b)
    receiver.subscribe(inbox)
    sent = will_props(3)
    sent.WillDelayInterval = 2
    body = ("delayed-" + nonce()).encode()
    die_with_will(args, "5", (inbox, body, 1, False, sent), session_expiry=60)
    m = live(receiver, inbox, body, "delayed will to an inbox")
    check_props(m, sent, args.user_a, "delayed will to an inbox", 2)
    receiver.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--room", type=int, required=True)
    ap.add_argument("--token-a", required=True)
    ap.add_argument("--user-a", type=int, required=True)
    ap.add_argument("--token-b", required=True)
    ap.add_argument("--user-b", type=int, required=True)
    ap.add_argument("--token-c", required=True)
    ap.add_argument("--only", choices=["retain", "props"])
    args = ap.parse_args()
    if args.only != "props":
        for version in ("311", "5"):
            check_retain(args, version, "wr%s/%s" % (version, nonce()))
            check_retain(args, version, "room/%d" % (args.room + int(version)))
    if args.only != "retain":
        check_will_properties(args)
    print("all will checks passed")


if __name__ == "__main__":
    main()
