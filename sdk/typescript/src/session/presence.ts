/**
 * Presence watches of a session (docs/PROTOCOL.md §6c): WATCH, WATCHACK,
 * UNWATCH, PRESENCE. The gateway keeps no watch beyond a connection, so
 * the session remembers the watched users and watches them again after
 * every CONNACK. A refused WATCH (WATCHACK with an error code) adds none
 * of its users, and the session forgets them too.
 *
 * @module
 */

import type { WatchAckFrame } from "../proto/frames.js";
import type { SessionOutput } from "./output.js";

/** Most users in one WATCH or UNWATCH (its count is a u16). */
const MAX_USERS_PER_FRAME = 0xffff;

/** The users a session watches. */
export class Watches {
  private readonly users = new Set<bigint>();
  /** WATCH request id -> the users it added here. */
  private readonly pending = new Map<number, bigint[]>();
  private nextRequest = 0;

  /** The watched users. */
  watched(): bigint[] {
    return [...this.users];
  }

  /** Watches `users`; returns the first WATCH's request id if one was sent. */
  watch(users: readonly bigint[], connected: boolean, out: SessionOutput): number | undefined {
    const added = users.filter((u) => !this.users.has(u) && (this.users.add(u), true));
    if (added.length === 0 || !connected) return undefined;
    return this.send(added, out);
  }

  /** Stops watching `users`. */
  unwatch(users: readonly bigint[], connected: boolean, out: SessionOutput): void {
    const gone = users.filter((u) => this.users.delete(u));
    if (!connected) return;
    for (let i = 0; i < gone.length; i += MAX_USERS_PER_FRAME) {
      out.frame({ type: "unwatch", users: gone.slice(i, i + MAX_USERS_PER_FRAME) });
    }
  }

  /** After CONNACK: watch everything again. */
  rewatchAll(out: SessionOutput): void {
    this.pending.clear();
    if (this.users.size > 0) this.send([...this.users], out);
  }

  /** A WATCHACK: a refusal drops the users its WATCH added. */
  onWatchAck(ack: WatchAckFrame, out: SessionOutput): void {
    const added = this.pending.get(ack.request) ?? [];
    this.pending.delete(ack.request);
    if (ack.code !== 0) for (const u of added) this.users.delete(u);
    out.event({ type: "watched", ack });
  }

  private send(users: bigint[], out: SessionOutput): number {
    let first: number | undefined;
    for (let i = 0; i < users.length; i += MAX_USERS_PER_FRAME) {
      const chunk = users.slice(i, i + MAX_USERS_PER_FRAME);
      this.nextRequest = (this.nextRequest + 1) >>> 0;
      const request = this.nextRequest;
      this.pending.set(request, chunk);
      first ??= request;
      out.frame({ type: "watch", request, users: chunk });
    }
    return first!;
  }
}
