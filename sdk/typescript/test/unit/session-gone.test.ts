/**
 * Sequences the gateway says are gone (issue 23, issue 16 item 7;
 * docs/PROTOCOL.md §7 "Gone sequences"): reported once as a `lost` event,
 * in order between the messages around them, stepped over, persisted in
 * `delivered` and acknowledged; a reordered push is still waited for. The
 * first three tests mirror src/client/session/tests.rs (the Rust SDK).
 * Before this, the session waited forever for a push whose `prevSeq`
 * stepped over sequences, and reported nothing for a page that did.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import type { InboxMessage, SessionEvent, SyncPageFrame } from "../../src/index.js";
import { Harness, message, ofType } from "../support/harness.js";

/** Message `seq` whose predecessor in what the gateway sent is `prev`. */
const after = (seq: bigint, prev: bigint): InboxMessage => message(seq, { prevSeq: prev });

/** What the application is told, in order: messages by seq, losses as ranges. */
function told(events: SessionEvent[]): string[] {
  return events.flatMap((e) =>
    e.type === "message" ? [`m${e.message.seq}`] : e.type === "lost" ? [`lost${e.first}-${e.last}`] : [],
  );
}

/** A device holding `delivered`, connected and replaying; returns it and the SYNC's request id. */
function replaying(delivered: bigint, head = delivered): { h: Harness; id: number } {
  const h = new Harness({}, { delivered, outbox: [], rooms: [] });
  const [sync] = ofType(h.open({ head, cursor: delivered }), "sync");
  assert.deepEqual([sync?.direction, sync?.anchor], ["after", delivered]);
  return { h, id: sync!.requestId };
}

function page(requestId: number, head: bigint, gap: boolean, items: InboxMessage[]): SyncPageFrame {
  return { type: "syncpage", requestId, head, end: true, gap, items };
}

/** A device holding `delivered`, live (its replay found nothing newer). */
function live(delivered: bigint): Harness {
  const { h, id } = replaying(delivered);
  h.gateway(page(id, delivered, false, []));
  assert.equal(h.session.state, "live");
  h.events();
  return h;
}

describe("gone sequences: live pushes", () => {
  test("a push whose prevSeq skips sequences reports them lost, then delivers, persists and acknowledges", () => {
    const h = live(5n);
    const sent = h.gateway({ type: "push", ...after(8n, 5n) }, { type: "push", ...after(9n, 8n) });
    assert.deepEqual(told(h.events()), ["lost6-7", "m8", "m9"]);
    assert.equal(h.session.delivered, 9n);
    assert.equal(h.stored.delivered, 9n);
    assert.deepEqual(ofType(sent, "ack"), [{ type: "ack", upTo: 9n }]);
  });

  test("a reordered push is still waited for (its prevSeq is above delivered)", () => {
    const h = live(5n);
    const held = h.gateway({ type: "push", ...after(7n, 6n) });
    assert.deepEqual(told(h.events()), [], "6 is on its way");
    assert.deepEqual(ofType(held, "ack"), []);
    const sent = h.gateway({ type: "push", ...after(6n, 5n) });
    assert.deepEqual(told(h.events()), ["m6", "m7"]);
    assert.deepEqual(ofType(sent, "ack"), [{ type: "ack", upTo: 7n }]);
  });

  test("a buffered push that steps over sequences follows once the push before it arrives", () => {
    const h = live(5n);
    // The gateway sent 7 (after 5; 6 is gone), then 9 (after 7; 8 is gone); 7 came late.
    h.gateway({ type: "push", ...after(9n, 7n) });
    assert.deepEqual(told(h.events()), []);
    const sent = h.gateway({ type: "push", ...after(7n, 5n) });
    assert.deepEqual(told(h.events()), ["lost6-6", "m7", "lost8-8", "m9"]);
    assert.deepEqual(ofType(sent, "ack"), [{ type: "ack", upTo: 9n }]);
    assert.equal(h.stored.delivered, 9n);
  });

  test("a stepped-over sequence showing up later is a duplicate: dropped and acknowledged again", () => {
    const h = live(5n);
    h.gateway({ type: "push", ...after(8n, 5n) });
    h.events();
    const sent = h.gateway({ type: "push", ...message(7n) });
    assert.deepEqual(told(h.events()), []);
    assert.deepEqual(ofType(sent, "ack"), [{ type: "ack", upTo: 8n }]);
  });
});

describe("gone sequences: replay pages", () => {
  test("pages with gaps report what is gone and an empty gap page moves to the head", () => {
    let { h, id } = replaying(10n, 600n);
    // Retention removed 11..=499; then a hole at 502.
    const [next] = ofType(h.gateway(page(id, 600n, true, [after(500n, 10n), after(501n, 500n), after(503n, 501n)])), "sync");
    assert.deepEqual(told(h.events()), ["lost11-499", "m500", "m501", "lost502-502", "m503"]);
    assert.equal(next?.anchor, 503n, "the next page acknowledges this one, holes included");
    assert.equal(h.stored.delivered, 503n);

    ({ h, id } = replaying(79n, 80n));
    const sent = h.gateway(page(id, 80n, true, []));
    assert.deepEqual(told(h.events()), ["lost80-80"]);
    assert.equal(h.session.delivered, 80n);
    assert.equal(h.session.state, "live");
    assert.deepEqual(ofType(sent, "ack"), [{ type: "ack", upTo: 80n }], "acknowledged up to the head");
    assert.deepEqual(ofType(sent, "sync"), [], "the empty page ends the replay");
    assert.equal(h.stored.delivered, 80n, "persisted past the lost ones");
  });

  test("after an empty gap page the lost range is reported once, caught-up follows, and the next CONNECT starts above it", () => {
    const { h, id } = replaying(3n, 9n);
    h.gateway(page(id, 9n, true, []));
    const events = h.events();
    assert.deepEqual(
      events.filter((e) => e.type === "lost" || e.type === "caught-up"),
      [{ type: "lost", first: 4n, last: 9n }, { type: "caught-up" }],
    );
    h.session.handleDisconnect(h.now);
    h.session.connect(h.now, "t");
    const [connect] = h.frames();
    assert.equal(connect?.type === "connect" && connect.lastSeq, 9n);
    assert.deepEqual(h.events(), [], "nothing is reported again");
  });

  test("an empty page without GAP steps over nothing", () => {
    const { h, id } = replaying(10n, 12n);
    const sent = h.gateway(page(id, 12n, false, []));
    assert.deepEqual(told(h.events()), []);
    assert.equal(h.session.delivered, 10n);
    assert.deepEqual(ofType(sent, "ack"), []);
  });

  test("a new device's newest page reports holes among its items, nothing below the first", () => {
    const h = new Harness({ initialLatest: 4 });
    const [latest] = ofType(h.open({ head: 30n }), "sync");
    h.gateway({
      type: "syncpage",
      requestId: latest!.requestId,
      head: 30n,
      end: false,
      gap: true,
      items: [message(21n), message(22n), after(25n, 22n), after(30n, 25n)],
    });
    assert.deepEqual(told(h.events()), ["m21", "m22", "lost23-24", "m25", "lost26-29", "m30"]);
    assert.equal(h.stored.delivered, 30n);
  });
});
