/**
 * The WebSocket transport end to end, today: the gateway's WebSocket
 * listener (issue #19 item 1) does not exist yet, so a small bridge
 * written with `ws` stands in for it: it accepts subprotocol
 * `surepush.v1`, writes each binary message to a TCP connection to the
 * real gateway, and sends the gateway's bytes back one whole frame per
 * binary message. When the listener lands, point these clients at it and
 * drop the bridge; the session and client do not change.
 */

import assert from "node:assert/strict";
import { connect as tcpConnect } from "node:net";
import { after, before, test } from "node:test";

import { WebSocketServer, type WebSocket } from "ws";

import { decodeFrame, nodeWebSocketConnector, WEBSOCKET_SUBPROTOCOL } from "../../src/node.js";
import { Device, gatewayForThisFile, text } from "../support/device.js";
import { freePort } from "../support/gateway.js";

const gateway = gatewayForThisFile();

let bridge: WebSocketServer;
let refusing: WebSocketServer;
const fromClients: string[] = [];
const protocols: string[] = [];

/** Splits a TCP byte stream into whole frames (by the header's length field). */
function frameSplitter(): (chunk: Buffer) => Buffer[] {
  let pending = Buffer.alloc(0);
  return (chunk) => {
    pending = Buffer.concat([pending, chunk]);
    const frames: Buffer[] = [];
    while (pending.length >= 8) {
      const total = 8 + pending.readUInt32LE(4);
      if (pending.length < total) break;
      frames.push(pending.subarray(0, total));
      pending = pending.subarray(total);
    }
    return frames;
  };
}

function relay(ws: WebSocket): void {
  protocols.push(ws.protocol);
  const tcp = tcpConnect(gateway().port, "127.0.0.1");
  const split = frameSplitter();
  tcp.on("data", (chunk: Buffer) => {
    for (const f of split(chunk)) ws.send(f, { binary: true });
  });
  ws.on("message", (data: Buffer, isBinary: boolean) => {
    // Every client message must be exactly one whole frame.
    fromClients.push(isBinary ? decodeFrame(new Uint8Array(data)).type : "text");
    tcp.write(data);
  });
  ws.on("close", () => tcp.end());
  tcp.on("close", () => ws.close());
  tcp.on("error", () => ws.terminate());
}

async function listen(server: WebSocketServer): Promise<number> {
  await new Promise<void>((resolve) => server.once("listening", () => resolve()));
  const address = server.address();
  assert.ok(typeof address === "object" && address !== null);
  return address.port;
}

let url: string;
let refusingUrl: string;
before(async () => {
  bridge = new WebSocketServer({
    host: "127.0.0.1",
    port: await freePort(),
    handleProtocols: (offered) => (offered.has(WEBSOCKET_SUBPROTOCOL) ? WEBSOCKET_SUBPROTOCOL : false),
  });
  bridge.on("connection", relay);
  url = `ws://127.0.0.1:${await listen(bridge)}/push`;
  refusing = new WebSocketServer({
    host: "127.0.0.1",
    port: await freePort(),
    handleProtocols: () => false,
  });
  refusingUrl = `ws://127.0.0.1:${await listen(refusing)}/`;
});
after(async () => {
  await new Promise((resolve) => bridge.close(resolve));
  await new Promise((resolve) => refusing.close(resolve));
});

test("over WebSocket (surepush.v1, one frame per binary message): QoS 1 and 2 both ways with identity", async () => {
  const ws = { endpoint: url, client: { connector: nodeWebSocketConnector() } };
  const kim = await Device.online(gateway(), 801n, 1n, ws);
  const lee = await Device.online(gateway(), 802n, 1n, ws);
  const r1 = await kim.client.send(802n, "over websocket", { qos: 1 });
  const r2 = await lee.client.send(801n, "and back", { qos: 2 });
  const [o1, o2] = await Promise.all([r1.outcome, r2.outcome]);
  assert.equal(o1.status, "stored");
  assert.equal(o2.status, "stored");
  await lee.until("the message", () => lee.messages.some((m) => !m.echo));
  await kim.until("the answer", () => kim.messages.some((m) => !m.echo));
  const got = lee.messages.find((m) => !m.echo)!;
  assert.deepEqual([got.from, got.clientMsgId, text(got.payload)], [801n, r1.clientMsgId, "over websocket"]);
  const answer = kim.messages.find((m) => !m.echo)!;
  assert.deepEqual([answer.from, answer.clientMsgId, text(answer.payload), answer.qos], [802n, r2.clientMsgId, "and back", 2]);
  assert.ok(protocols.length >= 2 && protocols.every((p) => p === WEBSOCKET_SUBPROTOCOL));
  assert.ok(!fromClients.includes("text"));
  for (const type of ["connect", "sync", "send", "rel", "ack"]) assert.ok(fromClients.includes(type), `a ${type} frame went over WebSocket`);
  await Promise.all([kim.close(), lee.close()]);
});

test("a server that does not agree to surepush.v1 is not used", async () => {
  const d = Device.create(gateway(), 803n, 1n, { endpoint: refusingUrl, client: { connector: nodeWebSocketConnector() } });
  await d.client.start();
  await d.until("a refused connection", () => d.log.includes("connect-failed"));
  assert.notEqual(d.client.state, "live");
  await d.close();
});
