/**
 * The wire format of protocol version 1: constants, typed frames, the
 * encoder, the whole-frame and streaming decoders, and their typed errors.
 * No I/O, no clock: safe in browsers, Node and workers alike.
 *
 * @module
 */

export * from "./constants.js";
export type * from "./frames.js";
export { ProtocolError } from "./errors.js";
export { encodeFrame } from "./encode.js";
export { decodeFrame, frameName } from "./decode.js";
export { FrameDecoder } from "./stream.js";
