/**
 * The connection's life (docs/PROTOCOL.md §5, §8): keepalive, the connect
 * timeout, DISCONNECT with redirect, ERROR, bytes that break the protocol,
 * and the store changes describing exactly the session's state.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { applyChanges, encodeFrame, ErrorCode, NEW_DEVICE, roomId, SendResult } from "../../src/index.js";
import { Harness, message, ofType } from "../support/harness.js";

describe("keepalive and timeouts", () => {
  test("PING after half the keepalive in force without traffic; silence for a whole keepalive drops the connection", () => {
    const h = new Harness({ keepaliveMs: 60_000 }, { delivered: 0n, outbox: [], rooms: [] });
    const [sync] = ofType(h.open({ keepaliveMs: 10_000 }), "sync");
    h.gateway({ type: "syncpage", requestId: sync!.requestId, head: 0n, end: true, gap: false, items: [] });
    h.events();
    assert.deepEqual(ofType(h.advance(4_999), "ping"), []);
    const [ping] = ofType(h.advance(1), "ping");
    assert.ok(ping, "PING at keepalive / 2 (the gateway's 10 s wins over the 60 s asked)");
    h.gateway({ type: "pong", nonce: ping.nonce });
    assert.deepEqual(h.events(), [], "a PONG keeps the connection");
    h.advance(5_000);
    assert.deepEqual(h.events(), []);
    h.advance(5_000);
    assert.deepEqual(h.events(), [{ type: "disconnected", reason: ErrorCode.IdleTimeout, redirect: "", byGateway: false }]);
    assert.equal(h.session.state, "disconnected");
  });

  test("no CONNACK within the connect timeout drops the connection", () => {
    const h = new Harness({ connectTimeoutMs: 2_000 });
    h.session.connect(h.now, "t");
    h.frames();
    assert.equal(h.session.pollTimeout(), h.now + 2_000);
    h.step();
    assert.deepEqual(h.events(), [{ type: "disconnected", reason: ErrorCode.IdleTimeout, redirect: "", byGateway: false }]);
  });

  test("the gateway's PING is answered with PONG and the same nonce", () => {
    const h = new Harness();
    h.open();
    assert.deepEqual(h.gateway({ type: "ping", nonce: 99n }), [{ type: "pong", nonce: 99n }]);
  });
});

describe("closing", () => {
  test("DISCONNECT ShuttingDown with a redirect is reported with it", () => {
    const h = new Harness();
    h.open();
    h.events();
    h.gateway({ type: "disconnect", reason: ErrorCode.ShuttingDown, redirect: "127.0.0.1:7401" });
    assert.deepEqual(h.events(), [
      { type: "disconnected", reason: ErrorCode.ShuttingDown, redirect: "127.0.0.1:7401", byGateway: true },
    ]);
    assert.equal(h.session.pollTimeout(), undefined, "no timers while disconnected");
  });

  test("ERROR is reported and ends the connection, except BadSyncRequest", () => {
    const h = new Harness();
    h.open();
    h.events();
    h.gateway({ type: "error", code: ErrorCode.BadSyncRequest, message: "limit" });
    assert.deepEqual(h.events().map((e) => e.type), ["gateway-error"]);
    h.gateway({ type: "error", code: ErrorCode.RateLimited, message: "slow down" });
    assert.deepEqual(h.events(), [
      { type: "gateway-error", code: ErrorCode.RateLimited, message: "slow down" },
      { type: "disconnected", reason: ErrorCode.RateLimited, redirect: "", byGateway: true },
    ]);
  });

  test("bytes that break the protocol end the connection with a typed error, and later bytes are ignored", () => {
    const h = new Harness();
    h.open();
    h.events();
    const bad = encodeFrame({ type: "ping", nonce: 1n });
    bad[0] = 0x42;
    h.session.handleBytes(bad, h.now);
    const [error, closed] = h.events();
    assert.equal(error?.type === "protocol-error" && error.error.code, ErrorCode.UnsupportedVersion);
    assert.deepEqual(closed, { type: "disconnected", reason: ErrorCode.UnsupportedVersion, redirect: "", byGateway: false });
    h.session.handleBytes(encodeFrame({ type: "push", ...message(1n) }), h.now);
    assert.deepEqual(h.events(), []);
  });

  test("a frame only clients send, or a frame before CONNACK, is a protocol violation", () => {
    const a = new Harness();
    a.open();
    a.events();
    a.gateway({ type: "ack", upTo: 1n });
    assert.equal(a.events()[0]?.type, "protocol-error");
    const b = new Harness();
    b.session.connect(b.now, "t");
    b.gateway({ type: "push", ...message(1n) });
    assert.equal(b.events()[0]?.type, "protocol-error");
  });

  test("tokens the CONNECT frame cannot carry are refused", () => {
    const h = new Harness();
    assert.throws(() => h.session.connect(h.now, ""), RangeError);
    assert.throws(() => h.session.connect(h.now, "x".repeat(4097)), RangeError);
  });
});

describe("store changes", () => {
  test("the drained changes rebuild exactly the session's state (outbox, delivered, rooms, id counter)", () => {
    const h = new Harness({ page: 2 }, { delivered: 0n, outbox: [], rooms: [] });
    const room = roomId(3n);
    h.session.subscribe(room, 1, h.now);
    const a = h.session.send(1n, new Uint8Array([1]), 1, h.now);
    const b = h.session.send(1n, new Uint8Array([2]), 2, h.now);
    h.session.send(1n, new Uint8Array([3]), 1, h.now);
    const [sync] = ofType(h.open({ head: 3n }), "sync");
    h.gateway({ type: "suback", room, head: 10n, first: 11n, result: 0 });
    h.gateway({ type: "roompush", room, seq: 11n, from: 1n, tsMs: 1n, qos: 1, payload: new Uint8Array(0) });
    h.gateway(
      { type: "sendack", clientMsgId: a, seq: 1n, ownSeq: 2n, result: SendResult.Stored },
      { type: "sendack", clientMsgId: b, seq: 3n, ownSeq: 4n, result: SendResult.Stored },
    );
    h.gateway({ type: "syncpage", requestId: sync!.requestId, head: 3n, end: false, gap: false, items: [message(1n), message(2n)] });
    h.changes();
    assert.deepEqual(canonical(h.stored), canonical(h.session.snapshot()));
    assert.deepEqual(canonical(applyChanges(NEW_DEVICE, [])), canonical(NEW_DEVICE));
    assert.equal(h.stored.delivered, 2n);
    assert.deepEqual(h.stored.rooms, [{ room, qos: 1, last: 11n }]);
    assert.deepEqual(h.stored.outbox.map((e) => [e.clientMsgId, e.stage]), [[b, "release"], [a + 2n, "send"]]);
  });
});

function canonical(s: { delivered?: bigint | undefined; nextClientMsgId?: bigint | undefined; outbox: readonly { clientMsgId: bigint }[]; rooms: readonly { room: bigint }[] }) {
  return {
    delivered: s.delivered,
    nextClientMsgId: s.nextClientMsgId,
    outbox: [...s.outbox].sort((x, y) => (x.clientMsgId < y.clientMsgId ? -1 : 1)),
    rooms: [...s.rooms].sort((x, y) => (x.room < y.room ? -1 : 1)),
  };
}


