/**
 * The client's connection policy and app restarts, end to end: a
 * DISCONNECT redirect is followed at once; errors a retry cannot fix stop
 * the client, an expired token is replaced by a fresh one; a sending app
 * killed with -9 resumes its stored outbox in a new process without loss
 * or duplicates; a receiving app restarted resumes from its stored
 * `delivered` without loss or duplicates.
 */

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";

import { ErrorCode, FileStore, tcpConnector, type Connector } from "../../src/node.js";
import { Device, text, gatewayForThisFile } from "../support/device.js";
import { Gateway, mintToken } from "../support/gateway.js";

const gateway = gatewayForThisFile();

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "surepush-ts-client-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A TCP connector that records the endpoints it connects to. */
function counting(endpoints: string[]): Connector {
  const tcp = tcpConnector();
  return { redirect: tcp.redirect, connect: (endpoint, handlers) => (endpoints.push(endpoint), tcp.connect(endpoint, handlers)) };
}

describe("connection policy", () => {
  test("DISCONNECT ShuttingDown with a redirect: the client goes to the named gateway at once", async () => {
    const target = await Gateway.start();
    const leaving = await Gateway.start({ top: `shutdown_redirect = "${target.endpoint}"` });
    try {
      const endpoints: string[] = [];
      const d = await Device.online(leaving, 701n, 1n, { client: { connector: counting(endpoints) } });
      await leaving.terminate();
      await d.until("live on the target", () => endpoints.length === 2 && d.client.state === "live");
      assert.deepEqual(endpoints, [leaving.endpoint, target.endpoint]);
      await d.close();
    } finally {
      await Promise.all([leaving.stop(), target.stop()]);
    }
  });

  test("a token for another device (DeviceMismatch) stops the client instead of retrying", async () => {
    const endpoints: string[] = [];
    const d = Device.create(gateway(), 702n, 1n, {
      client: { connector: counting(endpoints), token: mintToken(702n, 2n) },
    });
    const closed = d.client.once("closed");
    await d.client.start();
    assert.equal((await closed).reason, ErrorCode.DeviceMismatch);
    assert.equal(d.client.state, "closed");
    assert.deepEqual(endpoints, [gateway().endpoint], "one attempt only");
    assert.ok(d.log.includes("gateway-error"));
  });

  test("an expired token from a token function is replaced by a fresh one on the next connection", async () => {
    let calls = 0;
    const token = (): string => (++calls === 1 ? mintToken(703n, 1n, undefined, 1_000) : mintToken(703n, 1n));
    const d = Device.create(gateway(), 703n, 1n, { client: { token } });
    await d.client.start();
    await d.until("live", () => d.client.state === "live");
    assert.equal(calls, 2);
    assert.ok(d.log.includes("gateway-error"), "the first connection was refused (TokenExpired)");
    await d.close();
  });
});

describe("app restarts", () => {
  const senderApp = join(dirname(fileURLToPath(import.meta.url)), "..", "support", "sender-app.js");

  /** Runs the sender app; `onLine` may kill or resume it. Resolves with the lines it printed. */
  function runSender(
    args: { from: number; count: number; store: string; pauseAt?: number },
    onLine?: (line: string, child: ReturnType<typeof spawn>) => void,
  ) {
    const argv = [senderApp, gateway().endpoint, "711", "1", "712", args.store, String(args.from), String(args.count)];
    if (args.pauseAt !== undefined) argv.push(String(args.pauseAt));
    const child = spawn(process.execPath, argv, { stdio: ["pipe", "pipe", "inherit"] });
    const lines: string[] = [];
    createInterface({ input: child.stdout! }).on("line", (line) => {
      lines.push(line);
      onLine?.(line, child);
    });
    return new Promise<{ lines: string[]; signal: NodeJS.Signals | null }>((resolve) =>
      child.once("close", (_code, signal) => resolve({ lines, signal })),
    );
  }

  test("a sender killed with -9 resumes its stored outbox in a new process; a receiver restart resumes from its stored position", async () => {
    const senderStore = join(dir, "sender.journal");
    const receiverStore = join(dir, "receiver.journal");
    const receiverFile = await FileStore.open({ path: receiverStore });
    const receiver = await Device.online(gateway(), 712n, 1n, { store: receiverFile });

    // Message 15 queued: the gateway dies; the app queues 16..25 into its
    // outbox (nothing can be acknowledged now) and is killed with -9.
    const first = await runSender({ from: 0, count: 60, store: senderStore, pauseAt: 15 }, (line, child) => {
      if (line.startsWith("queued 15 ")) void gateway().kill9().then(() => child.stdin!.write("go\n"));
      if (line.startsWith("queued 25 ")) child.kill("SIGKILL");
    });
    assert.equal(first.signal, "SIGKILL");
    await gateway().restart();
    const queued1 = first.lines.map((l) => l.split(" ")).filter((p) => p[0] === "queued");
    const lastQueued = Number(queued1.at(-1)![1]);
    assert.ok(lastQueued >= 25);

    // The receiving app restarts too (a clean exit, with its position stored).
    const seenBefore = receiver.messages.length;
    await receiver.close();
    await receiverFile.close();

    // Index lastQueued + 1 may be in the outbox without its line printed: skip it.
    const second = await runSender({ from: lastQueued + 2, count: 20, store: senderStore });
    assert.equal(second.lines.at(-1), "done");
    const restored = Number(second.lines[0]!.split(" ")[1]);
    assert.ok(restored >= 10, `the new process restored the unfinished sends (${restored})`);
    const queued2 = second.lines.map((l) => l.split(" ")).filter((p) => p[0] === "queued");
    const ids = [...queued1, ...queued2].map((p) => p[2]);
    assert.equal(new Set(ids).size, ids.length, "client message ids never repeat across processes");

    const reopened = await FileStore.open({ path: receiverStore });
    const back = await Device.online(gateway(), 712n, 1n, { store: reopened });
    const expected = [...queued1, ...queued2].map((p) => `app-${p[1]}`);
    const all = () => [...receiver.texts(), ...back.texts()];
    await back.until("every queued message", () => expected.every((t) => all().includes(t)));
    const seen = all();
    assert.equal(new Set(seen).size, seen.length, `nothing shown twice (${seenBefore} before the restart)`);
    const stray = seen.filter((t) => !expected.includes(t));
    assert.ok(stray.every((t) => t === `app-${lastQueued + 1}`), `only the unprinted one may be extra: ${stray.join(", ")}`);
    const inbox = [...receiver.messages, ...back.messages];
    inbox.forEach((m, i) => {
      if (i > 0) assert.equal(m.seq, inbox[i - 1]!.seq + 1n, "one contiguous sequence across the restart");
      assert.equal(m.from, 711n);
      assert.equal(ids.includes(String(m.clientMsgId)) || text(m.payload) === `app-${lastQueued + 1}`, true);
    });
    await back.close();
    await reopened.close();
  });
});
