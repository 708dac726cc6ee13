/**
 * Typed decoding errors. Each carries the wire {@link ErrorCode} the gateway
 * would use for the same fault, the frame it was found in, and what is
 * wrong. After one, the byte stream cannot be trusted: the connection is
 * closed (the client reconnects; nothing stored is lost).
 *
 * @module
 */

import { ErrorCode, errorName, type ErrorCodeValue } from "./constants.js";

/** A frame (or the stream) does not match the protocol. */
export class ProtocolError extends Error {
  /** The matching wire code: Malformed, UnsupportedVersion, UnknownFrameType, FrameTooLarge, InvalidUtf8 or InvalidQos. */
  readonly code: ErrorCodeValue;
  /** Frame type name (`"SYNCPAGE"`), or `"stream"` for header faults. */
  readonly frame: string;
  /** What is wrong, for humans. */
  readonly detail: string;

  constructor(code: ErrorCodeValue, frame: string, detail: string) {
    super(`${errorName(code)} in ${frame}: ${detail}`);
    this.name = "ProtocolError";
    this.code = code;
    this.frame = frame;
    this.detail = detail;
  }
}

/** A body that does not match its layout. */
export function malformed(frame: string, detail: string): ProtocolError {
  return new ProtocolError(ErrorCode.Malformed, frame, detail);
}
