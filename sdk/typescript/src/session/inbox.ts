/**
 * The receiving half of a session: `delivered`, the reorder buffer and the
 * cumulative ACK (docs/PROTOCOL.md §7, "Live pushes" and "Gone sequences").
 *
 * Invariants: messages leave in sequence order, each sequence once; the
 * sequences the gateway says are gone (a page item or a push whose
 * `prevSeq` steps over them, an empty `After` page with `gap`) leave once,
 * as one `lost` range in their place, so every sequence up to `delivered`
 * was handed over as a message or as lost; buffered pushes are all above
 * `delivered`; `acked` never passes `delivered`.
 *
 * @module
 */

import type { InboxMessage } from "../proto/frames.js";
import type { SessionEvent } from "./events.js";

/** What the inbox hands to the application, in order: messages and lost ranges. */
export type Delivery = Extract<SessionEvent, { type: "message" } | { type: "lost" }>;

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

  /** Highest sequence handed to the application (as a message or as lost). */
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
   * `delivered` is taken, the sequences it steps over reported lost first
   * (PROTOCOL.md §3: a page skips only gone sequences); a duplicate is
   * skipped.
   */
  fromPage(item: InboxMessage, out: Delivery[]): void {
    const d = this.deliveredSeq ?? 0n;
    if (item.seq <= d) return;
    this.lostBetween(d, item.seq, out);
    this.deliveredSeq = item.seq;
    this.buffered.delete(item.seq);
    out.push({ type: "message", message: item });
  }

  /**
   * An empty `After` page with `gap`: every sequence after `delivered` up
   * to `head` is gone. Reported lost; `delivered` moves to `head` and is
   * acknowledged.
   */
  goneUpTo(head: bigint, out: Delivery[]): void {
    const d = this.deliveredSeq ?? 0n;
    if (head <= d) return;
    this.lostBetween(d, head + 1n, out);
    this.deliveredSeq = head;
    this.ackDue = true;
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

  /**
   * Delivers the buffered pushes that continue `delivered`, appending them
   * to `out`: the push at `delivered + 1`, or the lowest one whose
   * `prevSeq` is at most `delivered` (the gateway sent nothing between:
   * the sequences it steps over are gone, reported lost before it). A
   * lower sequence the gateway did send is waited for (its retransmission).
   */
  drain(out: Delivery[]): void {
    let d = this.deliveredSeq;
    if (d === undefined) return; // a new device's replay sets the start first
    for (const seq of this.buffered.keys()) {
      if (seq <= d) this.buffered.delete(seq);
    }
    for (let next = this.deliverableAfter(d); next; next = this.deliverableAfter(d)) {
      this.buffered.delete(next.seq);
      this.lostBetween(d, next.seq, out);
      d = next.seq;
      out.push({ type: "message", message: next });
      this.ackDue = true;
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

  /** The buffered push that may follow `d` (every buffered push is above `d`). */
  private deliverableAfter(d: bigint): InboxMessage | undefined {
    const follows = this.buffered.get(d + 1n);
    if (follows) return follows;
    let lowest: InboxMessage | undefined;
    for (const p of this.buffered.values()) {
      if (!lowest || p.seq < lowest.seq) lowest = p;
    }
    return lowest && lowest.prevSeq <= d ? lowest : undefined;
  }

  /** Reports the sequences strictly between `delivered` and `next` as lost, if any. */
  private lostBetween(delivered: bigint, next: bigint, out: Delivery[]): void {
    if (next > delivered + 1n) out.push({ type: "lost", first: delivered + 1n, last: next - 1n });
  }

  /** Keeps the reorder buffer bounded by dropping its highest entries. */
  private bound(): void {
    if (this.buffered.size <= this.reorderLimit) return;
    const seqs = [...this.buffered.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    for (const seq of seqs.slice(this.reorderLimit)) this.buffered.delete(seq);
  }
}
