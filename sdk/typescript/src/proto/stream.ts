/**
 * Streaming frame decoder for one connection.
 *
 * Bytes arrive in arbitrary pieces (a frame split across reads, several
 * frames in one read; a WebSocket message normally carries whole frames but
 * nothing here relies on it). The header is validated as soon as its 8
 * bytes are in, so an oversized or foreign frame is refused before its body
 * is buffered. After an error the stream is unusable and every later call
 * fails the same way.
 *
 * Ownership: a pushed chunk must not be modified afterwards; decoded
 * payloads are views into it (or into the decoder's own buffer), and bytes
 * handed out are never written again.
 *
 * @module
 */

import { DEFAULT_MAX_FRAME, HEADER_LEN } from "./constants.js";
import { decodeBody, readHeader } from "./decode.js";
import { ProtocolError } from "./errors.js";
import type { Frame } from "./frames.js";

const EMPTY = new Uint8Array(0);

/** Turns a byte stream into frames. */
export class FrameDecoder {
  private buf: Uint8Array = EMPTY;
  private start = 0;
  private end = 0;
  /** True when `buf` was allocated here (so bytes past `end` may be written). */
  private owned = false;
  private failure: ProtocolError | undefined;

  /** A decoder refusing frames above `maxFrame` bytes (header included). */
  constructor(private maxFrame: number = DEFAULT_MAX_FRAME) {}

  /** Changes the frame size limit (e.g. to the value a CONNACK announced). */
  setMaxFrame(maxFrame: number): void {
    this.maxFrame = Math.max(maxFrame, HEADER_LEN);
  }

  /** Bytes received but not yet decoded. */
  get buffered(): number {
    return this.end - this.start;
  }

  /** Appends received bytes. */
  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    if (this.buffered === 0) {
      this.buf = chunk;
      this.start = 0;
      this.end = chunk.length;
      this.owned = false;
      return;
    }
    if (!this.owned || this.end + chunk.length > this.buf.length) {
      const size = Math.max(this.buffered + chunk.length, this.buffered * 2, 4096);
      const grown = new Uint8Array(size);
      grown.set(this.buf.subarray(this.start, this.end));
      this.end = this.buffered;
      this.start = 0;
      this.buf = grown;
      this.owned = true;
    }
    this.buf.set(chunk, this.end);
    this.end += chunk.length;
  }

  /** The next complete frame, `undefined` if more bytes are needed; throws {@link ProtocolError}. */
  next(): Frame | undefined {
    if (this.failure) throw this.failure;
    try {
      return this.decodeNext();
    } catch (e) {
      if (e instanceof ProtocolError) this.failure = e;
      throw e;
    }
  }

  private decodeNext(): Frame | undefined {
    if (this.buffered < HEADER_LEN) return undefined;
    const header = readHeader(this.buf.subarray(this.start, this.end), this.maxFrame);
    const total = HEADER_LEN + header.bodyLen;
    if (this.buffered < total) return undefined;
    const body = this.buf.subarray(this.start + HEADER_LEN, this.start + total);
    this.start += total;
    if (this.start === this.end) {
      this.buf = EMPTY;
      this.start = this.end = 0;
      this.owned = false;
    }
    return decodeBody(header, body);
  }
}
