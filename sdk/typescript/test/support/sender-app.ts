/**
 * A tiny app for the app-crash test, run as its own Node process: opens a
 * FileStore, queues `count` messages starting at index `from` (QoS 1 and
 * 2 alternating) and prints `queued <index> <client_msg_id>` once each is
 * in the stored outbox, then `done` when every send is finished. It
 * first prints `restored <n>`, the unfinished sends its store held. With
 * PAUSE_AT it waits for a line on stdin after queuing that index (so the
 * test can act at a known point).
 *
 * Usage: node sender-app.js ENDPOINT USER DEVICE TO STORE_PATH FROM COUNT [PAUSE_AT]
 */

import { Client, FileStore, tcpConnector } from "../../src/node.js";
import { mintToken } from "./gateway.js";

import { createInterface } from "node:readline";

const [endpoint, user, device, to, path, from, count, pauseAt] = process.argv.slice(2);
if (!endpoint || !user || !device || !to || !path || !from || !count) {
  throw new Error("usage: sender-app ENDPOINT USER DEVICE TO STORE_PATH FROM COUNT");
}
const store = await FileStore.open({ path });
process.stdout.write(`restored ${(await store.load()).outbox.length}\n`);
const stdin = createInterface({ input: process.stdin });
const nextLine = (): Promise<string> => new Promise((resolve) => stdin.once("line", resolve));
const client = new Client({
  endpoint,
  connector: tcpConnector(),
  token: mintToken(BigInt(user), BigInt(device)),
  device: BigInt(device),
  store,
  reconnect: { initialMs: 50, maxMs: 500 },
});
await client.start();
for (let i = Number(from); i < Number(from) + Number(count); i++) {
  const receipt = await client.send(BigInt(to), `app-${i}`, { qos: i % 2 === 0 ? 1 : 2 });
  process.stdout.write(`queued ${i} ${receipt.clientMsgId}\n`);
  if (String(i) === pauseAt) await nextLine();
}
stdin.close();
await new Promise<void>((resolve) => {
  const check = (): void => {
    if (client.unfinishedSends === 0) resolve();
  };
  client.on("send-acked", check);
  client.on("send-completed", check);
  check();
});
await client.close();
await store.close();
process.stdout.write("done\n");
