#!/usr/bin/python3
"""Retained messages of free-form topics with paho-mqtt 1.6.1 (issue #21).

  /usr/bin/python3 tests/mqtt/paho_retained.py --port P --token-a TA --token-b TB --token-c TC

Token A publishes, tokens B and C subscribe; the server has mqtt.topics_open. Checks,
at 3.1.1 and 5.0: a new subscription gets the retained message (RETAIN 1, exact
payload and topic); 5.0: its message properties (content type, user
properties, the remaining Message Expiry Interval), an expired one is not sent,
Retain Handling 1 (only for a new subscription) and 2 (never), and a live
message published with RETAIN 1 is forwarded with RETAIN 0 (Retain As
Published 0), but with RETAIN 1 to a 5.0 subscription with Retain As
Published 1, from 3.1.1 and 5.0 publishers alike, its properties unchanged
(no gateway-internal property shows). Exit 0 and "all retained checks passed" on success.
"""
import argparse
import os
import sys
import threading
import time

from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

from paho_conn import Conn, fail


def user_props(m):
    return list(getattr(m.properties, "UserProperty", []) or [])


def check(port, version, ta, tb):
    pub = Conn(port, version, ta)
    top = "pr%s" % version
    props = None
    if version == "5":
        props = Properties(PacketTypes.PUBLISH)
        props.ContentType = "text/plain"
        props.UserProperty = [("k", "v")]
        props.MessageExpiryInterval = 100
        short = Properties(PacketTypes.PUBLISH)
        short.MessageExpiryInterval = 1
        pub.publish(top + "/short", b"expires", True, short)
    pub.publish(top + "/x", b"rx", True, props)
    pub.publish(top + "/y/z", b"ryz", True)
    if version == "5":
        # Waiting for time itself: the short message must expire.
        time.sleep(2.2)
    sub = Conn(port, version, tb)
    sub.subscribe(top + "/#")
    got = sorted(sub.take(2), key=lambda m: m.topic)
    want = [(top + "/x", b"rx"), (top + "/y/z", b"ryz")]
    if [(m.topic, m.payload) for m in got] != want:
        fail("v%s retained: %s" % (version, [(m.topic, m.payload) for m in got]))
    if not all(m.retain for m in got):
        fail("v%s: RETAIN 0 on a retained message" % version)
    sub.nothing("v%s expired or extra" % version)
    if version == "5":
        m = got[0]
        if getattr(m.properties, "ContentType", None) != "text/plain":
            fail("content type lost: %s" % m.properties)
        if ("k", "v") not in user_props(m):
            fail("user property lost: %s" % m.properties)
        left = getattr(m.properties, "MessageExpiryInterval", None)
        if left is None or not (90 <= left <= 99):
            fail("remaining expiry %s, wanted 90..99 after >= 2 s" % left)
    # A live message published with RETAIN 1: forwarded with RETAIN 0.
    pub.publish(top + "/x", b"live", True, props)
    m = sub.take(1)[0]
    if (m.topic, m.payload, m.retain) != (top + "/x", b"live", False):
        fail("v%s live: %s %r retain=%s" % (version, m.topic, m.payload, m.retain))
    sub.close()
    if version == "5":
        # Retain Handling 1: only when the subscription is new.
        s = Conn(port, version, tb)
        s.subscribe(top + "/+", rh=1)
        m = s.take(1)[0]
        if (m.topic, m.payload, m.retain) != (top + "/x", b"live", True):
            fail("rh 1 new: %s %r retain=%s" % (m.topic, m.payload, m.retain))
        s.subscribe(top + "/+", rh=1)
        s.nothing("rh 1 on an existing subscription")
        s.subscribe(top + "/+", rh=0)
        m = s.take(1)[0]
        if (m.topic, m.payload, m.retain) != (top + "/x", b"live", True):
            fail("rh 0 again: %s %r" % (m.topic, m.payload))
        s.close()
        # Retain Handling 2: never; live messages still come.
        s = Conn(port, version, tb)
        s.subscribe(top + "/#", rh=2)
        s.nothing("rh 2")
        pub.publish(top + "/y/z", b"after", False)
        m = s.take(1)[0]
        if (m.topic, m.payload, m.retain) != (top + "/y/z", b"after", False):
            fail("rh 2 live: %s %r" % (m.topic, m.payload))
        s.close()
    pub.close()


def check_retain_as_published(port, ta, tb, tc):
    """Live messages keep the RETAIN flag they were published with on a
    Retain As Published subscription (MQTT-3.3.1-13), and only there."""
    keep = Conn(port, "5", tb)
    keep.subscribe("rap/#", rh=2, rap=True)
    zero = Conn(port, "5", tc)
    zero.subscribe("rap/#", rh=2)
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = [("k", "v")]
    for version in ["311", "5"]:
        pub = Conn(port, version, ta)
        p = props if version == "5" else None
        pub.publish("rap/" + version, b"kept", True, p)
        pub.publish("rap/" + version, b"plain", False, p)
        pub.close()
        for who, c, want in [("rap 1", keep, [True, False]), ("rap 0", zero, [False, False])]:
            got = c.take(2)
            seen = [(m.topic, m.payload, m.retain) for m in got]
            expect = [("rap/" + version, b"kept", want[0]), ("rap/" + version, b"plain", want[1])]
            if seen != expect:
                fail("%s from v%s: %s, wanted %s" % (who, version, seen, expect))
            for m in got:
                names = [k for k, _ in user_props(m)]
                mine = [("k", "v")] if version == "5" else []
                if user_props(m)[: len(mine)] != mine or names[len(mine):] != ["from"]:
                    fail("%s from v%s: user properties %s" % (who, version, user_props(m)))
    keep.close()
    zero.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--token-a", required=True)
    ap.add_argument("--token-b", required=True)
    ap.add_argument("--token-c", required=True)
    a = ap.parse_args()
    watchdog = threading.Timer(60.0, lambda: (print("FAIL: watchdog", file=sys.stderr), os._exit(2)))
    watchdog.daemon = True
    watchdog.start()
    for version in ["311", "5"]:
        check(a.port, version, a.token_a, a.token_b)
    check_retain_as_published(a.port, a.token_a, a.token_b, a.token_c)
    print("all retained checks passed")


if __name__ == "__main__":
    main()
