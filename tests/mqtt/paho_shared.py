#!/usr/bin/python3
"""MQTT 5 shared subscriptions with real clients (issue #21).

  /usr/bin/python3 tests/mqtt/paho_shared.py --port P --pub-token T --member-token T1 T2 T3 \
      --scenario spread|lost_member|qos2|v311 [--count N]

Members subscribe `$share/<group>/jobs/+`; a publisher sends N messages to
jobs/<i % 7> with payload "m<i>" and waits for every acknowledgement.

- spread: 3 paho members, QoS 1: every message reaches exactly one member
  (identity: topic and payload), none is lost, each member gets some.
- lost_member: as spread, plus a fourth member (a raw socket client that
  never acknowledges) that is cut off mid-stream like a kill -9 (socket
  closed without DISCONNECT): everything it was sent reaches the others.
- qos2: 3 paho members at QoS 2, QoS 2 publishes: exactly once across the
  group.
- v311: 3.1.1 members and publisher, QoS 1 (`$share/` accepted at 3.1.1).
- backlog: the group's only member is away while N messages are
  published, more than the group keeps in memory (see backlog()).
- expiry: a member with Session Expiry 1 s lost while holding QoS 2
  messages (see expiry()).
- expiry_restart1 / expiry_restart2 (with --group G): the same across a
  kill -9 of the gateway between the two (see expiry_restart1()).
- subid: Subscription Identifiers of shared subscriptions (see subid()).
- crash1 / crash2 (with --out DIR): a kill -9 of the gateway mid-stream.
  crash1 starts 3 persistent members (session expiry 1 h, fixed client
  ids) and publishes QoS 1, logging every message a member gets
  (DIR/member-N.txt) and every PUBACK the publisher gets (DIR/acked.txt);
  the test kills the gateway and this script, restarts the gateway, then
  crash2 resumes the same sessions (no new SUBSCRIBE) and checks that every
  acknowledged message reached a member (at least once).
- crashq2: QoS 2 exactly once across kill -9 of the gateway. 3 persistent
  paho members (session expiry 1 h) subscribe at QoS 2 and a persistent
  paho publisher sends N QoS 2 messages; all of them stay alive while the
  test kills and restarts the gateway (same port, same data) as the
  publisher's progress lines ("acked K" on stdout) pass its thresholds;
  paho reconnects each one (its session and its QoS 2 state kept). Checks
  that every message got PUBCOMP, and that the members' applications
  (paho hands a QoS 2 message over at PUBREL) got each exactly once
  across the group (identity: topic and payload).

Prints "shared checks passed" and exits 0 on success.
"""
import argparse
import collections
import os
import socket
import struct
import sys
import threading
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

WAIT = 30.0
QUIET = 2.0


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


class Member:
    """A paho member collecting (topic, payload) of what it receives."""

    def __init__(self, port, token, filt, qos, v5=True, client_id=None, log=None, delay=0.0,
                 sub_id=None, expiry=3600):
        proto = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
        client_id = client_id or "s" + uuid.uuid4().hex[:10]
        self.c = mqtt.Client(client_id=client_id, protocol=proto)
        self.c.username_pw_set("x", token)
        self.got = []
        # (topic, payload, subscription identifiers) of every PUBLISH.
        self.ids = []
        self.lock = threading.Lock()
        self.last = time.monotonic()
        self.subacked = threading.Event()
        self.granted = None
        connected = threading.Event()
        self.c.on_connect = lambda *a: connected.set()

        def on_message(c, u, m):
            if delay:
                time.sleep(delay)  # a slow consumer: the group falls behind
            ids = getattr(m.properties, "SubscriptionIdentifier", None) if v5 else None
            with self.lock:
                self.ids.append((m.topic, m.payload.decode(), tuple(ids or ())))
                self.got.append((m.topic, m.payload.decode()))
                self.last = time.monotonic()
                if log:
                    log.write("%s %s\n" % (m.topic, m.payload.decode()))
                    log.flush()

        def on_subscribe(c, u, mid, granted, *rest):
            self.granted = granted
            self.subacked.set()

        self.c.on_message = on_message
        self.c.on_subscribe = on_subscribe
        if log is not None:
            # A persistent session (crash scenarios).
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = expiry
            self.c.connect("127.0.0.1", port, clean_start=False, properties=props)
        elif v5:
            self.c.connect("127.0.0.1", port, clean_start=True)
        else:
            self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        if not connected.wait(WAIT):
            fail("member: no CONNACK")
        if filt is None:
            return  # a resumed session keeps its subscriptions
        self.subscribe(filt, qos, sub_id)

    def subscribe(self, filt, qos, sub_id=None):
        self.subacked.clear()
        props = None
        if sub_id is not None:
            props = Properties(PacketTypes.SUBSCRIBE)
            props.SubscriptionIdentifier = sub_id
        self.c.subscribe(filt, qos=qos, properties=props)
        if not self.subacked.wait(WAIT):
            fail("member: no SUBACK")
        code = self.granted[0]
        code = getattr(code, "value", code)
        if code != qos:
            fail("member: SUBACK %r for %s" % (self.granted, filt))

    def stop(self):
        self.c.disconnect()
        self.c.loop_stop()


def varint(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def mstr(s):
    b = s.encode()
    return struct.pack(">H", len(b)) + b


class Silent:
    """A raw MQTT 5 member that reads PUBLISHes and never acknowledges them
    (subscribed at `qos`; with `expiry`, a persistent session of that
    Session Expiry Interval)."""

    def __init__(self, port, token, filt, qos=1, expiry=0):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.got = []
        self.buf = b""
        # Receive Maximum 5 (property 0x21) keeps the unacknowledged set small.
        props = b"\x21\x00\x05"
        if expiry:
            props += b"\x11" + struct.pack(">I", expiry)
        var = mstr("MQTT") + bytes([5, 0xC2]) + struct.pack(">H", 60) + varint(len(props)) + props
        payload = mstr("q" + uuid.uuid4().hex[:10]) + mstr("x") + mstr(token)
        body = var + payload
        self.s.sendall(b"\x10" + varint(len(body)) + body)
        t, _ = self.packet()
        if t != 2:
            fail("silent: no CONNACK")
        sub = struct.pack(">H", 1) + varint(0) + mstr(filt) + bytes([qos])
        self.s.sendall(b"\x82" + varint(len(sub)) + sub)
        while True:
            t, body = self.packet()
            if t == 9:
                if body[3] != qos:
                    fail("silent: SUBACK %r" % body)
                break

    def read(self, n):
        while len(self.buf) < n:
            chunk = self.s.recv(65536)
            if not chunk:
                fail("silent: closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def packet(self):
        first = self.read(1)[0]
        mult, length = 1, 0
        while True:
            b = self.read(1)[0]
            length += (b & 0x7F) * mult
            mult *= 128
            if not b & 0x80:
                break
        return first >> 4, self.read(length)

    def take(self, count):
        """Reads PUBLISHes until `count` came (never acknowledging)."""
        while len(self.got) < count:
            t, body = self.packet()
            if t != 3:
                continue
            tl = struct.unpack(">H", body[:2])[0]
            topic = body[2:2 + tl].decode()
            rest = body[2 + tl + 2:]  # packet id (QoS 1 and 2)
            plen, mult, i = 0, 1, 0
            while True:
                b = rest[i]
                plen += (b & 0x7F) * mult
                mult *= 128
                i += 1
                if not b & 0x80:
                    break
            self.got.append((topic, rest[i + plen:].decode()))

    def kill(self):
        # Like a kill -9: the socket goes without DISCONNECT.
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.s.close()

    def reading(self, count):
        """Takes `count` PUBLISHes on a thread; the Event is set once they came."""
        got = threading.Event()

        def reader():
            self.take(count)
            got.set()

        threading.Thread(target=reader, daemon=True).start()
        return got

    def killed_after(self, got, who):
        """A `midway` for publish_all: cuts this member once `got` is set."""

        def midway():
            if not got.wait(WAIT):
                fail("%s got nothing" % who)
            self.kill()

        return midway


def crash1(a):
    members = []
    for i, t in enumerate(a.member_token[:3]):
        log = open(os.path.join(a.out, "member-%d.txt" % i), "a")
        # Slow members: when the gateway dies, acknowledged messages wait
        # in the group (only its durable state brings them back).
        members.append(
            Member(a.port, t, "$share/gcrash/jobs/+", 1, True, "crash-m%d" % i, log, 0.005)
        )
    acked = open(os.path.join(a.out, "acked.txt"), "a")
    c, _, _ = publisher(a.port, a.pub_token)

    def line(i):
        return "jobs/%d m%d" % (i % 7, i)

    # paho numbers this client's messages 1, 2, ...: message i has mid i + 1.
    c.on_publish = lambda cl, u, mid: (acked.write(line(mid - 1) + "\n"), acked.flush())
    for i in range(a.count):
        info = c.publish("jobs/%d" % (i % 7), "m%d" % i, qos=1)
        if info.mid != i + 1:
            fail("unexpected mid %d for message %d" % (info.mid, i))
        time.sleep(0.001)
    time.sleep(WAIT * 4)  # killed by the test before this ends


def crash2(a):
    members = []
    for i, t in enumerate(a.member_token[:3]):
        log = open(os.path.join(a.out, "member-%d.txt" % i), "a")
        members.append(Member(a.port, t, None, 1, True, "crash-m%d" % i, log))
    acked = [l.rstrip("\n") for l in open(os.path.join(a.out, "acked.txt"))]
    if not acked:
        fail("nothing was acknowledged before the crash")

    def got():
        seen = set()
        for i in range(3):
            seen.update(l.rstrip("\n") for l in open(os.path.join(a.out, "member-%d.txt" % i)))
        return seen

    deadline = time.monotonic() + WAIT * 2
    while time.monotonic() < deadline:
        if all(x in got() for x in acked):
            break
        time.sleep(0.2)
    seen = got()
    lost = [x for x in acked if x not in seen]
    if lost:
        fail("%d of %d acknowledged messages lost across the crash, e.g. %r"
             % (len(lost), len(acked), lost[:5]))
    print("acknowledged before the crash: %d; all reached a member" % len(acked))


def crashq2(a):
    members = []
    for i, t in enumerate(a.member_token[:3]):
        m = Member(a.port, t, "$share/gq2/jobs/+", 2, True, "q2-m%d" % i, log=False)
        m.c.reconnect_delay_set(0.05, 0.5)
        members.append(m)

    def progress(n):
        if n % 25 == 0:
            print("acked %d" % n, flush=True)

    c, connected, acked, lock = new_publisher(a.pub_token, "q2-pub", True, 20, progress)
    c.reconnect_delay_set(0.05, 0.5)
    # What paho sent: a PUBLISH of a packet id after its PUBREL is a new
    # message to the gateway (MQTT 4.3.3), stored again. paho 1.6 does that
    # when publish() races its reconnect; such a message may be delivered
    # once per copy the client published.
    released, republished = set(), set()

    def on_log(cl, u, level, buf):
        if buf.startswith("Sending PUBREL (Mid: "):
            with lock:
                released.add(int(buf[len("Sending PUBREL (Mid: "):].rstrip(")")))
        elif buf.startswith("Sending PUBLISH ("):
            mid = int(buf.split(", m", 1)[1].split(")", 1)[0])
            with lock:
                if mid in released:
                    republished.add(mid)

    c.on_log = on_log
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    c.connect("127.0.0.1", a.port, clean_start=False, properties=props)
    c.loop_start()
    if not connected.wait(WAIT):
        fail("publisher: no CONNACK")
    want, mids = [], []
    for i in range(a.count):
        topic, payload = "jobs/%d" % (i % 7), "m%d" % i
        want.append((topic, payload))
        # At most 20 unfinished, paho's in-flight limit: with more queued,
        # paho 1.6 resends a PUBREC'd message after a reconnect as a new
        # PUBLISH instead of its PUBREL (the gateway then stores it twice,
        # rightly: the packet id was released).
        deadline = time.monotonic() + WAIT * 4
        while len(mids) - len(acked) >= 20:
            if time.monotonic() > deadline:
                fail("publisher: stalled at %d completed" % len(acked))
            time.sleep(0.002)
        # Sent on reconnect when the gateway is down; paho resends what
        # it had in flight (DUP, same packet id) on reconnect.
        mids.append(c.publish(topic, payload, qos=2).mid)
    if not all_completed(mids, acked, lock, WAIT * 10):
        with lock:
            fail("publisher: %d of %d messages without PUBCOMP" % (len(mids) - len(acked), len(mids)))
    print("all %d published messages completed (PUBCOMP)" % len(mids), flush=True)
    settle(members, a.count)
    with lock:
        again = set(want[mids.index(m)] for m in republished if m in mids)
    if again:
        print("published twice by paho (PUBLISH after its PUBREL): %r" % sorted(again))
    check_once(want, members, allow_dup=again)
    print("per member: %s" % [len(m.got) for m in members])


def subid(a, filt):
    """Two members of a group with Subscription Identifiers 7 and 8; the
    first also subscribes jobs/0 (not shared) with identifier 99. Every
    PUBLISH the group hands a member carries that member's shared
    identifier only; the first member's own copies of jobs/0 carry 99
    only (MQTT 5 3.3.4, 4.8.2: the shared copy is a copy of its own)."""
    ids = (7, 8)
    members = [Member(a.port, t, filt, 1, sub_id=i) for t, i in zip(a.member_token[:2], ids)]
    members[0].subscribe("jobs/0", 1, 99)
    want = publish_all(a.port, a.pub_token, a.count, 1)
    own = [w for w in want if w[0] == "jobs/0"]
    settle(members, len(want) + len(own))
    shared = []
    for m, i in zip(members, ids):
        with m.lock:
            got = list(m.ids)
        mine = [(t, p) for t, p, x in got if x == (i,)]
        plain = [(t, p) for t, p, x in got if x == (99,)]
        odd = [(t, p, x) for t, p, x in got if x not in ((i,), (99,))]
        if odd:
            fail("member with identifier %d: PUBLISHes with other identifiers, e.g. %r"
                 % (i, odd[:5]))
        if i == 7:
            if sorted(plain) != sorted(own):
                fail("non-shared jobs/0: %d copies, %d published" % (len(plain), len(own)))
        elif plain:
            fail("member 8 got non-shared copies: %r" % plain[:5])
        if not mine:
            fail("member with identifier %d got nothing from the group" % i)
        shared.append(mine)
    seen = collections.Counter(x for mine in shared for x in mine)
    lost = [w for w in want if seen[w] == 0]
    twice = [w for w, c in seen.items() if c > 1]
    extra = [w for w in seen if w not in set(want)]
    if lost or twice or extra:
        fail("group copies: %d lost, %d twice, %d never published (e.g. %r %r %r)"
             % (len(lost), len(twice), len(extra), lost[:3], twice[:3], extra[:3]))
    print("group copies per member (ids 7, 8): %s; non-shared jobs/0 copies: %d"
          % ([len(x) for x in shared], len(own)))


def backlog(a, filt):
    """A group whose only member (a persistent session) is gone while
    --count QoS 1 messages are published (more than the server's
    core.room_history), then comes back: it gets every message exactly
    once, in order within each topic."""
    cid = "backlog-" + uuid.uuid4().hex[:8]
    m = Member(a.port, a.member_token[0], filt, 1, client_id=cid, log=False)
    m.stop()
    want = publish_all(a.port, a.pub_token, a.count, 1)
    m = Member(a.port, a.member_token[0], None, 1, client_id=cid, log=False)
    settle([m], len(want))
    m.stop()
    with m.lock:
        got = list(m.got)
    seen = collections.Counter(got)
    lost = [w for w in want if seen[w] == 0]
    twice = [w for w, c in seen.items() if c > 1]
    extra = [w for w in seen if w not in set(want)]
    if lost or twice or extra:
        fail("%d of %d lost, %d twice, %d never published (e.g. %r %r %r)"
             % (len(lost), len(want), len(twice), len(extra), lost[:3], twice[:3], extra[:3]))
    last = {}
    for topic, payload in got:
        i = int(payload[1:])
        if i <= last.get(topic, -1):
            fail("%s: m%d after m%d" % (topic, i, last[topic]))
        last[topic] = i
    print("the returning member got all %d, in order per topic" % len(got))


def expiry(a, filt):
    """A raw member with Session Expiry 1 s gets QoS 2 messages and never
    answers (no PUBREC), then its connection is cut like a kill -9; a paho
    member takes the rest. The lost member's messages wait for it and never
    reach the other member (MQTT-4.8.2-4, -5), which gets every other
    message exactly once. Prints "held K" (what the other member did not
    get: sent to the lost one) for the test, which then waits for the
    session's expiry to release them (share_expired, share_dropped)."""
    b = Member(a.port, a.member_token[0], filt, 2)
    silent = Silent(a.port, a.member_token[1], filt, qos=2, expiry=1)
    midway = silent.killed_after(silent.reading(3), "the expiring member")
    want = publish_all(a.port, a.pub_token, a.count, 2, True, midway)
    held, seen = held_by_silent(b, silent, want, "the lost member")
    print("held %d" % len(held), flush=True)
    print("the other member got the other %d exactly once" % len(seen))


def held_by_silent(b, silent, want, who):
    """`want` went to member `b` and to `silent`, which never answered:
    waits until `b` has all but what `silent` may hold (up to its Receive
    Maximum, 5, per stream home shard: 2 shards), checks `b` got each of
    its messages once and none of `silent`'s (MQTT-4.8.2-4), and returns
    (what `silent` holds, `b`'s counts)."""
    settle([b], len(want) - 10)
    seen = collections.Counter(b.got)
    twice = [m for m, c in seen.items() if c > 1]
    extra = [m for m in seen if m not in set(want)]
    if twice or extra:
        fail("the other member: %r twice, %r never published" % (twice[:5], extra[:5]))
    given = [m for m in silent.got if m in seen]
    if given:
        fail("QoS 2 messages sent to %s reached another: %r" % (who, given[:5]))
    held = [w for w in want if w not in seen]
    if not 3 <= len(held) <= 10:
        fail("%s held %d messages" % (who, len(held)))
    return held, seen


def expiry_restart1(a, filt):
    """Before a kill -9 of the gateway: a raw member with Session Expiry 2 s
    gets QoS 2 messages and never answers (no PUBREC); a paho member takes
    the rest, none of the raw member's (MQTT-4.8.2-4). Then the raw
    member's connection is cut like a kill -9 and the paho member leaves;
    the test kills the gateway at once (well within the 2 s) and restarts
    it. Prints "held K": what the raw member holds."""
    b = Member(a.port, a.member_token[0], filt, 2)
    silent = Silent(a.port, a.member_token[1], filt, qos=2, expiry=2)
    got_some = silent.reading(3)
    want = publish_all(a.port, a.pub_token, a.count, 2, True)
    if not got_some.wait(WAIT):
        fail("the expiring member got nothing")
    held, _ = held_by_silent(b, silent, want, "the raw member")
    silent.kill()
    b.stop()
    print("held %d" % len(held), flush=True)


def expiry_restart2(a, filt):
    """After the restart: a new paho member joins the group and says
    "joined"; once the test saw the raw member's session expire (its
    restored deadline) and writes "go", N more QoS 2 messages are
    published ("n<i>"): the new member gets each exactly once, and never
    one of the messages the raw member held ("m<i>", MQTT-4.8.2-5)."""
    b = Member(a.port, a.member_token[0], filt, 2)
    print("joined", flush=True)
    if sys.stdin.readline().strip() != "go":
        fail("no go from the test")
    want = publish_all(a.port, a.pub_token, a.count, 2, True, prefix="n")
    settle([b], len(want))
    if sorted(b.got) != sorted(want):
        lost = [w for w in want if w not in b.got]
        extra = [g for g in b.got if g not in want]
        fail("after the expiry: %d lost (%r), %d others (%r)"
             % (len(lost), lost[:5], len(extra), extra[:5]))
    b.stop()
    print("the remaining member got all %d new messages exactly once" % len(want))


def new_publisher(token, client_id, v5, inflight, on_count=None):
    """A paho publisher (not connected yet) that records the packet ids
    completed (PUBACK/PUBCOMP) and calls on_count with their number."""
    proto = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
    c = mqtt.Client(client_id=client_id, protocol=proto)
    c.username_pw_set("x", token)
    c.max_inflight_messages_set(inflight)
    c.max_queued_messages_set(0)
    connected = threading.Event()
    c.on_connect = lambda *a: connected.set()
    acked = set()
    lock = threading.Lock()

    def on_publish(cl, u, mid):
        with lock:
            acked.add(mid)
            n = len(acked)
        if on_count is not None:
            on_count(n)

    c.on_publish = on_publish
    return c, connected, acked, lock


def all_completed(mids, acked, lock, seconds):
    """Waits up to `seconds` until every packet id in mids is in acked."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with lock:
            if all(m in acked for m in mids):
                return True
        time.sleep(0.05)
    return False


def publisher(port, token, v5=True):
    c, connected, acked, lock = new_publisher(token, "p" + uuid.uuid4().hex[:10], v5, 50)
    if v5:
        c.connect("127.0.0.1", port, clean_start=True)
    else:
        c.connect("127.0.0.1", port)
    c.loop_start()
    if not connected.wait(WAIT):
        fail("publisher: no CONNACK")
    return c, acked, lock


def publish_all(port, token, n, qos, v5=True, midway=None, prefix="m"):
    c, acked, lock = publisher(port, token, v5)
    want = []
    mids = []
    for i in range(n):
        topic, payload = "jobs/%d" % (i % 7), "%s%d" % (prefix, i)
        want.append((topic, payload))
        mids.append(c.publish(topic, payload, qos=qos).mid)
        if midway is not None and i == n // 2:
            midway()
    if not all_completed(mids, acked, lock, WAIT * 4):
        fail("publisher: not every message acknowledged")
    c.disconnect()
    c.loop_stop()
    return want


def settle(members, total):
    """Waits until the members together hold `total` messages and are quiet."""
    deadline = time.monotonic() + WAIT * 4
    while time.monotonic() < deadline:
        n = sum(len(m.got) for m in members)
        quiet = all(time.monotonic() - m.last > QUIET for m in members)
        if n >= total and quiet:
            return
        time.sleep(0.1)


def check_once(want, members, allow_dup=()):
    seen = collections.Counter()
    for m in members:
        seen.update(m.got)
    lost = [w for w in want if seen[w] == 0]
    if lost:
        fail("%d messages lost, e.g. %r" % (len(lost), lost[:5]))
    extra = [k for k in seen if k not in set(want)]
    if extra:
        fail("messages never published: %r" % extra[:5])
    dup = [k for k, c in seen.items() if c > 1 and k not in allow_dup]
    if dup:
        where = [(k, [i for i, m in enumerate(members) for x in m.got if x == k]) for k in dup[:5]]
        fail("%d messages delivered twice in the group, e.g. (message, members) %r"
             % (len(dup), where))
    for i, m in enumerate(members):
        if not m.got:
            fail("member %d got nothing" % i)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pub-token", required=True)
    ap.add_argument("--member-token", nargs="+", required=True)
    ap.add_argument("--scenario", required=True)
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--out")
    ap.add_argument("--group")
    a = ap.parse_args()
    group = a.group or "g" + uuid.uuid4().hex[:6]
    filt = "$share/%s/jobs/+" % group
    n = a.count
    if a.scenario in ("spread", "qos2", "v311"):
        qos = 2 if a.scenario == "qos2" else 1
        v5 = a.scenario != "v311"
        members = [Member(a.port, t, filt, qos, v5) for t in a.member_token[:3]]
        want = publish_all(a.port, a.pub_token, n, qos, v5)
        settle(members, n)
        check_once(want, members)
        print("per member: %s" % [len(m.got) for m in members])
    elif a.scenario == "lost_member":
        members = [Member(a.port, t, filt, 1) for t in a.member_token[:3]]
        silent = Silent(a.port, a.member_token[3], filt)
        midway = silent.killed_after(silent.reading(5), "the silent member")
        want = publish_all(a.port, a.pub_token, n, 1, True, midway)
        settle(members, n)
        held = set(silent.got)
        # At least once: what the silent member was sent comes again.
        check_once(want, members)
        for m in held:
            if not any(m in x.got for x in members):
                fail("%r, sent to the lost member, reached nobody else" % (m,))
        print("lost member held %d; per member: %s" % (len(held), [len(m.got) for m in members]))
    elif a.scenario == "backlog":
        backlog(a, filt)
    elif a.scenario == "expiry":
        expiry(a, filt)
    elif a.scenario == "expiry_restart1":
        expiry_restart1(a, filt)
    elif a.scenario == "expiry_restart2":
        expiry_restart2(a, filt)
    elif a.scenario == "subid":
        subid(a, filt)
    elif a.scenario == "crash1":
        crash1(a)
    elif a.scenario == "crash2":
        crash2(a)
    elif a.scenario == "crashq2":
        crashq2(a)
    else:
        fail("unknown scenario " + a.scenario)
    print("shared checks passed")


if __name__ == "__main__":
    main()
