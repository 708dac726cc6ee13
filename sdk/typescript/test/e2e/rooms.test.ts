/**
 * Rooms end to end: a subscriber resumes after its last message across an
 * app restart (room position in a FileStore) and across a gateway
 * restart (automatic reconnect), with nothing lost or shown twice
 * (checked by room sequence, publisher and payload); a resume older than
 * the room's history is reported as a gap naming what is gone; a room
 * with members refuses everyone else, and a member removed while
 * subscribed is told (`room-forbidden`) and gets nothing more.
 */

import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";

import { FileStore, roomId, type SendReceipt } from "../../src/node.js";
import { Device, gatewayForThisFile, text } from "../support/device.js";

// A count bound on how far back a resume reaches (none by default: the
// gap test needs one).
const gateway = gatewayForThisFile({ shards: 2, core: "room_history = 30\nroom_resume_limit = 30" });

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "surepush-ts-rooms-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Publishes `texts` to `room` and returns their room sequences (from SENDACK). */
async function publish(from: Device, room: bigint, texts: string[]): Promise<bigint[]> {
  const receipts: SendReceipt[] = [];
  for (const t of texts) receipts.push(await from.client.send(room, t, { qos: 1 }));
  return Promise.all(
    receipts.map(async (r) => {
      const o = await r.outcome;
      assert.equal(o.status, "stored");
      return o.status === "stored" ? o.seq : 0n;
    }),
  );
}

function assertRoomMessages(d: Device, room: bigint, seqs: bigint[], texts: string[], from: bigint): void {
  assert.deepEqual(
    d.rooms.map((m) => [m.room, m.seq, m.from, text(m.payload)]),
    seqs.map((seq, i) => [room, seq, from, texts[i]]),
  );
}

const range = (prefix: string, from: number, to: number): string[] =>
  Array.from({ length: to - from + 1 }, (_, i) => `${prefix}${from + i}`);

describe("rooms", () => {
  test("an app restart resumes the room after the last message it delivered (position in the file store)", async () => {
    const room = roomId(11n);
    const path = join(dir, "hank.journal");
    const publisher = await Device.online(gateway(), 502n, 1n);
    const firstStore = await FileStore.open({ path });
    const hank = Device.create(gateway(), 501n, 1n, { store: firstStore });
    await hank.client.start();
    await hank.client.subscribe(room);
    await hank.until("subscribed", () => hank.log.includes("subscribed"));
    const first = range("r", 1, 5);
    const firstSeqs = await publish(publisher, room, first);
    await hank.until("5 room messages", () => hank.rooms.length === 5);
    assertRoomMessages(hank, room, firstSeqs, first, 502n);
    await hank.close();
    await firstStore.close(); // the app exits

    const missed = range("r", 6, 12);
    const missedSeqs = await publish(publisher, room, missed);
    const store = await FileStore.open({ path });
    assert.equal((await store.load()).rooms[0]?.last, firstSeqs[4], "the position survived the restart");
    const again = Device.create(gateway(), 501n, 1n, { store });
    await again.client.start();
    await again.client.subscribe(room); // as an app does at every start: the stored position is kept
    await again.until("the 7 missed messages", () => again.rooms.length === 7);
    assertRoomMessages(again, room, missedSeqs, missed, 502n);
    await Promise.all([again.close(), publisher.close()]);
    await store.close();
  });

  test("a gateway restart: the client reconnects by itself and resumes without loss or duplicates", async () => {
    const room = roomId(12n);
    const publisher = await Device.online(gateway(), 512n, 1n);
    const sub = await Device.online(gateway(), 511n, 1n);
    await sub.client.subscribe(room, { qos: 0 });
    await sub.until("subscribed", () => sub.log.includes("subscribed"));
    const before = range("g", 1, 4);
    const seqs = await publish(publisher, room, before);
    await sub.until("4 messages", () => sub.rooms.length === 4);
    await publisher.close();

    await gateway().terminate(); // DISCONNECT ShuttingDown to both clients
    await sub.until("disconnected", () => sub.log.includes("disconnected"));
    await gateway().restart();
    const publisher2 = await Device.online(gateway(), 512n, 1n);
    const afterRestart = range("g", 5, 9);
    seqs.push(...(await publish(publisher2, room, afterRestart)));
    await sub.until("all 9", () => sub.rooms.length >= 9);
    assertRoomMessages(sub, room, seqs, [...before, ...afterRestart], 512n);
    await Promise.all([sub.close(), publisher2.close()]);
  });

  test("a resume older than the room's history reports the gap, then continues at the oldest kept", async () => {
    const room = roomId(13n);
    const publisher = await Device.online(gateway(), 522n, 1n);
    const texts = range("h", 1, 40);
    const seqs = await publish(publisher, room, texts);
    const late = Device.create(gateway(), 521n, 1n);
    await late.client.start();
    await late.client.resume(room, 0n);
    await late.until("the kept history", () => late.rooms.length === 30);
    assert.deepEqual(late.gaps, [{ room, from: seqs[0], to: seqs[9] }], "sequences 1..=10 are gone");
    const gapAt = late.log.indexOf("room-gap");
    assert.ok(gapAt >= 0 && gapAt < late.log.indexOf("room-message"), "the gap comes before the messages");
    assertRoomMessages(late, room, seqs.slice(10), texts.slice(10), 522n);
    await Promise.all([late.close(), publisher.close()]);
  });

  test("room permissions: outsiders are refused, a member removed while subscribed is told where it stopped (issue #16 item 6)", async () => {
    const room = roomId(14n);
    const set = await gateway().admin("POST", "/v1/rooms/14", { add: [531, 532] });
    assert.equal(set.status, 200, JSON.stringify(set.body));
    const publisher = await Device.online(gateway(), 532n, 1n);
    const member = await Device.online(gateway(), 531n, 1n);
    const outsider = await Device.online(gateway(), 533n, 1n);
    const forbidden: Array<{ room: bigint; last: bigint | undefined }> = [];
    for (const d of [member, outsider]) {
      d.client.on("room-forbidden", ({ room, last }) => forbidden.push({ room, last }));
    }
    await outsider.client.subscribe(room);
    await outsider.until("refused", () => outsider.log.includes("room-forbidden"));
    assert.deepEqual(forbidden, [{ room, last: undefined }]);
    const refused = await (await outsider.client.send(room, "let me in", { qos: 1 })).outcome;
    assert.deepEqual(refused, { status: "failed", reason: "forbidden" });

    await member.client.subscribe(room);
    await member.until("subscribed", () => member.log.includes("subscribed"));
    const texts = range("p", 1, 3);
    const seqs = await publish(publisher, room, texts);
    await member.until("3 messages", () => member.rooms.length === 3);
    assertRoomMessages(member, room, seqs, texts, 532n);

    await publisher.client.subscribe(room);
    await publisher.until("subscribed", () => publisher.log.includes("subscribed"));
    const removed = await gateway().admin("POST", "/v1/rooms/14", { remove: [531] });
    assert.equal(removed.status, 200);
    assert.deepEqual((removed.body as { members: string[] }).members, ["532"]);
    await member.until("ended", () => member.log.includes("room-forbidden"));
    assert.deepEqual(forbidden[1], { room, last: seqs[2] });
    // Once the publisher's own subscription has it, the member (whose
    // subscription ended before its room-forbidden was sent) never will.
    await publish(publisher, room, ["after"]);
    await publisher.until("after", () => publisher.rooms.some((m) => text(m.payload) === "after"));
    assert.equal(member.rooms.length, 3);
    await Promise.all([member.close(), outsider.close(), publisher.close()]);
  });
});
