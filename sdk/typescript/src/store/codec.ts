/**
 * A JSON form of {@link StoreChange} for stores that keep text (the Node
 * file store): `bigint`s as decimal strings, payloads as base64. Decoding
 * checks every field, so a damaged record is a typed {@link StoreCorruptError},
 * never a half-restored outbox.
 *
 * @module
 */

import type { OutboxEntry, RoomPosition, StoreChange } from "../session/state.js";

/** A stored record that cannot be read back. */
export class StoreCorruptError extends Error {
  constructor(detail: string) {
    super(`store record is damaged: ${detail}`);
    this.name = "StoreCorruptError";
  }
}

type Json = Record<string, unknown>;

/** The JSON value of one change. */
export function changeToJson(c: StoreChange): Json {
  switch (c.type) {
    case "outbox-put":
      return { t: c.type, e: entryToJson(c.entry) };
    case "outbox-delete":
      return { t: c.type, id: c.clientMsgId.toString() };
    case "delivered":
      return { t: c.type, seq: c.seq.toString() };
    case "next-id":
      return { t: c.type, next: c.next.toString() };
    case "room-put":
      return { t: c.type, r: roomToJson(c.position) };
    case "room-delete":
      return { t: c.type, room: c.room.toString() };
  }
}

/** The change a JSON value holds; {@link StoreCorruptError} if it holds none. */
export function changeFromJson(v: unknown): StoreChange {
  const o = object(v);
  switch (o.t) {
    case "outbox-put":
      return { type: "outbox-put", entry: entryFromJson(o.e) };
    case "outbox-delete":
      return { type: "outbox-delete", clientMsgId: u64(o.id) };
    case "delivered":
      return { type: "delivered", seq: u64(o.seq) };
    case "next-id":
      return { type: "next-id", next: u64(o.next) };
    case "room-put":
      return { type: "room-put", position: roomFromJson(o.r) };
    case "room-delete":
      return { type: "room-delete", room: u64(o.room) };
    default:
      throw new StoreCorruptError(`unknown change ${JSON.stringify(o.t)}`);
  }
}

function entryToJson(e: OutboxEntry): Json {
  return {
    id: e.clientMsgId.toString(),
    to: e.to.toString(),
    qos: e.qos,
    stage: e.stage,
    payload: toBase64(e.payload),
  };
}

function entryFromJson(v: unknown): OutboxEntry {
  const o = object(v);
  if (o.qos !== 1 && o.qos !== 2) throw new StoreCorruptError("outbox qos");
  if (o.stage !== "send" && o.stage !== "release") throw new StoreCorruptError("outbox stage");
  if (typeof o.payload !== "string") throw new StoreCorruptError("outbox payload");
  return { clientMsgId: u64(o.id), to: u64(o.to), qos: o.qos, stage: o.stage, payload: fromBase64(o.payload) };
}

function roomToJson(r: RoomPosition): Json {
  return { room: r.room.toString(), qos: r.qos, last: r.last?.toString() };
}

function roomFromJson(v: unknown): RoomPosition {
  const o = object(v);
  if (o.qos !== 0 && o.qos !== 1) throw new StoreCorruptError("room qos");
  return { room: u64(o.room), qos: o.qos, last: o.last === undefined ? undefined : u64(o.last) };
}

function object(v: unknown): Json {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new StoreCorruptError("not an object");
  return v as Json;
}

function u64(v: unknown): bigint {
  if (typeof v !== "string" || !/^[0-9]{1,20}$/.test(v)) throw new StoreCorruptError(`not a u64: ${String(v)}`);
  const n = BigInt(v);
  if (n >= 1n << 64n) throw new StoreCorruptError(`not a u64: ${v}`);
  return n;
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

function toBase64(bytes: Uint8Array): string {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

function fromBase64(text: string): Uint8Array {
  if (text.length % 4 !== 0 || !BASE64.test(text)) throw new StoreCorruptError("payload is not base64");
  const raw = atob(text);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return bytes;
}
