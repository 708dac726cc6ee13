/**
 * Sending (docs/PROTOCOL.md §6): the outbox keeps a send with its
 * client_msg_id across retries and reconnects until SENDACK (QoS 1) or
 * COMP (QoS 2); StorageUnavailable retries, Forbidden never does; at most
 * max_pending_sends are outstanding; ids never repeat across restarts.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { PayloadTooLargeError, SendResult, type SendAckFrame } from "../../src/index.js";
import { REFUSED_RETRY_MS } from "../../src/session/outbox.js";
import { connack, Harness, ofType } from "../support/harness.js";

const enc = new TextEncoder();

function ack(clientMsgId: bigint, result: SendAckFrame["result"] = SendResult.Stored, seq = 3n): SendAckFrame {
  return { type: "sendack", clientMsgId, seq, ownSeq: seq + 100n, result };
}

function liveHarness(config = {}): Harness {
  const h = new Harness({ sendTimeoutMs: 3_000, ...config }, { delivered: 0n, outbox: [], rooms: [] });
  h.open();
  h.events();
  return h;
}

describe("QoS 1", () => {
  test("SEND goes out; SENDACK Stored finishes it and removes it from the stored outbox", () => {
    const h = liveHarness();
    const id = h.session.send(9n, enc.encode("hi"), 1, h.now);
    h.changes();
    assert.equal(h.stored.outbox.length, 1, "persisted before it is finished");
    const [send] = ofType(h.frames(), "send");
    assert.deepEqual(send, { type: "send", clientMsgId: id, to: 9n, qos: 1, payload: enc.encode("hi") });
    h.gateway(ack(id));
    assert.deepEqual(h.events(), [{ type: "send-acked", ack: ack(id) }]);
    assert.equal(h.session.unfinishedSends, 0);
    assert.deepEqual(h.stored.outbox, []);
  });

  test("without SENDACK the same SEND (same id, same payload) goes out again after the send timeout", () => {
    const h = liveHarness();
    const id = h.session.send(9n, enc.encode("again"), 1, h.now);
    const [first] = ofType(h.frames(), "send");
    assert.deepEqual(ofType(h.advance(2_999), "send"), []);
    const [retry] = ofType(h.advance(1), "send");
    assert.deepEqual(retry, first);
    assert.equal(retry?.clientMsgId, id);
  });

  test("a reconnect sends the unfinished SEND again, with its id, after CONNACK", () => {
    const h = liveHarness();
    const id = h.session.send(9n, enc.encode("x"), 1, h.now);
    h.frames();
    h.session.handleDisconnect(h.now);
    h.session.connect(h.now, "t");
    assert.deepEqual(ofType(h.frames(), "send"), [], "nothing but CONNECT before CONNACK");
    const [resent] = ofType(h.gateway(connack({ cursor: 0n })), "send");
    assert.equal(resent?.clientMsgId, id);
    h.gateway(ack(id, SendResult.Duplicate));
    assert.equal(h.events().filter((e) => e.type === "send-acked").length, 1, "Duplicate means stored earlier");
    assert.equal(h.session.unfinishedSends, 0);
  });

  test("StorageUnavailable keeps the send and retries it soon, backing off; Forbidden gives up", () => {
    const h = liveHarness();
    const a = h.session.send(9n, enc.encode("a"), 1, h.now);
    const b = h.session.send(9n, enc.encode("b"), 1, h.now);
    h.frames();
    h.gateway(ack(a, SendResult.StorageUnavailable), ack(b, SendResult.Forbidden));
    const events = h.events();
    assert.deepEqual(events.map((e) => e.type), ["send-failed"]);
    assert.deepEqual(events[0], { type: "send-failed", clientMsgId: b, reason: "forbidden", ack: ack(b, SendResult.Forbidden) });
    assert.deepEqual(ofType(h.advance(REFUSED_RETRY_MS - 1), "send"), []);
    const retried = ofType(h.advance(1), "send").map((s) => s.clientMsgId);
    assert.deepEqual(retried, [a], "only the unavailable one is retried, after 50 ms");
    // Refused again: twice as long; then a timeout's worth at most.
    h.gateway(ack(a, SendResult.StorageUnavailable));
    assert.deepEqual(ofType(h.advance(2 * REFUSED_RETRY_MS - 1), "send"), []);
    assert.deepEqual(ofType(h.advance(1), "send").map((s) => s.clientMsgId), [a]);
    for (let i = 0; i < 10; i++) {
      h.gateway(ack(a, SendResult.StorageUnavailable));
      h.advance(3_000);
    }
    h.frames();
    h.gateway(ack(a, SendResult.StorageUnavailable));
    assert.deepEqual(ofType(h.advance(2_999), "send"), [], "never later than the send timeout");
    assert.deepEqual(ofType(h.advance(1), "send").map((s) => s.clientMsgId), [a]);
  });

  test("Conflict (an id reused for another message) gives up and says so", () => {
    const h = liveHarness();
    const a = h.session.send(9n, enc.encode("a"), 1, h.now);
    h.frames();
    h.gateway(ack(a, SendResult.Conflict));
    assert.deepEqual(h.events(), [{ type: "send-failed", clientMsgId: a, reason: "conflict", ack: ack(a, SendResult.Conflict) }]);
    assert.deepEqual(ofType(h.advance(10_000), "send"), [], "never retried");
  });

  test("at most max_pending_sends SENDs await SENDACK; the rest follow as answers come", () => {
    const h = liveHarness();
    h.session.handleDisconnect(h.now);
    h.open({ maxPendingSends: 2 });
    const ids = [1, 2, 3, 4, 5].map((i) => h.session.send(9n, enc.encode(`m${i}`), 1, h.now));
    assert.deepEqual(ofType(h.frames(), "send").map((s) => s.clientMsgId), ids.slice(0, 2));
    assert.deepEqual(ofType(h.gateway(ack(ids[0]!)), "send").map((s) => s.clientMsgId), [ids[2]]);
    assert.deepEqual(ofType(h.gateway(ack(ids[1]!), ack(ids[2]!)), "send").map((s) => s.clientMsgId), ids.slice(3));
  });
});

describe("QoS 2", () => {
  test("SENDACK leads to REL, REL is resent until COMP, and COMP completes it", () => {
    const h = liveHarness();
    const id = h.session.send(9n, enc.encode("once"), 2, h.now);
    h.frames();
    const [rel] = ofType(h.gateway(ack(id)), "rel");
    assert.deepEqual(rel, { type: "rel", clientMsgId: id, to: 9n });
    assert.equal(h.stored.outbox[0]?.stage, "release", "the release stage is persisted");
    assert.deepEqual(ofType(h.advance(3_000), "rel"), [rel!]);
    h.gateway({ type: "comp", clientMsgId: id });
    assert.deepEqual(h.events().map((e) => e.type), ["send-acked", "send-completed"]);
    assert.deepEqual(h.stored.outbox, []);
    assert.deepEqual(ofType(h.advance(10_000), "rel"), [], "nothing more after COMP");
  });

  test("after a reconnect (or restart) in the release stage, REL goes out, not SEND", () => {
    const h = liveHarness();
    const id = h.session.send(9n, enc.encode("once"), 2, h.now);
    h.frames();
    h.gateway(ack(id));
    const restarted = new Harness({}, h.stored);
    const frames = restarted.open();
    assert.deepEqual(ofType(frames, "send"), []);
    assert.deepEqual(ofType(frames, "rel"), [{ type: "rel", clientMsgId: id, to: 9n }]);
  });
});

describe("client message ids and limits", () => {
  test("ids continue after the stored counter and above every stored outbox id", () => {
    const h = new Harness({ firstClientMsgId: 10n }, {
      nextClientMsgId: 20n,
      outbox: [{ clientMsgId: 30n, to: 1n, qos: 1, payload: new Uint8Array(0), stage: "send" }],
      rooms: [],
    });
    assert.equal(h.session.send(1n, new Uint8Array(0), 1, h.now), 31n);
    assert.equal(h.session.send(1n, new Uint8Array(0), 0, h.now), 32n);
    h.changes();
    assert.equal(h.stored.nextClientMsgId, 33n, "the counter is persisted");
  });

  test("a payload that cannot fit a SEND frame is refused at once; a stored one too large for the gateway fails", () => {
    const h = liveHarness();
    assert.throws(() => h.session.send(1n, new Uint8Array((1 << 20) - 24), 1, h.now), PayloadTooLargeError);
    h.session.send(1n, new Uint8Array((1 << 20) - 25), 1, h.now);
    h.frames();
    const restarted = new Harness({}, h.stored);
    assert.deepEqual(ofType(restarted.open({ maxFrame: 4096 }), "send"), []);
    const [failed] = restarted.events().filter((e) => e.type === "send-failed");
    assert.equal(failed?.type === "send-failed" && failed.reason, "too-large");
    assert.deepEqual(restarted.stored.outbox, []);
  });

  test("QoS 0 goes out only on an open session and is never kept", () => {
    const h = new Harness();
    h.session.send(1n, enc.encode("lost"), 0, h.now);
    assert.deepEqual(h.frames(), []);
    h.open();
    assert.deepEqual(ofType(h.frames(), "send"), []);
    h.session.send(1n, enc.encode("now"), 0, h.now);
    assert.equal(ofType(h.frames(), "send").length, 1);
    assert.equal(h.session.unfinishedSends, 0);
  });

  test("bad addressees and QoS values are refused", () => {
    const h = new Harness();
    assert.throws(() => h.session.send(-1n, new Uint8Array(0), 1, h.now), RangeError);
    assert.throws(() => h.session.send(1n << 64n, new Uint8Array(0), 1, h.now), RangeError);
    assert.throws(() => h.session.send(1n, new Uint8Array(0), 3 as 1, h.now), RangeError);
  });
});
