/**
 * Typed frames: what a decoded frame means (docs/PROTOCOL.md §3, §6b).
 *
 * Every u64 of the wire is a `bigint` (user, device and room ids have bit 62
 * or 63 set and sequences may pass 2^53); u32 fields are `number`. Field
 * names are the document's, in camelCase. A frame is a plain object tagged
 * by `type`, so a `switch (frame.type)` is checked for exhaustiveness.
 *
 * @module
 */

import type { QosLevel, SendResultValue, SubResultValue, SyncDirection } from "./constants.js";

/** CONNECT: open a session. */
export interface ConnectFrame {
  readonly type: "connect";
  /** This device; must equal the token's `dev` claim. */
  readonly device: bigint;
  /** Highest inbox sequence the device holds; absent for a new device. */
  readonly lastSeq?: bigint | undefined;
  /** Keepalive asked for (ms); 0 = the gateway's default. */
  readonly keepaliveMs: number;
  /** The JWT (HS256). */
  readonly token: string;
}

/** CONNACK: the session is open. */
export interface ConnAckFrame {
  readonly type: "connack";
  readonly user: bigint;
  readonly device: bigint;
  /** Highest durable sequence of the user's inbox (0 = empty). */
  readonly head: bigint;
  /** The gateway's acknowledged position for this device, if it knows one. */
  readonly cursor?: bigint | undefined;
  /** Largest frame the gateway accepts (header included). */
  readonly maxFrame: number;
  readonly pushWindow: number;
  readonly maxPendingSends: number;
  /** Keepalive in force (ms). */
  readonly keepaliveMs: number;
  readonly maxSyncLimit: number;
}

/** SEND: a message to a user, a group or a room. */
export interface SendFrame {
  readonly type: "send";
  readonly clientMsgId: bigint;
  readonly to: bigint;
  readonly qos: QosLevel;
  readonly payload: Uint8Array;
}

/** SENDACK: the outcome of one SEND. */
export interface SendAckFrame {
  readonly type: "sendack";
  readonly clientMsgId: bigint;
  /** Sequence of the copy in the addressee's inbox or the room (0 if none). */
  readonly seq: bigint;
  /** Sequence of the copy in the sender's own inbox (0 if none). */
  readonly ownSeq: bigint;
  readonly result: SendResultValue;
}

/** One inbox message: the body of a PUSH, and each item of a SYNCPAGE. */
export interface InboxMessage {
  /** Position in the receiving user's inbox; 0 for QoS 0. */
  readonly seq: bigint;
  /**
   * The sequence before it in what this device is sent (0 for QoS 0):
   * usually `seq - 1`; the sequences strictly between are gone
   * (PROTOCOL.md §7). In a page, the item (or anchor) before it.
   */
  readonly prevSeq: bigint;
  readonly from: bigint;
  readonly fromDevice: bigint;
  /** Addressee of the original SEND (a user or group id). */
  readonly to: bigint;
  readonly clientMsgId: bigint;
  /** Gateway receive time, ms since the Unix epoch. */
  readonly tsMs: bigint;
  readonly qos: QosLevel;
  /** This very device sent it; the payload is omitted. Never set in pages. */
  readonly echo: boolean;
  /** A retransmission of an unacknowledged push. Never set in pages. */
  readonly retransmit: boolean;
  /**
   * Message attributes (PROTOCOL.md "Message attributes"): set when another
   * sender (an MQTT 5 publisher: its message properties) gave the message
   * some; absent otherwise. This SDK never sends any.
   */
  readonly attrs?: Uint8Array;
  readonly payload: Uint8Array;
}

/** PUSH: one inbox message, live. */
export interface PushFrame extends InboxMessage {
  readonly type: "push";
}

/** ACK: every message with `seq <= upTo` is held by the device. */
export interface AckFrame {
  readonly type: "ack";
  readonly upTo: bigint;
}

/** SYNC: ask for a page of the inbox. */
export interface SyncFrame {
  readonly type: "sync";
  /** Strictly increasing per connection. */
  readonly requestId: number;
  readonly direction: SyncDirection;
  /** `after`: messages above it (and an acknowledgement up to it); `before`: below it; ignored by `latest`. */
  readonly anchor: bigint;
  readonly limit: number;
}

/** SYNCPAGE: one page of the inbox, ascending by seq. */
export interface SyncPageFrame {
  readonly type: "syncpage";
  readonly requestId: number;
  /** Highest sequence of the inbox (durable or gone) when the page's read began. */
  readonly head: bigint;
  /** Nothing further exists in the requested direction. */
  readonly end: boolean;
  /**
   * Sequences are gone before or among the items (an item whose `prevSeq`
   * is not `seq - 1`), or, for an empty `after` page, every sequence after
   * the anchor up to `head` (PROTOCOL.md §3 SYNCPAGE, §7).
   */
  readonly gap: boolean;
  readonly items: readonly InboxMessage[];
}

/** REL: QoS 2 release of a stored send. */
export interface RelFrame {
  readonly type: "rel";
  readonly clientMsgId: bigint;
  readonly to: bigint;
}

/** COMP: QoS 2 release confirmed. */
export interface CompFrame {
  readonly type: "comp";
  readonly clientMsgId: bigint;
}

/** PING: keepalive probe with an opaque nonce. */
export interface PingFrame {
  readonly type: "ping";
  readonly nonce: bigint;
}

/** PONG: answer to a PING, same nonce. */
export interface PongFrame {
  readonly type: "pong";
  readonly nonce: bigint;
}

/** ERROR: a typed error; the gateway usually closes afterwards. */
export interface ErrorFrame {
  readonly type: "error";
  /** Wire code (see `ErrorCode`); unknown codes are kept as they are. */
  readonly code: number;
  /** Text for humans; never parsed. */
  readonly message: string;
}

/** DISCONNECT: orderly close. */
export interface DisconnectFrame {
  readonly type: "disconnect";
  /** Wire code (see `ErrorCode`): Normal, Replaced, ShuttingDown, ... */
  readonly reason: number;
  /** `host:port` to reconnect to, or empty for "any gateway". */
  readonly redirect: string;
}

/** SUBSCRIBE: follow a room. */
export interface SubscribeFrame {
  readonly type: "subscribe";
  readonly room: bigint;
  /** Start after this room sequence (mode 1); absent: after the room's head (mode 0). */
  readonly after?: bigint | undefined;
  /** 0 or 1 (2 is refused by the gateway). */
  readonly qos: QosLevel;
}

/** SUBACK: a subscription is in place (or refused). */
export interface SubAckFrame {
  readonly type: "suback";
  readonly room: bigint;
  readonly head: bigint;
  /** The first sequence that will be delivered. */
  readonly first: bigint;
  readonly result: SubResultValue;
}

/** UNSUBSCRIBE: stop following a room. */
export interface UnsubscribeFrame {
  readonly type: "unsubscribe";
  readonly room: bigint;
}

/** One room message. */
export interface RoomMessage {
  readonly room: bigint;
  /** Room sequence; 0 for a QoS 0 publish. */
  readonly seq: bigint;
  readonly from: bigint;
  readonly tsMs: bigint;
  readonly qos: QosLevel;
  /** Message attributes, as on an inbox message. */
  readonly attrs?: Uint8Array;
  readonly payload: Uint8Array;
}

/** ROOMPUSH: one room message, live or replayed. */
export interface RoomPushFrame extends RoomMessage {
  readonly type: "roompush";
}

/** ROOMACK: the room is processed up to `seq` (QoS 1 subscriptions). */
export interface RoomAckFrame {
  readonly type: "roomack";
  readonly room: bigint;
  readonly seq: bigint;
}

/** ROOMLAG: the subscription was dropped from live delivery as too slow. */
export interface RoomLagFrame {
  readonly type: "roomlag";
  readonly room: bigint;
  /** The sequence the subscriber would have received next. */
  readonly next: bigint;
}

/** CONVLIST: ask for a page of conversation summaries (PROTOCOL.md §7a). */
export interface ConvListFrame {
  readonly type: "convlist";
  readonly requestId: number;
  /** Conversations whose last message is below this sequence; 0n: from the newest. */
  readonly before: bigint;
  readonly limit: number;
  /** Only conversations with unread messages. */
  readonly unreadOnly: boolean;
}

/** One conversation of a CONVPAGE. */
export interface ConversationSummary {
  /** The peer user, or the group id. */
  readonly peer: bigint;
  /** Messages from others after the asking device's cursor. */
  readonly unread: number;
  /** `unread` is a lower bound (more than the gateway indexes). */
  readonly unreadAtLeast: boolean;
  /** Messages in the conversation since the gateway tracks it. */
  readonly total: bigint;
  readonly lastSeq: bigint;
  readonly lastFrom: bigint;
  readonly lastFromDevice: bigint;
  readonly lastTsMs: bigint;
  /** The whole payload's length. */
  readonly lastLen: number;
  /** The first bytes of the last message's payload. */
  readonly preview: Uint8Array;
}

/** CONVPAGE: a page of conversation summaries, newest first. */
export interface ConvPageFrame {
  readonly type: "convpage";
  readonly requestId: number;
  /** The device cursor `unread` counts from. */
  readonly cursor: bigint;
  readonly head: bigint;
  /** Conversations no longer tracked (evicted beyond the per-user limit). */
  readonly older: bigint;
  readonly end: boolean;
  readonly items: readonly ConversationSummary[];
}

/** CONVFETCH: ask for a page of one conversation. */
export interface ConvFetchFrame {
  readonly type: "convfetch";
  readonly requestId: number;
  readonly peer: bigint;
  readonly direction: SyncDirection;
  /** `after`: messages above it; `before`: below it; ignored by `latest`. */
  readonly anchor: bigint;
  readonly limit: number;
}

/** CONVMSGS: a page of one conversation, ascending by seq. */
export interface ConvMsgsFrame {
  readonly type: "convmsgs";
  readonly requestId: number;
  readonly peer: bigint;
  readonly head: bigint;
  readonly end: boolean;
  /** Older messages exist beyond the gateway's index. */
  readonly truncated: boolean;
  readonly items: readonly InboxMessage[];
}

/** WATCH: watch these users' presence (PROTOCOL.md §6c). */
export interface WatchFrame {
  readonly type: "watch";
  /** Echoed in the WATCHACK. */
  readonly request: number;
  readonly users: readonly bigint[];
}

/** WATCHACK: the outcome of a WATCH, all or nothing. */
export interface WatchAckFrame {
  readonly type: "watchack";
  readonly request: number;
  /** 0: accepted; else an error code (Forbidden, TooManyWatches). */
  readonly code: number;
  /** Users the session watches after this WATCH. */
  readonly watching: number;
  /** With Forbidden: the first user refused; else 0. */
  readonly refused: bigint;
}

/** UNWATCH: stop watching these users. */
export interface UnwatchFrame {
  readonly type: "unwatch";
  readonly users: readonly bigint[];
}

/** One online device of a user. */
export interface OnlineDevice {
  readonly device: bigint;
  /** When its session opened, ms since the Unix epoch. */
  readonly sinceMs: bigint;
  /** The gateway shard holding its session. */
  readonly shard: number;
  /** `native` or `mqtt`. */
  readonly transport: string;
}

/** PRESENCE: all online devices of a watched user (empty: offline). */
export interface PresenceFrame {
  readonly type: "presence";
  readonly user: bigint;
  readonly devices: readonly OnlineDevice[];
}

/** Any frame of the protocol, either direction. */
export type Frame =
  | ConnectFrame
  | ConnAckFrame
  | SendFrame
  | SendAckFrame
  | PushFrame
  | AckFrame
  | SyncFrame
  | SyncPageFrame
  | RelFrame
  | CompFrame
  | PingFrame
  | PongFrame
  | ErrorFrame
  | DisconnectFrame
  | SubscribeFrame
  | SubAckFrame
  | UnsubscribeFrame
  | RoomPushFrame
  | RoomAckFrame
  | RoomLagFrame
  | ConvListFrame
  | ConvPageFrame
  | ConvFetchFrame
  | ConvMsgsFrame
  | WatchFrame
  | WatchAckFrame
  | UnwatchFrame
  | PresenceFrame;
