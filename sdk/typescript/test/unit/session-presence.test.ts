/**
 * Presence (docs/PROTOCOL.md §6c): WATCH and UNWATCH frames, WATCHACK and
 * PRESENCE as events, a refused WATCH forgets its users, and every
 * reconnect watches the remembered users again.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { ErrorCode } from "../../src/index.js";
import { connack, Harness, ofType } from "../support/harness.js";

describe("presence", () => {
  test("a watch is sent, answered, reported, and made again after a reconnect", () => {
    const h = new Harness();
    h.open();
    const request = h.session.watch([42n, 43n, 42n], h.now);
    assert.equal(request, 1);
    assert.deepEqual(ofType(h.frames(), "watch"), [{ type: "watch", request: 1, users: [42n, 43n] }]);
    assert.equal(h.session.watch([43n], h.now), undefined, "already watched: nothing sent");
    h.gateway({ type: "watchack", request: 1, code: 0, watching: 2, refused: 0n });
    const device = { device: 7n, sinceMs: 1_700_000_000_000n, shard: 1, transport: "native" };
    h.gateway({ type: "presence", user: 42n, devices: [device] });
    const events = h.events().filter((e) => e.type === "watched" || e.type === "presence");
    assert.deepEqual(events, [
      { type: "watched", ack: { type: "watchack", request: 1, code: 0, watching: 2, refused: 0n } },
      { type: "presence", presence: { type: "presence", user: 42n, devices: [device] } },
    ]);

    h.session.unwatch([43n, 99n], h.now);
    assert.deepEqual(ofType(h.frames(), "unwatch"), [{ type: "unwatch", users: [43n] }]);
    h.session.handleDisconnect(h.now);
    h.session.connect(h.now, "t");
    h.frames();
    const again = ofType(h.gateway(connack()), "watch");
    assert.deepEqual(again, [{ type: "watch", request: 2, users: [42n] }]);
  });

  test("a refused WATCH forgets the users it added, not those watched before", () => {
    const h = new Harness();
    h.open();
    h.session.watch([1n], h.now);
    h.gateway({ type: "watchack", request: 1, code: 0, watching: 1, refused: 0n });
    h.session.watch([2n, 3n], h.now);
    h.gateway({ type: "watchack", request: 2, code: ErrorCode.TooManyWatches, watching: 1, refused: 0n });
    assert.deepEqual(h.session.watched(), [1n]);
  });

  test("a WATCH from the gateway is a protocol error", () => {
    const h = new Harness();
    h.open();
    h.gateway({ type: "watch", request: 1, users: [1n] });
    assert.ok(
      h.events().some((e) => e.type === "disconnected" || e.type === "protocol-error"),
      "the session drops the connection",
    );
  });
});
