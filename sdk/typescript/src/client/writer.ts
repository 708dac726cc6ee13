/**
 * Persist, then transmit: the one place where the client's durability rule
 * lives. Frames go to the wire only after every store change drained
 * before them is durable, so the gateway never acknowledges a state the
 * device could lose in a crash (an ACK never runs ahead of the persisted
 * `delivered`, a SEND never ahead of its outbox entry and id counter).
 *
 * Batches are written one at a time; whatever arrives meanwhile joins the
 * next batch (a client-side group commit, coalesced per key). Frames with
 * no store change in front of them and nothing in flight go out at once.
 * A failed store write is reported and retried; the frames behind it wait.
 *
 * @module
 */

import { coalesce, type StoreChange } from "../session/state.js";
import type { OutboxStore } from "../store/store.js";

/** Frames meant for the connection of one generation. */
interface Outgoing {
  readonly generation: number;
  readonly frames: Uint8Array[];
}

interface Batch {
  changes: StoreChange[];
  outgoing: Outgoing[];
  durable: Array<{ resolve: () => void; reject: (e: Error) => void }>;
}

/** Where the writer sends frames and reports store failures. */
export interface WriterSink {
  /** Writes `frames` if the connection of `generation` is still the current one. */
  transmit(generation: number, frames: Uint8Array[]): void;
  /** A store write failed; it is retried after `retryMs`. */
  storeFailed(error: unknown): void;
}

/** Orders store writes before the frames that depend on them. */
export class Writer {
  private next: Batch | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly store: OutboxStore,
    private readonly sink: WriterSink,
    private readonly retryMs: number,
  ) {}

  /** Queues `changes` and then `frames`; resolves once `changes` are durable, rejects if the writer stopped first. */
  submit(changes: StoreChange[], frames: Uint8Array[], generation: number): Promise<void> {
    if (changes.length === 0 && !this.next && !this.running) {
      if (frames.length > 0) this.sink.transmit(generation, frames);
      return Promise.resolve();
    }
    const batch = (this.next ??= { changes: [], outgoing: [], durable: [] });
    batch.changes.push(...changes);
    if (frames.length > 0) batch.outgoing.push({ generation, frames });
    const durable = new Promise<void>((resolve, reject) => batch.durable.push({ resolve, reject }));
    this.running ??= this.run();
    return durable;
  }

  /** Resolves when everything submitted so far is written (or the writer stopped). */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  /** Stops retrying failed writes (the client is closing). */
  stop(): void {
    this.stopped = true;
  }

  private async run(): Promise<void> {
    try {
      for (let batch = this.next; batch; batch = this.next) {
        this.next = undefined;
        if (!(await this.persist(coalesce(batch.changes)))) {
          const lost = [...batch.durable, ...this.takeNext()];
          for (const d of lost) d.reject(new Error("the client closed before this state was stored"));
          return;
        }
        for (const d of batch.durable) d.resolve();
        for (const o of batch.outgoing) this.sink.transmit(o.generation, o.frames);
      }
    } finally {
      this.running = undefined;
    }
  }

  /** The waiters of the batch not yet started (dropped with it). */
  private takeNext(): Batch["durable"] {
    const waiting = this.next?.durable ?? [];
    this.next = undefined;
    return waiting;
  }

  /** Writes `changes`, retrying until it works; false if stopped first. */
  private async persist(changes: StoreChange[]): Promise<boolean> {
    if (changes.length === 0) return true; // frames queued behind a write, nothing of their own
    for (;;) {
      try {
        await this.store.apply(changes);
        return true;
      } catch (e) {
        this.sink.storeFailed(e);
        if (this.stopped) return false;
        await new Promise((resolve) => setTimeout(resolve, this.retryMs));
        if (this.stopped) return false;
      }
    }
  }
}
