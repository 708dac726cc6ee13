/**
 * An {@link OutboxStore} on the browser's IndexedDB, written against the
 * standard API only (no wrapper library).
 *
 * Layout (database version 1): object store `outbox` keyed by the client
 * message id as a 20-digit decimal string (so keys sort like the ids;
 * IndexedDB keys cannot be bigints), `rooms` keyed by the room id the same
 * way, and `meta` holding `delivered` and `nextClientMsgId`. Values are
 * structured clones, which keep `bigint` and `Uint8Array` as they are.
 * Each `apply` is one read-write transaction over the three stores and
 * resolves on its `complete` event (with `durability: "strict"` where the
 * browser supports it), so a batch is all or nothing.
 *
 * @module
 */

import type { OutboxEntry, RoomPosition, SessionState, StoreChange } from "../session/state.js";
import type { OutboxStore } from "./store.js";

const DB_VERSION = 1;
const OUTBOX = "outbox";
const ROOMS = "rooms";
const META = "meta";
const DELIVERED = "delivered";
const NEXT_ID = "nextClientMsgId";
const STORES = [OUTBOX, ROOMS, META];

/** Where to find IndexedDB (the global one by default; tests pass `fake-indexeddb`). */
export interface IndexedDbStoreOptions {
  /** Database name: one per (user, device), e.g. `surepush-42-7`. */
  readonly name: string;
  /** The factory; default `globalThis.indexedDB`. */
  readonly indexedDB?: IDBFactory;
}

/** A u64 as a key that sorts numerically. */
function idKey(id: bigint): string {
  return id.toString().padStart(20, "0");
}

/** Session state in one IndexedDB database. */
export class IndexedDbStore implements OutboxStore {
  private constructor(private readonly db: IDBDatabase) {}

  /** Opens (creating if needed) the database. */
  static async open(options: IndexedDbStoreOptions): Promise<IndexedDbStore> {
    const factory = options.indexedDB ?? globalThis.indexedDB;
    if (!factory) throw new Error("IndexedDB is not available here; pass `indexedDB` or use another store");
    const request = factory.open(options.name, DB_VERSION);
    request.onupgradeneeded = () => {
      const db = request.result;
      for (const name of STORES) {
        if (!db.objectStoreNames.contains(name)) db.createObjectStore(name);
      }
    };
    const db = await settle(request);
    return new IndexedDbStore(db);
  }

  async load(): Promise<SessionState> {
    const tx = this.db.transaction(STORES, "readonly");
    const outbox = settle(tx.objectStore(OUTBOX).getAll() as IDBRequest<OutboxEntry[]>);
    const rooms = settle(tx.objectStore(ROOMS).getAll() as IDBRequest<RoomPosition[]>);
    const delivered = settle(tx.objectStore(META).get(DELIVERED) as IDBRequest<bigint | undefined>);
    const next = settle(tx.objectStore(META).get(NEXT_ID) as IDBRequest<bigint | undefined>);
    return {
      outbox: await outbox,
      rooms: await rooms,
      delivered: await delivered,
      nextClientMsgId: await next,
    };
  }

  async apply(changes: readonly StoreChange[]): Promise<void> {
    if (changes.length === 0) return;
    const tx = this.db.transaction(STORES, "readwrite", { durability: "strict" });
    const done = completion(tx);
    const outbox = tx.objectStore(OUTBOX);
    const rooms = tx.objectStore(ROOMS);
    const meta = tx.objectStore(META);
    for (const c of changes) {
      switch (c.type) {
        case "outbox-put":
          outbox.put(c.entry, idKey(c.entry.clientMsgId));
          break;
        case "outbox-delete":
          outbox.delete(idKey(c.clientMsgId));
          break;
        case "delivered":
          meta.put(c.seq, DELIVERED);
          break;
        case "next-id":
          meta.put(c.next, NEXT_ID);
          break;
        case "room-put":
          rooms.put(c.position, idKey(c.position.room));
          break;
        case "room-delete":
          rooms.delete(idKey(c.room));
          break;
      }
    }
    tx.commit?.();
    await done;
  }

  async close(): Promise<void> {
    this.db.close();
  }
}

function settle<T>(request: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error ?? new Error("IndexedDB request failed"));
  });
}

function completion(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error ?? new Error("IndexedDB transaction failed"));
    tx.onabort = () => reject(tx.error ?? new Error("IndexedDB transaction aborted"));
  });
}
