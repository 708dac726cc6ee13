/**
 * SYNC requests of a session (docs/PROTOCOL.md §7, "Replay"): the replay
 * request (`After`, or `Latest` for a new device) and at most one history
 * request (`Before`), each resent with a **new** request id when its page
 * does not come within the sync timeout. Request ids strictly increase for
 * the life of the session (so also per connection); a page answering any
 * other id than the current one is ignored.
 *
 * @module
 */

import type { SyncDirection } from "../proto/constants.js";
import type { SyncFrame } from "../proto/frames.js";

/** One outstanding SYNC. */
export interface SyncRequest {
  readonly id: number;
  readonly direction: SyncDirection;
  readonly anchor: bigint;
  readonly limit: number;
  /** When it went out; absent: not sent yet (waiting for a connection). */
  readonly sentMs: number | undefined;
}

/** Which slot a page belongs to. */
export type PageSlot = "replay" | "older";

/** The largest request id; ids stop increasing there (4 billion requests in one session). */
const MAX_REQUEST_ID = 0xffff_ffff;

/** The replay and history requests of a session. */
export class Replay {
  private lastId = 0;
  private replay: SyncRequest | undefined;
  private older: SyncRequest | undefined;
  private maxLimit = Number.MAX_SAFE_INTEGER;

  /** The gateway's largest accepted `limit` (CONNACK `max_sync_limit`). */
  setMaxLimit(max: number): void {
    this.maxLimit = Math.max(1, max);
  }

  /** A new connection: the replay restarts; a history request is kept, to be sent again. */
  reset(): void {
    this.replay = undefined;
    if (this.older) this.older = { ...this.older, sentMs: undefined };
  }

  /** Starts (or continues) the replay; returns the frame to send. */
  startReplay(direction: "after" | "latest", anchor: bigint, limit: number, nowMs: number): SyncFrame {
    this.replay = this.request(direction, anchor, limit, nowMs);
    return frameOf(this.replay);
  }

  /** Asks for history before `anchor`; sent now when `connected`, else after the next CONNACK. */
  startOlder(anchor: bigint, limit: number, nowMs: number, connected: boolean): SyncFrame | undefined {
    this.older = this.request("before", anchor, limit, connected ? nowMs : undefined);
    return connected ? frameOf(this.older) : undefined;
  }

  /** The history request waiting for a connection, sent now with a new id. */
  resumeOlder(nowMs: number): SyncFrame | undefined {
    if (!this.older || this.older.sentMs !== undefined) return undefined;
    this.older = this.request("before", this.older.anchor, this.older.limit, nowMs);
    return frameOf(this.older);
  }

  /** Which request a page with `requestId` answers (and clears it), if any. */
  match(requestId: number): { slot: PageSlot; request: SyncRequest } | undefined {
    if (this.replay?.id === requestId && this.replay.sentMs !== undefined) {
      const request = this.replay;
      this.replay = undefined;
      return { slot: "replay", request };
    }
    if (this.older?.id === requestId && this.older.sentMs !== undefined) {
      const request = this.older;
      this.older = undefined;
      return { slot: "older", request };
    }
    return undefined;
  }

  /** The requests whose page is overdue, resent with new ids. */
  resendOverdue(nowMs: number, timeoutMs: number): SyncFrame[] {
    const frames: SyncFrame[] = [];
    const overdue = (r: SyncRequest | undefined): r is SyncRequest =>
      r?.sentMs !== undefined && nowMs >= r.sentMs + timeoutMs;
    if (overdue(this.replay)) {
      this.replay = this.request(this.replay.direction, this.replay.anchor, this.replay.limit, nowMs);
      frames.push(frameOf(this.replay));
    }
    if (overdue(this.older)) {
      this.older = this.request("before", this.older.anchor, this.older.limit, nowMs);
      frames.push(frameOf(this.older));
    }
    return frames;
  }

  /** A fresh request id for a request outside the replay (CONVLIST, CONVFETCH): one id space, always increasing. */
  nextId(): number {
    this.lastId = Math.min(this.lastId + 1, MAX_REQUEST_ID);
    return this.lastId;
  }

  /** When the next page is overdue, if a request is out. */
  nextDeadline(timeoutMs: number): number | undefined {
    let t: number | undefined;
    for (const r of [this.replay, this.older]) {
      if (r?.sentMs !== undefined) t = Math.min(t ?? Infinity, r.sentMs + timeoutMs);
    }
    return t;
  }

  /** True while a history request is outstanding or waiting to be sent. */
  get olderPending(): boolean {
    return this.older !== undefined;
  }

  private request(
    direction: SyncDirection,
    anchor: bigint,
    limit: number,
    sentMs: number | undefined,
  ): SyncRequest {
    this.lastId = Math.min(this.lastId + 1, MAX_REQUEST_ID);
    const clamped = Math.min(Math.max(1, Math.floor(limit)), this.maxLimit);
    return { id: this.lastId, direction, anchor, limit: clamped, sentMs };
  }
}

function frameOf(r: SyncRequest): SyncFrame {
  return { type: "sync", requestId: r.id, direction: r.direction, anchor: r.anchor, limit: r.limit };
}
