/**
 * The sending half of a session: sends kept until SENDACK (QoS 1) or COMP
 * (QoS 2), retried with their original `client_msg_id` on the same or a
 * new connection (docs/PROTOCOL.md §6).
 *
 * Invariants: at most `maxPending` SENDs await SENDACK on a connection; an
 * entry leaves only on a final answer (Stored/Duplicate for QoS 1, COMP for
 * QoS 2, Forbidden, or a payload that can never fit); StorageUnavailable
 * keeps it for a retry after {@link REFUSED_RETRY_MS}, doubling with each
 * refusal in a row up to the send timeout (a partition that moves refuses
 * for well under a second).
 *
 * @module
 */

import { BodyLen, HEADER_LEN, SendResult } from "../proto/constants.js";
import type { Frame, SendAckFrame } from "../proto/frames.js";
import type { OutboxEntry } from "./state.js";

/** What a SENDACK meant for the outbox. */
export type AckOutcome =
  /** QoS 1 finished. */
  | { readonly kind: "done"; readonly entry: OutboxEntry }
  /** QoS 2 stored: REL goes out, the updated entry is to be persisted. */
  | { readonly kind: "release"; readonly entry: OutboxEntry }
  /** Refused for good. */
  | { readonly kind: "failed"; readonly entry: OutboxEntry }
  /** Not stored now: retried later. */
  | { readonly kind: "retry" }
  /** No such send waiting for a SENDACK (a late answer to a retry). */
  | { readonly kind: "unknown" };

interface Pending {
  entry: OutboxEntry;
  /** When the SEND/REL went out on this connection; absent: not yet. */
  lastTxMs: number | undefined;
  /** StorageUnavailable answers in a row. */
  refusals: number;
}

/** The first retry of a send refused with StorageUnavailable (ms). */
export const REFUSED_RETRY_MS = 50;

/** How long after its last transmission a send is retried. */
function retryAfter(p: Pending, retryMs: number): number {
  if (p.refusals === 0) return retryMs;
  return Math.min(REFUSED_RETRY_MS * 2 ** Math.min(p.refusals - 1, 20), retryMs);
}

/** The largest payload a SEND can carry in a frame of `maxFrame` bytes. */
export function maxSendPayload(maxFrame: number): number {
  return maxFrame - HEADER_LEN - BodyLen.send;
}

/** Unfinished QoS 1/2 sends, oldest first. */
export class Outbox {
  private readonly pending = new Map<bigint, Pending>();

  constructor(restored: readonly OutboxEntry[]) {
    const sorted = [...restored].sort((a, b) => (a.clientMsgId < b.clientMsgId ? -1 : 1));
    for (const entry of sorted) {
      this.pending.set(entry.clientMsgId, { entry, lastTxMs: undefined, refusals: 0 });
    }
  }

  get size(): number {
    return this.pending.size;
  }

  /** The highest id held, if any. */
  get highestId(): bigint | undefined {
    let high: bigint | undefined;
    for (const id of this.pending.keys()) if (high === undefined || id > high) high = id;
    return high;
  }

  /** The entries, oldest first. */
  entries(): OutboxEntry[] {
    return [...this.pending.values()].map((p) => p.entry);
  }

  add(entry: OutboxEntry): void {
    this.pending.set(entry.clientMsgId, { entry, lastTxMs: undefined, refusals: 0 });
  }

  /** A new connection: everything goes out again. */
  resetTransmits(): void {
    for (const p of this.pending.values()) p.lastTxMs = undefined;
  }

  onSendAck(ack: SendAckFrame, nowMs: number): AckOutcome {
    const p = this.pending.get(ack.clientMsgId);
    if (!p || p.entry.stage !== "send") return { kind: "unknown" };
    switch (ack.result) {
      case SendResult.Stored:
      case SendResult.Duplicate:
        if (p.entry.qos === 2) {
          p.entry = { ...p.entry, stage: "release" };
          p.lastTxMs = undefined; // REL goes out now
          p.refusals = 0;
          return { kind: "release", entry: p.entry };
        }
        this.pending.delete(ack.clientMsgId);
        return { kind: "done", entry: p.entry };
      case SendResult.StorageUnavailable:
        p.lastTxMs = nowMs; // retried soon, later after each refusal
        p.refusals++;
        return { kind: "retry" };
      case SendResult.Forbidden:
      case SendResult.Conflict:
        this.pending.delete(ack.clientMsgId);
        return { kind: "failed", entry: p.entry };
    }
  }

  /** COMP: the QoS 2 send is finished; false if none was waiting for it. */
  onComp(clientMsgId: bigint): boolean {
    const p = this.pending.get(clientMsgId);
    if (!p || p.entry.stage !== "release") return false;
    this.pending.delete(clientMsgId);
    return true;
  }

  /**
   * The SENDs and RELs due at `nowMs`, oldest first, keeping at most
   * `maxPending` SENDs outstanding. Entries too large for `maxFrame` are
   * removed and returned in `tooLarge` (resending one would only get the
   * connection closed again and again).
   */
  due(
    nowMs: number,
    retryMs: number,
    maxPending: number,
    maxFrame: number,
  ): { frames: Frame[]; tooLarge: OutboxEntry[] } {
    const frames: Frame[] = [];
    const tooLarge: OutboxEntry[] = [];
    const maxPayload = maxSendPayload(maxFrame);
    let outstanding = 0;
    for (const p of this.pending.values()) {
      if (p.entry.stage === "send" && p.lastTxMs !== undefined) outstanding++;
    }
    for (const p of this.pending.values()) {
      if (p.lastTxMs !== undefined && nowMs < p.lastTxMs + retryAfter(p, retryMs)) continue;
      const e = p.entry;
      if (e.stage === "release") {
        frames.push({ type: "rel", clientMsgId: e.clientMsgId, to: e.to });
      } else {
        if (e.payload.length > maxPayload) {
          this.pending.delete(e.clientMsgId);
          tooLarge.push(e);
          continue;
        }
        if (p.lastTxMs === undefined) {
          if (outstanding >= maxPending) continue;
          outstanding++;
        }
        frames.push({ type: "send", clientMsgId: e.clientMsgId, to: e.to, qos: e.qos, payload: e.payload });
      }
      p.lastTxMs = nowMs;
    }
    return { frames, tooLarge };
  }

  /** When the next retry is due, if any was sent. */
  nextDeadline(retryMs: number): number | undefined {
    let t: number | undefined;
    for (const p of this.pending.values()) {
      if (p.lastTxMs !== undefined) t = Math.min(t ?? Infinity, p.lastTxMs + retryAfter(p, retryMs));
    }
    return t;
  }
}
