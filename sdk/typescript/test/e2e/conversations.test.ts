/**
 * Conversations end to end against the real gateway (PROTOCOL.md §7a):
 * the summaries of a user's inbox by conversation, then one
 * conversation's pages, checked by identity (peer, last seq and sender,
 * preview; each message's seq, sender and payload).
 */

import assert from "node:assert/strict";
import { after, describe, test } from "node:test";

import { Device, gatewayForThisFile, stored, text } from "../support/device.js";

const gateway = gatewayForThisFile({ shards: 2 });
/** 74 bytes: beyond the gateway's default 64-byte preview. */
const LONG = "alice 3: a message longer than the preview the gateway keeps of it, by far";
after(() => Device.closeAll());

describe("conversations", () => {
  test("summaries per peer, newest first; a conversation pages back without the rest of the inbox", async () => {
    const reader = await Device.online(gateway(), 701n, 1n);
    const alice = await Device.online(gateway(), 702n, 1n);
    const bob = await Device.online(gateway(), 703n, 1n);
    const sent: Array<[Device, string]> = [
      [alice, "alice 1"],
      [bob, "bob 1"],
      [alice, "alice 2"],
      [alice, LONG],
    ];
    const seqs: bigint[] = [];
    for (const [from, body] of sent) seqs.push((await stored(await from.client.send(701n, body, { qos: 1 }))).seq);
    assert.deepEqual(seqs, [1n, 2n, 3n, 4n]);

    const page = await reader.client.listConversations({ limit: 10 });
    assert.equal(page.end, true);
    assert.equal(page.head, 4n);
    assert.deepEqual(
      page.items.map((i) => [i.peer, i.lastSeq, i.lastFrom, i.total, i.lastLen, text(i.preview)]),
      [
        [702n, 4n, 702n, 3n, LONG.length, LONG.slice(0, 64)],
        [703n, 2n, 703n, 1n, 5, "bob 1"],
      ],
    );
    const newest = await reader.client.fetchConversation(702n, { direction: "latest", limit: 2 });
    assert.deepEqual(
      newest.items.map((m) => [m.seq, m.from, text(m.payload)]),
      [
        [3n, 702n, "alice 2"],
        [4n, 702n, LONG],
      ],
    );
    assert.equal(newest.end, false);
    const older = await reader.client.fetchConversation(702n, { direction: "before", anchor: 3n, limit: 2 });
    assert.deepEqual(
      older.items.map((m) => [m.seq, m.from, text(m.payload)]),
      [[1n, 702n, "alice 1"]],
    );
    assert.equal(older.end, true);
    await Promise.all([reader.close(), alice.close(), bob.close()]);
  });
});
