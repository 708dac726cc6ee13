/**
 * The receiving half of a session: `delivered`, the reorder buffer and the
 * cumulative ACK (docs/PROTOCOL.md §7, "Live pushes").
 *
 * Invariants: messages leave in sequence order, each sequence once, with no
 * hole (a retention gap in a replay page is the one accepted jump);
 * buffered pushes are all above `delivered`; `acked` never passes
 * `delivered`.
 *
 * @module
 */

import type { InboxMessage } from "../proto/frames.js";

/** What became of a live push. */
export type PushOutcome =
  /** Already delivered (a retransmission whose ACK was lost): acknowledged again. */
  | "duplicate"
  /** Buffered; {@link Inbox.drain} delivers it once it continues `delivered`. */
  | "buffered";

/** `delivered`, the reorder buffer and the ACK state. */
export class Inbox {
  private deliveredSeq: bigint | undefined;
  private acked = 0n;
  private ackDue = false;
  private ackForced = false;
  private readonly buffered = new Map<bigint, InboxMessage>();

  /** A device holding messages up to `delivered` (absent: a new device). */
  constructor(
    delivered: bigint | undefined,
    private readonly reorderLimit: number,
  ) {
    this.deliveredSeq = delivered;
  }

  /** Highest sequence handed to the application. */
  get delivered(): bigint | undefined {
    return this.deliveredSeq;
  }

  /** A new connection: what was buffered is retransmitted or replayed anyway. */
  reset(): void {
    this.buffered.clear();
    this.ackDue = false;
    this.ackForced = false;
  }

  /** CONNACK: the gateway's position for this device. */
  onConnAck(cursor: bigint | undefined): void {
    this.acked = cursor ?? 0n;
  }

  /** A new device's starting point (SYNC Latest): the first item's predecessor, or the head. */
  startAt(seq: bigint): void {
    this.deliveredSeq = seq;
  }

  /**
   * A replay page item: authoritative history, so anything above
   * `delivered` is taken (a retention gap is accepted, a duplicate skipped).
   * Returns whether it was delivered.
   */
  fromPage(item: InboxMessage): boolean {
    if (item.seq <= (this.deliveredSeq ?? 0n)) return false;
    this.deliveredSeq = item.seq;
    this.buffered.delete(item.seq);
    return true;
  }

  /** A live push with `seq > 0`. */
  onPush(push: InboxMessage): PushOutcome {
    if (push.seq <= (this.deliveredSeq ?? 0n)) {
      this.ackDue = true;
      this.ackForced = true;
      return "duplicate";
    }
    this.buffered.set(push.seq, push);
    this.bound();
    return "buffered";
  }

  /** Delivers buffered messages that continue `delivered`, appending them to `out`. */
  drain(out: InboxMessage[]): void {
    let d = this.deliveredSeq;
    if (d === undefined) return; // a new device's replay sets the start first
    for (let next = this.buffered.get(d + 1n); next; next = this.buffered.get(d + 1n)) {
      this.buffered.delete(next.seq);
      d = next.seq;
      out.push(next);
      this.ackDue = true;
    }
    for (const seq of this.buffered.keys()) {
      if (seq <= d) this.buffered.delete(seq);
    }
    this.deliveredSeq = d;
  }

  /** The ACK to send now, if any (cumulative: one covers many pushes). */
  takeAck(): bigint | undefined {
    if (!this.ackDue) return undefined;
    this.ackDue = false;
    const forced = this.ackForced;
    this.ackForced = false;
    const d = this.deliveredSeq;
    if (d === undefined || d === 0n) return undefined;
    if (d > this.acked || forced) {
      this.acked = d;
      return d;
    }
    return undefined;
  }

  /** Replay pages acknowledge through SYNC After: the gateway's position is `seq` now. */
  acknowledgedBySync(seq: bigint): void {
    if (seq > this.acked) this.acked = seq;
  }

  /** Keeps the reorder buffer bounded by dropping its highest entries. */
  private bound(): void {
    if (this.buffered.size <= this.reorderLimit) return;
    const seqs = [...this.buffered.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    for (const seq of seqs.slice(this.reorderLimit)) this.buffered.delete(seq);
  }
}
