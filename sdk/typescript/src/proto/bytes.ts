/**
 * Little-endian cursors over byte arrays: {@link BodyWriter} fills a buffer
 * sized up front, {@link BodyReader} reads a frame body whose length the
 * caller has already checked against the frame's layout (a read past the
 * end is a bug in the codec, reported as Malformed rather than thrown raw).
 *
 * @module
 */

import { ErrorCode } from "./constants.js";
import { malformed, ProtocolError } from "./errors.js";

const utf8Encoder = new TextEncoder();
// fatal: invalid UTF-8 is an error, not U+FFFD; ignoreBOM: a leading BOM is
// part of the text (the gateway does not strip it either).
const utf8Decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** UTF-8 bytes of `text`. */
export function utf8(text: string): Uint8Array {
  return utf8Encoder.encode(text);
}

/** Writes little-endian integers and bytes into a fixed-size buffer. */
export class BodyWriter {
  readonly bytes: Uint8Array;
  private readonly view: DataView;
  private at = 0;

  constructor(size: number) {
    this.bytes = new Uint8Array(size);
    this.view = new DataView(this.bytes.buffer);
  }

  u8(v: number): void {
    this.view.setUint8(this.at, v);
    this.at += 1;
  }

  u16(v: number): void {
    this.view.setUint16(this.at, v, true);
    this.at += 2;
  }

  u32(v: number): void {
    this.view.setUint32(this.at, v, true);
    this.at += 4;
  }

  /** A u64; values outside 0..2^64 are wrapped the way the wire would hold them. */
  u64(v: bigint): void {
    this.view.setBigUint64(this.at, BigInt.asUintN(64, v), true);
    this.at += 8;
  }

  raw(b: Uint8Array): void {
    this.bytes.set(b, this.at);
    this.at += b.length;
  }

  /** Bytes written so far. */
  get written(): number {
    return this.at;
  }
}

/** Reads one frame body. */
export class BodyReader {
  private readonly view: DataView;
  private at = 0;

  constructor(
    private readonly frame: string,
    private readonly body: Uint8Array,
  ) {
    this.view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  }

  get remaining(): number {
    return this.body.length - this.at;
  }

  private need(n: number): void {
    if (this.remaining < n) throw malformed(this.frame, "body shorter than its layout");
  }

  u8(): number {
    this.need(1);
    const v = this.view.getUint8(this.at);
    this.at += 1;
    return v;
  }

  u16(): number {
    this.need(2);
    const v = this.view.getUint16(this.at, true);
    this.at += 2;
    return v;
  }

  u32(): number {
    this.need(4);
    const v = this.view.getUint32(this.at, true);
    this.at += 4;
    return v;
  }

  u64(): bigint {
    this.need(8);
    const v = this.view.getBigUint64(this.at, true);
    this.at += 8;
    return v;
  }

  /** The next `n` bytes, as a view (no copy). */
  bytes(n: number): Uint8Array {
    this.need(n);
    const v = this.body.subarray(this.at, this.at + n);
    this.at += n;
    return v;
  }

  /** Everything left, as a view. */
  rest(): Uint8Array {
    return this.bytes(this.remaining);
  }

  /** Everything left as UTF-8 text; InvalidUtf8 if it is not. */
  restText(field: string): string {
    const raw = this.rest();
    try {
      return utf8Decoder.decode(raw);
    } catch {
      throw new ProtocolError(ErrorCode.InvalidUtf8, this.frame, `${field} is not valid UTF-8`);
    }
  }
}
