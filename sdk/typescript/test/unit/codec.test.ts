/**
 * The codec against docs/PROTOCOL.md: every frame's bytes match the
 * document's layout (written out by hand in support/samples.ts), decode
 * inverts encode, and every kind of malformed input is a typed
 * ProtocolError with the gateway's error code, never another exception.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  BodyLen,
  decodeFrame,
  encodeFrame,
  ErrorCode,
  FrameDecoder,
  type Frame,
  ProtocolError,
} from "../../src/proto/index.js";
import { handEncoded, item, ROOM, SAMPLES } from "../support/samples.js";

const HEADER = 8;

/** `frame`'s encoding with its body replaced (length fixed up) and optionally other flags. */
function rebuilt(frame: Uint8Array, body: Uint8Array, flags?: number): Uint8Array {
  const out = new Uint8Array(HEADER + body.length);
  out.set(frame.subarray(0, HEADER));
  if (flags !== undefined) out[3] = flags;
  new DataView(out.buffer).setUint32(4, body.length, true);
  out.set(body, HEADER);
  return out;
}

function assertProtocolError(bytes: Uint8Array, code: number, what: string): ProtocolError {
  try {
    const f = decodeFrame(bytes);
    assert.fail(`${what}: decoded as ${f.type} instead of failing`);
  } catch (e) {
    assert.ok(e instanceof ProtocolError, `${what}: threw ${String(e)}, not a ProtocolError`);
    assert.equal(e.code, code, `${what}: ${e.message}`);
    return e;
  }
}

const FIXED_SIZE: Partial<Record<Frame["type"], number>> = {
  connack: BodyLen.connAck,
  sendack: BodyLen.sendAck,
  ack: BodyLen.u64,
  sync: BodyLen.sync,
  rel: BodyLen.rel,
  comp: BodyLen.u64,
  ping: BodyLen.u64,
  pong: BodyLen.u64,
  subscribe: BodyLen.subscribe,
  suback: BodyLen.subAck,
  unsubscribe: BodyLen.u64,
  roomack: BodyLen.roomSeq,
  roomlag: BodyLen.roomSeq,
  convlist: BodyLen.convList,
  convfetch: BodyLen.convFetch,
  watchack: BodyLen.watchAck,
};

const FIXED_PART: Partial<Record<Frame["type"], number>> = {
  connect: BodyLen.connect,
  send: BodyLen.send,
  push: BodyLen.push,
  syncpage: BodyLen.syncPage,
  error: BodyLen.code,
  disconnect: BodyLen.code,
  roompush: BodyLen.roomPush,
  convpage: BodyLen.convPage,
  convmsgs: BodyLen.convMsgs,
  watch: BodyLen.watch,
  unwatch: BodyLen.unwatch,
  presence: BodyLen.presence,
};

describe("codec: every frame", () => {
  test("covers all 28 frame types of the document", () => {
    assert.equal(new Set(SAMPLES.map((f) => f.type)).size, 28);
  });

  test("CONVPAGE / CONVMSGS: a count beyond the body, a preview past its end, every truncation", () => {
    for (const frame of SAMPLES.filter((f) => f.type === "convpage" || f.type === "convmsgs")) {
      const bytes = encodeFrame(frame);
      const body = bytes.subarray(HEADER);
      const forged = Uint8Array.from(body);
      // The count field: after request_id, cursor, head, older (CONVPAGE) or request_id, peer, head (CONVMSGS).
      const countAt = frame.type === "convpage" ? 28 : 20;
      new DataView(forged.buffer).setUint32(countAt, 0xffff_ffff, true);
      assertProtocolError(rebuilt(bytes, forged), ErrorCode.Malformed, `${frame.type} count`);
      for (let cut = 0; cut < body.length; cut++) {
        assertProtocolError(rebuilt(bytes, body.subarray(0, cut)), ErrorCode.Malformed, `${frame.type} cut at ${cut}`);
      }
    }
    const page = SAMPLES.find((f) => f.type === "convpage")!;
    const bytes = encodeFrame(page);
    const body = Uint8Array.from(bytes.subarray(HEADER));
    // The first item's preview_len (item at 32, its u16 at 32 + 57).
    new DataView(body.buffer).setUint16(32 + 57, 0xffff, true);
    assertProtocolError(rebuilt(bytes, body), ErrorCode.Malformed, "preview past the end");
  });

  for (const frame of SAMPLES) {
    test(`${frame.type}: bytes match the document's layout and decode back`, () => {
      const bytes = encodeFrame(frame);
      assert.deepEqual(bytes, handEncoded(frame));
      assert.deepEqual(decodeFrame(bytes), frame);
    });
  }
});

describe("codec: malformed input is a typed error", () => {
  for (const frame of SAMPLES) {
    const bytes = encodeFrame(frame);
    const body = bytes.subarray(HEADER);
    test(`${frame.type}: unknown flag bits`, () => {
      assertProtocolError(rebuilt(bytes, body, bytes[3]! | 0x80), ErrorCode.Malformed, "flag 0x80");
    });
    const fixed = FIXED_SIZE[frame.type];
    if (fixed !== undefined) {
      test(`${frame.type}: body one byte short or long`, () => {
        assert.equal(body.length, fixed);
        assertProtocolError(rebuilt(bytes, body.subarray(0, fixed - 1)), ErrorCode.Malformed, "short");
        assertProtocolError(rebuilt(bytes, Uint8Array.from([...body, 0])), ErrorCode.Malformed, "long");
        assertProtocolError(rebuilt(bytes, new Uint8Array(0)), ErrorCode.Malformed, "empty");
      });
    }
    const part = FIXED_PART[frame.type];
    if (part !== undefined) {
      test(`${frame.type}: body shorter than its fixed part`, () => {
        assertProtocolError(rebuilt(bytes, body.subarray(0, part - 1)), ErrorCode.Malformed, "short");
      });
    }
  }

  test("flag bit 0 on a frame type without flags", () => {
    for (const frame of SAMPLES) {
      if (["connect", "connack", "push", "syncpage", "convlist", "convpage", "convmsgs"].includes(frame.type)) continue;
      const bytes = encodeFrame(frame);
      assertProtocolError(rebuilt(bytes, bytes.subarray(HEADER), 0x01), ErrorCode.Malformed, frame.type);
    }
  });

  // Issue 23 follow-up: the gateway sets SYNCPAGE bit 1 (GAP) when
  // sequences are gone; this codec rejected the bit as Malformed, so such a
  // page dropped the connection on every replay.
  test("SYNCPAGE flag bit 1 is GAP, alone or with END; bit 2 is still unknown", () => {
    const page: Frame = { type: "syncpage", requestId: 4, head: 9n, end: false, gap: false, items: [item(9n)] };
    const bytes = encodeFrame(page);
    const body = bytes.subarray(HEADER);
    for (const [flags, end, gap] of [
      [0x02, false, true],
      [0x03, true, true],
      [0x01, true, false],
    ] as const) {
      assert.deepEqual(decodeFrame(rebuilt(bytes, body, flags)), { ...page, end, gap }, `flags 0x0${flags}`);
      assert.equal(encodeFrame({ ...page, end, gap })[3], flags, `encoded flags 0x0${flags}`);
    }
    assertProtocolError(rebuilt(bytes, body, 0x04), ErrorCode.Malformed, "flag 0x04");
    assertProtocolError(rebuilt(bytes, body, 0x06), ErrorCode.Malformed, "flags 0x06");
  });

  test("QoS 3 in SEND, PUSH, a SYNCPAGE item, SUBSCRIBE and ROOMPUSH is InvalidQos", () => {
    const cases: Array<[Frame, number]> = [
      [{ type: "send", clientMsgId: 1n, to: 2n, qos: 1, payload: new Uint8Array(3) }, 16],
      [{ type: "push", ...item(4n) }, 56],
      [{ type: "syncpage", requestId: 1, head: 4n, end: false, gap: false, items: [item(4n)] }, 16 + 56],
      [{ type: "subscribe", room: ROOM, after: 3n, qos: 1 }, 16],
      [{ type: "roompush", room: ROOM, seq: 1n, from: 2n, tsMs: 3n, qos: 1, payload: new Uint8Array(1) }, 32],
    ];
    for (const [frame, offset] of cases) {
      const bytes = encodeFrame(frame).slice();
      bytes[HEADER + offset] = 3;
      assertProtocolError(bytes, ErrorCode.InvalidQos, frame.type);
    }
  });

  test("unknown enumeration values: SENDACK result, SYNC direction, SUBACK result, SUBSCRIBE mode", () => {
    // [frame, offset of the byte, first value not defined for it]
    const cases: Array<[Frame, number, number]> = [
      [{ type: "sendack", clientMsgId: 1n, seq: 2n, ownSeq: 3n, result: 0 }, 24, 5],
      [{ type: "sync", requestId: 1, direction: "after", anchor: 2n, limit: 3 }, 16, 4],
      [{ type: "suback", room: ROOM, head: 1n, first: 2n, result: 0 }, 24, 4],
      [{ type: "subscribe", room: ROOM, after: 3n, qos: 1 }, 17, 4],
    ];
    for (const [frame, offset, undefinedValue] of cases) {
      const bytes = encodeFrame(frame).slice();
      bytes[HEADER + offset] = undefinedValue;
      assertProtocolError(bytes, ErrorCode.Malformed, frame.type);
    }
  });

  test("an empty CONNECT token is Malformed", () => {
    const bytes = encodeFrame({ type: "connect", device: 1n, keepaliveMs: 0, token: "x" });
    assertProtocolError(rebuilt(bytes, bytes.subarray(HEADER, HEADER + 20)), ErrorCode.Malformed, "empty token");
  });

  test("text that is not UTF-8 (token, ERROR message, DISCONNECT redirect) is InvalidUtf8", () => {
    const bad = Uint8Array.from([0x61, 0xff, 0xfe]);
    const frames: Frame[] = [
      { type: "connect", device: 1n, keepaliveMs: 0, token: "x" },
      { type: "error", code: 1, message: "" },
      { type: "disconnect", reason: 21, redirect: "" },
    ];
    for (const f of frames) {
      const bytes = encodeFrame(f);
      const fixed = f.type === "connect" ? 20 : 2;
      const body = Uint8Array.from([...bytes.subarray(HEADER, HEADER + fixed), ...bad]);
      assertProtocolError(rebuilt(bytes, body), ErrorCode.InvalidUtf8, f.type);
    }
  });

  test("a byte-order mark is kept as text, not stripped", () => {
    const f: Frame = { type: "error", code: 1, message: "\uFEFFhi" };
    assert.deepEqual(decodeFrame(encodeFrame(f)), f);
  });

  test("SYNCPAGE: count beyond the body, item payload beyond the body, trailing bytes", () => {
    const page: Frame = { type: "syncpage", requestId: 1, head: 2n, end: false, gap: false, items: [item(1n, "ab"), item(2n, "cd")] };
    const bytes = encodeFrame(page);
    const body = bytes.slice(HEADER);
    const view = new DataView(body.buffer);
    view.setUint32(12, 3, true);
    assertProtocolError(rebuilt(bytes, body), ErrorCode.Malformed, "count 3 for 2 items");
    view.setUint32(12, 0xffff_ffff, true);
    assertProtocolError(rebuilt(bytes, body), ErrorCode.Malformed, "absurd count");
    view.setUint32(12, 2, true);
    view.setUint32(16 + 57, 1000, true);
    assertProtocolError(rebuilt(bytes, body), ErrorCode.Malformed, "payload length 1000");
    const valid = bytes.slice(HEADER);
    assertProtocolError(rebuilt(bytes, Uint8Array.from([...valid, 0])), ErrorCode.Malformed, "trailing byte");
    const oneItem = valid.slice();
    new DataView(oneItem.buffer).setUint32(12, 1, true);
    assertProtocolError(rebuilt(bytes, oneItem), ErrorCode.Malformed, "count 1 with a second item after it");
  });

  test("header: magic, version, unknown type, length above the maximum", () => {
    const ping = encodeFrame({ type: "ping", nonce: 1n });
    const mutate = (i: number, v: number): Uint8Array => {
      const b = ping.slice();
      b[i] = v;
      return b;
    };
    assertProtocolError(mutate(0, 0xb4), ErrorCode.UnsupportedVersion, "magic");
    assertProtocolError(mutate(1, 2), ErrorCode.UnsupportedVersion, "version");
    assertProtocolError(mutate(2, 0x7f), ErrorCode.UnknownFrameType, "type 0x7f");
    assertProtocolError(mutate(2, 0x00), ErrorCode.UnknownFrameType, "type 0x00");
    const huge = ping.slice();
    new DataView(huge.buffer).setUint32(4, (1 << 20) - HEADER + 1, true);
    assertProtocolError(huge, ErrorCode.FrameTooLarge, "1 MiB + 1");
  });
});

describe("codec: stream decoder", () => {
  const all = SAMPLES.map((f) => encodeFrame(f));
  const stream = Uint8Array.from(all.flatMap((b) => [...b]));

  const drain = (d: FrameDecoder): Frame[] => {
    const out: Frame[] = [];
    for (let f = d.next(); f; f = d.next()) out.push(f);
    return out;
  };

  test("byte by byte, in one chunk and in odd slices it yields the same frames", () => {
    for (const slice of [1, 7, 100, stream.length]) {
      const d = new FrameDecoder();
      const got: Frame[] = [];
      for (let i = 0; i < stream.length; i += slice) {
        d.push(stream.slice(i, i + slice));
        got.push(...drain(d));
      }
      assert.deepEqual(got, SAMPLES, `slices of ${slice}`);
      assert.equal(d.buffered, 0);
    }
  });

  test("payloads stay intact when later chunks arrive (no buffer reuse)", () => {
    const d = new FrameDecoder();
    const first = encodeFrame({ type: "push", ...item(1n, "first payload") });
    d.push(first.slice(0, 10));
    d.push(first.slice(10));
    const f = d.next();
    d.push(encodeFrame({ type: "push", ...item(2n, "XXXXXXXXXXXXXXXXXXXXXXXXXXXX") }).slice(0, 30));
    assert.ok(f?.type === "push");
    assert.equal(new TextDecoder().decode(f.payload), "first payload");
  });

  test("an oversized header is refused before its body arrives, and the error sticks", () => {
    const d = new FrameDecoder(1024);
    const header = encodeFrame({ type: "ping", nonce: 1n }).slice(0, HEADER);
    new DataView(header.buffer).setUint32(4, 2000, true);
    d.push(header);
    assert.throws(() => d.next(), (e) => e instanceof ProtocolError && e.code === ErrorCode.FrameTooLarge);
    d.push(encodeFrame({ type: "ping", nonce: 2n }));
    assert.throws(() => d.next(), (e) => e instanceof ProtocolError && e.code === ErrorCode.FrameTooLarge);
  });

  test("random and mutated bytes never throw anything but ProtocolError", () => {
    let seed = 0x2545f491;
    const rand = (n: number): number => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) % n;
    };
    let decoded = 0;
    let refused = 0;
    for (let round = 0; round < 20_000; round++) {
      const base = all[rand(all.length)]!.slice();
      for (let flips = 1 + rand(4); flips > 0; flips--) base[rand(base.length)] = rand(256);
      const d = new FrameDecoder();
      d.push(base);
      try {
        drain(d);
        decoded++;
      } catch (e) {
        assert.ok(e instanceof ProtocolError, `round ${round}: ${String(e)}`);
        refused++;
      }
    }
    assert.ok(decoded > 0 && refused > 0, `decoded ${decoded}, refused ${refused}`);
  });
});

// Issue 22 item 2: the presence frames' counts are checked against the
// body, and a transport name must be UTF-8 (as the gateway's decoder).
describe("codec: presence frames", () => {
  const presence = SAMPLES.find((f) => f.type === "presence")!;
  const watch = SAMPLES.find((f) => f.type === "watch")!;

  test("a WATCH whose count differs from its body is Malformed", () => {
    const bytes = encodeFrame(watch);
    const body = Uint8Array.from(bytes.subarray(HEADER));
    body[4] = 3; // count 3, two users in the body
    assertProtocolError(rebuilt(bytes, body), ErrorCode.Malformed, "count 3");
  });

  test("a PRESENCE with a forged count or a bad transport name is typed", () => {
    const bytes = encodeFrame(presence);
    const body = Uint8Array.from(bytes.subarray(HEADER));
    const forged = Uint8Array.from(body);
    forged[8] = 0xff;
    forged[9] = 0xff;
    assertProtocolError(rebuilt(bytes, forged), ErrorCode.Malformed, "count 65535");
    const badName = Uint8Array.from(body);
    badName[BodyLen.presence + BodyLen.presenceDevice] = 0xff; // first byte of "native"
    assertProtocolError(rebuilt(bytes, badName), ErrorCode.InvalidUtf8, "not UTF-8");
    const cut = body.subarray(0, body.length - 1);
    assertProtocolError(rebuilt(bytes, cut), ErrorCode.Malformed, "name past the body");
  });
});

// Issue 21: a message an MQTT 5 publisher sent carries its properties as
// message attributes (PROTOCOL.md "Message attributes"): bit 7 of the qos
// byte, then a u32 length and the attributes in front of the payload.
describe("codec: message attributes", () => {
  const push = SAMPLES.find((f) => f.type === "push" && f.payload.length > 0)!;

  function withAttrs(attrs: Uint8Array, lenField = attrs.length): Uint8Array {
    const bytes = encodeFrame(push);
    const body = bytes.subarray(HEADER);
    const qosAt = BodyLen.push - 1;
    const payload = body.subarray(BodyLen.push);
    const out = new Uint8Array(BodyLen.push + 4 + attrs.length + payload.length);
    out.set(body.subarray(0, BodyLen.push));
    out[qosAt] = body[qosAt]! | 0x80;
    new DataView(out.buffer).setUint32(BodyLen.push, lenField, true);
    out.set(attrs, BodyLen.push + 4);
    out.set(payload, BodyLen.push + 4 + attrs.length);
    return rebuilt(bytes, out);
  }

  test("a PUSH with attributes splits them from its payload and keeps its QoS", () => {
    const attrs = Uint8Array.from([0x03, 0x00, 0x04, 0x74, 0x65, 0x78, 0x74]);
    const f = decodeFrame(withAttrs(attrs));
    assert.equal(f.type, "push");
    if (f.type !== "push" || push.type !== "push") return;
    assert.equal(f.qos, push.qos);
    assert.deepEqual(f.attrs, attrs);
    assert.deepEqual(f.payload, push.payload);
    assert.equal(f.seq, push.seq);
    // And the encoder writes them back byte for byte.
    assert.deepEqual(encodeFrame(f), withAttrs(attrs));
  });

  test("SYNCPAGE items and ROOMPUSH carry attributes through a round trip", () => {
    const attrs = Uint8Array.from([0x01, 0x01]);
    for (const frame of SAMPLES.filter((s) => s.type === "syncpage" || s.type === "roompush")) {
      const withA =
        frame.type === "syncpage"
          ? { ...frame, items: frame.items.map((i) => ({ ...i, attrs })) }
          : { ...frame, attrs };
      assert.deepEqual(decodeFrame(encodeFrame(withA as Frame)), withA, frame.type);
    }
  });

  test("attributes of length 0 or beyond the field are Malformed", () => {
    assertProtocolError(withAttrs(new Uint8Array(0)), ErrorCode.Malformed, "length 0");
    assertProtocolError(withAttrs(Uint8Array.from([1, 2]), 4096), ErrorCode.Malformed, "beyond the field");
  });
});
