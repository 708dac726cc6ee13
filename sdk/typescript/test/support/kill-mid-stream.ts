/**
 * kill -9 of the gateway in the middle of a stream of sends (issue #19
 * item 3), over any transport: the gateway is killed three times while a
 * sender pipelines QoS 1 and QoS 2 messages to two receivers, and
 * restarted on the same data dir. The clients reconnect by themselves; the
 * sender's outbox resends what was not acknowledged with the original
 * client_msg_id.
 *
 * Checked by identity at the end: every message the sender was told is
 * stored (in fact every message sent, once its retries finish) is held by
 * its receiver exactly once, at the sequence its SENDACK announced, with
 * its sender, client_msg_id and payload; nothing else arrives; sequences
 * are contiguous; QoS 2 messages are exactly once. A fresh device of each
 * receiver then replays the whole inbox from the log and sees the same.
 */

import assert from "node:assert/strict";
import type { TestContext } from "node:test";

import { MemoryStore, type InboxMessage, type QosLevel, type SendOutcome } from "../../src/node.js";
import { Device, show, text, type DeviceOptions } from "./device.js";
import type { Gateway } from "./gateway.js";

const SENDER = 601n;
const RECEIVERS = [602n, 603n];
const MESSAGES = 150;
const KILLS = 3;


interface Sent {
  readonly to: bigint;
  readonly qos: QosLevel;
  readonly payload: string;
  outcome?: SendOutcome;
}

/**
 * Runs the scenario on `gateway` with every device connected as `transport`
 * says (default: native TCP).
 */
export async function killMidStream(t: TestContext, gateway: () => Gateway, transport: DeviceOptions = {}): Promise<void> {
  const receivers = await Promise.all(RECEIVERS.map((u) => Device.online(gateway(), u, 1n, transport)));
  const sender = await Device.online(gateway(), SENDER, 1n, { ...transport, store: new MemoryStore() });
  const sent = new Map<bigint, Sent>();
  const ackedBeforeKill = new Set<bigint>();
  let inFlightAtKills = 0;

  let next = 0;
  const sendMany = async (n: number): Promise<Promise<SendOutcome>[]> => {
    const outcomes = [];
    for (let k = 0; k < n; k++) outcomes.push((await queue(next++)).done);
    return outcomes;
  };
  for (let kill = 0; kill < KILLS; kill++) {
    // Half of a batch acknowledged, then more pipelined, then the kill:
    // the gateway dies with sends both stored and in flight.
    const batch = await sendMany(20);
    await Promise.all(batch.slice(0, 10));
    await sendMany(15);
    inFlightAtKills += [...sent.values()].filter((s) => !s.outcome).length;
    for (const [id, s] of sent) if (s.outcome?.status === "stored") ackedBeforeKill.add(id);
    await gateway().kill9();
    await sendMany(5); // queued in the outbox while the gateway is down
    await gateway().restart();
    await sender.until("the sender is live again", () => sender.client.state === "live");
  }
  await sendMany(MESSAGES - next);

  /** Queues message `i`; `done` settles with its outcome. */
  async function queue(i: number): Promise<{ done: Promise<SendOutcome> }> {
    const to = RECEIVERS[i % RECEIVERS.length]!;
    const qos: QosLevel = i % 3 === 0 ? 2 : 1;
    const payload = `crash-${i}-${"x".repeat(200)}`;
    const receipt = await sender.client.send(to, payload, { qos });
    const entry: Sent = { to, qos, payload };
    sent.set(receipt.clientMsgId, entry);
    return { done: receipt.outcome.then((o) => (entry.outcome = o)) };
  }

  await sender.until("every send finished", () => sender.client.unfinishedSends === 0, 60_000);
  await sender.client.flush();
  for (const [id, s] of sent) {
    assert.equal(s.outcome?.status, "stored", `send ${id}: ${show(s.outcome)}`);
  }
  assert.ok(inFlightAtKills > 0, "some sends were unacknowledged when the gateway died");
  assert.ok(ackedBeforeKill.size > 0, "some sends were acknowledged before a kill");
  const duplicates = [...sent.values()].filter((s) => s.outcome?.status === "stored" && s.outcome.duplicate).length;
  const reconnects = sender.log.filter((e) => e === "connected").length - 1;
  t.diagnostic(
    `${sent.size} sends, ${inFlightAtKills} unacknowledged at the kills, ${ackedBeforeKill.size} acknowledged before them, ` +
      `${duplicates} retries answered Duplicate, ${reconnects} sender reconnects`,
  );
  assert.equal(reconnects, KILLS, "the sender reconnected after every kill");

  const expectedFor = (user: bigint): Array<[bigint, Sent]> => [...sent].filter(([, s]) => s.to === user);
  for (const [i, user] of RECEIVERS.entries()) {
    const expected = expectedFor(user);
    const device = receivers[i]!;
    await device.until(`receiver ${user} holds all ${expected.length}`, () => device.messages.length >= expected.length, 30_000);
    checkInbox(device.messages, expected, ackedBeforeKill, `live device of ${user}`);

    // The log itself: a new device replays the whole inbox.
    const replay = await Device.online(gateway(), user, 2n, { ...transport, store: storeAt(0n), session: { page: 25 } });
    checkInbox(replay.messages, expected, ackedBeforeKill, `replay of ${user}`);
    await replay.close();
  }
  await Promise.all([sender.close(), ...receivers.map((r) => r.close())]);
}

function storeAt(delivered: bigint): MemoryStore {
  const store = new MemoryStore();
  void store.apply([{ type: "delivered", seq: delivered }]);
  return store;
}

function checkInbox(got: InboxMessage[], expected: Array<[bigint, Sent]>, ackedBeforeKill: Set<bigint>, who: string): void {
  const byId = new Map<bigint, InboxMessage>();
  for (const m of got) {
    assert.ok(!byId.has(m.clientMsgId), `${who}: client_msg_id ${m.clientMsgId} shown twice`);
    byId.set(m.clientMsgId, m);
  }
  for (let k = 1; k < got.length; k++) {
    assert.equal(got[k]!.seq, got[k - 1]!.seq + 1n, `${who}: sequences contiguous at ${k}`);
  }
  const want = new Map(expected);
  for (const m of got) {
    const s = want.get(m.clientMsgId);
    assert.ok(s, `${who}: message ${m.clientMsgId} was never sent`);
    assert.equal(m.from, SENDER);
    assert.equal(m.fromDevice, 1n);
    assert.equal(text(m.payload), s.payload, `${who}: payload of ${m.clientMsgId}`);
    assert.equal(m.qos, s.qos);
    assert.equal(s.outcome?.status === "stored" && s.outcome.seq, m.seq, `${who}: seq of ${m.clientMsgId} as SENDACK said`);
  }
  for (const [id] of expected) assert.ok(byId.has(id), `${who}: message ${id} lost`);
  for (const id of ackedBeforeKill) {
    if (want.has(id)) assert.ok(byId.has(id), `${who}: acknowledged message ${id} lost`);
  }
  assert.equal(got.length, expected.length);
}
