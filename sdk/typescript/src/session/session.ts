/**
 * The sans-IO client session: one device's side of docs/PROTOCOL.md.
 *
 * It owns no socket, no timer and no storage. Time comes in as `nowMs` (any
 * monotonic millisecond clock), bytes come in with {@link ClientSession.handleBytes},
 * and everything it produces is drained by the caller:
 *
 * - {@link ClientSession.pollStore}: changes to persist (outbox entries, `delivered`,
 *   room positions, the id counter);
 * - {@link ClientSession.pollTransmit}: frames to write; a driver persists the
 *   changes drained before them first;
 * - {@link ClientSession.pollEvent}: what the application sees.
 *
 * Call order: `connect` on a fresh transport; then `handleBytes` /
 * `handleTimeout` (at {@link ClientSession.pollTimeout}) / the commands (`send`,
 * `subscribe`, ...); after each, drain `pollStore`, `pollTransmit`,
 * `pollEvent`. When the transport closes, `handleDisconnect`; when the
 * session itself emits `disconnected`, close the transport. The session
 * lives across connections: the outbox, `delivered` and the followed rooms
 * carry over, which is what makes retries and resumes exact.
 *
 * The parts each own their state: {@link Inbox} (receiving), {@link Outbox}
 * (sending), {@link Replay} (SYNC requests), {@link Rooms}; this file
 * dispatches frames to them and keeps the connection phase and keepalive.
 *
 * @module
 */

import {
  DEFAULT_MAX_FRAME,
  ErrorCode,
  MAX_TOKEN_LEN,
  type QosLevel,
  SendResult,
  type SyncDirection,
  U64_MAX,
} from "../proto/constants.js";
import { utf8 } from "../proto/bytes.js";
import { malformed, ProtocolError } from "../proto/errors.js";
import type { ConnAckFrame, Frame, InboxMessage, SendAckFrame, SyncPageFrame } from "../proto/frames.js";
import { FrameDecoder } from "../proto/stream.js";
import type { SessionConfig } from "./config.js";
import type { SessionEvent } from "./events.js";
import { type Delivery, Inbox } from "./inbox.js";
import { maxSendPayload, Outbox } from "./outbox.js";
import type { SessionOutput } from "./output.js";
import { Replay } from "./replay.js";
import { Watches } from "./presence.js";
import { Rooms } from "./rooms.js";
import { NEW_DEVICE, type RoomPosition, type SessionState, type StoreChange } from "./state.js";

/** The gateway's default keepalive (PROTOCOL.md §3, CONNECT), used if neither side names one. */
const DEFAULT_KEEPALIVE_MS = 30_000;

/** Where a session stands with its current connection. */
export type SessionPhase =
  /** No transport (or the last one is over). */
  | "disconnected"
  /** CONNECT sent, CONNACK awaited. */
  | "connecting"
  /** Open; the replay (SYNC pages) is running. */
  | "replaying"
  /** Replay done: new messages are pushed. */
  | "live";

/** A payload larger than a SEND frame can carry. */
export class PayloadTooLargeError extends RangeError {
  constructor(
    readonly size: number,
    readonly max: number,
  ) {
    super(`payload of ${size} bytes exceeds the largest SEND payload, ${max} bytes`);
    this.name = "PayloadTooLargeError";
  }
}

/** One device's protocol state; lives across reconnects. */
export class ClientSession {
  private phase: SessionPhase = "disconnected";
  private nowMs = 0;
  private readonly inbox: Inbox;
  private readonly outbox: Outbox;
  private readonly replay = new Replay();
  private readonly rooms: Rooms;
  private readonly watches = new Watches();
  private decoder = new FrameDecoder();
  private nextClientMsgId: bigint;
  private maxPending = 16;
  private maxFrame = DEFAULT_MAX_FRAME;
  private keepaliveMs: number;
  private connectStartedMs = 0;
  private lastTxMs = 0;
  private lastRxMs = 0;
  private lastPingMs = 0;
  private oldest: bigint | undefined;
  private readonly transmit = new Queue<Frame>();
  private readonly events = new Queue<SessionEvent>();
  private readonly changes = new Queue<StoreChange>();
  private readonly out: SessionOutput = {
    frame: (f) => this.queue(f),
    event: (e) => this.events.push(e),
    store: (c) => this.changes.push(c),
  };

  /** A session for a device restored from `state` (a new device by default). */
  constructor(
    private readonly config: SessionConfig,
    state: SessionState = NEW_DEVICE,
  ) {
    this.inbox = new Inbox(state.delivered, config.reorderLimit);
    this.outbox = new Outbox(state.outbox);
    this.rooms = new Rooms(state.rooms, config.roomAckEvery, config.roomAckDelayMs);
    this.keepaliveMs = config.keepaliveMs > 0 ? config.keepaliveMs : DEFAULT_KEEPALIVE_MS;
    const afterOutbox = (this.outbox.highestId ?? 0n) + 1n;
    this.nextClientMsgId = [state.nextClientMsgId ?? 0n, afterOutbox, config.firstClientMsgId].reduce(
      (a, b) => (a > b ? a : b),
    );
  }

  // ----- state --------------------------------------------------------------

  /** The connection phase. */
  get state(): SessionPhase {
    return this.phase;
  }

  /** Highest inbox sequence handed to the application (absent: a new device before its first page). */
  get delivered(): bigint | undefined {
    return this.inbox.delivered;
  }

  /** The lowest sequence seen in this session (replay or history), a default anchor for {@link fetchOlder}. */
  get oldestSeen(): bigint | undefined {
    return this.oldest;
  }

  /** QoS 1/2 sends not yet finished. */
  get unfinishedSends(): number {
    return this.outbox.size;
  }

  /** Everything a restart needs, as the store should hold it after the drained changes. */
  snapshot(): SessionState {
    return {
      delivered: this.inbox.delivered,
      nextClientMsgId: this.nextClientMsgId,
      outbox: this.outbox.entries(),
      rooms: this.rooms.positions(),
    };
  }

  /** The followed rooms. */
  roomPositions(): RoomPosition[] {
    return this.rooms.positions();
  }

  /** The largest payload a SEND may carry on the current (or default) frame limit. */
  get maxPayload(): number {
    return maxSendPayload(this.maxFrame);
  }

  // ----- connection -----------------------------------------------------------

  /** Starts a session on a fresh transport: queues CONNECT with `token`. */
  connect(nowMs: number, token: string): void {
    const tokenLen = utf8(token).length;
    if (tokenLen === 0 || tokenLen > MAX_TOKEN_LEN) {
      throw new RangeError(`token of ${tokenLen} bytes is outside 1..=${MAX_TOKEN_LEN}`);
    }
    this.setNow(nowMs);
    this.phase = "connecting";
    this.transmit.clear();
    this.inbox.reset();
    this.replay.reset();
    this.outbox.resetTransmits();
    this.decoder = new FrameDecoder();
    this.connectStartedMs = this.nowMs;
    this.lastRxMs = this.nowMs;
    this.lastPingMs = this.nowMs;
    this.queue({
      type: "connect",
      device: this.config.device,
      lastSeq: this.inbox.delivered,
      keepaliveMs: this.config.keepaliveMs,
      token,
    });
  }

  /** The transport is gone. Nothing is lost: `connect` again later. */
  handleDisconnect(nowMs: number): void {
    this.setNow(nowMs);
    this.phase = "disconnected";
    this.transmit.clear();
  }

  /** Bytes from the transport (any split). A protocol violation ends the connection. */
  handleBytes(bytes: Uint8Array, nowMs: number): void {
    this.setNow(nowMs);
    if (this.phase === "disconnected") return;
    this.lastRxMs = this.nowMs;
    this.decoder.push(bytes);
    for (;;) {
      let frame: Frame | undefined;
      try {
        frame = this.decoder.next();
      } catch (e) {
        if (!(e instanceof ProtocolError)) throw e;
        this.protocolError(e);
        return;
      }
      if (!frame) return;
      this.handleFrame(frame, this.nowMs);
      if (!this.isConnected()) return; // the frame ended the connection
    }
  }

  /** One decoded frame from the gateway (for transports that decode themselves). */
  handleFrame(frame: Frame, nowMs: number): void {
    this.setNow(nowMs);
    if (this.phase === "disconnected") return;
    this.lastRxMs = this.nowMs;
    if (this.phase === "connecting" && !["connack", "error", "disconnect", "ping", "pong"].includes(frame.type)) {
      this.protocolError(malformed(frame.type.toUpperCase(), "frame before CONNACK"));
      return;
    }
    switch (frame.type) {
      case "connack":
        if (this.phase !== "connecting") return this.protocolError(malformed("CONNACK", "second CONNACK"));
        return this.onConnAck(frame);
      case "push": {
        const { type: _type, ...message } = frame;
        return this.onPush(message);
      }
      case "syncpage":
        return this.onPage(frame);
      case "sendack":
        return this.onSendAck(frame);
      case "comp":
        if (this.outbox.onComp(frame.clientMsgId)) {
          this.out.store({ type: "outbox-delete", clientMsgId: frame.clientMsgId });
          this.out.event({ type: "send-completed", clientMsgId: frame.clientMsgId });
          this.pumpOutbox();
        }
        return;
      case "ping":
        return this.queue({ type: "pong", nonce: frame.nonce });
      case "pong":
        return;
      case "suback":
        return this.rooms.onSubAck(frame, this.out);
      case "roompush":
        return this.rooms.onRoomPush(frame, this.nowMs, this.out);
      case "roomlag":
        return this.rooms.onRoomLag(frame.room, this.out);
      case "convpage":
        return this.out.event({ type: "conversations", page: frame });
      case "convmsgs":
        return this.out.event({ type: "conversation-page", page: frame });
      case "watchack":
        return this.watches.onWatchAck(frame, this.out);
      case "presence":
        return this.out.event({ type: "presence", presence: frame });
      case "error":
        this.out.event({ type: "gateway-error", code: frame.code, message: frame.message });
        // Every error but a bad page size is followed by a close.
        if (frame.code !== ErrorCode.BadSyncRequest && frame.code !== ErrorCode.BadConversationRequest) {
          this.lose(frame.code, "", true);
        }
        return;
      case "disconnect":
        return this.lose(frame.reason, frame.redirect, true);
      case "connect":
      case "send":
      case "ack":
      case "sync":
      case "rel":
      case "subscribe":
      case "unsubscribe":
      case "roomack":
      case "convlist":
      case "convfetch":
      case "watch":
      case "unwatch":
        return this.protocolError(malformed(frame.type.toUpperCase(), "a client-only frame from the gateway"));
    }
  }

  /** Retries, keepalive and timeouts due at `nowMs`. */
  handleTimeout(nowMs: number): void {
    this.setNow(nowMs);
    const now = this.nowMs;
    if (this.phase === "disconnected") return;
    if (this.phase === "connecting") {
      if (now >= this.connectStartedMs + this.config.connectTimeoutMs) this.lose(ErrorCode.IdleTimeout, "", false);
      return;
    }
    if (now >= this.lastRxMs + this.keepaliveMs) {
      // A PING went out half a keepalive ago and nothing came back.
      this.lose(ErrorCode.IdleTimeout, "", false);
      return;
    }
    for (const f of this.replay.resendOverdue(now, this.config.syncTimeoutMs)) this.queue(f);
    this.pumpOutbox();
    this.rooms.ackDue(now, this.out);
    if (now >= this.pingDue()) {
      this.lastPingMs = now;
      this.queue({ type: "ping", nonce: BigInt(Math.floor(now)) });
    }
  }

  /** When {@link handleTimeout} should run next; absent while disconnected. */
  pollTimeout(): number | undefined {
    switch (this.phase) {
      case "disconnected":
        return undefined;
      case "connecting":
        return this.connectStartedMs + this.config.connectTimeoutMs;
      default: {
        const deadlines = [
          this.pingDue(),
          this.lastRxMs + this.keepaliveMs,
          this.replay.nextDeadline(this.config.syncTimeoutMs),
          this.outbox.nextDeadline(this.config.sendTimeoutMs),
          this.rooms.nextDeadline(),
        ];
        return Math.min(...deadlines.filter((d): d is number => d !== undefined));
      }
    }
  }

  // ----- commands -------------------------------------------------------------

  /**
   * Queues a message to `to` (a user, group or room id); returns its
   * client message id. QoS 1/2 are kept (and persisted) until finished,
   * across reconnects; QoS 0 goes out only while a session is open.
   */
  send(to: bigint, payload: Uint8Array, qos: QosLevel, nowMs: number): bigint {
    this.setNow(nowMs);
    if (to < 0n || to > U64_MAX) throw new RangeError(`addressee ${to} is not a u64`);
    if (qos !== 0 && qos !== 1 && qos !== 2) throw new RangeError(`QoS ${String(qos)} is not 0, 1 or 2`);
    if (payload.length > this.maxPayload) throw new PayloadTooLargeError(payload.length, this.maxPayload);
    const clientMsgId = this.nextClientMsgId;
    this.nextClientMsgId += 1n;
    this.out.store({ type: "next-id", next: this.nextClientMsgId });
    if (qos === 0) {
      if (this.isOpen()) this.queue({ type: "send", clientMsgId, to, qos, payload });
      return clientMsgId;
    }
    const entry = { clientMsgId, to, qos, payload, stage: "send" } as const;
    this.outbox.add(entry);
    this.out.store({ type: "outbox-put", entry });
    this.pumpOutbox();
    return clientMsgId;
  }

  /** Follows a room (QoS 0 or 1): a room already followed keeps its position, a new one starts at its head. */
  subscribe(room: bigint, qos: 0 | 1, nowMs: number): void {
    this.setNow(nowMs);
    this.rooms.follow(room, qos, undefined, this.isOpen(), this.out);
  }

  /** Follows a room from just after `last` (a sequence the application processed). */
  resume(room: bigint, qos: 0 | 1, last: bigint, nowMs: number): void {
    this.setNow(nowMs);
    this.rooms.follow(room, qos, last, this.isOpen(), this.out);
  }

  /** Stops following a room. */
  unsubscribe(room: bigint, nowMs: number): void {
    this.setNow(nowMs);
    this.rooms.unfollow(room, this.isOpen(), this.out);
  }

  /**
   * Watches the presence of `users` (answered by a `watched` event, then
   * `presence` events per user now and after each change); kept across
   * reconnects until {@link unwatch}. Returns the WATCH's request id, if
   * one was sent now (while disconnected it is sent on connect).
   */
  watch(users: readonly bigint[], nowMs: number): number | undefined {
    this.setNow(nowMs);
    return this.watches.watch(users, this.isOpen(), this.out);
  }

  /** Stops watching the presence of `users`. */
  unwatch(users: readonly bigint[], nowMs: number): void {
    this.setNow(nowMs);
    this.watches.unwatch(users, this.isOpen(), this.out);
  }

  /** The users whose presence this session watches. */
  watched(): bigint[] {
    return this.watches.watched();
  }

  /** Acknowledges every QoS 1 room up to what was delivered, now. */
  ackRooms(nowMs: number): void {
    this.setNow(nowMs);
    if (this.isOpen()) this.rooms.ackAll(this.out);
  }

  /**
   * Asks for a page of conversation summaries (PROTOCOL.md §7a), newest
   * first, below `before` (default: from the newest); answered by a
   * `conversations` event carrying the returned request id. Only while a
   * session is open (`undefined` otherwise); not resent after a reconnect.
   */
  listConversations(
    options: { limit: number; before?: bigint; unreadOnly?: boolean },
    nowMs: number,
  ): number | undefined {
    this.setNow(nowMs);
    if (!this.isOpen()) return undefined;
    const requestId = this.replay.nextId();
    this.queue({
      type: "convlist",
      requestId,
      before: options.before ?? 0n,
      limit: options.limit,
      unreadOnly: options.unreadOnly ?? false,
    });
    return requestId;
  }

  /**
   * Asks for a page of the conversation with `peer` (a user or group id):
   * `latest`, `before` an anchor (paging back) or `after` one (catching
   * up); answered by a `conversation-page` event carrying the returned
   * request id. Only while a session is open (`undefined` otherwise).
   */
  fetchConversation(
    peer: bigint,
    options: { direction: SyncDirection; anchor?: bigint; limit: number },
    nowMs: number,
  ): number | undefined {
    this.setNow(nowMs);
    if (!this.isOpen()) return undefined;
    const requestId = this.replay.nextId();
    this.queue({
      type: "convfetch",
      requestId,
      peer,
      direction: options.direction,
      anchor: options.anchor ?? 0n,
      limit: options.limit,
    });
    return requestId;
  }

  /**
   * Asks for up to `limit` messages older than `before` (answered by an
   * `older` event). One history request at a time: a new one replaces the
   * last. Sent now if a session is open, else after the next CONNACK.
   */
  fetchOlder(before: bigint, limit: number, nowMs: number): void {
    this.setNow(nowMs);
    const frame = this.replay.startOlder(before, limit, this.nowMs, this.isOpen());
    if (frame) this.queue(frame);
  }

  // ----- output -----------------------------------------------------------------

  /** The next change to persist. */
  pollStore(): StoreChange | undefined {
    return this.changes.shift();
  }

  /** The next frame to write. */
  pollTransmit(): Frame | undefined {
    const f = this.transmit.shift();
    if (f) return f;
    if (!this.isOpen()) return undefined;
    const upTo = this.inbox.takeAck();
    if (upTo === undefined) return undefined;
    this.lastTxMs = this.nowMs;
    return { type: "ack", upTo };
  }

  /** The next event for the application. */
  pollEvent(): SessionEvent | undefined {
    return this.events.shift();
  }

  // ----- internals --------------------------------------------------------------

  private setNow(nowMs: number): void {
    if (nowMs > this.nowMs) this.nowMs = nowMs;
  }

  private isConnected(): boolean {
    return this.phase !== "disconnected";
  }

  private isOpen(): boolean {
    return this.phase === "replaying" || this.phase === "live";
  }

  private queue(frame: Frame): void {
    this.lastTxMs = this.nowMs;
    this.transmit.push(frame);
  }

  private pingDue(): number {
    return Math.max(Math.min(this.lastTxMs, this.lastRxMs), this.lastPingMs) + this.keepaliveMs / 2;
  }

  private lose(reason: number, redirect: string, byGateway: boolean): void {
    this.phase = "disconnected";
    this.transmit.clear();
    this.out.event({ type: "disconnected", reason, redirect, byGateway });
  }

  private protocolError(error: ProtocolError): void {
    this.out.event({ type: "protocol-error", error });
    this.lose(error.code, "", false);
  }

  private onConnAck(ack: ConnAckFrame): void {
    this.phase = "replaying";
    this.maxPending = Math.max(1, ack.maxPendingSends);
    this.maxFrame = ack.maxFrame > 0 ? ack.maxFrame : DEFAULT_MAX_FRAME;
    this.decoder.setMaxFrame(Math.max(DEFAULT_MAX_FRAME, ack.maxFrame));
    this.keepaliveMs = [ack.keepaliveMs, this.config.keepaliveMs].find((k) => k > 0) ?? DEFAULT_KEEPALIVE_MS;
    this.replay.setMaxLimit(ack.maxSyncLimit);
    this.inbox.onConnAck(ack.cursor);
    this.out.event({ type: "connected", connack: ack });
    this.rooms.resubscribeAll(this.out);
    this.watches.rewatchAll(this.out);
    const delivered = this.inbox.delivered;
    this.queue(
      delivered === undefined
        ? this.replay.startReplay("latest", 0n, this.config.initialLatest, this.nowMs)
        : this.replay.startReplay("after", delivered, this.config.page, this.nowMs),
    );
    const older = this.replay.resumeOlder(this.nowMs);
    if (older) this.queue(older);
    this.pumpOutbox();
  }

  private onPage(page: SyncPageFrame): void {
    const matched = this.replay.match(page.requestId);
    if (!matched) return; // an answer to a request given up on
    this.noteOldest(page.items[0]?.seq);
    if (matched.slot === "older") {
      this.out.event({ type: "older", items: page.items, end: page.end });
      return;
    }
    const before = this.inbox.delivered;
    const request = matched.request;
    const out: Delivery[] = [];
    if (request.direction === "latest") {
      // A new device starts at the newest messages (or the head).
      const first = page.items[0];
      this.inbox.startAt(first ? first.seq - 1n : page.head);
    } else {
      this.inbox.acknowledgedBySync(request.anchor);
    }
    if (request.direction === "after" && page.items.length === 0) {
      // Nothing up to the head exists any more: step over it (and ACK it).
      if (page.gap) this.inbox.goneUpTo(page.head, out);
      this.phase = "live";
      this.inbox.drain(out);
      this.hand(out, before);
      this.out.event({ type: "caught-up" });
      return;
    }
    for (const item of page.items) this.inbox.fromPage(item, out);
    this.hand(out, before);
    // The next page acknowledges this one.
    this.queue(this.replay.startReplay("after", this.inbox.delivered ?? 0n, this.config.page, this.nowMs));
  }

  private onPush(message: InboxMessage): void {
    if (message.seq === 0n) {
      this.out.event({ type: "ephemeral", message });
      return;
    }
    if (this.inbox.onPush(message) !== "buffered") return;
    const before = this.inbox.delivered;
    const out: Delivery[] = [];
    this.inbox.drain(out);
    this.hand(out, before);
  }

  /** Hands `out` (messages and lost ranges) to the application; persists `delivered` if it moved from `before`. */
  private hand(out: Delivery[], before: bigint | undefined): void {
    for (const event of out) this.out.event(event);
    const delivered = this.inbox.delivered;
    if (delivered !== undefined && delivered !== before) this.out.store({ type: "delivered", seq: delivered });
  }

  private onSendAck(ack: SendAckFrame): void {
    const outcome = this.outbox.onSendAck(ack, this.nowMs);
    switch (outcome.kind) {
      case "done":
        this.out.store({ type: "outbox-delete", clientMsgId: ack.clientMsgId });
        this.out.event({ type: "send-acked", ack });
        break;
      case "release":
        this.out.store({ type: "outbox-put", entry: outcome.entry });
        this.out.event({ type: "send-acked", ack });
        break;
      case "failed":
        this.out.store({ type: "outbox-delete", clientMsgId: ack.clientMsgId });
        this.out.event({
          type: "send-failed",
          clientMsgId: ack.clientMsgId,
          reason: ack.result === SendResult.Conflict ? "conflict" : "forbidden",
          ack,
        });
        break;
      case "retry":
      case "unknown":
        break;
    }
    this.pumpOutbox();
  }

  /** (Re)transmits the outbox entries that are due. */
  private pumpOutbox(): void {
    if (!this.isOpen()) return;
    const { frames, tooLarge } = this.outbox.due(
      this.nowMs,
      this.config.sendTimeoutMs,
      this.maxPending,
      this.maxFrame,
    );
    for (const e of tooLarge) {
      this.out.store({ type: "outbox-delete", clientMsgId: e.clientMsgId });
      this.out.event({ type: "send-failed", clientMsgId: e.clientMsgId, reason: "too-large" });
    }
    for (const f of frames) this.queue(f);
  }

  private noteOldest(seq: bigint | undefined): void {
    if (seq !== undefined && seq > 0n && (this.oldest === undefined || seq < this.oldest)) this.oldest = seq;
  }
}

/** A FIFO with O(1) shift (events can come in bursts of a whole page). */
class Queue<T> {
  private items: T[] = [];
  private head = 0;

  push(item: T): void {
    this.items.push(item);
  }

  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head++];
    if (this.head === this.items.length) this.clear();
    return item;
  }

  clear(): void {
    this.items = [];
    this.head = 0;
  }
}
