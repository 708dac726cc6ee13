/**
 * Outbox stores: every implementation (memory, IndexedDB through
 * fake-indexeddb, the Node journal file) loads back exactly what its
 * resolved batches made; the file store survives a torn last batch,
 * refuses a damaged middle one and compacts without losing state.
 */

import assert from "node:assert/strict";
import { appendFile, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";

import { IDBFactory } from "fake-indexeddb";

import {
  applyChanges,
  coalesce,
  FileStore,
  IndexedDbStore,
  MemoryStore,
  NEW_DEVICE,
  roomId,
  StoreCorruptError,
  type OutboxStore,
  type SessionState,
  type StoreChange,
} from "../../src/node.js";

const payload = (n: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 31 + n) & 0xff);
const BIG = (1n << 64n) - 1n;

/** Batches touching every kind of change, including overwrites and deletes. */
const BATCHES: StoreChange[][] = [
  [
    { type: "next-id", next: 11n },
    { type: "outbox-put", entry: { clientMsgId: 10n, to: 5n, qos: 1, payload: payload(3), stage: "send" } },
  ],
  [
    { type: "outbox-put", entry: { clientMsgId: BIG - 1n, to: BIG, qos: 2, payload: payload(70_000), stage: "send" } },
    { type: "next-id", next: BIG },
    { type: "delivered", seq: 7n },
    { type: "room-put", position: { room: roomId(1n), qos: 1, last: undefined } },
  ],
  [
    { type: "outbox-delete", clientMsgId: 10n },
    { type: "outbox-put", entry: { clientMsgId: BIG - 1n, to: BIG, qos: 2, payload: payload(70_000), stage: "release" } },
    { type: "room-put", position: { room: roomId(1n), qos: 1, last: 99n } },
    { type: "room-put", position: { room: roomId(2n), qos: 0, last: 3n } },
    { type: "delivered", seq: 8n },
  ],
  [{ type: "room-delete", room: roomId(2n) }, { type: "outbox-delete", clientMsgId: 12345n }],
];

function sorted(s: SessionState): unknown {
  return {
    delivered: s.delivered,
    nextClientMsgId: s.nextClientMsgId,
    outbox: [...s.outbox].sort((a, b) => (a.clientMsgId < b.clientMsgId ? -1 : 1)),
    rooms: [...s.rooms].sort((a, b) => (a.room < b.room ? -1 : 1)),
  };
}

async function withDir<T>(run: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), "surepush-store-"));
  try {
    return await run(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

type Opener = (where: string) => Promise<OutboxStore>;

const STORES: Array<[string, (dir: string) => Opener]> = [
  ["MemoryStore", () => {
    const shared = new MemoryStore();
    return async () => shared;
  }],
  ["IndexedDbStore", () => {
    const indexedDB = new IDBFactory();
    return (name) => IndexedDbStore.open({ name, indexedDB });
  }],
  ["FileStore", (dir) => (name) => FileStore.open({ path: join(dir, name, "journal") })],
];

for (const [name, factory] of STORES) {
  describe(`${name}`, () => {
    test("loads a new device when empty, then exactly what its batches made, also after reopening", () =>
      withDir(async (dir) => {
        const open = factory(dir);
        const store = await open("device-a");
        assert.deepEqual(sorted(await store.load()), sorted(NEW_DEVICE));
        let expected: SessionState = NEW_DEVICE;
        for (const batch of BATCHES) {
          await store.apply(batch);
          expected = applyChanges(expected, batch);
          assert.deepEqual(sorted(await store.load()), sorted(expected));
        }
        await store.close();
        const again = await open("device-a");
        assert.deepEqual(sorted(await again.load()), sorted(expected));
        await again.close();
      }));
  });
}

describe("FileStore journal", () => {
  test("a torn last batch (a crash mid-write) is cut off; the store goes on from the batch before", () =>
    withDir(async (dir) => {
      const path = join(dir, "journal");
      const store = await FileStore.open({ path });
      await store.apply(BATCHES[0]!);
      await store.close();
      const before = await readFile(path, "utf8");
      await appendFile(path, '[{"t":"delivered","seq":"9"}');
      const reopened = await FileStore.open({ path });
      assert.deepEqual(sorted(await reopened.load()), sorted(applyChanges(NEW_DEVICE, BATCHES[0]!)));
      assert.equal(await readFile(path, "utf8"), before, "the torn bytes are gone");
      await reopened.apply([{ type: "delivered", seq: 4n }]);
      await reopened.close();
      const third = await FileStore.open({ path });
      assert.equal((await third.load()).delivered, 4n);
      await third.close();
    }));

  test("a damaged batch before the last is corruption, not silently skipped", () =>
    withDir(async (dir) => {
      const path = join(dir, "journal");
      await writeFile(path, '[{"t":"delivered","seq":"1"}]\n[{"t":"delivered","seq":"x"}]\n[{"t":"delivered","seq":"3"}]\n');
      await assert.rejects(FileStore.open({ path }), StoreCorruptError);
      await writeFile(path, '[{"t":"delivered","seq":"1"}]\nnot json\n[{"t":"delivered","seq":"3"}]\n');
      await assert.rejects(FileStore.open({ path }), StoreCorruptError);
    }));

  test("compaction rewrites the journal as one snapshot line and keeps the state", () =>
    withDir(async (dir) => {
      const path = join(dir, "journal");
      const store = await FileStore.open({ path, compactAfter: 3 });
      let expected: SessionState = NEW_DEVICE;
      for (let round = 0; round < 3; round++) {
        for (const batch of BATCHES) {
          await store.apply(batch);
          expected = applyChanges(expected, batch);
        }
      }
      await store.close();
      const lines = (await readFile(path, "utf8")).split("\n").filter((l) => l !== "");
      assert.ok(lines.length <= 3, `${lines.length} lines after compaction`);
      const reopened = await FileStore.open({ path });
      assert.deepEqual(sorted(await reopened.load()), sorted(expected));
      await reopened.close();
    }));
});

test("coalesce keeps the last change per key and the same final state", () => {
  const all = BATCHES.flat();
  const fewer = coalesce(all);
  assert.ok(fewer.length < all.length);
  assert.deepEqual(sorted(applyChanges(NEW_DEVICE, fewer)), sorted(applyChanges(NEW_DEVICE, all)));
  const rooms = coalesce(
    Array.from({ length: 100 }, (_, i) => ({ type: "room-put", position: { room: roomId(1n), qos: 1, last: BigInt(i) } }) as const),
  );
  assert.deepEqual(rooms, [{ type: "room-put", position: { room: roomId(1n), qos: 1, last: 99n } }]);
});
