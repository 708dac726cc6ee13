/**
 * One sample of every frame type, with values that catch width and order
 * mistakes (top bits set, distinct bytes per field), and each frame's
 * layout written out field by field from docs/PROTOCOL.md's tables, apart
 * from the encoder, so the two can be compared.
 */

import type { Frame, InboxMessage } from "../../src/proto/index.js";

const enc = new TextEncoder();

/** A u64 with every byte distinct and the top bit set. */
export const BIG = 0x8877_6655_4433_2211n;
export const GROUP_TO = (1n << 63n) | 5n;
export const ROOM = (1n << 62n) | 9n;

export const item = (seq: bigint, payload = `m${seq}`): InboxMessage => ({
  seq,
  prevSeq: seq - 1n,
  from: 0x0102_0304_0506_0708n,
  fromDevice: 0x1112_1314_1516_1718n,
  to: GROUP_TO,
  clientMsgId: BIG,
  tsMs: 1_700_000_000_123n,
  qos: 2,
  echo: false,
  retransmit: false,
  payload: enc.encode(payload),
});

/** Every frame type once (some twice, to cover flags and optional fields). */
export const SAMPLES: readonly Frame[] = [
  { type: "connect", device: BIG, lastSeq: 0xffff_ffff_ffff_ffffn, keepaliveMs: 0xa1b2_c3d4, token: "a.b.c" },
  { type: "connect", device: 7n, lastSeq: undefined, keepaliveMs: 0, token: "tøken" },
  {
    type: "connack",
    user: BIG,
    device: 3n,
    head: 99n,
    cursor: 42n,
    maxFrame: 1 << 20,
    pushWindow: 64,
    maxPendingSends: 256,
    keepaliveMs: 30_000,
    maxSyncLimit: 1000,
  },
  {
    type: "connack",
    user: 1n,
    device: 2n,
    head: 0n,
    cursor: undefined,
    maxFrame: 9,
    pushWindow: 1,
    maxPendingSends: 1,
    keepaliveMs: 1,
    maxSyncLimit: 1,
  },
  { type: "send", clientMsgId: BIG, to: ROOM, qos: 1, payload: enc.encode("hello") },
  { type: "send", clientMsgId: 1n, to: 2n, qos: 0, payload: new Uint8Array(0) },
  { type: "sendack", clientMsgId: BIG, seq: 10n, ownSeq: 11n, result: 3 },
  { type: "push", ...item(5n), echo: true, retransmit: true, payload: new Uint8Array(0) },
  { type: "push", ...item(6n, "payload bytes"), qos: 0 },
  { type: "ack", upTo: BIG },
  { type: "sync", requestId: 0xfeed_beef, direction: "after", anchor: BIG, limit: 200 },
  { type: "sync", requestId: 2, direction: "latest", anchor: 0n, limit: 50 },
  { type: "sync", requestId: 3, direction: "before", anchor: 21n, limit: 10 },
  { type: "syncpage", requestId: 7, head: 30n, end: true, gap: false, items: [item(1n), item(2n, ""), item(3n, "three")] },
  { type: "syncpage", requestId: 8, head: 0n, end: false, gap: false, items: [] },
  {
    type: "syncpage",
    requestId: 9,
    head: BIG,
    end: true,
    gap: true,
    items: [{ ...item(20n), prevSeq: 10n }, item(21n), { ...item(25n), prevSeq: 21n }],
  },
  { type: "syncpage", requestId: 10, head: 80n, end: false, gap: true, items: [] },
  { type: "rel", clientMsgId: BIG, to: GROUP_TO },
  { type: "comp", clientMsgId: BIG },
  { type: "ping", nonce: BIG },
  { type: "pong", nonce: 1n },
  { type: "error", code: 12, message: "ack beyond sent ✓" },
  { type: "disconnect", reason: 21, redirect: "10.0.0.2:7400" },
  { type: "disconnect", reason: 24, redirect: "" },
  { type: "subscribe", room: ROOM, after: BIG, qos: 1 },
  { type: "subscribe", room: ROOM, after: undefined, qos: 0 },
  { type: "suback", room: ROOM, head: 100n, first: 51n, result: 1 },
  { type: "unsubscribe", room: ROOM },
  { type: "roompush", room: ROOM, seq: 77n, from: BIG, tsMs: 1_700_000_000_000n, qos: 1, payload: enc.encode("r") },
  { type: "roomack", room: ROOM, seq: 77n },
  { type: "roomlag", room: ROOM, next: 78n },
  { type: "convlist", requestId: 5, before: 0n, limit: 50, unreadOnly: true },
  { type: "convlist", requestId: 6, before: 99n, limit: 10, unreadOnly: false },
  {
    type: "convpage",
    requestId: 5,
    cursor: 40n,
    head: 120n,
    older: 3n,
    end: true,
    items: [
      {
        peer: GROUP_TO,
        unread: 7,
        unreadAtLeast: true,
        total: 300n,
        lastSeq: 120n,
        lastFrom: BIG,
        lastFromDevice: 2n,
        lastTsMs: 1_700_000_000_456n,
        lastLen: 1000,
        preview: enc.encode("the start of it"),
      },
      {
        peer: 0x0102_0304_0506_0708n,
        unread: 0,
        unreadAtLeast: false,
        total: 1n,
        lastSeq: 3n,
        lastFrom: 0x0102_0304_0506_0708n,
        lastFromDevice: 1n,
        lastTsMs: 1_700_000_000_000n,
        lastLen: 0,
        preview: new Uint8Array(0),
      },
    ],
  },
  { type: "convfetch", requestId: 7, peer: GROUP_TO, direction: "before", anchor: 120n, limit: 20 },
  { type: "convmsgs", requestId: 7, peer: GROUP_TO, head: 120n, end: false, truncated: true, items: [item(118n), item(119n, "")] },
  { type: "watch", request: 3, users: [42n, BIG] },
  { type: "watchack", request: 3, code: 29, watching: 2, refused: 0n },
  { type: "unwatch", users: [BIG] },
  {
    type: "presence",
    user: 42n,
    devices: [
      { device: 7n, sinceMs: 1_700_000_000_000n, shard: 1, transport: "native" },
      { device: BIG, sinceMs: 1_700_000_000_001n, shard: 0, transport: "mqtt" },
    ],
  },
];

/** A field of a layout: its width in bytes and value. */
type Field = readonly [1 | 2 | 4 | 8, number | bigint] | Uint8Array;

const TYPE_BYTE: Record<Frame["type"], number> = {
  connect: 0x01,
  connack: 0x02,
  send: 0x03,
  sendack: 0x04,
  push: 0x05,
  ack: 0x06,
  sync: 0x07,
  syncpage: 0x08,
  rel: 0x09,
  comp: 0x0a,
  ping: 0x0b,
  pong: 0x0c,
  error: 0x0d,
  disconnect: 0x0e,
  subscribe: 0x0f,
  suback: 0x10,
  unsubscribe: 0x11,
  roompush: 0x12,
  roomack: 0x13,
  roomlag: 0x14,
  convlist: 0x15,
  convpage: 0x16,
  convfetch: 0x17,
  convmsgs: 0x18,
  watch: 0x19,
  watchack: 0x1a,
  unwatch: 0x1b,
  presence: 0x1c,
};

const messageFields = (m: InboxMessage): Field[] => [
  [8, m.seq],
  [8, m.prevSeq],
  [8, m.from],
  [8, m.fromDevice],
  [8, m.to],
  [8, m.clientMsgId],
  [8, m.tsMs],
  [1, m.qos],
];

/** The flags byte and body fields of `f`, in the order of the document's tables. */
function layout(f: Frame): { flags: number; fields: Field[] } {
  switch (f.type) {
    case "connect":
      return {
        flags: f.lastSeq === undefined ? 0 : 1,
        fields: [[8, f.device], [8, f.lastSeq ?? 0n], [4, f.keepaliveMs], enc.encode(f.token)],
      };
    case "connack":
      return {
        flags: f.cursor === undefined ? 0 : 1,
        fields: [
          [8, f.user],
          [8, f.device],
          [8, f.head],
          [8, f.cursor ?? 0n],
          [4, f.maxFrame],
          [4, f.pushWindow],
          [4, f.maxPendingSends],
          [4, f.keepaliveMs],
          [4, f.maxSyncLimit],
        ],
      };
    case "send":
      return { flags: 0, fields: [[8, f.clientMsgId], [8, f.to], [1, f.qos], f.payload] };
    case "sendack":
      return { flags: 0, fields: [[8, f.clientMsgId], [8, f.seq], [8, f.ownSeq], [1, f.result]] };
    case "push":
      return { flags: (f.echo ? 1 : 0) | (f.retransmit ? 2 : 0), fields: [...messageFields(f), f.payload] };
    case "ack":
      return { flags: 0, fields: [[8, f.upTo]] };
    case "sync":
      return {
        flags: 0,
        fields: [[4, f.requestId], [8, f.anchor], [4, f.limit], [1, { after: 0, latest: 1, before: 2 }[f.direction]]],
      };
    case "syncpage":
      return {
        flags: (f.end ? 1 : 0) | (f.gap ? 2 : 0),
        fields: [
          [4, f.requestId],
          [8, f.head],
          [4, f.items.length],
          ...f.items.flatMap((i): Field[] => [...messageFields(i), [4, i.payload.length], i.payload]),
        ],
      };
    case "rel":
      return { flags: 0, fields: [[8, f.clientMsgId], [8, f.to]] };
    case "comp":
      return { flags: 0, fields: [[8, f.clientMsgId]] };
    case "ping":
    case "pong":
      return { flags: 0, fields: [[8, f.nonce]] };
    case "error":
      return { flags: 0, fields: [[2, f.code], enc.encode(f.message)] };
    case "disconnect":
      return { flags: 0, fields: [[2, f.reason], enc.encode(f.redirect)] };
    case "subscribe":
      return { flags: 0, fields: [[8, f.room], [8, f.after ?? 0n], [1, f.qos], [1, f.after === undefined ? 0 : 1]] };
    case "suback":
      return { flags: 0, fields: [[8, f.room], [8, f.head], [8, f.first], [1, f.result]] };
    case "unsubscribe":
      return { flags: 0, fields: [[8, f.room]] };
    case "roompush":
      return { flags: 0, fields: [[8, f.room], [8, f.seq], [8, f.from], [8, f.tsMs], [1, f.qos], f.payload] };
    case "roomack":
      return { flags: 0, fields: [[8, f.room], [8, f.seq]] };
    case "roomlag":
      return { flags: 0, fields: [[8, f.room], [8, f.next]] };
    case "convlist":
      return { flags: f.unreadOnly ? 1 : 0, fields: [[4, f.requestId], [8, f.before], [4, f.limit]] };
    case "convpage":
      return {
        flags: f.end ? 1 : 0,
        fields: [
          [4, f.requestId],
          [8, f.cursor],
          [8, f.head],
          [8, f.older],
          [4, f.items.length],
          ...f.items.flatMap((i): Field[] => [
            [8, i.peer],
            [4, i.unread],
            [8, i.total],
            [8, i.lastSeq],
            [8, i.lastFrom],
            [8, i.lastFromDevice],
            [8, i.lastTsMs],
            [4, i.lastLen],
            [1, i.unreadAtLeast ? 1 : 0],
            [2, i.preview.length],
            i.preview,
          ]),
        ],
      };
    case "convfetch":
      return {
        flags: 0,
        fields: [
          [4, f.requestId],
          [8, f.peer],
          [8, f.anchor],
          [4, f.limit],
          [1, { after: 0, latest: 1, before: 2 }[f.direction]],
        ],
      };
    case "convmsgs":
      return {
        flags: (f.end ? 1 : 0) | (f.truncated ? 2 : 0),
        fields: [
          [4, f.requestId],
          [8, f.peer],
          [8, f.head],
          [4, f.items.length],
          ...f.items.flatMap((i): Field[] => [...messageFields(i), [4, i.payload.length], i.payload]),
        ],
      };
    case "watch":
      return { flags: 0, fields: [[4, f.request], [2, f.users.length], ...f.users.map((u): Field => [8, u])] };
    case "watchack":
      return { flags: 0, fields: [[4, f.request], [2, f.code], [4, f.watching], [8, f.refused]] };
    case "unwatch":
      return { flags: 0, fields: [[2, f.users.length], ...f.users.map((u): Field => [8, u])] };
    case "presence":
      return {
        flags: 0,
        fields: [
          [8, f.user],
          [2, f.devices.length],
          ...f.devices.flatMap((d): Field[] => [
            [8, d.device],
            [8, d.sinceMs],
            [2, d.shard],
            [1, enc.encode(d.transport).length],
            enc.encode(d.transport),
          ]),
        ],
      };
  }
}

/** `f` encoded by hand from its layout: header (magic, version, type, flags, u32 length), then the fields. */
export function handEncoded(f: Frame): Uint8Array {
  const { flags, fields } = layout(f);
  const bytes: number[] = [];
  const le = (width: number, value: number | bigint): void => {
    let v = BigInt(value);
    for (let i = 0; i < width; i++) {
      bytes.push(Number(v & 0xffn));
      v >>= 8n;
    }
  };
  for (const field of fields) {
    if (field instanceof Uint8Array) bytes.push(...field);
    else le(field[0], field[1]);
  }
  const header: number[] = [0xb5, 1, TYPE_BYTE[f.type], flags];
  const len = bytes.length;
  header.push(len & 0xff, (len >> 8) & 0xff, (len >> 16) & 0xff, (len >>> 24) & 0xff);
  return Uint8Array.from([...header, ...bytes]);
}
