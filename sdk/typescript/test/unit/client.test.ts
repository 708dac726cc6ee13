/**
 * The Client driver with the gateway's side scripted at the transport
 * seam: a send made from inside a `message` listener resolves only once
 * its outbox entry is stored, and no frame (the ACK, the SEND) reaches
 * the wire before the store changes it depends on.
 */

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  Client,
  decodeFrame,
  encodeFrame,
  type Connector,
  type Frame,
  type InboxMessage,
  type TransportHandlers,
} from "../../src/index.js";
import { GatedStore } from "../support/gated-store.js";
import { connack, message } from "../support/harness.js";

/** The gateway's end of in-memory transports. */
class ScriptedGateway implements Connector {
  readonly written: Frame[] = [];
  private handlers: TransportHandlers | undefined;
  private opened: (() => void) | undefined;

  connect(_endpoint: string, handlers: TransportHandlers) {
    this.handlers = handlers;
    this.opened?.();
    return Promise.resolve({
      write: (frames: readonly Uint8Array[]) => {
        for (const f of frames) this.written.push(decodeFrame(f));
      },
      close: () => this.handlers?.onClose(),
    });
  }

  redirect(_endpoint: string, hostPort: string): string {
    return hostPort;
  }

  /** Resolves once the client has connected. */
  connected(): Promise<void> {
    return this.handlers ? Promise.resolve() : new Promise((resolve) => (this.opened = resolve));
  }

  send(frame: Frame): void {
    this.handlers!.onData(encodeFrame(frame));
  }

  last(type: Frame["type"]): Frame | undefined {
    return this.written.filter((f) => f.type === type).at(-1);
  }
}

const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** A client over a scripted gateway, live, with a store that completes writes only when told. */
async function liveClient(): Promise<{ client: Client; gateway: ScriptedGateway; store: GatedStore }> {
  const store = new GatedStore();
  store.autoOpen = true;
  const gateway = new ScriptedGateway();
  const client = new Client({ endpoint: "gw:1", connector: gateway, token: "t", device: 7n, store });
  await client.start();
  await gateway.connected();
  await settle();
  gateway.send(connack());
  const latest = gateway.last("sync");
  assert.ok(latest?.type === "sync" && latest.direction === "latest");
  gateway.send({ type: "syncpage", requestId: latest.requestId, head: 0n, end: true, gap: false, items: [] });
  await settle();
  const after = gateway.last("sync");
  assert.ok(after?.type === "sync" && after.direction === "after");
  gateway.send({ type: "syncpage", requestId: after.requestId, head: 0n, end: true, gap: false, items: [] });
  await settle();
  assert.equal(client.state, "live");

  store.autoOpen = false;
  return { client, gateway, store };
}

test("a send from a message listener resolves once stored; the ACK and the SEND wait for their store batches", async () => {
  const { client, gateway, store } = await liveClient();
  let receipt: Promise<unknown> | undefined;
  let sendStored = false;
  client.on("message", ({ message: m }: { message: InboxMessage }) => {
    receipt = client.send(5n, `reply to ${m.seq}`).then(() => (sendStored = true));
  });
  gateway.send({ type: "push", ...message(1n) });
  await settle();
  assert.ok(receipt, "the listener ran");
  assert.equal(gateway.last("ack"), undefined, "no ACK before delivered = 1 is stored");
  assert.equal(gateway.last("send"), undefined);
  assert.equal(sendStored, false);

  store.release(); // delivered = 1
  await settle();
  assert.deepEqual(gateway.last("ack"), { type: "ack", upTo: 1n });
  assert.equal(gateway.last("send"), undefined, "no SEND before its outbox entry is stored");
  assert.equal(sendStored, false, "send() has not resolved before its entry is stored");

  store.release(); // the reply's outbox entry and id counter
  await receipt;
  assert.equal(sendStored, true);
  assert.equal(gateway.last("send")?.type, "send");
  assert.ok(store.applied.at(-1)!.some((c) => c.type === "outbox-put"));
  store.autoOpen = true;
  await client.close();
});

test("a send from a listener of an event that stored nothing still waits for its own entry", async () => {
  const { client, gateway, store } = await liveClient();
  let sendStored = false;
  let receipt: Promise<unknown> | undefined;
  client.on("ephemeral", () => {
    receipt = client.send(5n, "reply").then(() => (sendStored = true));
  });
  gateway.send({ type: "push", ...message(0n, { qos: 0 }) });
  await settle();
  assert.ok(receipt, "the listener ran");
  assert.equal(sendStored, false, "send() has not resolved before its entry is stored");
  store.release();
  await receipt;
  assert.equal(sendStored, true);
  store.autoOpen = true;
  await client.close();
});
