/**
 * Frame decoding with the gateway's rules (docs/PROTOCOL.md §2-3): the
 * header is checked first (magic, version, type, length against the
 * maximum), then the body against its exact layout. Unknown flag bits, a
 * body of the wrong length, an unknown enumeration value, bad UTF-8 or a
 * QoS outside 0..2 are typed {@link ProtocolError}s, never exceptions of
 * another kind and never a partly filled frame.
 *
 * Payloads are views into the given bytes (no copy).
 *
 * @module
 */

import {
  BodyLen,
  CONNACK_CURSOR_KNOWN,
  CONNECT_HAS_CURSOR,
  CONV_END,
  CONVLIST_UNREAD_ONLY,
  CONVMSGS_TRUNCATED,
  DEFAULT_MAX_FRAME,
  ErrorCode,
  FrameType,
  HEADER_LEN,
  MAGIC,
  PUSH_ECHO,
  PUSH_RETRANSMIT,
  type QosLevel,
  SendResult,
  type SendResultValue,
  SubResult,
  type SubResultValue,
  SubscribeMode,
  SUMMARY_UNREAD_AT_LEAST,
  SYNCPAGE_END,
  SYNCPAGE_GAP,
  type SyncDirection,
  SyncDirectionByte,
  VERSION,
} from "./constants.js";
import { BodyReader } from "./bytes.js";
import { malformed, ProtocolError } from "./errors.js";
import type { ConversationSummary, Frame, InboxMessage, OnlineDevice } from "./frames.js";

/** A validated frame header. */
export interface FrameHeader {
  readonly type: number;
  readonly flags: number;
  /** Body length (header not included). */
  readonly bodyLen: number;
}

const TYPE_NAMES: ReadonlyMap<number, string> = new Map(
  Object.entries(FrameType).map(([name, byte]) => [byte, name.toUpperCase()]),
);

/** The name of a frame type byte (`"SYNCPAGE"`), for errors and logs. */
export function frameName(type: number): string {
  return TYPE_NAMES.get(type) ?? `0x${type.toString(16).padStart(2, "0")}`;
}

/**
 * Checks the 8 header bytes at the start of `bytes` (which must hold at
 * least {@link HEADER_LEN}): UnsupportedVersion, UnknownFrameType or
 * FrameTooLarge (the whole frame against `maxFrame`).
 */
export function readHeader(bytes: Uint8Array, maxFrame: number): FrameHeader {
  const view = new DataView(bytes.buffer, bytes.byteOffset, HEADER_LEN);
  const magic = view.getUint8(0);
  const version = view.getUint8(1);
  if (magic !== MAGIC || version !== VERSION) {
    throw new ProtocolError(
      ErrorCode.UnsupportedVersion,
      "stream",
      `magic 0x${magic.toString(16)} version ${version}`,
    );
  }
  const type = view.getUint8(2);
  if (!TYPE_NAMES.has(type)) {
    throw new ProtocolError(ErrorCode.UnknownFrameType, "stream", `type 0x${type.toString(16)}`);
  }
  const bodyLen = view.getUint32(4, true);
  if (HEADER_LEN + bodyLen > maxFrame) {
    throw new ProtocolError(
      ErrorCode.FrameTooLarge,
      frameName(type),
      `${HEADER_LEN + bodyLen} bytes exceed the limit of ${maxFrame}`,
    );
  }
  return { type, flags: view.getUint8(3), bodyLen };
}

/** Decodes one complete frame: `bytes` holds exactly header and body. */
export function decodeFrame(bytes: Uint8Array, maxFrame: number = DEFAULT_MAX_FRAME): Frame {
  if (bytes.length < HEADER_LEN) throw malformed("stream", "shorter than a frame header");
  const header = readHeader(bytes, maxFrame);
  if (bytes.length !== HEADER_LEN + header.bodyLen) {
    throw malformed(frameName(header.type), "length differs from the header's");
  }
  return decodeBody(header, bytes.subarray(HEADER_LEN));
}

const ALLOWED_FLAGS: ReadonlyMap<number, number> = new Map([
  [FrameType.Connect, CONNECT_HAS_CURSOR],
  [FrameType.ConnAck, CONNACK_CURSOR_KNOWN],
  [FrameType.Push, PUSH_ECHO | PUSH_RETRANSMIT],
  [FrameType.SyncPage, SYNCPAGE_END | SYNCPAGE_GAP],
  [FrameType.ConvList, CONVLIST_UNREAD_ONLY],
  [FrameType.ConvPage, CONV_END],
  [FrameType.ConvMsgs, CONV_END | CONVMSGS_TRUNCATED],
]);

/** Decodes a body whose header was validated by {@link readHeader}. */
export function decodeBody(header: FrameHeader, body: Uint8Array): Frame {
  const name = frameName(header.type);
  const flags = header.flags;
  if ((flags & ~(ALLOWED_FLAGS.get(header.type) ?? 0)) !== 0) {
    throw malformed(name, "unknown flag bits set");
  }
  const r = new BodyReader(name, body);
  const exact = (len: number): BodyReader => {
    if (body.length !== len) throw malformed(name, "body length differs from its fixed size");
    return r;
  };
  const atLeast = (len: number): BodyReader => {
    if (body.length < len) throw malformed(name, "body shorter than its fixed part");
    return r;
  };
  switch (header.type) {
    case FrameType.Connect: {
      atLeast(BodyLen.connect);
      const device = r.u64();
      const lastSeq = r.u64();
      const keepaliveMs = r.u32();
      const token = r.restText("CONNECT token");
      if (token.length === 0) throw malformed(name, "empty token");
      return {
        type: "connect",
        device,
        lastSeq: flags & CONNECT_HAS_CURSOR ? lastSeq : undefined,
        keepaliveMs,
        token,
      };
    }
    case FrameType.ConnAck: {
      exact(BodyLen.connAck);
      const user = r.u64();
      const device = r.u64();
      const head = r.u64();
      const cursor = r.u64();
      return {
        type: "connack",
        user,
        device,
        head,
        cursor: flags & CONNACK_CURSOR_KNOWN ? cursor : undefined,
        maxFrame: r.u32(),
        pushWindow: r.u32(),
        maxPendingSends: r.u32(),
        keepaliveMs: r.u32(),
        maxSyncLimit: r.u32(),
      };
    }
    case FrameType.Send: {
      atLeast(BodyLen.send);
      const clientMsgId = r.u64();
      const to = r.u64();
      const qos = qosOf(r.u8(), name);
      return { type: "send", clientMsgId, to, qos, payload: r.rest() };
    }
    case FrameType.SendAck: {
      exact(BodyLen.sendAck);
      const clientMsgId = r.u64();
      const seq = r.u64();
      const ownSeq = r.u64();
      const result = enumOf<SendResultValue>(SendResult, r.u8(), name, "unknown result");
      return { type: "sendack", clientMsgId, seq, ownSeq, result };
    }
    case FrameType.Push: {
      atLeast(BodyLen.push);
      const { hasAttrs, ...fixed } = readMessageFixed(r, name);
      return {
        type: "push",
        ...fixed,
        echo: (flags & PUSH_ECHO) !== 0,
        retransmit: (flags & PUSH_RETRANSMIT) !== 0,
        ...splitAttrs(r.rest(), hasAttrs, name),
      };
    }
    case FrameType.Ack:
      return { type: "ack", upTo: exact(BodyLen.u64).u64() };
    case FrameType.Sync: {
      exact(BodyLen.sync);
      const requestId = r.u32();
      const anchor = r.u64();
      const limit = r.u32();
      const direction = directionOf(r.u8(), name);
      return { type: "sync", requestId, direction, anchor: direction === "latest" ? 0n : anchor, limit };
    }
    case FrameType.SyncPage:
      return decodeSyncPage(atLeast(BodyLen.syncPage), name, flags);
    case FrameType.Rel: {
      exact(BodyLen.rel);
      return { type: "rel", clientMsgId: r.u64(), to: r.u64() };
    }
    case FrameType.Comp:
      return { type: "comp", clientMsgId: exact(BodyLen.u64).u64() };
    case FrameType.Ping:
      return { type: "ping", nonce: exact(BodyLen.u64).u64() };
    case FrameType.Pong:
      return { type: "pong", nonce: exact(BodyLen.u64).u64() };
    case FrameType.Error: {
      const code = atLeast(BodyLen.code).u16();
      return { type: "error", code, message: r.restText("ERROR message") };
    }
    case FrameType.Disconnect: {
      const reason = atLeast(BodyLen.code).u16();
      return { type: "disconnect", reason, redirect: r.restText("DISCONNECT redirect") };
    }
    case FrameType.Subscribe: {
      exact(BodyLen.subscribe);
      const room = r.u64();
      const last = r.u64();
      const qos = qosOf(r.u8(), name);
      const mode = r.u8();
      if (mode !== SubscribeMode.now && mode !== SubscribeMode.after) {
        throw malformed(name, "unknown mode");
      }
      return { type: "subscribe", room, after: mode === SubscribeMode.after ? last : undefined, qos };
    }
    case FrameType.SubAck: {
      exact(BodyLen.subAck);
      const room = r.u64();
      const head = r.u64();
      const first = r.u64();
      const result = enumOf<SubResultValue>(SubResult, r.u8(), name, "unknown result");
      return { type: "suback", room, head, first, result };
    }
    case FrameType.Unsubscribe:
      return { type: "unsubscribe", room: exact(BodyLen.u64).u64() };
    case FrameType.RoomPush: {
      atLeast(BodyLen.roomPush);
      const room = r.u64();
      const seq = r.u64();
      const from = r.u64();
      const tsMs = r.u64();
      const { qos, hasAttrs } = qosAndAttrs(r.u8(), name);
      return { type: "roompush", room, seq, from, tsMs, qos, ...splitAttrs(r.rest(), hasAttrs, name) };
    }
    case FrameType.RoomAck: {
      exact(BodyLen.roomSeq);
      return { type: "roomack", room: r.u64(), seq: r.u64() };
    }
    case FrameType.RoomLag: {
      exact(BodyLen.roomSeq);
      return { type: "roomlag", room: r.u64(), next: r.u64() };
    }
    case FrameType.ConvList: {
      exact(BodyLen.convList);
      const requestId = r.u32();
      const before = r.u64();
      const limit = r.u32();
      return { type: "convlist", requestId, before, limit, unreadOnly: (flags & CONVLIST_UNREAD_ONLY) !== 0 };
    }
    case FrameType.ConvPage:
      return decodeConvPage(atLeast(BodyLen.convPage), name, flags);
    case FrameType.ConvFetch: {
      exact(BodyLen.convFetch);
      const requestId = r.u32();
      const peer = r.u64();
      const anchor = r.u64();
      const limit = r.u32();
      const direction = directionOf(r.u8(), name);
      return {
        type: "convfetch",
        requestId,
        peer,
        direction,
        anchor: direction === "latest" ? 0n : anchor,
        limit,
      };
    }
    case FrameType.ConvMsgs: {
      atLeast(BodyLen.convMsgs);
      const requestId = r.u32();
      const peer = r.u64();
      const head = r.u64();
      const items = readItems(r, name, r.u32());
      const end = (flags & CONV_END) !== 0;
      const truncated = (flags & CONVMSGS_TRUNCATED) !== 0;
      return { type: "convmsgs", requestId, peer, head, end, truncated, items };
    }
    case FrameType.Watch: {
      atLeast(BodyLen.watch);
      const request = r.u32();
      return { type: "watch", request, users: userList(r, r.u16(), name) };
    }
    case FrameType.WatchAck: {
      exact(BodyLen.watchAck);
      return { type: "watchack", request: r.u32(), code: r.u16(), watching: r.u32(), refused: r.u64() };
    }
    case FrameType.Unwatch:
      atLeast(BodyLen.unwatch);
      return { type: "unwatch", users: userList(r, r.u16(), name) };
    case FrameType.Presence:
      atLeast(BodyLen.presence);
      return decodePresence(r, name);
    default:
      throw new ProtocolError(ErrorCode.UnknownFrameType, "stream", `type 0x${header.type.toString(16)}`);
  }
}

/** `count` user ids filling the rest of the body exactly. */
function userList(r: BodyReader, count: number, name: string): bigint[] {
  if (r.remaining !== 8 * count) throw malformed(name, "user count differs from the body");
  const users: bigint[] = [];
  for (let i = 0; i < count; i++) users.push(r.u64());
  return users;
}

function decodePresence(r: BodyReader, name: string): Frame {
  const user = r.u64();
  const count = r.u16();
  if (count > Math.floor(r.remaining / BodyLen.presenceDevice)) throw malformed(name, "count exceeds body");
  const devices: OnlineDevice[] = [];
  for (let i = 0; i < count; i++) {
    if (r.remaining < BodyLen.presenceDevice) throw malformed(name, "truncated device");
    const device = r.u64();
    const sinceMs = r.u64();
    const shard = r.u16();
    const len = r.u8();
    if (len > r.remaining) throw malformed(name, "transport name exceeds body");
    const raw = r.bytes(len);
    let transport: string;
    try {
      transport = strictUtf8.decode(raw);
    } catch {
      throw new ProtocolError(ErrorCode.InvalidUtf8, name, "PRESENCE transport is not valid UTF-8");
    }
    devices.push({ device, sinceMs, shard, transport });
  }
  if (r.remaining !== 0) throw malformed(name, "trailing bytes");
  return { type: "presence", user, devices };
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

function decodeSyncPage(r: BodyReader, name: string, flags: number): Frame {
  const requestId = r.u32();
  const head = r.u64();
  const items = readItems(r, name, r.u32());
  const end = (flags & SYNCPAGE_END) !== 0;
  const gap = (flags & SYNCPAGE_GAP) !== 0;
  return { type: "syncpage", requestId, head, end, gap, items };
}

/** `count` message items (PUSH fixed part, u32 length, payload) filling the rest of the body. */
function readItems(r: BodyReader, name: string, count: number): InboxMessage[] {
  // Each item takes at least its fixed part and its length field: bound
  // the work by what the body can actually hold before looping.
  const minItem = BodyLen.push + BodyLen.itemPayloadLen;
  if (count > Math.floor(r.remaining / minItem)) throw malformed(name, "count exceeds body");
  const items: InboxMessage[] = [];
  for (let i = 0; i < count; i++) {
    if (r.remaining < minItem) throw malformed(name, "truncated item");
    const { hasAttrs, ...fixed } = readMessageFixed(r, name);
    const len = r.u32();
    if (len > r.remaining) throw malformed(name, "item payload exceeds body");
    items.push({ ...fixed, echo: false, retransmit: false, ...splitAttrs(r.bytes(len), hasAttrs, name) });
  }
  if (r.remaining !== 0) throw malformed(name, "trailing bytes");
  return items;
}

function decodeConvPage(r: BodyReader, name: string, flags: number): Frame {
  const requestId = r.u32();
  const cursor = r.u64();
  const head = r.u64();
  const older = r.u64();
  const count = r.u32();
  if (count > Math.floor(r.remaining / BodyLen.convSummary)) throw malformed(name, "count exceeds body");
  const items: ConversationSummary[] = [];
  for (let i = 0; i < count; i++) {
    if (r.remaining < BodyLen.convSummary) throw malformed(name, "truncated item");
    const peer = r.u64();
    const unread = r.u32();
    const total = r.u64();
    const lastSeq = r.u64();
    const lastFrom = r.u64();
    const lastFromDevice = r.u64();
    const lastTsMs = r.u64();
    const lastLen = r.u32();
    const itemFlags = r.u8();
    if ((itemFlags & ~SUMMARY_UNREAD_AT_LEAST) !== 0) throw malformed(name, "unknown item flag bits set");
    const len = r.u16();
    if (len > r.remaining) throw malformed(name, "preview exceeds body");
    items.push({
      peer,
      unread,
      unreadAtLeast: (itemFlags & SUMMARY_UNREAD_AT_LEAST) !== 0,
      total,
      lastSeq,
      lastFrom,
      lastFromDevice,
      lastTsMs,
      lastLen,
      preview: r.bytes(len),
    });
  }
  if (r.remaining !== 0) throw malformed(name, "trailing bytes");
  return { type: "convpage", requestId, cursor, head, older, end: (flags & CONV_END) !== 0, items };
}

type MessageFixed = Omit<InboxMessage, "echo" | "retransmit" | "payload">;

function readMessageFixed(r: BodyReader, name: string): MessageFixed & { hasAttrs: boolean } {
  const seq = r.u64();
  const prevSeq = r.u64();
  const from = r.u64();
  const fromDevice = r.u64();
  const to = r.u64();
  const clientMsgId = r.u64();
  const tsMs = r.u64();
  const { qos, hasAttrs } = qosAndAttrs(r.u8(), name);
  return { seq, prevSeq, from, fromDevice, to, clientMsgId, tsMs, qos, hasAttrs };
}

/** Bit 7 of a message's qos byte: the payload field starts with attributes. */
const QOS_HAS_ATTRS = 0x80;

/** The QoS of a message's qos byte and whether it has attributes. */
function qosAndAttrs(v: number, frame: string): { qos: QosLevel; hasAttrs: boolean } {
  return { qos: qosOf(v & ~QOS_HAS_ATTRS, frame), hasAttrs: (v & QOS_HAS_ATTRS) !== 0 };
}

/**
 * A message's payload field: with attributes, a u32 (little endian, at
 * least 1) length, the attributes, then the payload (PROTOCOL.md "Message
 * attributes").
 */
function splitAttrs(field: Uint8Array, hasAttrs: boolean, frame: string): { attrs?: Uint8Array; payload: Uint8Array } {
  if (!hasAttrs) return { payload: field };
  if (field.length < 4) throw malformed(frame, "attributes length truncated");
  const len = new DataView(field.buffer, field.byteOffset, 4).getUint32(0, true);
  if (len === 0 || len > field.length - 4) throw malformed(frame, "attributes exceed the payload field");
  return { attrs: field.subarray(4, 4 + len), payload: field.subarray(4 + len) };
}

function qosOf(v: number, frame: string): QosLevel {
  if (v === 0 || v === 1 || v === 2) return v;
  throw new ProtocolError(ErrorCode.InvalidQos, frame, `invalid QoS ${v}`);
}

function directionOf(v: number, frame: string): SyncDirection {
  for (const [direction, byte] of Object.entries(SyncDirectionByte)) {
    if (byte === v) return direction as SyncDirection;
  }
  throw malformed(frame, "unknown direction");
}

function enumOf<T extends number>(values: Record<string, T>, v: number, frame: string, what: string): T {
  for (const known of Object.values(values)) {
    if (known === v) return known;
  }
  throw malformed(frame, what);
}
