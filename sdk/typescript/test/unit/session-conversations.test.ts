/**
 * Conversations (docs/PROTOCOL.md §7a): CONVLIST and CONVFETCH leave the
 * session with increasing request ids (shared with SYNC) and only while a
 * session is open; their answers become events; a bad page size keeps the
 * session open.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { ErrorCode, type ConvMsgsFrame, type ConvPageFrame } from "../../src/index.js";
import { Harness, message, ofType } from "../support/harness.js";

describe("conversations", () => {
  test("requests carry fresh ids; pages come back as events; nothing is acknowledged", () => {
    const h = new Harness();
    assert.equal(h.session.listConversations({ limit: 10 }, h.now), undefined, "not connected");
    h.open();
    const list = h.session.listConversations({ limit: 20, unreadOnly: true }, h.now);
    const fetch = h.session.fetchConversation(9n, { direction: "before", anchor: 30n, limit: 5 }, h.now);
    assert.ok(list !== undefined && fetch !== undefined && fetch > list);
    const sent = h.frames();
    assert.deepEqual(ofType(sent, "convlist"), [{ type: "convlist", requestId: list, before: 0n, limit: 20, unreadOnly: true }]);
    assert.deepEqual(ofType(sent, "convfetch"), [
      { type: "convfetch", requestId: fetch, peer: 9n, direction: "before", anchor: 30n, limit: 5 },
    ]);
    assert.deepEqual(ofType(sent, "ack"), []);
    const page: ConvPageFrame = {
      type: "convpage",
      requestId: list,
      cursor: 3n,
      head: 31n,
      older: 0n,
      end: true,
      items: [
        {
          peer: 9n,
          unread: 2,
          unreadAtLeast: false,
          total: 4n,
          lastSeq: 31n,
          lastFrom: 9n,
          lastFromDevice: 1n,
          lastTsMs: 5n,
          lastLen: 9,
          preview: new TextEncoder().encode("payload"),
        },
      ],
    };
    const msgs: ConvMsgsFrame = {
      type: "convmsgs",
      requestId: fetch,
      peer: 9n,
      head: 31n,
      end: true,
      truncated: false,
      items: [message(12n, { from: 9n }), message(20n, { from: 9n, prevSeq: 12n })],
    };
    h.gateway(page, msgs);
    const events = h.events();
    assert.deepEqual(
      events.filter((e) => e.type === "conversations" || e.type === "conversation-page"),
      [
        { type: "conversations", page },
        { type: "conversation-page", page: msgs },
      ],
    );
    assert.deepEqual(ofType(h.frames(), "ack"), [], "a conversation page acknowledges nothing");
  });

  test("BadConversationRequest is reported and the session stays open", () => {
    const h = new Harness();
    h.open();
    h.gateway({ type: "error", code: ErrorCode.BadConversationRequest, message: "limit 0 outside 1..=1000" });
    assert.ok(h.events().some((e) => e.type === "gateway-error"));
    assert.ok(h.session.listConversations({ limit: 1 }, h.now) !== undefined, "still open");
  });
});
