/**
 * Wire constants of protocol version 1 (docs/PROTOCOL.md): the header, frame
 * type bytes, flag bits, fixed body sizes, error codes and enumerations.
 *
 * Every number here is part of the contract; the codec derives its bounds
 * checks from these names and never repeats a literal.
 *
 * @module
 */

/** First byte of every frame. */
export const MAGIC = 0xb5;
/** Protocol version this SDK speaks. */
export const VERSION = 1;
/** Size of the frame header: magic, version, type, flags, u32 body length. */
export const HEADER_LEN = 8;
/** Default largest frame (header included); the gateway announces its own in CONNACK. */
export const DEFAULT_MAX_FRAME = 1 << 20;

/** Frame type bytes (PROTOCOL.md §2, rooms §6b). */
export const FrameType = {
  Connect: 0x01,
  ConnAck: 0x02,
  Send: 0x03,
  SendAck: 0x04,
  Push: 0x05,
  Ack: 0x06,
  Sync: 0x07,
  SyncPage: 0x08,
  Rel: 0x09,
  Comp: 0x0a,
  Ping: 0x0b,
  Pong: 0x0c,
  Error: 0x0d,
  Disconnect: 0x0e,
  Subscribe: 0x0f,
  SubAck: 0x10,
  Unsubscribe: 0x11,
  RoomPush: 0x12,
  RoomAck: 0x13,
  RoomLag: 0x14,
  ConvList: 0x15,
  ConvPage: 0x16,
  ConvFetch: 0x17,
  ConvMsgs: 0x18,
  Watch: 0x19,
  WatchAck: 0x1a,
  Unwatch: 0x1b,
  Presence: 0x1c,
} as const;
/** One of the {@link FrameType} bytes. */
export type FrameTypeByte = (typeof FrameType)[keyof typeof FrameType];

/** CONNECT flag: `last_seq` is meaningful. */
export const CONNECT_HAS_CURSOR = 0x01;
/** CONNACK flag: `cursor` is meaningful. */
export const CONNACK_CURSOR_KNOWN = 0x01;
/** PUSH flag: this device sent the message; payload omitted. */
export const PUSH_ECHO = 0x01;
/** PUSH flag: a retransmission of an unacknowledged push. */
export const PUSH_RETRANSMIT = 0x02;
/** SYNCPAGE flag: nothing further exists in the requested direction. */
export const SYNCPAGE_END = 0x01;
/**
 * SYNCPAGE flag: sequences are gone (PROTOCOL.md §7) between the anchor and
 * the first item, between items, or, for an empty `After` page, between the
 * anchor and `head`.
 */
export const SYNCPAGE_GAP = 0x02;

/** CONVLIST flag: only conversations with unread messages (PROTOCOL.md §7a). */
export const CONVLIST_UNREAD_ONLY = 0x01;
/** CONVPAGE / CONVMSGS flag: nothing further in the requested direction. */
export const CONV_END = 0x01;
/** CONVMSGS flag: older messages exist beyond the gateway's index (page on with SYNC `before`). */
export const CONVMSGS_TRUNCATED = 0x02;
/** CONVPAGE item flag: `unread` is a lower bound. */
export const SUMMARY_UNREAD_AT_LEAST = 0x01;

/** Fixed body sizes in bytes (variable data follows where the frame has any). */
export const BodyLen = {
  connect: 20,
  connAck: 52,
  send: 17,
  sendAck: 25,
  push: 57,
  /** A SYNCPAGE item: the PUSH fixed part, then this u32 payload length. */
  itemPayloadLen: 4,
  sync: 17,
  syncPage: 16,
  rel: 16,
  /** ACK, COMP, PING, PONG, UNSUBSCRIBE: one u64. */
  u64: 8,
  /** ERROR and DISCONNECT: a u16 code, then text. */
  code: 2,
  subscribe: 18,
  subAck: 25,
  roomPush: 33,
  /** ROOMACK and ROOMLAG: room, seq. */
  roomSeq: 16,
  convList: 16,
  convPage: 32,
  /** A CONVPAGE item before its preview. */
  convSummary: 59,
  convFetch: 25,
  convMsgs: 24,
  /** WATCH: request u32, count u16, then the user ids. */
  watch: 6,
  watchAck: 18,
  /** UNWATCH: count u16, then the user ids. */
  unwatch: 2,
  /** PRESENCE: user u64, count u16, then the devices. */
  presence: 10,
  /** A PRESENCE device: device, since_ms, shard, transport length; then the name. */
  presenceDevice: 19,
} as const;

/** Largest CONNECT token accepted (bytes). */
export const MAX_TOKEN_LEN = 4096;

/** Error codes of ERROR.code and DISCONNECT.reason (PROTOCOL.md §8). */
export const ErrorCode = {
  Malformed: 1,
  UnsupportedVersion: 2,
  UnknownFrameType: 3,
  FrameTooLarge: 4,
  InvalidUtf8: 5,
  NotConnected: 6,
  AlreadyConnected: 7,
  AuthFailed: 8,
  TokenExpired: 9,
  DeviceMismatch: 10,
  Forbidden: 11,
  AckBeyondSent: 12,
  BadSyncRequest: 13,
  InvalidQos: 14,
  RateLimited: 15,
  TooManyConnections: 16,
  IdleTimeout: 17,
  AckTimeout: 18,
  StorageUnavailable: 19,
  Replaced: 20,
  ShuttingDown: 21,
  InflightExceeded: 22,
  Internal: 23,
  Normal: 24,
  Kicked: 25,
  WrongNode: 26,
  BadConversationRequest: 27,
  TooManyWatches: 29,
} as const;
/** One of the known {@link ErrorCode} values. */
export type ErrorCodeValue = (typeof ErrorCode)[keyof typeof ErrorCode];

/** The name of a wire error code, or `Unknown(n)` for a code from a newer gateway. */
export function errorName(code: number): string {
  for (const [name, value] of Object.entries(ErrorCode)) {
    if (value === code) return name;
  }
  return `Unknown(${code})`;
}

/** Delivery guarantee of a message, as in MQTT. */
export const Qos = {
  /** Not stored, not acknowledged, may be lost. */
  AtMostOnce: 0,
  /** Stored before SENDACK; delivered at least once. */
  AtLeastOnce: 1,
  /** As QoS 1, released with REL/COMP: stored and handed over exactly once. */
  ExactlyOnce: 2,
} as const;
/** 0, 1 or 2. */
export type QosLevel = (typeof Qos)[keyof typeof Qos];

/** SENDACK `result`. */
export const SendResult = {
  Stored: 0,
  Duplicate: 1,
  StorageUnavailable: 2,
  Forbidden: 3,
  /** The client_msg_id was used before for a different message; never retried. */
  Conflict: 4,
} as const;
/** One of the {@link SendResult} values. */
export type SendResultValue = (typeof SendResult)[keyof typeof SendResult];

/** SUBACK `result`. */
export const SubResult = {
  Ok: 0,
  Gap: 1,
  /** Not a room id, or QoS 2 (a malformed request). */
  Refused: 2,
  /**
   * The room does not allow this user to read it; also sent unasked when a
   * subscription loses that permission (it has ended).
   */
  Forbidden: 3,
} as const;
/** One of the {@link SubResult} values. */
export type SubResultValue = (typeof SubResult)[keyof typeof SubResult];

/** SYNC `direction` bytes. */
export const SyncDirectionByte = { after: 0, latest: 1, before: 2 } as const;
/** Which part of the inbox a SYNC asks for. */
export type SyncDirection = keyof typeof SyncDirectionByte;

/** SUBSCRIBE `mode`: 0 starts after the room's head, 1 after `last_seq`. */
export const SubscribeMode = { now: 0, after: 1 } as const;

/** Ids with this bit set name groups (PROTOCOL.md §6a). */
export const GROUP_BIT = 1n << 63n;
/** Ids with this bit set (and {@link GROUP_BIT} clear) name rooms (§6b). */
export const ROOM_BIT = 1n << 62n;
/** Largest value of a u64 field. */
export const U64_MAX = (1n << 64n) - 1n;

/** Group and room numbers are below this (the two top bits tag the id). */
const ID_NUMBER_LIMIT = 1n << 62n;

/** The wire id of group number `n`; a `RangeError` unless `0 <= n < 2^62`. */
export function groupId(n: bigint): bigint {
  return idNumber(n, "group") | GROUP_BIT;
}

/** The wire id of room number `n`; a `RangeError` unless `0 <= n < 2^62`. */
export function roomId(n: bigint): bigint {
  return idNumber(n, "room") | ROOM_BIT;
}

function idNumber(n: bigint, what: string): bigint {
  if (n < 0n || n >= ID_NUMBER_LIMIT) {
    throw new RangeError(`${what} number ${n} is outside 0..2^62`);
  }
  return n;
}

/** True for a group id. */
export function isGroup(id: bigint): boolean {
  return (id & GROUP_BIT) !== 0n;
}

/** True for a room id. */
export function isRoom(id: bigint): boolean {
  return (id & (GROUP_BIT | ROOM_BIT)) === ROOM_BIT;
}
