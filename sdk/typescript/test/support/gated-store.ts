/** A store whose writes complete when the test says so (to observe what waits for durability). */

import assert from "node:assert/strict";

import type { OutboxStore, SessionState, StoreChange } from "../../src/index.js";

export class GatedStore implements OutboxStore {
  readonly applied: StoreChange[][] = [];
  private gates: Array<{ open: () => void; fail: (e: Error) => void }> = [];
  /** While true, writes complete at once. */
  autoOpen = false;

  async load(): Promise<SessionState> {
    return { outbox: [], rooms: [] };
  }

  apply(changes: readonly StoreChange[]): Promise<void> {
    if (this.autoOpen) {
      this.applied.push([...changes]);
      return Promise.resolve();
    }
    return new Promise((open, fail) =>
      this.gates.push({
        open: () => {
          this.applied.push([...changes]);
          open();
        },
        fail,
      }),
    );
  }

  async close(): Promise<void> {}

  /** Completes the oldest pending write. */
  release(): void {
    const gate = this.gates.shift();
    assert.ok(gate, "no write pending");
    gate.open();
  }

  failNext(): void {
    const gate = this.gates.shift();
    assert.ok(gate, "no write pending");
    gate.fail(new Error("disk full"));
  }

  get pending(): number {
    return this.gates.length;
  }
}
