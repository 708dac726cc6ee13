/**
 * End to end against the real gateway binary over TCP: one-to-one at QoS
 * 0/1/2, multi-device echo, offline replay in pages, a new device's newest
 * N then older pages. Every received message is checked by identity
 * (from, from_device, client_msg_id, payload, seq), not only by count.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { MemoryStore, type Frame, type SendReceipt, type SyncFrame } from "../../src/node.js";
import { Device, gatewayForThisFile, recordingConnector, stored, text } from "../support/device.js";

const gateway = gatewayForThisFile({ shards: 2 });

describe("one-to-one", () => {
  test("QoS 1, 2 and 0 arrive with the sender's identity; QoS 2 completes with REL/COMP", async () => {
    const alice = await Device.online(gateway(), 101n, 1n);
    const bob = await Device.online(gateway(), 102n, 1n);
    const one = await alice.client.send(102n, "one", { qos: 1 });
    const two = await alice.client.send(102n, "two", { qos: 2 });
    const a1 = await stored(one);
    const a2 = await stored(two);
    assert.ok(alice.log.indexOf("send-completed") > alice.log.indexOf("send-acked"), "COMP after SENDACK");
    await bob.until("two messages", () => bob.messages.length === 2);
    const zero = await alice.client.send(102n, "zero", { qos: 0 });
    assert.deepEqual(await zero.outcome, { status: "sent" });
    await bob.until("the QoS 0 message", () => bob.ephemeral.length === 1);

    const [m1, m2] = bob.messages;
    for (const [m, receipt, outcome, body, qos] of [
      [m1!, one, a1, "one", 1],
      [m2!, two, a2, "two", 2],
    ] as const) {
      assert.equal(m.from, 101n);
      assert.equal(m.fromDevice, 1n);
      assert.equal(m.to, 102n);
      assert.equal(m.clientMsgId, receipt.clientMsgId);
      assert.equal(text(m.payload), body);
      assert.equal(m.seq, outcome.seq, "the seq the SENDACK announced");
      assert.equal(m.qos, qos);
      assert.equal(m.echo, false);
    }
    assert.equal(m2!.seq, m1!.seq + 1n);
    const e = bob.ephemeral[0]!;
    assert.deepEqual([e.seq, e.qos, e.clientMsgId, text(e.payload)], [0n, 0, zero.clientMsgId, "zero"]);
    assert.equal(bob.client.delivered, m2!.seq);
    await Promise.all([alice.close(), bob.close()]);
  });

  test("multi-device: the sending device gets a payload-less echo, its other device the message, at the own-inbox seq", async () => {
    const carol1 = await Device.online(gateway(), 201n, 1n);
    const carol2 = await Device.online(gateway(), 201n, 2n);
    const dave = await Device.online(gateway(), 202n, 1n);
    const receipt = await carol1.client.send(202n, "hello dave", { qos: 1 });
    const outcome = await stored(receipt);
    await carol1.until("echo", () => carol1.messages.length === 1);
    await carol2.until("copy", () => carol2.messages.length === 1);
    await dave.until("message", () => dave.messages.length === 1);
    const echo = carol1.messages[0]!;
    assert.equal(echo.echo, true);
    assert.equal(echo.payload.length, 0);
    assert.equal(echo.seq, outcome.ownSeq);
    assert.equal(echo.clientMsgId, receipt.clientMsgId);
    const copy = carol2.messages[0]!;
    assert.deepEqual(
      [copy.echo, text(copy.payload), copy.from, copy.fromDevice, copy.to, copy.seq, copy.clientMsgId],
      [false, "hello dave", 201n, 1n, 202n, outcome.ownSeq, receipt.clientMsgId],
    );
    assert.equal(dave.messages[0]!.seq, outcome.seq);
    assert.equal(text(dave.messages[0]!.payload), "hello dave");
    await Promise.all([carol1.close(), carol2.close(), dave.close()]);
  });
});

describe("replay", () => {
  test("an offline device replays in pages; each SYNC After acknowledges the page before; ids increase", async () => {
    const store = new MemoryStore();
    const erin = await Device.online(gateway(), 301n, 1n, { store });
    await erin.close();
    const frank = await Device.online(gateway(), 302n, 1n);
    const receipts: SendReceipt[] = [];
    for (let i = 1; i <= 25; i++) receipts.push(await frank.client.send(301n, `offline ${i}`));
    const outcomes = await Promise.all(receipts.map(stored));

    const sent: Frame[] = [];
    const back = Device.create(gateway(), 301n, 1n, { store, session: { page: 10 }, client: { connector: recordingConnector(sent) } });
    await back.client.start();
    await back.until("caught up", () => back.client.state === "live");
    assert.deepEqual(back.texts(), receipts.map((_, i) => `offline ${i + 1}`));
    back.messages.forEach((m, i) => {
      assert.equal(m.seq, outcomes[i]!.seq);
      assert.equal(m.clientMsgId, receipts[i]!.clientMsgId);
      assert.equal(m.from, 302n);
    });
    const syncs = sent.filter((f): f is SyncFrame => f.type === "sync");
    const first = outcomes[0]!.seq - 1n;
    assert.deepEqual(
      syncs.map((s) => [s.direction, s.anchor]),
      [["after", first], ["after", first + 10n], ["after", first + 20n], ["after", first + 25n]],
      "three pages and the empty one that ends the replay",
    );
    syncs.reduce((prev, s) => (assert.ok(s.requestId > prev), s.requestId), 0);
    assert.equal((await store.load()).delivered, first + 25n, "delivered is stored");
    await Promise.all([back.close(), frank.close()]);
  });

  test("a new device gets the newest N, then older pages on demand, then live pushes", async () => {
    const sender = await Device.online(gateway(), 402n, 1n);
    const receipts: SendReceipt[] = [];
    for (let i = 1; i <= 30; i++) receipts.push(await sender.client.send(401n, `m${i}`));
    await Promise.all(receipts.map(stored));

    const gina = await Device.online(gateway(), 401n, 9n, { session: { initialLatest: 10 } });
    assert.deepEqual(gina.texts(), Array.from({ length: 10 }, (_, i) => `m${21 + i}`));
    const page2 = await gina.client.fetchOlder({ limit: 10 });
    assert.deepEqual(page2.items.map((m) => text(m.payload)), Array.from({ length: 10 }, (_, i) => `m${11 + i}`));
    assert.equal(page2.end, false);
    const page1 = await gina.client.fetchOlder({ limit: 10 });
    assert.deepEqual(page1.items.map((m) => text(m.payload)), Array.from({ length: 10 }, (_, i) => `m${1 + i}`));
    // The gateway flags END only on a page that is not full: one more
    // request confirms that nothing is older.
    assert.equal(page1.end, false);
    assert.deepEqual(await gina.client.fetchOlder({ limit: 10 }), { items: [], end: true });
    assert.deepEqual(page1.items.map((m) => m.clientMsgId), receipts.slice(0, 10).map((r) => r.clientMsgId));

    await sender.client.send(401n, "m31");
    await gina.until("the live push", () => gina.messages.length === 11);
    assert.equal(text(gina.messages[10]!.payload), "m31");
    assert.equal(gina.messages.length, 11, "older pages are history, not messages");
    await Promise.all([gina.close(), sender.close()]);
  });
});
