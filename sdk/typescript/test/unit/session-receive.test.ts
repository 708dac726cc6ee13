/**
 * Receiving (docs/PROTOCOL.md §7): replay pages after CONNACK, a new
 * device's newest-N start, older history, live pushes with sequence dedup,
 * gap buffering and cumulative ACK. Driven with a fake clock.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { connack, Harness, message, ofType } from "../support/harness.js";

describe("replay after CONNACK", () => {
  test("a device with history pages SYNC After from delivered; each page acknowledges the last; an empty page ends replay", () => {
    const h = new Harness({ page: 3 }, { delivered: 4n, outbox: [], rooms: [] });
    h.session.connect(h.now, "t");
    const [connect] = h.frames();
    assert.deepEqual(connect, { type: "connect", device: 7n, lastSeq: 4n, keepaliveMs: 30_000, token: "t" });
    const [sync1] = ofType(h.gateway(connack({ head: 9n })), "sync");
    assert.deepEqual({ ...sync1!, requestId: 0 }, { type: "sync", requestId: 0, direction: "after", anchor: 4n, limit: 3 });
    assert.equal(h.session.state, "replaying");
    // The page may overlap what the device holds (4): skipped.
    const page1 = [message(4n), message(5n), message(6n)];
    const [sync2] = ofType(h.gateway({ type: "syncpage", requestId: sync1!.requestId, head: 9n, end: false, gap: false, items: page1 }), "sync");
    assert.equal(sync2?.direction, "after");
    assert.equal(sync2?.anchor, 6n, "the next page acknowledges this one");
    assert.ok(sync2!.requestId > sync1!.requestId, "request ids strictly increase");
    const [sync3] = ofType(
      h.gateway({ type: "syncpage", requestId: sync2!.requestId, head: 9n, end: true, gap: false, items: [message(7n), message(8n), message(9n)] }),
      "sync",
    );
    assert.equal(sync3?.anchor, 9n);
    assert.ok(sync3!.requestId > sync2!.requestId);
    const after = h.gateway({ type: "syncpage", requestId: sync3!.requestId, head: 9n, end: true, gap: false, items: [] });
    assert.deepEqual(ofType(after, "sync"), [], "the empty page ends the replay");
    const events = h.events();
    assert.deepEqual(h.delivered(events), [5n, 6n, 7n, 8n, 9n]);
    assert.equal(events.at(-1)?.type, "caught-up");
    assert.equal(h.session.state, "live");
    assert.equal(h.stored.delivered, 9n, "delivered is persisted");
  });

  test("a page answering an older request id is ignored; a lost page is asked again with a new id", () => {
    const h = new Harness({ syncTimeoutMs: 5_000 }, { delivered: 0n, outbox: [], rooms: [] });
    const [first] = ofType(h.open({ head: 2n }), "sync");
    assert.deepEqual(ofType(h.advance(4_999), "sync"), []);
    const [again] = ofType(h.advance(1), "sync");
    assert.ok(again && again.requestId > first!.requestId, "resent with a new id");
    assert.equal(again.anchor, 0n);
    h.gateway({ type: "syncpage", requestId: first!.requestId, head: 2n, end: true, gap: false, items: [message(1n)] });
    assert.deepEqual(h.delivered(), [], "the stale answer is ignored");
    h.gateway({ type: "syncpage", requestId: again.requestId, head: 2n, end: true, gap: false, items: [message(1n), message(2n)] });
    assert.deepEqual(h.delivered(), [1n, 2n]);
  });

  test("a page item past a retention gap is accepted (history is authoritative)", () => {
    const h = new Harness({}, { delivered: 3n, outbox: [], rooms: [] });
    const [sync] = ofType(h.open({ head: 20n }), "sync");
    h.gateway({ type: "syncpage", requestId: sync!.requestId, head: 20n, end: true, gap: false, items: [message(10n), message(11n)] });
    assert.deepEqual(h.delivered(), [10n, 11n]);
  });
});

describe("a new device", () => {
  test("starts with SYNC Latest, takes the newest N, continues with After, and fetches older pages on demand", () => {
    const h = new Harness({ initialLatest: 10 });
    h.session.connect(h.now, "t");
    const [connect] = h.frames();
    assert.equal(connect?.type === "connect" && connect.lastSeq, undefined, "no cursor: HAS_CURSOR clear");
    const [latest] = ofType(h.gateway(connack({ head: 30n })), "sync");
    assert.equal(latest?.direction, "latest");
    assert.equal(latest?.limit, 10);
    const newest = Array.from({ length: 10 }, (_, i) => message(21n + BigInt(i)));
    const [after] = ofType(h.gateway({ type: "syncpage", requestId: latest!.requestId, head: 30n, end: false, gap: false, items: newest }), "sync");
    assert.equal(after?.direction, "after");
    assert.equal(after?.anchor, 30n);
    h.gateway({ type: "syncpage", requestId: after!.requestId, head: 30n, end: true, gap: false, items: [] });
    assert.deepEqual(h.delivered(), newest.map((m) => m.seq));
    assert.equal(h.session.oldestSeen, 21n);

    h.session.fetchOlder(21n, 10, h.now);
    const [before] = ofType(h.frames(), "sync");
    assert.deepEqual({ ...before!, requestId: 0 }, { type: "sync", requestId: 0, direction: "before", anchor: 21n, limit: 10 });
    const older = Array.from({ length: 10 }, (_, i) => message(11n + BigInt(i)));
    h.gateway({ type: "syncpage", requestId: before!.requestId, head: 30n, end: false, gap: false, items: older });
    const events = h.events();
    assert.deepEqual(events, [{ type: "older", items: older, end: false }]);
    assert.equal(h.session.delivered, 30n, "history pages are not part of the live stream");
    assert.equal(h.session.oldestSeen, 11n);
  });

  test("an empty Latest page starts at the head", () => {
    const h = new Harness();
    const [latest] = ofType(h.open({ head: 0n }), "sync");
    const [after] = ofType(h.gateway({ type: "syncpage", requestId: latest!.requestId, head: 0n, end: true, gap: false, items: [] }), "sync");
    assert.equal(after?.anchor, 0n);
    assert.equal(h.stored.delivered, 0n, "a new device that saw nothing still persists its start");
  });

  test("a history request made while disconnected goes out after CONNACK, and is asked again if lost", () => {
    const h = new Harness({ syncTimeoutMs: 1_000 }, { delivered: 50n, outbox: [], rooms: [] });
    h.session.fetchOlder(40n, 5, h.now);
    assert.deepEqual(h.frames(), []);
    const before = ofType(h.open({ head: 50n }), "sync").filter((s) => s.direction === "before");
    assert.equal(before.length, 1);
    const resent = ofType(h.advance(1_000), "sync").filter((s) => s.direction === "before");
    assert.equal(resent.length, 1);
    assert.ok(resent[0]!.requestId > before[0]!.requestId);
  });
});

describe("live pushes", () => {
  function live(delivered: bigint): Harness {
    const h = new Harness({}, { delivered, outbox: [], rooms: [] });
    const [sync] = ofType(h.open({ head: delivered }), "sync");
    h.gateway({ type: "syncpage", requestId: sync!.requestId, head: delivered, end: true, gap: false, items: [] });
    h.events();
    return h;
  }

  test("in order: delivered and acknowledged cumulatively (one ACK per batch)", () => {
    const h = live(10n);
    const sent = h.gateway({ type: "push", ...message(11n) }, { type: "push", ...message(12n) });
    assert.deepEqual(h.delivered(), [11n, 12n]);
    assert.deepEqual(ofType(sent, "ack"), [{ type: "ack", upTo: 12n }]);
    assert.equal(h.stored.delivered, 12n);
  });

  test("a gap is buffered until the missing push arrives, then delivered in order", () => {
    const h = live(10n);
    assert.deepEqual(ofType(h.gateway({ type: "push", ...message(13n) }, { type: "push", ...message(12n) }), "ack"), []);
    assert.deepEqual(h.delivered(), []);
    const sent = h.gateway({ type: "push", ...message(11n, { retransmit: true }) });
    assert.deepEqual(h.delivered(), [11n, 12n, 13n]);
    assert.deepEqual(ofType(sent, "ack"), [{ type: "ack", upTo: 13n }]);
  });

  test("a duplicate (seq <= delivered) is dropped and acknowledged again", () => {
    const h = live(10n);
    h.gateway({ type: "push", ...message(11n) });
    h.events();
    const sent = h.gateway({ type: "push", ...message(11n, { retransmit: true }) });
    assert.deepEqual(h.delivered(), []);
    assert.deepEqual(ofType(sent, "ack"), [{ type: "ack", upTo: 11n }], "the ACK was lost: send it again");
    assert.deepEqual(ofType(h.gateway({ type: "push", ...message(3n) }), "ack"), [{ type: "ack", upTo: 11n }]);
    assert.deepEqual(h.delivered(), []);
  });

  test("QoS 0 (seq 0) is ephemeral, outside the sequence, and not acknowledged", () => {
    const h = live(10n);
    const sent = h.gateway({ type: "push", ...message(0n, { qos: 0 }) });
    const [e] = h.events();
    assert.equal(e?.type, "ephemeral");
    assert.deepEqual(ofType(sent, "ack"), []);
    assert.equal(h.session.delivered, 10n);
  });

  test("an echo (this device's own send) is delivered in sequence with its flag and no payload", () => {
    const h = live(10n);
    h.gateway({ type: "push", ...message(11n, { echo: true, payload: new Uint8Array(0), from: 42n, fromDevice: 7n }) });
    const [e] = h.events();
    assert.ok(e?.type === "message" && e.message.echo && e.message.payload.length === 0);
  });

  test("pushes during a new device's replay are held until its start is known", () => {
    const h = new Harness();
    const [latest] = ofType(h.open({ head: 5n }), "sync");
    h.gateway({ type: "push", ...message(6n) });
    const [after] = ofType(h.gateway({ type: "syncpage", requestId: latest!.requestId, head: 5n, end: false, gap: false, items: [message(5n)] }), "sync");
    h.gateway({ type: "syncpage", requestId: after!.requestId, head: 5n, end: true, gap: false, items: [] });
    assert.deepEqual(h.delivered(), [5n, 6n]);
  });
});
