/**
 * Persist, then transmit (src/client/writer.ts): no frame reaches the
 * transport before the store changes drained before it are durable; order
 * is kept; changes arriving during a write are coalesced into one batch; a
 * failed write is reported and retried with the frames still held back.
 */

import assert from "node:assert/strict";
import { test } from "node:test";

import { Writer } from "../../src/client/writer.js";
import { roomId, type StoreChange } from "../../src/index.js";
import { GatedStore } from "../support/gated-store.js";

const frame = (n: number): Uint8Array => Uint8Array.of(n);
const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function setup(retryMs = 1) {
  const store = new GatedStore();
  const sent: number[] = [];
  const failures: unknown[] = [];
  const writer = new Writer(
    store,
    { transmit: (_generation, frames) => sent.push(...frames.map((f) => f[0]!)), storeFailed: (e) => failures.push(e) },
    retryMs,
  );
  return { store, sent, failures, writer };
}

const delivered = (seq: bigint): StoreChange => ({ type: "delivered", seq });

test("frames wait for the store changes before them, and keep their order behind a write in flight", async () => {
  const { store, sent, writer } = setup();
  const durable = writer.submit([delivered(5n)], [frame(1)], 0);
  writer.submit([], [frame(2)], 0);
  await tick();
  assert.deepEqual(sent, [], "the ACK for 5 must not go out before 5 is stored");
  store.release();
  await durable;
  await writer.idle();
  assert.deepEqual(sent, [1, 2]);
  writer.submit([], [frame(3)], 0);
  assert.deepEqual(sent, [1, 2, 3], "nothing to persist and nothing in flight: at once");
});

test("changes arriving during a write become one coalesced batch", async () => {
  const { store, sent, writer } = setup();
  writer.submit([delivered(1n)], [frame(1)], 0);
  for (let i = 0; i < 100; i++) {
    writer.submit([{ type: "room-put", position: { room: roomId(1n), qos: 1, last: BigInt(i) } }], [frame(2)], 0);
  }
  await tick();
  assert.equal(store.pending, 1);
  store.release();
  await tick();
  store.release();
  await writer.idle();
  assert.deepEqual(store.applied, [[delivered(1n)], [{ type: "room-put", position: { room: roomId(1n), qos: 1, last: 99n } }]]);
  assert.equal(sent.length, 101);
});

test("a failed write is reported and retried; its frames wait for the retry", async () => {
  const { store, sent, failures, writer } = setup();
  writer.submit([delivered(9n)], [frame(7)], 0);
  await tick();
  store.failNext();
  await new Promise((resolve) => setTimeout(resolve, 5)); // the retry delay under test (1 ms)
  assert.equal(failures.length, 1);
  assert.deepEqual(sent, []);
  assert.equal(store.pending, 1, "retried");
  store.release();
  await writer.idle();
  assert.deepEqual(sent, [7]);
  assert.deepEqual(store.applied, [[delivered(9n)]]);
});

test("a writer stopped while a write keeps failing rejects the waiting submits instead of hanging", async () => {
  const { store, writer } = setup(1);
  const durable = writer.submit([delivered(1n)], [], 0);
  await tick();
  writer.stop();
  store.failNext();
  await assert.rejects(durable, /closed before this state was stored/);
});
