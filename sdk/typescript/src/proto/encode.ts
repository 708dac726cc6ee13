/**
 * Frame encoding: one exactly sized allocation per frame, header included.
 *
 * The encoder writes what it is given; limits a peer enforces (payload and
 * token sizes, QoS values) are checked by the session before it queues a
 * frame, so tests can still build every malformed frame they need.
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
  FrameType,
  SUMMARY_UNREAD_AT_LEAST,
  HEADER_LEN,
  MAGIC,
  PUSH_ECHO,
  PUSH_RETRANSMIT,
  SubscribeMode,
  SYNCPAGE_END,
  SYNCPAGE_GAP,
  SyncDirectionByte,
  VERSION,
} from "./constants.js";
import { BodyWriter, utf8 } from "./bytes.js";
import type { Frame, InboxMessage } from "./frames.js";

/** The encoded frame: header and body, ready for the transport. */
export function encodeFrame(frame: Frame): Uint8Array {
  switch (frame.type) {
    case "connect": {
      const token = utf8(frame.token);
      const w = start(frame, BodyLen.connect + token.length);
      w.u64(frame.device);
      w.u64(frame.lastSeq ?? 0n);
      w.u32(frame.keepaliveMs);
      w.raw(token);
      return w.bytes;
    }
    case "connack": {
      const w = start(frame, BodyLen.connAck);
      w.u64(frame.user);
      w.u64(frame.device);
      w.u64(frame.head);
      w.u64(frame.cursor ?? 0n);
      w.u32(frame.maxFrame);
      w.u32(frame.pushWindow);
      w.u32(frame.maxPendingSends);
      w.u32(frame.keepaliveMs);
      w.u32(frame.maxSyncLimit);
      return w.bytes;
    }
    case "send": {
      const w = start(frame, BodyLen.send + frame.payload.length);
      w.u64(frame.clientMsgId);
      w.u64(frame.to);
      w.u8(frame.qos);
      w.raw(frame.payload);
      return w.bytes;
    }
    case "sendack": {
      const w = start(frame, BodyLen.sendAck);
      w.u64(frame.clientMsgId);
      w.u64(frame.seq);
      w.u64(frame.ownSeq);
      w.u8(frame.result);
      return w.bytes;
    }
    case "push": {
      const w = start(frame, BodyLen.push + payloadFieldLen(frame));
      writeMessageFixed(w, frame);
      writePayloadField(w, frame);
      return w.bytes;
    }
    case "ack":
      return u64Frame(frame, frame.upTo);
    case "sync": {
      const w = start(frame, BodyLen.sync);
      w.u32(frame.requestId);
      w.u64(frame.direction === "latest" ? 0n : frame.anchor);
      w.u32(frame.limit);
      w.u8(SyncDirectionByte[frame.direction]);
      return w.bytes;
    }
    case "syncpage": {
      const itemsLen = frame.items.reduce((sum, i) => sum + itemLen(i), 0);
      const w = start(frame, BodyLen.syncPage + itemsLen);
      w.u32(frame.requestId);
      w.u64(frame.head);
      w.u32(frame.items.length);
      for (const item of frame.items) writeItem(w, item);
      return w.bytes;
    }
    case "rel": {
      const w = start(frame, BodyLen.rel);
      w.u64(frame.clientMsgId);
      w.u64(frame.to);
      return w.bytes;
    }
    case "comp":
      return u64Frame(frame, frame.clientMsgId);
    case "ping":
    case "pong":
      return u64Frame(frame, frame.nonce);
    case "error":
      return codeFrame(frame, frame.code, frame.message);
    case "disconnect":
      return codeFrame(frame, frame.reason, frame.redirect);
    case "subscribe": {
      const w = start(frame, BodyLen.subscribe);
      w.u64(frame.room);
      w.u64(frame.after ?? 0n);
      w.u8(frame.qos);
      w.u8(frame.after === undefined ? SubscribeMode.now : SubscribeMode.after);
      return w.bytes;
    }
    case "suback": {
      const w = start(frame, BodyLen.subAck);
      w.u64(frame.room);
      w.u64(frame.head);
      w.u64(frame.first);
      w.u8(frame.result);
      return w.bytes;
    }
    case "unsubscribe":
      return u64Frame(frame, frame.room);
    case "roompush": {
      const w = start(frame, BodyLen.roomPush + payloadFieldLen(frame));
      w.u64(frame.room);
      w.u64(frame.seq);
      w.u64(frame.from);
      w.u64(frame.tsMs);
      w.u8(qosByte(frame));
      writePayloadField(w, frame);
      return w.bytes;
    }
    case "roomack":
      return roomSeqFrame(frame, frame.room, frame.seq);
    case "roomlag":
      return roomSeqFrame(frame, frame.room, frame.next);
    case "convlist": {
      const w = start(frame, BodyLen.convList);
      w.u32(frame.requestId);
      w.u64(frame.before);
      w.u32(frame.limit);
      return w.bytes;
    }
    case "convpage": {
      const itemsLen = frame.items.reduce((sum, i) => sum + BodyLen.convSummary + i.preview.length, 0);
      const w = start(frame, BodyLen.convPage + itemsLen);
      w.u32(frame.requestId);
      w.u64(frame.cursor);
      w.u64(frame.head);
      w.u64(frame.older);
      w.u32(frame.items.length);
      for (const i of frame.items) {
        w.u64(i.peer);
        w.u32(i.unread);
        w.u64(i.total);
        w.u64(i.lastSeq);
        w.u64(i.lastFrom);
        w.u64(i.lastFromDevice);
        w.u64(i.lastTsMs);
        w.u32(i.lastLen);
        w.u8(i.unreadAtLeast ? SUMMARY_UNREAD_AT_LEAST : 0);
        w.u16(i.preview.length);
        w.raw(i.preview);
      }
      return w.bytes;
    }
    case "convfetch": {
      const w = start(frame, BodyLen.convFetch);
      w.u32(frame.requestId);
      w.u64(frame.peer);
      w.u64(frame.direction === "latest" ? 0n : frame.anchor);
      w.u32(frame.limit);
      w.u8(SyncDirectionByte[frame.direction]);
      return w.bytes;
    }
    case "convmsgs": {
      const itemsLen = frame.items.reduce((sum, i) => sum + itemLen(i), 0);
      const w = start(frame, BodyLen.convMsgs + itemsLen);
      w.u32(frame.requestId);
      w.u64(frame.peer);
      w.u64(frame.head);
      w.u32(frame.items.length);
      for (const item of frame.items) writeItem(w, item);
      return w.bytes;
    }
    case "watch": {
      const w = start(frame, BodyLen.watch + 8 * frame.users.length);
      w.u32(frame.request);
      w.u16(frame.users.length);
      for (const u of frame.users) w.u64(u);
      return w.bytes;
    }
    case "watchack": {
      const w = start(frame, BodyLen.watchAck);
      w.u32(frame.request);
      w.u16(frame.code);
      w.u32(frame.watching);
      w.u64(frame.refused);
      return w.bytes;
    }
    case "unwatch": {
      const w = start(frame, BodyLen.unwatch + 8 * frame.users.length);
      w.u16(frame.users.length);
      for (const u of frame.users) w.u64(u);
      return w.bytes;
    }
    case "presence": {
      const names = frame.devices.map((d) => utf8(d.transport));
      const len = names.reduce((n, name) => n + BodyLen.presenceDevice + name.length, 0);
      const w = start(frame, BodyLen.presence + len);
      w.u64(frame.user);
      w.u16(frame.devices.length);
      frame.devices.forEach((d, i) => {
        const name = names[i]!;
        w.u64(d.device);
        w.u64(d.sinceMs);
        w.u16(d.shard);
        w.u8(name.length);
        w.raw(name);
      });
      return w.bytes;
    }
  }
}

/** The wire type byte of `frame`. */
export function frameTypeByte(frame: Frame): number {
  return FRAME_TYPE_BYTES[frame.type];
}

const FRAME_TYPE_BYTES: Record<Frame["type"], number> = {
  connect: FrameType.Connect,
  connack: FrameType.ConnAck,
  send: FrameType.Send,
  sendack: FrameType.SendAck,
  push: FrameType.Push,
  ack: FrameType.Ack,
  sync: FrameType.Sync,
  syncpage: FrameType.SyncPage,
  rel: FrameType.Rel,
  comp: FrameType.Comp,
  ping: FrameType.Ping,
  pong: FrameType.Pong,
  error: FrameType.Error,
  disconnect: FrameType.Disconnect,
  subscribe: FrameType.Subscribe,
  suback: FrameType.SubAck,
  unsubscribe: FrameType.Unsubscribe,
  roompush: FrameType.RoomPush,
  roomack: FrameType.RoomAck,
  roomlag: FrameType.RoomLag,
  convlist: FrameType.ConvList,
  convpage: FrameType.ConvPage,
  convfetch: FrameType.ConvFetch,
  convmsgs: FrameType.ConvMsgs,
  watch: FrameType.Watch,
  watchack: FrameType.WatchAck,
  unwatch: FrameType.Unwatch,
  presence: FrameType.Presence,
};

function flagsOf(frame: Frame): number {
  switch (frame.type) {
    case "connect":
      return frame.lastSeq === undefined ? 0 : CONNECT_HAS_CURSOR;
    case "connack":
      return frame.cursor === undefined ? 0 : CONNACK_CURSOR_KNOWN;
    case "push":
      return (frame.echo ? PUSH_ECHO : 0) | (frame.retransmit ? PUSH_RETRANSMIT : 0);
    case "syncpage":
      return (frame.end ? SYNCPAGE_END : 0) | (frame.gap ? SYNCPAGE_GAP : 0);
    case "convlist":
      return frame.unreadOnly ? CONVLIST_UNREAD_ONLY : 0;
    case "convpage":
      return frame.end ? CONV_END : 0;
    case "convmsgs":
      return (frame.end ? CONV_END : 0) | (frame.truncated ? CONVMSGS_TRUNCATED : 0);
    default:
      return 0;
  }
}

/** A writer for a frame with a body of `bodyLen` bytes, header already written. */
function start(frame: Frame, bodyLen: number): BodyWriter {
  const w = new BodyWriter(HEADER_LEN + bodyLen);
  w.u8(MAGIC);
  w.u8(VERSION);
  w.u8(frameTypeByte(frame));
  w.u8(flagsOf(frame));
  w.u32(bodyLen);
  return w;
}

function u64Frame(frame: Frame, value: bigint): Uint8Array {
  const w = start(frame, BodyLen.u64);
  w.u64(value);
  return w.bytes;
}

function codeFrame(frame: Frame, code: number, text: string): Uint8Array {
  const raw = utf8(text);
  const w = start(frame, BodyLen.code + raw.length);
  w.u16(code);
  w.raw(raw);
  return w.bytes;
}

function roomSeqFrame(frame: Frame, room: bigint, seq: bigint): Uint8Array {
  const w = start(frame, BodyLen.roomSeq);
  w.u64(room);
  w.u64(seq);
  return w.bytes;
}

function writeMessageFixed(w: BodyWriter, m: InboxMessage): void {
  w.u64(m.seq);
  w.u64(m.prevSeq);
  w.u64(m.from);
  w.u64(m.fromDevice);
  w.u64(m.to);
  w.u64(m.clientMsgId);
  w.u64(m.tsMs);
  w.u8(qosByte(m));
}

/** Bit 7 of a message's qos byte: the payload field starts with attributes. */
const QOS_HAS_ATTRS = 0x80;

type Attributed = { readonly qos: number; readonly attrs?: Uint8Array; readonly payload: Uint8Array };

function qosByte(m: Attributed): number {
  return m.qos | (m.attrs?.length ? QOS_HAS_ATTRS : 0);
}

/** A message's payload field: [attributes length, attributes,] payload (PROTOCOL.md "Message attributes"). */
function payloadFieldLen(m: Attributed): number {
  return (m.attrs?.length ? 4 + m.attrs.length : 0) + m.payload.length;
}

function writePayloadField(w: BodyWriter, m: Attributed): void {
  if (m.attrs?.length) {
    w.u32(m.attrs.length);
    w.raw(m.attrs);
  }
  w.raw(m.payload);
}

/** Encoded size of one SYNCPAGE / CONVMSGS item. */
function itemLen(m: InboxMessage): number {
  return BodyLen.push + BodyLen.itemPayloadLen + payloadFieldLen(m);
}

/** One SYNCPAGE / CONVMSGS item: the PUSH fixed part, the payload field's length, the field. */
function writeItem(w: BodyWriter, m: InboxMessage): void {
  writeMessageFixed(w, m);
  w.u32(payloadFieldLen(m));
  writePayloadField(w, m);
}
