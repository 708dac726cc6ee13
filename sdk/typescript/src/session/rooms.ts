/**
 * Room subscriptions of a session (docs/PROTOCOL.md §6b): SUBSCRIBE,
 * SUBACK, ROOMPUSH, ROOMACK, ROOMLAG, resuming after the last sequence
 * delivered on every reconnect, after a ROOMLAG and after a hole.
 *
 * Invariants: per room, messages reach the application in room order, each
 * sequence once; `last` (persisted) is the last one delivered; a SUBACK Gap
 * is reported as a `room-gap` event naming the lost sequences and moves
 * `last` past them, while an Ok SUBACK never moves a known `last` (one that
 * starts later answers an earlier SUBSCRIBE from now, duplicated or
 * replaced: the pushes that follow show the hole and are asked for again);
 * a push before the first SUBACK of a subscription from now is not
 * delivered (where it starts is unknown, so a hole before it could not be
 * seen); while a re-subscription is on its way, pushes that do not
 * continue `last` are left to its replay (so a burst of stale pushes
 * causes one SUBSCRIBE); SUBACK Forbidden ends the follow.
 *
 * @module
 */

import { isRoom, SubResult } from "../proto/constants.js";
import type { RoomPushFrame, SubAckFrame } from "../proto/frames.js";
import type { SessionOutput } from "./output.js";
import type { RoomPosition } from "./state.js";

interface Follow {
  qos: 0 | 1;
  /** Last sequence delivered to the application. */
  last: bigint | undefined;
  /** Last sequence acknowledged to the gateway (QoS 1). */
  acked: bigint;
  /** A SUBSCRIBE is out and its SUBACK not yet in. */
  awaitingSubAck: boolean;
  /** When a ROOMACK for what is delivered becomes due. */
  ackDueMs: number | undefined;
}

/** The rooms a session follows. */
export class Rooms {
  private readonly follows = new Map<bigint, Follow>();

  constructor(
    restored: readonly RoomPosition[],
    private readonly ackEvery: number,
    private readonly ackDelayMs: number,
  ) {
    for (const r of restored) {
      this.follows.set(r.room, {
        qos: r.qos,
        last: r.last,
        acked: r.last ?? 0n,
        awaitingSubAck: false,
        ackDueMs: undefined,
      });
    }
  }

  /** The followed rooms and their positions. */
  positions(): RoomPosition[] {
    return [...this.follows].map(([room, f]) => position(room, f));
  }

  /**
   * Follows `room`. From `after` when given; otherwise a room already
   * followed (e.g. restored from the store) keeps its position and a new
   * one starts after the room's current head.
   */
  follow(room: bigint, qos: 0 | 1, after: bigint | undefined, connected: boolean, out: SessionOutput): void {
    if (!isRoom(room)) throw new RangeError(`${room} is not a room id (bit 62 set, bit 63 clear)`);
    const known = this.follows.get(room);
    const last = after ?? known?.last;
    const f: Follow = { qos, last, acked: last ?? 0n, awaitingSubAck: false, ackDueMs: undefined };
    this.follows.set(room, f);
    out.store({ type: "room-put", position: position(room, f) });
    if (connected) this.subscribe(room, f, out);
  }

  /** Stops following `room`. */
  unfollow(room: bigint, connected: boolean, out: SessionOutput): void {
    if (!this.follows.delete(room)) return;
    out.store({ type: "room-delete", room });
    if (connected) out.frame({ type: "unsubscribe", room });
  }

  /** After CONNACK: every followed room again, from where it stopped. */
  resubscribeAll(out: SessionOutput): void {
    for (const [room, f] of this.follows) this.subscribe(room, f, out);
  }

  onSubAck(ack: SubAckFrame, out: SessionOutput): void {
    const f = this.follows.get(ack.room);
    if (ack.result === SubResult.Forbidden) {
      // Refused, or ended by the gateway: no longer followed.
      if (!f) return;
      this.follows.delete(ack.room);
      out.store({ type: "room-delete", room: ack.room });
      out.event({ type: "room-forbidden", room: ack.room, last: f.last });
      return;
    }
    if (f && ack.result === SubResult.Refused) {
      this.follows.delete(ack.room);
      out.store({ type: "room-delete", room: ack.room });
    } else if (f) {
      f.awaitingSubAck = false;
      const expected = (f.last ?? -1n) + 1n;
      if (f.last === undefined) {
        // Subscribed from now: delivery starts at `first`.
        f.last = ack.first - 1n;
        f.acked = f.last;
        out.store({ type: "room-put", position: position(ack.room, f) });
      } else if (ack.result === SubResult.Gap && ack.first > expected) {
        // Past the room's history: what lies before `first` is gone.
        out.event({ type: "room-gap", room: ack.room, from: expected, to: ack.first - 1n });
        f.last = ack.first - 1n;
        f.acked = f.last;
        out.store({ type: "room-put", position: position(ack.room, f) });
      }
    }
    out.event({ type: "subscribed", ack });
  }

  onRoomPush(push: RoomPushFrame, nowMs: number, out: SessionOutput): void {
    const f = this.follows.get(push.room);
    if (!f) return; // unsubscribed meanwhile
    const { type: _type, ...message } = push;
    if (push.seq === 0n) {
      out.event({ type: "room-message", message });
      return;
    }
    // Subscribed from now, SUBACK not seen: where the subscription starts
    // is unknown, so a hole before this push could not be seen. On a stream
    // the SUBACK comes first; if it did not, nothing is delivered until the
    // SUBACK of the next SUBSCRIBE says where delivery starts.
    if (f.last === undefined) return;
    if (push.seq <= f.last) return; // seen already (a resume overlapping)
    if (push.seq !== f.last + 1n) {
      // A hole: never skip it; subscribe again after the last one delivered.
      if (!f.awaitingSubAck) this.subscribe(push.room, f, out);
      return;
    }
    f.last = push.seq;
    out.store({ type: "room-put", position: position(push.room, f) });
    out.event({ type: "room-message", message });
    if (f.qos === 1) {
      if (f.last - f.acked >= BigInt(this.ackEvery)) this.ack(push.room, f, out);
      else f.ackDueMs ??= nowMs + this.ackDelayMs;
    }
  }

  onRoomLag(room: bigint, out: SessionOutput): void {
    const f = this.follows.get(room);
    if (!f) return;
    out.event({ type: "room-lagged", room });
    this.subscribe(room, f, out);
  }

  /** ROOMACKs that are due at `nowMs`. */
  ackDue(nowMs: number, out: SessionOutput): void {
    for (const [room, f] of this.follows) {
      if (f.ackDueMs !== undefined && nowMs >= f.ackDueMs) this.ack(room, f, out);
    }
  }

  /** Acknowledges everything delivered in every QoS 1 room now. */
  ackAll(out: SessionOutput): void {
    for (const [room, f] of this.follows) this.ack(room, f, out);
  }

  /** When the next ROOMACK is due, if any. */
  nextDeadline(): number | undefined {
    let t: number | undefined;
    for (const f of this.follows.values()) {
      if (f.ackDueMs !== undefined) t = Math.min(t ?? Infinity, f.ackDueMs);
    }
    return t;
  }

  private subscribe(room: bigint, f: Follow, out: SessionOutput): void {
    f.awaitingSubAck = true;
    f.ackDueMs = undefined;
    // The new subscription's window starts after `last`.
    f.acked = f.last ?? 0n;
    out.frame({ type: "subscribe", room, after: f.last, qos: f.qos });
  }

  private ack(room: bigint, f: Follow, out: SessionOutput): void {
    f.ackDueMs = undefined;
    if (f.qos !== 1 || f.last === undefined || f.last <= f.acked) return;
    f.acked = f.last;
    out.frame({ type: "roomack", room, seq: f.last });
  }
}

function position(room: bigint, f: Follow): RoomPosition {
  return { room, qos: f.qos, last: f.last };
}
