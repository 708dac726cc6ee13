/**
 * A test device: a real `Client` over TCP to a test gateway, recording
 * everything it is told, with `until(condition)` that re-checks after every
 * event (a signal, not a sleep) and fails with the condition's name and
 * what was seen when it does not hold in time.
 */

import assert from "node:assert/strict";

import {
  Client,
  decodeFrame,
  tcpConnector,
  type ClientEvents,
  type ClientOptions,
  type Connector,
  type Frame,
  type InboxMessage,
  type OutboxStore,
  type RoomMessage,
  type SendOutcome,
  type SendReceipt,
  type SessionConfig,
} from "../../src/node.js";
import { after, before } from "node:test";

import { Gateway, type GatewayOptions } from "./gateway.js";

const WATCHED = [
  "connected",
  "message",
  "lost",
  "ephemeral",
  "older",
  "caught-up",
  "send-acked",
  "send-completed",
  "send-failed",
  "gateway-error",
  "protocol-error",
  "disconnected",
  "subscribed",
  "room-message",
  "room-gap",
  "room-lagged",
  "room-forbidden",
  "state",
  "closed",
  "connect-failed",
] as const satisfies ReadonlyArray<keyof ClientEvents>;

/** Options of a test device. */
export interface DeviceOptions {
  readonly store?: OutboxStore;
  readonly session?: Partial<Omit<SessionConfig, "device" | "firstClientMsgId">>;
  readonly endpoint?: string;
  readonly client?: Partial<ClientOptions>;
}

/**
 * One gateway for the test file: started before its first test; after the
 * last, every device still open is closed and the gateway stopped (so a
 * failed test leaves nothing reconnecting). Returns the gateway's getter.
 */
export function gatewayForThisFile(options: GatewayOptions = {}): () => Gateway {
  let gateway: Gateway | undefined;
  before(async () => {
    gateway = await Gateway.start(options);
  });
  after(async () => {
    await Device.closeAll();
    await gateway?.stop();
  });
  return () => {
    if (!gateway) throw new Error("the gateway is not started yet");
    return gateway;
  };
}

/** The outcome of `receipt`, asserted to be `stored`. */
export async function stored(receipt: SendReceipt): Promise<Extract<SendOutcome, { status: "stored" }>> {
  const outcome = await receipt.outcome;
  assert.equal(outcome.status, "stored", `send ${receipt.clientMsgId}: ${show(outcome)}`);
  return outcome as Extract<SendOutcome, { status: "stored" }>;
}

/** JSON with bigints as strings (for assertion messages). */
export function show(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => (typeof v === "bigint" ? `${v}n` : v));
}

const open = new Set<Device>();

export class Device {
  /** Closes every device still open (an `after` hook, so a failed test leaves no client reconnecting). */
  static async closeAll(): Promise<void> {
    await Promise.all([...open].map((d) => d.close()));
  }

  readonly messages: InboxMessage[] = [];
  /** The inbox as told, in order: messages as `m<seq>`, gone sequences as `lost<first>-<last>`. */
  readonly told: string[] = [];
  readonly ephemeral: InboxMessage[] = [];
  readonly rooms: RoomMessage[] = [];
  readonly gaps: Array<{ room: bigint; from: bigint; to: bigint }> = [];
  readonly log: string[] = [];
  private readonly waiters = new Set<() => void>();

  private constructor(
    readonly client: Client,
    readonly user: bigint,
    readonly device: bigint,
  ) {
    open.add(this);
    for (const type of WATCHED) {
      client.on(type, (e: ClientEvents[typeof type]) => {
        if (e.type === "message") this.messages.push(e.message);
        if (e.type === "message") this.told.push(`m${e.message.seq}`);
        else if (e.type === "lost") this.told.push(`lost${e.first}-${e.last}`);
        else if (e.type === "ephemeral") this.ephemeral.push(e.message);
        else if (e.type === "room-message") this.rooms.push(e.message);
        else if (e.type === "room-gap") this.gaps.push({ room: e.room, from: e.from, to: e.to });
        this.log.push(e.type === "state" ? `state:${e.state}` : e.type);
        for (const w of [...this.waiters]) w();
      });
    }
  }

  /** Starts a client for (user, device) against `gateway`; resolves when replay is done (live). */
  static async online(gateway: Gateway, user: bigint, device: bigint, options: DeviceOptions = {}): Promise<Device> {
    const d = Device.create(gateway, user, device, options);
    await d.client.start();
    await d.until("live", () => d.client.state === "live");
    return d;
  }

  /** A client not started yet (to attach listeners or subscribe first). */
  static create(gateway: Gateway, user: bigint, device: bigint, options: DeviceOptions = {}): Device {
    const client = new Client({
      endpoint: options.endpoint ?? gateway.endpoint,
      connector: tcpConnector(),
      token: () => gateway.token(user, device),
      device,
      ...(options.store ? { store: options.store } : {}),
      session: { page: 10, ...options.session },
      reconnect: { initialMs: 50, maxMs: 500 },
      ...options.client,
    });
    return new Device(client, user, device);
  }

  /** Resolves once `condition` holds, checked now and after every event; rejects after `timeoutMs`. */
  until(what: string, condition: () => boolean, timeoutMs = 15_000): Promise<void> {
    if (condition()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (!condition()) return;
        this.waiters.delete(check);
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`timed out waiting for ${what}; last events: ${this.log.slice(-15).join(", ")}`));
      }, timeoutMs);
      this.waiters.add(check);
    });
  }

  /** The payloads of the inbox messages, as text. */
  texts(): string[] {
    return this.messages.map((m) => new TextDecoder().decode(m.payload));
  }

  close(): Promise<void> {
    open.delete(this);
    return this.client.close();
  }
}

/** Text of a payload. */
export function text(payload: Uint8Array): string {
  return new TextDecoder().decode(payload);
}

/** A TCP connector that records every frame the client writes into `sent`. */
export function recordingConnector(sent: Frame[]): Connector {
  const tcp = tcpConnector();
  return {
    redirect: tcp.redirect,
    async connect(endpoint, handlers) {
      const t = await tcp.connect(endpoint, handlers);
      return {
        write(frames) {
          for (const f of frames) sent.push(decodeFrame(f));
          t.write(frames);
        },
        close: () => t.close(),
      };
    },
  };
}
