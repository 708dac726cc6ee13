/**
 * kill -9 of the gateway mid-stream over native TCP (issue #19 item 3):
 * nothing acknowledged is lost, nothing is shown twice, QoS 2 exactly
 * once. The scenario and its checks: test/support/kill-mid-stream.ts
 * (test/e2e/websocket.test.ts runs it over WebSocket).
 */

import { test } from "node:test";

import { gatewayForThisFile } from "../support/device.js";
import { killMidStream } from "../support/kill-mid-stream.js";

const gateway = gatewayForThisFile({ shards: 2 });

test("kill -9 mid-stream: nothing acknowledged is lost, nothing is shown twice, QoS 2 exactly once", async (t) => {
  await killMidStream(t, gateway);
});
