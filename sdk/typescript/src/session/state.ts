/**
 * What a device keeps across app restarts, and the changes to it that the
 * session asks its driver to persist.
 *
 * The session never touches storage itself: it emits {@link StoreChange}s
 * (drained with `pollStore`) and the driver writes them through an
 * `OutboxStore` before it transmits the frames that depend on them, so the
 * gateway never learns of a state the device could lose (an ACK is never
 * ahead of the persisted `delivered`, a SEND never ahead of its outbox
 * entry and of the id counter).
 *
 * @module
 */

/** A QoS 1/2 send not yet finished. */
export interface OutboxEntry {
  readonly clientMsgId: bigint;
  readonly to: bigint;
  readonly qos: 1 | 2;
  readonly payload: Uint8Array;
  /** `send`: awaiting SENDACK; `release`: QoS 2 stored, awaiting COMP for its REL. */
  readonly stage: "send" | "release";
}

/** A followed room and the last sequence the application was handed. */
export interface RoomPosition {
  readonly room: bigint;
  /** 0 (no ROOMACK) or 1. */
  readonly qos: 0 | 1;
  /** Last room sequence delivered; absent until the first SUBACK of a "from now" subscription. */
  readonly last?: bigint | undefined;
}

/** Everything a device restores at start. */
export interface SessionState {
  /** Highest inbox sequence handed to the application; absent for a new device. */
  readonly delivered?: bigint | undefined;
  /** The next client message id to use (ids never repeat for a device). */
  readonly nextClientMsgId?: bigint | undefined;
  /** Unfinished sends, in any order. */
  readonly outbox: readonly OutboxEntry[];
  /** Followed rooms. */
  readonly rooms: readonly RoomPosition[];
}

/** An empty state: a new device. */
export const NEW_DEVICE: SessionState = Object.freeze({ outbox: [], rooms: [] });

/** One change to persist. */
export type StoreChange =
  | { readonly type: "outbox-put"; readonly entry: OutboxEntry }
  | { readonly type: "outbox-delete"; readonly clientMsgId: bigint }
  | { readonly type: "delivered"; readonly seq: bigint }
  | { readonly type: "next-id"; readonly next: bigint }
  | { readonly type: "room-put"; readonly position: RoomPosition }
  | { readonly type: "room-delete"; readonly room: bigint };

/** What a change overwrites: two changes with one key keep the later. */
export function changeKey(change: StoreChange): string {
  switch (change.type) {
    case "outbox-put":
      return `outbox:${change.entry.clientMsgId}`;
    case "outbox-delete":
      return `outbox:${change.clientMsgId}`;
    case "delivered":
      return "delivered";
    case "next-id":
      return "next-id";
    case "room-put":
      return `room:${change.position.room}`;
    case "room-delete":
      return `room:${change.room}`;
  }
}

/**
 * The same effect in fewer changes: for each key only the last change is
 * kept (changes to different keys are independent, so their order does
 * not matter). A burst of room messages becomes one room position.
 */
export function coalesce(changes: readonly StoreChange[]): StoreChange[] {
  const last = new Map<string, StoreChange>();
  for (const c of changes) {
    const key = changeKey(c);
    last.delete(key);
    last.set(key, c);
  }
  return [...last.values()];
}

/** `state` with `changes` applied (the reference semantics every store implements). */
export function applyChanges(state: SessionState, changes: readonly StoreChange[]): SessionState {
  let { delivered, nextClientMsgId } = state;
  const outbox = new Map(state.outbox.map((e) => [e.clientMsgId, e]));
  const rooms = new Map(state.rooms.map((r) => [r.room, r]));
  for (const c of changes) {
    switch (c.type) {
      case "outbox-put":
        outbox.set(c.entry.clientMsgId, c.entry);
        break;
      case "outbox-delete":
        outbox.delete(c.clientMsgId);
        break;
      case "delivered":
        delivered = c.seq;
        break;
      case "next-id":
        nextClientMsgId = c.next;
        break;
      case "room-put":
        rooms.set(c.position.room, c.position);
        break;
      case "room-delete":
        rooms.delete(c.room);
        break;
    }
  }
  return { delivered, nextClientMsgId, outbox: [...outbox.values()], rooms: [...rooms.values()] };
}
