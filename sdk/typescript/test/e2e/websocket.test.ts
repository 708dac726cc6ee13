/**
 * The SDK's WebSocket transport against the gateway's own WebSocket
 * listener (issue #19 items 1 and 3): subprotocol `surepush.v1`, native
 * frames in binary messages, Node's `ws` package as the `WebSocket`.
 * QoS 1 and 2 both ways with identity, kill -9 of the gateway in the middle
 * of sends (the scenario of crash.test.ts, over WebSocket), and a server
 * that does not agree to the subprotocol is not used.
 */

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { WebSocketServer } from "ws";

import { nodeWebSocketConnector, WEBSOCKET_SUBPROTOCOL } from "../../src/node.js";
import { Device, gatewayForThisFile, text, type DeviceOptions } from "../support/device.js";
import { freePort } from "../support/gateway.js";
import { killMidStream } from "../support/kill-mid-stream.js";

const gateway = gatewayForThisFile({ shards: 2, websocket: {} });

/** Devices connect through the gateway's WebSocket listener. */
const overWebSocket = (): DeviceOptions => ({ endpoint: gateway().wsUrl, client: { connector: nodeWebSocketConnector() } });

let refusing: WebSocketServer;
let refusingUrl: string;
before(async () => {
  refusing = new WebSocketServer({ host: "127.0.0.1", port: await freePort(), handleProtocols: () => false });
  await new Promise<void>((resolve) => refusing.once("listening", () => resolve()));
  const address = refusing.address();
  assert.ok(typeof address === "object" && address !== null);
  refusingUrl = `ws://127.0.0.1:${address.port}/`;
});
after(async () => {
  await new Promise((resolve) => refusing.close(resolve));
});

test("over the gateway's WebSocket listener: QoS 1 and 2 both ways with identity", async () => {
  const kim = await Device.online(gateway(), 801n, 1n, overWebSocket());
  const lee = await Device.online(gateway(), 802n, 1n, overWebSocket());
  const r1 = await kim.client.send(802n, "over websocket", { qos: 1 });
  const r2 = await lee.client.send(801n, "and back", { qos: 2 });
  const [o1, o2] = await Promise.all([r1.outcome, r2.outcome]);
  assert.equal(o1.status, "stored");
  assert.equal(o2.status, "stored");
  await lee.until("the message", () => lee.messages.some((m) => !m.echo));
  await kim.until("the answer", () => kim.messages.some((m) => !m.echo));
  const got = lee.messages.find((m) => !m.echo)!;
  assert.deepEqual([got.from, got.fromDevice, got.clientMsgId, text(got.payload), got.qos], [801n, 1n, r1.clientMsgId, "over websocket", 1]);
  assert.equal(o1.status === "stored" && o1.seq, got.seq, "the sequence SENDACK announced");
  const answer = kim.messages.find((m) => !m.echo)!;
  assert.deepEqual([answer.from, answer.clientMsgId, text(answer.payload), answer.qos], [802n, r2.clientMsgId, "and back", 2]);
  // Each device's own send came back as an echo of its client_msg_id.
  assert.ok(kim.messages.some((m) => m.echo && m.clientMsgId === r1.clientMsgId));
  assert.ok(lee.messages.some((m) => m.echo && m.clientMsgId === r2.clientMsgId));
  await Promise.all([kim.close(), lee.close()]);
});

test("over WebSocket, kill -9 mid-stream: nothing acknowledged is lost, nothing is shown twice, QoS 2 exactly once", async (t) => {
  await killMidStream(t, gateway, overWebSocket());
});

test(`a server that does not agree to ${WEBSOCKET_SUBPROTOCOL} is not used`, async () => {
  const d = Device.create(gateway(), 803n, 1n, { endpoint: refusingUrl, client: { connector: nodeWebSocketConnector() } });
  await d.client.start();
  await d.until("a refused connection", () => d.log.includes("connect-failed"));
  assert.notEqual(d.client.state, "live");
  await d.close();
});
