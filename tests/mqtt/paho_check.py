#!/usr/bin/python3
"""MQTT client checks for the surepush MQTT front end (paho-mqtt 1.6.1).

Run with the Debian interpreter (/usr/bin/python3), which has python3-paho-mqtt:

  /usr/bin/python3 tests/mqtt/paho_check.py --host H --port P --scenario NAME \
      --token-a TA --token-b TB --user-a UA --user-b UB \
      [--room N] [--version 311|5|both] [--phase 1|2] [--expect p1,p2,...]
      [--transport tcp|websockets --ws-path /] [--cafile CA.pem]

With --transport websockets, every client speaks MQTT over WebSocket
(subprotocol "mqtt") to the gateway's [websocket] listener at --port. With
--cafile, every client speaks TLS (verifying the gateway with that CA), to a
TLS listener: tls.mqtt_listen, or tls.ws_listen with --transport websockets.

Exit 0 on success; non-zero with a message on stderr on failure. Every wait is
bounded, and a watchdog kills the process if a scenario run overruns.
"""
import argparse
import json
import os
import sys
import threading
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import paho_conn

WAIT = 10.0            # bound for any single positive wait (CONNACK, SUBACK, PUBACK, message)
GRACE = 0.5            # bounded window for catching duplicates
NEGATIVE_WAIT = 1.5    # bounded window for "must NOT arrive" checks
RUN_TIMEOUT = 20.0     # watchdog budget per (scenario, version) run
PROTO = {"311": mqtt.MQTTv311, "5": mqtt.MQTTv5}


class CheckFailed(Exception):
    pass


def nonce():
    return uuid.uuid4().hex[:12]


class Conn:
    """A paho client with a background loop and Event-based bookkeeping."""

    def __init__(self, version, token, client_id, will=None, clean=True,
                 transport="tcp", ws_path="/", cafile=None):
        self.version, self.name, self.clean = version, client_id, clean
        self.v5 = version == "5"
        kw = {} if self.v5 else {"clean_session": clean}   # v5: clean_start at connect
        self.c = mqtt.Client(client_id=client_id, protocol=PROTO[version],
                             reconnect_on_failure=False, transport=transport, **kw)
        if transport == "websockets":
            self.c.ws_set_options(path=ws_path)
        if cafile:
            self.c.tls_set(ca_certs=cafile)
        self.c.username_pw_set("u", token)
        if will:
            self.c.will_set(*will)
        self.lock = threading.Lock()
        self.connected, self.gone, self.msg_event = (threading.Event() for _ in range(3))
        self.connack = None          # (reason code int, session_present bool)
        self.disconnect_rc = None
        self.messages = []           # list of (topic, payload str, qos, retain, dup)
        self.subacks = {}            # mid -> list of granted qos / reason code ints
        self.sub_events = {}
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.on_message = self._on_message
        self.c.on_subscribe = self._on_subscribe

    # -- callbacks (signatures differ between v3.1.1 and v5, hence *rest)
    def _on_connect(self, client, userdata, flags, rc, *rest):
        self.connack = (int(getattr(rc, "value", rc)), bool(flags.get("session present")))
        self.connected.set()

    def _on_disconnect(self, client, userdata, rc, *rest):
        self.disconnect_rc = int(getattr(rc, "value", rc))
        self.gone.set()
        self.connected.set()   # unblock a CONNACK wait if the server just closed

    def _on_message(self, client, userdata, msg):
        with self.lock:
            self.messages.append((msg.topic, msg.payload.decode("utf-8", "replace"),
                                  msg.qos, int(msg.retain), int(msg.dup)))
        self.msg_event.set()

    def _on_subscribe(self, client, userdata, mid, granted, *rest):
        with self.lock:
            self.subacks[mid] = [int(getattr(g, "value", g)) for g in granted]
            ev = self.sub_events.setdefault(mid, threading.Event())
        ev.set()

    # -- operations
    def connect(self, host, port, expiry=None):
        """Connect, wait for CONNACK, return session_present. Raises on refusal."""
        kw = {}
        if self.v5:
            props = None
            if expiry:
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = expiry
            kw = {"clean_start": self.clean, "properties": props}
        try:
            self.c.connect(host, port, keepalive=30, **kw)
        except OSError as e:
            raise CheckFailed(f"{self.name}: TCP connect to {host}:{port} failed: {e}")
        self.c.loop_start()
        if not self.connected.wait(WAIT) or self.connack is None:
            raise CheckFailed(f"{self.name} (v{self.version}): no CONNACK within {WAIT}s"
                              f" (disconnect rc={self.disconnect_rc})")
        if self.connack[0] != 0:
            raise CheckFailed(f"{self.name} (v{self.version}): CONNACK refused, rc={self.connack[0]:#x}")
        return self.connack[1]

    def subscribe(self, topic, qos, expect=None):
        """Subscribe and wait for the SUBACK; it must grant `qos` (or say `expect`)."""
        rc, mid = self.c.subscribe(topic, qos)
        if rc != mqtt.MQTT_ERR_SUCCESS:
            raise CheckFailed(f"{self.name}: subscribe {topic} failed locally rc={rc}")
        with self.lock:
            ev = self.sub_events.setdefault(mid, threading.Event())
        if not ev.wait(WAIT):
            raise CheckFailed(f"{self.name}: no SUBACK for {topic} within {WAIT}s")
        granted = self.subacks[mid]
        wanted = [qos if expect is None else expect]
        if granted != wanted:
            raise CheckFailed(f"{self.name}: SUBACK for {topic} said {granted}, wanted {wanted}")

    def publish(self, topic, payload, qos, retain=False):
        info = self.c.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise CheckFailed(f"{self.name}: publish to {topic} failed locally rc={info.rc}")
        if qos > 0:
            info.wait_for_publish(WAIT)
            if not info.is_published():
                raise CheckFailed(f"{self.name}: no PUBACK/PUBCOMP for QoS {qos} publish to"
                                  f" {topic} within {WAIT}s (disconnect rc={self.disconnect_rc})")

    def wait_for(self, pred, timeout=WAIT):
        """Wait until pred(messages snapshot) is true; return whether it became true."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                snap = list(self.messages)
                self.msg_event.clear()
            if pred(snap):
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.msg_event.wait(left)

    def received(self, prefix):
        with self.lock:
            return [m for m in self.messages if m[1].startswith(prefix)]

    def disconnect(self):
        if self.c.is_connected():
            self.c.disconnect()
            self.gone.wait(WAIT)
        self.c.loop_stop()

    def kill_socket(self):
        """Stop the network loop and close the TCP socket without sending DISCONNECT."""
        paho_conn.kill_socket(self.c)


def conn(args, version, which, tag, will=None, client_id=None, clean=True):
    token = args.token_a if which == "a" else args.token_b
    return Conn(version, token, client_id or f"{which}-{tag}-{nonce()}", will, clean,
                transport=args.transport, ws_path=args.ws_path, cafile=args.cafile)


def require(cond, msg):
    if not cond:
        raise CheckFailed(msg)


def close_all(*conns):
    for c in conns:
        try:
            c.disconnect()
        except Exception:
            pass


# ---------------------------------------------------------------- scenarios

def sc_roundtrip(args, v):
    topic, n = f"user/{args.user_b}", nonce()
    a, b = conn(args, v, "a", "rt"), conn(args, v, "b", "rt")
    try:
        b.connect(args.host, args.port)
        b.subscribe(topic, 2)
        a.connect(args.host, args.port)
        for q in (0, 1, 2):
            a.publish(topic, f"rt-{n}-q{q}", q)
        want = {f"rt-{n}-q1": 1, f"rt-{n}-q2": 2}
        ok = b.wait_for(lambda ms: want.keys() <= {m[1] for m in ms})
        require(ok, f"B did not get QoS1+QoS2 messages; got {b.received('rt-' + n)}")
        b.wait_for(lambda ms: False, GRACE)   # catch duplicates
        got = b.received(f"rt-{n}")
        for payload, qos in want.items():
            hits = [m for m in got if m[1] == payload]
            require(len(hits) == 1, f"{payload}: expected exactly once, got {hits}")
            require(hits[0][0] == topic, f"{payload}: topic {hits[0][0]!r} != {topic!r}")
            require(hits[0][2] == qos, f"{payload}: delivered QoS {hits[0][2]} != {qos}")
        q0 = [m for m in got if m[1] == f"rt-{n}-q0"]
        require(len(q0) <= 1, f"QoS 0 message delivered {len(q0)} times")
    finally:
        close_all(a, b)


def sc_persistent(args, v):
    topic = f"user/{args.user_b}"
    if args.phase == 1:
        # Wipe any earlier session under this id, then create a persistent one.
        w = conn(args, v, "b", "", client_id="b-persist")
        w.connect(args.host, args.port)
        w.disconnect()
        b = conn(args, v, "b", "", client_id="b-persist", clean=False)
        try:
            b.connect(args.host, args.port, expiry=3600)
            b.subscribe(topic, 1)
        finally:
            close_all(b)
        n = nonce()
        sent = [f"p-{n}-{i}" for i in range(5)]
        a = conn(args, v, "a", "ps")
        try:
            a.connect(args.host, args.port)
            for p in sent:
                a.publish(topic, p, 1)
        finally:
            close_all(a)
        print(json.dumps({"sent": sent}), flush=True)
        return
    expect = [p for p in (args.expect or "").split(",") if p]
    require(expect, "persistent --phase 2 needs --expect p1,p2,...")
    b = conn(args, v, "b", "", client_id="b-persist", clean=False)
    try:
        present = b.connect(args.host, args.port, expiry=3600)
        require(present, "session_present was false on persistent reconnect")
        ok = b.wait_for(lambda ms: set(expect) <= {m[1] for m in ms})
        b.wait_for(lambda ms: False, GRACE)
        with b.lock:
            got = list(b.messages)
        require(ok, f"missing {sorted(set(expect) - {m[1] for m in got})}; got {got}")
        payloads = [m[1] for m in got]
        dups = sorted({p for p in payloads if payloads.count(p) > 1})
        require(not dups, f"duplicates delivered: {dups}; got {got}")
        extra = [m for m in got if m[1] not in expect]
        require(not extra, f"unexpected messages delivered: {extra}")
        bad = [m for m in got if m[0] != topic]
        require(not bad, f"wrong topic on messages: {bad}")
    finally:
        close_all(b)


def sc_wildcard(args, v):
    topic, payload = f"user/{args.user_b}", f"wc-{nonce()}"
    a, b = conn(args, v, "a", "wc"), conn(args, v, "b", "wc")
    try:
        b.connect(args.host, args.port)
        b.subscribe("user/+", 1)
        a.connect(args.host, args.port)
        a.publish(topic, payload, 1)
        require(b.wait_for(lambda ms: any(m[1] == payload for m in ms)),
                f"B (user/+) did not receive {payload}")
        hits = b.received(payload)
        require(all(m[0] == topic for m in hits), f"wrong topic: {hits}")
    finally:
        close_all(a, b)


def sc_will(args, v):
    topic = f"user/{args.user_b}"
    b = conn(args, v, "b", "will")
    try:
        b.connect(args.host, args.port)
        b.subscribe(topic, 1)
        # Variant 1: abrupt close -> will delivered.
        gone = f"gone-{nonce()}"
        a = conn(args, v, "a", "will", will=(topic, gone, 1, False))
        a.connect(args.host, args.port)
        a.kill_socket()
        require(b.wait_for(lambda ms: any(m[1] == gone for m in ms)),
                f"will {gone} not delivered after abrupt close")
        hits = b.received(gone)
        require(hits[0][0] == topic, f"will arrived on wrong topic: {hits}")
        # Variant 2: normal DISCONNECT -> will NOT delivered.
        kept = f"gone-{nonce()}"
        a2 = conn(args, v, "a", "will2", will=(topic, kept, 1, False))
        a2.connect(args.host, args.port)
        a2.disconnect()
        require(not b.wait_for(lambda ms: any(m[1] == kept for m in ms), NEGATIVE_WAIT),
                f"will {kept} delivered despite normal DISCONNECT")
    finally:
        close_all(b)


def sc_retained(args, v):
    require(args.room is not None, "retained needs --room N")
    topic, payload = f"room/{args.room}", f"r-{nonce()}"
    a, b = conn(args, v, "a", "ret"), conn(args, v, "b", "ret")
    try:
        a.connect(args.host, args.port)
        a.publish(topic, payload, 1, retain=True)
        b.connect(args.host, args.port)
        b.subscribe(topic, 1)
        require(b.wait_for(lambda ms: any(m[1] == payload for m in ms)),
                f"B did not receive retained {payload}; got {b.received('')}")
        hits = b.received(payload)
        require(len(hits) == 1, f"retained message delivered {len(hits)} times: {hits}")
        require(hits[0][3] == 1, f"retained message arrived without retain flag: {hits}")
        require(hits[0][0] == topic, f"retained message on wrong topic: {hits}")
    finally:
        close_all(a, b)


def sc_room(args, v):
    require(args.room is not None, "room needs --room N")
    topic, n = f"room/{args.room}", nonce()
    sent = [f"room-{n}-{i:02d}" for i in range(20)]
    a, b = conn(args, v, "a", "room"), conn(args, v, "b", "room")
    try:
        b.connect(args.host, args.port)
        b.subscribe(topic, 1)
        a.connect(args.host, args.port)
        for p in sent:
            a.publish(topic, p, 1)
        prefix = f"room-{n}-"
        ok = b.wait_for(lambda ms: sum(m[1].startswith(prefix) for m in ms) >= len(sent))
        got = [m[1] for m in b.received(prefix)]
        require(ok, f"B got {len(got)}/{len(sent)} room messages: {got}")
        b.wait_for(lambda ms: False, GRACE)
        got = [m[1] for m in b.received(prefix)]
        require(got == sent, f"room messages wrong/out of order/duplicated: {got}")
    finally:
        close_all(a, b)


def sc_permissions(args, v):
    """Run with rooms closed to A and --token-b granting B room N (issue #16
    item 6): A's SUBSCRIBE gets 0x87 (v5) / 0x80 (v3.1.1); A's publishes are
    acknowledged (0x87 in v5, positive in v3.1.1) but reach nobody."""
    require(args.room is not None, "permissions needs --room N")
    topic, n = f"room/{args.room}", nonce()
    a, b = conn(args, v, "a", "perm"), conn(args, v, "b", "perm")
    try:
        b.connect(args.host, args.port)
        b.subscribe(topic, 1)
        a.connect(args.host, args.port)
        a.subscribe(topic, 1, expect=0x87 if v == "5" else 0x80)
        a.publish(topic, f"refused-{n}", 1)
        a.publish(topic, f"refused-{n}-q0", 0)
        b.publish(topic, f"allowed-{n}", 1)
        require(b.wait_for(lambda ms: any(m[1] == f"allowed-{n}" for m in ms)),
                f"B did not get its own allowed message; got {b.received('')}")
        b.wait_for(lambda ms: False, GRACE)
        got = [m[1] for m in b.received("")]
        require(got == [f"allowed-{n}"], f"a refused publish reached the room: {got}")
        require(a.received("") == [], f"A got room messages: {a.received('')}")
    finally:
        close_all(a, b)


SCENARIOS = {"permissions": sc_permissions, "roundtrip": sc_roundtrip, "persistent": sc_persistent,
             "wildcard": sc_wildcard, "will": sc_will,
             "retained": sc_retained, "room": sc_room}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--scenario", required=True, choices=sorted(SCENARIOS))
    ap.add_argument("--token-a", required=True)
    ap.add_argument("--token-b", required=True)
    ap.add_argument("--user-a", required=True)
    ap.add_argument("--user-b", required=True)
    ap.add_argument("--room", type=int)
    ap.add_argument("--version", choices=["311", "5", "both"], default="both")
    ap.add_argument("--phase", type=int, choices=[1, 2])
    ap.add_argument("--expect", help="persistent phase 2: comma-separated payloads")
    ap.add_argument("--transport", choices=["tcp", "websockets"], default="tcp")
    ap.add_argument("--ws-path", default="/")
    ap.add_argument("--cafile", help="speak TLS, trusting this CA (PEM)")
    args = ap.parse_args()

    if args.scenario == "persistent":
        if args.phase is None:
            ap.error("persistent needs --phase 1 or --phase 2")
        if args.version == "both":
            ap.error("persistent needs --version 311 or --version 5 (one session per phase pair)")
    versions = ["311", "5"] if args.version == "both" else [args.version]

    def watchdog():
        sys.stderr.write(f"FAIL {args.scenario}: watchdog timeout "
                         f"({RUN_TIMEOUT * len(versions):.0f}s), aborting\n")
        sys.stderr.flush()
        os._exit(3)
    timer = threading.Timer(RUN_TIMEOUT * len(versions), watchdog)
    timer.daemon = True
    timer.start()

    for v in versions:
        try:
            SCENARIOS[args.scenario](args, v)
        except CheckFailed as e:
            sys.stderr.write(f"FAIL {args.scenario} (MQTT v{v}): {e}\n")
            sys.exit(1)
        except Exception as e:   # unexpected client-side error
            sys.stderr.write(f"ERROR {args.scenario} (MQTT v{v}): {type(e).__name__}: {e}\n")
            sys.exit(2)
        sys.stderr.write(f"ok {args.scenario} (MQTT v{v})\n")
    timer.cancel()


if __name__ == "__main__":
    main()
