/**
 * Gone sequences against the real gateway (issue 23; issue 16 items 7, 8;
 * docs/PROTOCOL.md §5, §7, §9). A device falls behind, the gateway's disk
 * damages two stored messages (one bit flipped in each while it is down),
 * the operator runs `surepush log salvage`, and the device reconnects: it
 * must be told exactly which sequences are lost, in order between the
 * messages it still gets (each checked by sender, addressee, client
 * message id, payload and seq), acknowledge past them without an error,
 * and go on with live messages. Before, this SDK rejected the GAP page as
 * Malformed (or waited forever for the missing sequences).
 *
 * Also: a device holding more than the gateway has (a replaced disk) is
 * accepted; the gateway raises the inbox head to it and numbers the next
 * message above.
 */

import assert from "node:assert/strict";
import { test } from "node:test";

import { MemoryStore, type Frame, type InboxMessage, type SendReceipt } from "../../src/node.js";
import { Device, gatewayForThisFile, recordingConnector, show, stored, text } from "../support/device.js";

const gateway = gatewayForThisFile({ shards: 1 });

const SENDER = 701n;
const RECEIVER = 702n;
const OTHER = 703n;
const payload = (i: number): string => `gone e2e message ${String(i).padStart(3, "0")}`;

/** Asserts that `m` is message `i` of this test as the SENDACK described it. */
function assertIdentity(m: InboxMessage, i: number, receipt: SendReceipt, seq: bigint): void {
  assert.deepEqual(
    [m.seq, m.from, m.fromDevice, m.to, m.clientMsgId, text(m.payload)],
    [seq, SENDER, 1n, RECEIVER, receipt.clientMsgId, payload(i)],
    `message ${i}`,
  );
}

test("a device holding more than the gateway raises the inbox head; the next message is numbered above it", async () => {
  const RAISER = 704n;
  const store = new MemoryStore();
  await store.apply([{ type: "delivered", seq: 80n }]);
  const device = Device.create(gateway(), RAISER, 1n, { store });
  const connacks: Array<[bigint, bigint | undefined]> = [];
  device.client.on("connected", ({ connack }) => connacks.push([connack.head, connack.cursor]));
  await device.client.start();
  await device.until("live", () => device.client.state === "live");
  assert.deepEqual(connacks, [[80n, 80n]], "CONNACK says the raised head");
  const sender = await Device.online(gateway(), SENDER, 1n);
  const receipt = await sender.client.send(RAISER, "above the raise", { qos: 1 });
  assert.equal((await stored(receipt)).seq, 81n);
  await device.until("message 81", () => device.messages.length === 1);
  const m = device.messages[0]!;
  assert.deepEqual(
    [m.seq, m.prevSeq, m.from, m.to, m.clientMsgId, text(m.payload)],
    [81n, 80n, SENDER, RAISER, receipt.clientMsgId, "above the raise"],
  );
  assert.deepEqual(device.told, ["m81"], "nothing is lost");
  assert.ok(!device.log.includes("gateway-error"), device.log.join(", "));
  await Promise.all([device.close(), sender.close()]);
});

test("a device behind a salvaged damage is told lost 12 and 30 in order, acknowledges past them and goes on live", async () => {
  const store = new MemoryStore();
  const receiver = await Device.online(gateway(), RECEIVER, 1n, { store });
  let sender = await Device.online(gateway(), SENDER, 1n);
  const receipts: SendReceipt[] = [];
  const seqs: bigint[] = [];
  const send = async (i: number): Promise<void> => {
    const receipt = await sender.client.send(RECEIVER, payload(i), { qos: 1 });
    receipts[i] = receipt;
    seqs[i] = (await stored(receipt)).seq;
  };
  for (let i = 1; i <= 5; i++) await send(i);
  await receiver.until("messages 1..5", () => receiver.messages.length === 5);
  await receiver.close();
  assert.equal((await store.load()).delivered, seqs[5], "the receiver holds 1..5");

  // The receiver is offline while 6..30 are stored.
  for (let i = 6; i <= 30; i++) await send(i);
  assert.deepEqual(seqs.slice(1), Array.from({ length: 30 }, (_, k) => BigInt(k + 1)), "inbox sequences 1..30");
  // One more commit after message 30's, so that a damage to message 30 is
  // recognised as damage (a later commit's marker covers it), not as a
  // torn, never acknowledged tail.
  await stored(await sender.client.send(OTHER, "later commit", { qos: 1 }));
  await sender.close();

  await gateway().kill9();
  await gateway().damageMessage(RECEIVER, payload(12));
  await gateway().damageMessage(RECEIVER, payload(30));
  const salvage = await gateway().logTool("salvage");
  assert.ok(salvage.ok, salvage.output);
  assert.ok(salvage.output.includes(`lost: inbox ${RECEIVER} seq 12, 30\n`), salvage.output);
  await gateway().restart();

  const sent: Frame[] = [];
  const back = Device.create(gateway(), RECEIVER, 1n, { store, client: { connector: recordingConnector(sent) } });
  await back.client.start();
  await back.until("caught up", () => back.client.state === "live");
  assert.deepEqual(back.told, [
    ...[6, 7, 8, 9, 10, 11].map((i) => `m${i}`),
    "lost12-12",
    ...Array.from({ length: 17 }, (_, k) => `m${13 + k}`),
    "lost30-30",
  ]);
  for (const m of back.messages) assertIdentity(m, Number(m.seq), receipts[Number(m.seq)]!, seqs[Number(m.seq)]!);
  assert.equal(back.client.delivered, 30n, "delivered moved past the lost newest message");

  // The lost newest message is acknowledged (ACK up to the head), accepted
  // on this connection, and delivered is stored past it.
  sender = await Device.online(gateway(), SENDER, 1n);
  await send(31);
  assert.equal(seqs[31], 31n, "the next message is numbered above the lost one, never 30 again");
  await back.until("message 31", () => back.messages.length === 24);
  const m31 = back.messages[23]!;
  assertIdentity(m31, 31, receipts[31]!, 31n);
  assert.equal(m31.prevSeq, 30n);
  assert.equal(back.told.at(-1), "m31", "nothing lost before 31");
  assert.ok(
    sent.some((f) => f.type === "ack" && f.upTo === 30n),
    `ACK 30 sent: ${show(sent.filter((f) => f.type === "ack"))}`,
  );
  assert.ok(!back.log.includes("gateway-error") && !back.log.includes("disconnected"), back.log.join(", "));
  await back.client.flush();
  assert.equal((await store.load()).delivered, 31n);

  // Lost sequences are reported once: the next start replays nothing.
  await back.close();
  const again = await Device.online(gateway(), RECEIVER, 1n, { store });
  assert.deepEqual(again.told, []);
  await Promise.all([again.close(), sender.close()]);
});
