/**
 * Where a device keeps its outbox, `delivered`, room positions and id
 * counter between app restarts: the {@link OutboxStore} interface and the
 * default {@link MemoryStore}.
 *
 * Contract of every store: `apply` makes a batch durable (as durable as
 * the medium allows) before its promise resolves, applies it in order and
 * atomically where the medium can (IndexedDB: one transaction); `load`
 * returns exactly the state the resolved batches produced. The client
 * writes one batch at a time and transmits the frames that depend on a
 * batch only after it resolved. One store belongs to one (user, device).
 *
 * @module
 */

import { applyChanges, NEW_DEVICE, type SessionState, type StoreChange } from "../session/state.js";

/** Persistence of one device's session state. */
export interface OutboxStore {
  /** The state as of the last resolved `apply` (a new device when empty). */
  load(): Promise<SessionState>;
  /** Makes `changes` durable, in order; rejects if it could not (the client retries the batch). */
  apply(changes: readonly StoreChange[]): Promise<void>;
  /** Releases the medium (file handle, database connection). */
  close(): Promise<void>;
}

/**
 * Keeps the state in memory: it survives reconnects and a new `Client` on
 * the same store object, not a restart of the process. The default.
 */
export class MemoryStore implements OutboxStore {
  private state: SessionState = NEW_DEVICE;

  async load(): Promise<SessionState> {
    return this.state;
  }

  async apply(changes: readonly StoreChange[]): Promise<void> {
    this.state = applyChanges(this.state, changes);
  }

  async close(): Promise<void> {}
}
