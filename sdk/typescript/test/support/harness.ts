/**
 * Drives a ClientSession by hand with a fake clock: the test plays the
 * gateway (frames in as encoded bytes, so the session's decoder runs too)
 * and reads back what the session transmits, reports and persists.
 * Every drained change is also applied to a reference state, so a test
 * can check that the store would hold what the session holds.
 */

import assert from "node:assert/strict";

import {
  applyChanges,
  ClientSession,
  defaultSessionConfig,
  encodeFrame,
  NEW_DEVICE,
  type ConnAckFrame,
  type Frame,
  type InboxMessage,
  type SessionConfig,
  type SessionEvent,
  type SessionState,
  type StoreChange,
} from "../../src/index.js";

export const DEVICE = 7n;
export const TOKEN = "header.claims.signature";

export function connack(over: Partial<ConnAckFrame> = {}): ConnAckFrame {
  return {
    type: "connack",
    user: 42n,
    device: DEVICE,
    head: 0n,
    cursor: undefined,
    maxFrame: 1 << 20,
    pushWindow: 64,
    maxPendingSends: 256,
    keepaliveMs: 30_000,
    maxSyncLimit: 1000,
    ...over,
  };
}

export function message(seq: bigint, over: Partial<InboxMessage> = {}): InboxMessage {
  return {
    seq,
    prevSeq: seq === 0n ? 0n : seq - 1n,
    from: 5n,
    fromDevice: 1n,
    to: 42n,
    clientMsgId: 1000n + seq,
    tsMs: 1_700_000_000_000n + seq,
    qos: 1,
    echo: false,
    retransmit: false,
    payload: new TextEncoder().encode(`payload ${seq}`),
    ...over,
  };
}

/** A session with a fake clock and the gateway's side in the test's hands. */
export class Harness {
  readonly session: ClientSession;
  now = 1_000;
  /** The state a store would hold after every change drained so far. */
  stored: SessionState;

  constructor(config: Partial<SessionConfig> = {}, state: SessionState = NEW_DEVICE) {
    this.session = new ClientSession({ ...defaultSessionConfig(DEVICE), firstClientMsgId: 500n, ...config }, state);
    this.stored = state;
  }

  /** CONNECT on a fresh transport, then CONNACK; returns the frames sent after CONNACK. */
  open(ack: Partial<ConnAckFrame> = {}): Frame[] {
    this.session.connect(this.now, TOKEN);
    const sent = this.frames();
    assert.equal(sent[0]?.type, "connect");
    return this.gateway(connack(ack));
  }

  /** The gateway sends `frames` (as one chunk of bytes); returns what the session transmits in answer. */
  gateway(...frames: Frame[]): Frame[] {
    const bytes = frames.map((f) => encodeFrame(f));
    const chunk = new Uint8Array(bytes.reduce((n, b) => n + b.length, 0));
    let at = 0;
    for (const b of bytes) {
      chunk.set(b, at);
      at += b.length;
    }
    this.session.handleBytes(chunk, this.now);
    return this.frames();
  }

  /** Moves the clock by `ms` and runs the timers; returns what was transmitted. */
  advance(ms: number): Frame[] {
    this.now += ms;
    this.session.handleTimeout(this.now);
    return this.frames();
  }

  /** Jumps to the session's next deadline and runs it. */
  step(): Frame[] {
    const at = this.session.pollTimeout();
    assert.ok(at !== undefined, "no timer armed");
    this.now = Math.max(this.now, at);
    this.session.handleTimeout(this.now);
    return this.frames();
  }

  /** Drains transmitted frames (and store changes into `stored`). */
  frames(): Frame[] {
    this.changes();
    const out: Frame[] = [];
    for (let f = this.session.pollTransmit(); f; f = this.session.pollTransmit()) out.push(f);
    return out;
  }

  /** Drains events. */
  events(): SessionEvent[] {
    const out: SessionEvent[] = [];
    for (let e = this.session.pollEvent(); e; e = this.session.pollEvent()) out.push(e);
    return out;
  }

  /** Drains store changes, applying them to `stored`. */
  changes(): StoreChange[] {
    const out: StoreChange[] = [];
    for (let c = this.session.pollStore(); c; c = this.session.pollStore()) out.push(c);
    this.stored = applyChanges(this.stored, out);
    return out;
  }

  /** The messages among drained events, as their sequences. */
  delivered(events: SessionEvent[] = this.events()): bigint[] {
    return events.flatMap((e) => (e.type === "message" ? [e.message.seq] : []));
  }
}

/** The frames of one type among `frames`. */
export function ofType<T extends Frame["type"]>(frames: Frame[], type: T): Extract<Frame, { type: T }>[] {
  return frames.filter((f): f is Extract<Frame, { type: T }> => f.type === type);
}
