/**
 * The client: a {@link ClientSession} driven over a pluggable transport,
 * with timers, a store, reconnects and events.
 *
 * What it adds to the session: it loads the session state from the store
 * at start and persists every change before the frames that depend on it
 * go out ({@link Writer}); it keeps one timer at the session's
 * `pollTimeout`; it reconnects after a lost connection with exponential
 * backoff and jitter, follows a DISCONNECT redirect at once, fetches a
 * fresh token for every connection, and stops for good on the errors a
 * retry cannot fix (AuthFailed, DeviceMismatch, UnsupportedVersion, an
 * expired static token, Replaced by another connection of this device).
 *
 * Every `Client` belongs to one (user, device) and one store.
 *
 * @module
 */

import { ErrorCode, type QosLevel, SendResult, type SyncDirection } from "../proto/constants.js";
import { encodeFrame } from "../proto/encode.js";
import type { ConvMsgsFrame, ConvPageFrame, InboxMessage } from "../proto/frames.js";
import { defaultSessionConfig, type SessionConfig } from "../session/config.js";
import type { SendFailure, SessionEvent } from "../session/events.js";
import { ClientSession } from "../session/session.js";
import { MemoryStore, type OutboxStore } from "../store/store.js";
import type { Connector, Transport } from "../transport/transport.js";
import { Backoff, DEFAULT_BACKOFF, type BackoffOptions } from "./backoff.js";
import { Emitter, type Unsubscribe } from "./emitter.js";
import { Writer } from "./writer.js";

/** Where the client stands. */
export type ClientState =
  /** Constructed, `start` not called yet. */
  | "idle"
  /** Opening a transport or waiting for CONNACK. */
  | "connecting"
  /** Session open, replay running. */
  | "replaying"
  /** Replay done; pushes arrive as they are stored. */
  | "live"
  /** Waiting for the next reconnect attempt. */
  | "waiting"
  /** Closed by `close` or by an error a retry cannot fix. */
  | "closed";

/** How a client connects and behaves. */
export interface ClientOptions {
  /** `host:port` for TCP, `ws://host:port/path` or `wss://...` for WebSocket. */
  readonly endpoint: string;
  /** Opens transports (`tcpConnector()` in Node, `webSocketConnector()` in browsers). */
  readonly connector: Connector;
  /** The JWT, or a function fetching a fresh one for every connection. */
  readonly token: string | (() => string | Promise<string>);
  /** This device's id (the token's `dev` claim). */
  readonly device: bigint;
  /** Where the outbox, `delivered` and room positions are kept; memory by default. */
  readonly store?: OutboxStore;
  /** Session timings and sizes (defaults in `defaultSessionConfig`). */
  readonly session?: Partial<Omit<SessionConfig, "device" | "firstClientMsgId">>;
  /** Reconnect backoff (default 250 ms doubling to 30 s, equal jitter). */
  readonly reconnect?: Partial<BackoffOptions>;
  /** Retry delay of a failed store write (ms, default 1,000). */
  readonly storeRetryMs?: number;
  /** A monotonic clock in ms (default `performance.now`). */
  readonly clock?: () => number;
  /** Random numbers in [0, 1) for the jitter (default `Math.random`). */
  readonly random?: () => number;
}

/** How a send ended (its `outcome` always settles, with one of these). */
export type SendOutcome =
  /** Stored by the gateway (QoS 1: SENDACK; QoS 2: COMP after it). */
  | { readonly status: "stored"; readonly seq: bigint; readonly ownSeq: bigint; readonly duplicate: boolean }
  /** Given up for good. */
  | { readonly status: "failed"; readonly reason: SendFailure }
  /** QoS 0 handed to an open connection (it may still be lost). */
  | { readonly status: "sent" }
  /** QoS 0 while no session was open: not sent. */
  | { readonly status: "dropped" }
  /** The client closed first; the send stays in the store's outbox and goes out after the next start. */
  | { readonly status: "pending" };

/** A send accepted into the outbox. */
export interface SendReceipt {
  /** The id the gateway deduplicates retries by. */
  readonly clientMsgId: bigint;
  /** How it ended. */
  readonly outcome: Promise<SendOutcome>;
}

/** A page of older history. */
export interface OlderPage {
  readonly items: readonly InboxMessage[];
  /** Nothing older exists. */
  readonly end: boolean;
}

/** Events of a client: every session event under its `type`, and the client's own. */
export type ClientEvents = { readonly [K in SessionEvent["type"]]: Extract<SessionEvent, { type: K }> } & {
  /** The client's state changed. */
  readonly state: { readonly type: "state"; readonly state: ClientState };
  /** A transport could not be opened (a retry follows). */
  readonly "connect-failed": { readonly type: "connect-failed"; readonly endpoint: string; readonly error: unknown };
  /** A store write failed (it is retried; frames behind it wait). */
  readonly "store-error": { readonly type: "store-error"; readonly error: unknown };
  /** The client stopped for good: `reason` is the wire code that stopped it, absent after `close()`. */
  readonly closed: { readonly type: "closed"; readonly reason?: number | undefined };
};

/** A send of this run awaiting its end. */
interface PendingOutcome {
  readonly qos: 1 | 2;
  readonly resolve: (o: SendOutcome) => void;
  /** QoS 2: the SENDACK's outcome, settled at COMP. */
  stored: SendOutcome | undefined;
}

/** Codes after which reconnecting cannot help. */
const FATAL = new Set<number>([
  ErrorCode.AuthFailed,
  ErrorCode.DeviceMismatch,
  ErrorCode.UnsupportedVersion,
  ErrorCode.Replaced,
]);

const textEncoder = new TextEncoder();

/** A reconnecting surepush client. */
export class Client {
  private readonly events = new Emitter<ClientEvents>();
  private readonly store: OutboxStore;
  private readonly clock: () => number;
  private readonly backoff: Backoff;
  private readonly writer: Writer;
  private session: ClientSession | undefined;
  private transport: Transport | undefined;
  private generation = 0;
  private stateValue: ClientState = "idle";
  private timer: ReturnType<typeof setTimeout> | undefined;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private redirectTo: string | undefined;
  private pumping = false;
  private pumpAgain = false;
  private readonly nestedPumps: Array<(stored: Promise<void>) => void> = [];
  /** Sends of this run whose outcome is not settled yet. */
  private readonly outcomes = new Map<bigint, PendingOutcome>();
  private older: { resolve: (p: OlderPage) => void; reject: (e: Error) => void } | undefined;
  /** CONVLIST / CONVFETCH requests awaiting their page, by request id. */
  private readonly conversationRequests = new Map<
    number,
    { resolve: (page: ConvPageFrame | ConvMsgsFrame) => void; reject: (e: Error) => void }
  >();
  private olderChain: Promise<unknown> = Promise.resolve();

  constructor(private readonly options: ClientOptions) {
    this.store = options.store ?? new MemoryStore();
    this.clock = options.clock ?? (() => performance.now());
    this.backoff = new Backoff({ ...DEFAULT_BACKOFF, ...options.reconnect }, options.random ?? Math.random);
    this.writer = new Writer(
      this.store,
      {
        transmit: (generation, frames) => {
          if (generation === this.generation) this.transport?.write(frames);
        },
        storeFailed: (error) => this.events.emit("store-error", { type: "store-error", error }),
      },
      options.storeRetryMs ?? 1000,
    );
  }

  // ----- lifecycle ----------------------------------------------------------

  /** Loads the stored state and starts connecting (resolves before the connection is up). */
  async start(): Promise<void> {
    if (this.stateValue !== "idle") throw new Error(`start() on a ${this.stateValue} client`);
    const state = await this.store.load();
    const config: SessionConfig = {
      ...defaultSessionConfig(this.options.device),
      ...this.options.session,
      // Unique across restarts as long as the clock does not go back; the
      // store's counter covers that case for ids it has seen.
      firstClientMsgId: BigInt(Date.now()) * 1000n,
    };
    this.session = new ClientSession(config, state);
    void this.connect();
  }

  /**
   * Sends DISCONNECT Normal, writes out what is still to be stored,
   * closes the transport and stops. Unfinished sends stay in the store.
   */
  async close(): Promise<void> {
    if (this.stateValue === "closed") return;
    // What is drained so far reaches the store (and its frames the wire)
    // before the goodbye.
    await this.writer.idle();
    if (this.transport && (this.session?.state === "replaying" || this.session?.state === "live")) {
      this.transport.write([encodeFrame({ type: "disconnect", reason: ErrorCode.Normal, redirect: "" })]);
    }
    this.shutdown(undefined);
    await this.writer.idle();
    this.writer.stop();
  }

  /** Resolves once every change so far is stored and its frames are handed to the transport. */
  flush(): Promise<void> {
    return this.writer.idle();
  }

  /** The client's state. */
  get state(): ClientState {
    return this.stateValue;
  }

  /** Highest inbox sequence handed to the application. */
  get delivered(): bigint | undefined {
    return this.session?.delivered;
  }

  /** QoS 1/2 sends not yet finished. */
  get unfinishedSends(): number {
    return this.session?.unfinishedSends ?? 0;
  }

  /** Calls `listener` for every `type` event. */
  on<K extends keyof ClientEvents>(type: K, listener: (event: ClientEvents[K]) => void): Unsubscribe {
    return this.events.on(type, listener);
  }

  /** The next `type` event that `accept` takes. */
  once<K extends keyof ClientEvents>(type: K, accept?: (event: ClientEvents[K]) => boolean): Promise<ClientEvents[K]> {
    return this.events.once(type, accept);
  }

  // ----- commands -----------------------------------------------------------

  /**
   * Sends `payload` (bytes, or text as UTF-8) to a user, group or room id.
   * Resolves once the message is in the stored outbox (QoS 1/2); its
   * `outcome` settles when the gateway has stored it (or refused it).
   * Throws `PayloadTooLargeError` / `RangeError` for input that can never be sent.
   */
  async send(to: bigint, payload: Uint8Array | string, options: { qos?: QosLevel } = {}): Promise<SendReceipt> {
    const session = this.running();
    const qos = options.qos ?? 1;
    const bytes = typeof payload === "string" ? textEncoder.encode(payload) : payload;
    const open = session.state === "replaying" || session.state === "live";
    const clientMsgId = session.send(to, bytes, qos, this.clock());
    const outcome =
      qos === 0
        ? Promise.resolve<SendOutcome>({ status: open ? "sent" : "dropped" })
        : new Promise<SendOutcome>((resolve) => this.outcomes.set(clientMsgId, { qos, resolve, stored: undefined }));
    await this.pump();
    return { clientMsgId, outcome };
  }

  /** Follows a room (QoS 0 or 1) from now on; a room restored from the store keeps its position. */
  subscribe(room: bigint, options: { qos?: 0 | 1 } = {}): Promise<void> {
    this.running().subscribe(room, options.qos ?? 1, this.clock());
    return this.pump();
  }

  /** Follows a room from just after `last`. */
  resume(room: bigint, last: bigint, options: { qos?: 0 | 1 } = {}): Promise<void> {
    this.running().resume(room, options.qos ?? 1, last, this.clock());
    return this.pump();
  }

  /** Stops following a room. */
  unsubscribe(room: bigint): Promise<void> {
    this.running().unsubscribe(room, this.clock());
    return this.pump();
  }

  /**
   * Watches the presence of `users` (`watched`, then `presence` events);
   * kept across reconnects until {@link unwatch}.
   */
  watch(users: readonly bigint[]): Promise<void> {
    this.running().watch(users, this.clock());
    return this.pump();
  }

  /** Stops watching the presence of `users`. */
  unwatch(users: readonly bigint[]): Promise<void> {
    this.running().unwatch(users, this.clock());
    return this.pump();
  }

  /** Acknowledges what was delivered in every QoS 1 room now (otherwise batched). */
  ackRooms(): Promise<void> {
    this.running().ackRooms(this.clock());
    return this.pump();
  }

  /**
   * A page of conversation summaries, newest first (PROTOCOL.md §7a):
   * per conversation the unread count for this device, the last
   * message's seq, sender, time and preview. Page on with `before` = the
   * last item's `lastSeq`. Rejects when not connected, or when the
   * connection drops before the answer (ask again).
   */
  async listConversations(options: { limit: number; before?: bigint; unreadOnly?: boolean }): Promise<ConvPageFrame> {
    const id = this.running().listConversations(options, this.clock());
    return (await this.conversationAnswer(id)) as ConvPageFrame;
  }

  /**
   * A page of the conversation with `peer` (a user or a group id):
   * `latest`, `before` an anchor (paging back) or `after` one; items
   * ascending by seq. Acknowledges nothing. Rejects as
   * {@link listConversations} does.
   */
  async fetchConversation(
    peer: bigint,
    options: { direction: SyncDirection; anchor?: bigint; limit: number },
  ): Promise<ConvMsgsFrame> {
    const id = this.running().fetchConversation(peer, options, this.clock());
    return (await this.conversationAnswer(id)) as ConvMsgsFrame;
  }

  private async conversationAnswer(id: number | undefined): Promise<ConvPageFrame | ConvMsgsFrame> {
    if (id === undefined) throw new Error("not connected");
    const answer = new Promise<ConvPageFrame | ConvMsgsFrame>((resolve, reject) =>
      this.conversationRequests.set(id, { resolve, reject }),
    );
    await this.pump();
    return answer;
  }

  /**
   * Fetches up to `limit` messages older than `before` (default: the oldest
   * seen in this session). One request at a time; calls queue up.
   */
  fetchOlder(options: { limit: number; before?: bigint }): Promise<OlderPage> {
    const run = async (): Promise<OlderPage> => {
      const session = this.running();
      const before = options.before ?? session.oldestSeen ?? (session.delivered ?? 0n) + 1n;
      const page = new Promise<OlderPage>((resolve, reject) => (this.older = { resolve, reject }));
      session.fetchOlder(before, options.limit, this.clock());
      await this.pump();
      return page;
    };
    const result = this.olderChain.then(run, run);
    this.olderChain = result.catch(() => undefined);
    return result;
  }

  // ----- driving ------------------------------------------------------------

  private isClosed(): boolean {
    return this.stateValue === "closed";
  }

  private running(): ClientSession {
    if (!this.session || this.stateValue === "closed") throw new Error("the client is not running");
    return this.session;
  }

  private setState(state: ClientState): void {
    if (this.stateValue === state) return;
    this.stateValue = state;
    this.events.emit("state", { type: "state", state });
  }

  private async connect(): Promise<void> {
    const session = this.session;
    if (!session || this.stateValue === "closed") return;
    const generation = ++this.generation;
    this.setState("connecting");
    const endpoint = this.redirectTo ?? this.options.endpoint;
    this.redirectTo = undefined; // one try; then back to the configured endpoint
    let transport: Transport;
    let token: string;
    try {
      token = typeof this.options.token === "string" ? this.options.token : await this.options.token();
      transport = await this.options.connector.connect(endpoint, {
        onData: (bytes) => {
          if (generation !== this.generation) return;
          session.handleBytes(bytes, this.clock());
          void this.pump();
        },
        onClose: () => {
          if (generation !== this.generation) return;
          this.transport = undefined;
          session.handleDisconnect(this.clock());
          void this.pump();
          this.scheduleReconnect(undefined);
        },
      });
    } catch (error) {
      if (generation !== this.generation) return;
      this.events.emit("connect-failed", { type: "connect-failed", endpoint, error });
      this.scheduleReconnect(undefined);
      return;
    }
    if (generation !== this.generation || this.isClosed()) {
      transport.close();
      return;
    }
    this.transport = transport;
    try {
      session.connect(this.clock(), token);
    } catch (e) {
      // A token the protocol cannot carry (empty or above 4 KiB): no retry helps.
      this.shutdown(ErrorCode.AuthFailed);
      throw e;
    }
    await this.pump();
  }

  /** Drains the session: store changes and frames to the writer, events to listeners. */
  private pump(): Promise<void> {
    const session = this.session;
    if (!session) return Promise.resolve();
    if (this.pumping) {
      // Called from a listener: the running pump drains this call's
      // changes too; answer when they are stored, not before.
      this.pumpAgain = true;
      return new Promise((resolve) => this.nestedPumps.push(resolve));
    }
    this.pumping = true;
    let durable: Promise<void> = Promise.resolve();
    try {
      do {
        this.pumpAgain = false;
        const changes = [];
        for (let c = session.pollStore(); c; c = session.pollStore()) changes.push(c);
        const frames = [];
        for (let f = session.pollTransmit(); f; f = session.pollTransmit()) frames.push(encodeFrame(f));
        const written = this.writer.submit(changes, frames, this.generation);
        durable = durable.then(() => written);
        for (let e = session.pollEvent(); e; e = session.pollEvent()) this.dispatch(e);
      } while (this.pumpAgain);
    } finally {
      this.pumping = false;
    }
    this.armTimer();
    const stored = durable.catch(() => undefined);
    for (const nested of this.nestedPumps.splice(0)) nested(stored);
    return stored;
  }

  private dispatch(event: SessionEvent): void {
    switch (event.type) {
      case "connected":
        this.setState("replaying");
        break;
      case "caught-up":
        this.backoff.reset();
        this.setState("live");
        break;
      case "send-acked": {
        const waiting = this.outcomes.get(event.ack.clientMsgId);
        if (!waiting) break;
        waiting.stored = stored(event.ack.seq, event.ack.ownSeq, event.ack.result === SendResult.Duplicate);
        if (waiting.qos === 1) this.settle(event.ack.clientMsgId, waiting.stored);
        break;
      }
      case "send-completed": {
        const waiting = this.outcomes.get(event.clientMsgId);
        if (waiting?.stored) this.settle(event.clientMsgId, waiting.stored);
        break;
      }
      case "send-failed":
        this.settle(event.clientMsgId, { status: "failed", reason: event.reason });
        break;
      case "older":
        this.older?.resolve({ items: event.items, end: event.end });
        this.older = undefined;
        break;
      case "conversations":
      case "conversation-page":
        this.conversationRequests.get(event.page.requestId)?.resolve(event.page);
        this.conversationRequests.delete(event.page.requestId);
        break;
      case "disconnected":
        this.onDisconnected(event.reason, event.redirect);
        break;
      default:
        break;
    }
    this.emitSessionEvent(event);
  }

  private emitSessionEvent<E extends SessionEvent>(event: E): void {
    (this.events.emit as (type: string, event: SessionEvent) => void)(event.type, event);
  }

  private settle(clientMsgId: bigint, outcome: SendOutcome): void {
    this.outcomes.get(clientMsgId)?.resolve(outcome);
    this.outcomes.delete(clientMsgId);
  }

  /** The session ended the connection (DISCONNECT, ERROR, timeout, bad bytes). */
  private onDisconnected(reason: number, redirect: string): void {
    // Conversation requests are not resent: the caller asks again.
    for (const waiting of this.conversationRequests.values()) waiting.reject(new Error("disconnected"));
    this.conversationRequests.clear();
    const transport = this.transport;
    this.transport = undefined;
    this.generation++; // the old transport's close is not news any more
    transport?.close();
    const expiredStatic = reason === ErrorCode.TokenExpired && typeof this.options.token === "string";
    if (FATAL.has(reason) || expiredStatic) {
      this.shutdown(reason);
      return;
    }
    if (redirect !== "") {
      try {
        this.redirectTo = this.options.connector.redirect(this.redirectTo ?? this.options.endpoint, redirect);
      } catch {
        this.redirectTo = undefined; // not a host:port: reconnect where we were
      }
    }
    this.scheduleReconnect(this.redirectTo !== undefined ? 0 : undefined);
  }

  private scheduleReconnect(delayMs: number | undefined): void {
    if (this.stateValue === "closed" || this.reconnectTimer) return;
    this.setState("waiting");
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      void this.connect();
    }, delayMs ?? this.backoff.next());
  }

  private armTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const at = this.session?.pollTimeout();
    if (at === undefined || this.stateValue === "closed") return;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.session?.handleTimeout(this.clock());
        void this.pump();
      },
      Math.max(0, at - this.clock()),
    );
  }

  private shutdown(reason: number | undefined): void {
    if (this.stateValue === "closed") return;
    this.setState("closed");
    this.generation++;
    this.transport?.close();
    this.transport = undefined;
    this.session?.handleDisconnect(this.clock());
    if (this.timer) clearTimeout(this.timer);
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.timer = this.reconnectTimer = undefined;
    for (const id of [...this.outcomes.keys()]) this.settle(id, { status: "pending" });
    this.older?.reject(new Error("the client closed"));
    this.older = undefined;
    this.events.emit("closed", { type: "closed", reason });
  }
}

function stored(seq: bigint, ownSeq: bigint, duplicate: boolean): SendOutcome {
  return { status: "stored", seq, ownSeq, duplicate };
}
