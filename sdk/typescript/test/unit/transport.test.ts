/**
 * Transports and reconnect policy pieces: host:port parsing, redirect
 * mapping (TCP and WebSocket keep what they must), the WebSocket
 * transport's handling of a text message, backoff growth and jitter
 * bounds, and the browser entry's import graph (no Node module, no
 * package: the browser build has no runtime dependency).
 */

import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";

import {
  backoffDelay,
  parseHostPort,
  tcpConnector,
  WEBSOCKET_SUBPROTOCOL,
  webSocketConnector,
  type WebSocketLike,
} from "../../src/node.js";

describe("endpoints", () => {
  test("host:port, [v6]:port; anything else is refused", () => {
    assert.deepEqual(parseHostPort("127.0.0.1:7400"), { host: "127.0.0.1", port: 7400 });
    assert.deepEqual(parseHostPort("gw-2.example.com:1"), { host: "gw-2.example.com", port: 1 });
    assert.deepEqual(parseHostPort("[::1]:65535"), { host: "::1", port: 65535 });
    for (const bad of ["", "host", "host:", ":80", "host:0", "host:65536", "a:b:1", "host:80/x"]) {
      assert.throws(() => parseHostPort(bad), TypeError, bad);
    }
  });

  test("a redirect keeps a WebSocket URL's scheme, path and query; TCP takes host:port as it is", () => {
    const ws = webSocketConnector();
    assert.equal(ws.redirect("wss://push.example.com/v1/ws?x=1", "10.0.0.2:7400"), "wss://10.0.0.2:7400/v1/ws?x=1");
    assert.equal(ws.redirect("ws://a:80/", "[::1]:9000"), "ws://[::1]:9000/");
    assert.equal(tcpConnector().redirect("127.0.0.1:1", "127.0.0.2:2"), "127.0.0.2:2");
    assert.throws(() => tcpConnector().redirect("127.0.0.1:1", "nonsense"), TypeError);
  });
});

describe("WebSocket transport", () => {
  /** A stand-in for a browser WebSocket at the seam: the test opens it and delivers messages. */
  class ScriptedSocket implements WebSocketLike {
    static last: ScriptedSocket | undefined;
    binaryType = "blob";
    protocol = "";
    onopen: ((ev: unknown) => void) | null = null;
    onmessage: ((ev: { data: unknown }) => void) | null = null;
    onclose: ((ev: { code: number; reason: string }) => void) | null = null;
    onerror: ((ev: unknown) => void) | null = null;
    closedWith: number | undefined;
    readonly sent: Uint8Array[] = [];
    constructor(
      readonly url: string,
      readonly protocols: string | string[],
    ) {
      ScriptedSocket.last = this;
    }
    send(data: Uint8Array): void {
      this.sent.push(data);
    }
    close(code?: number): void {
      this.closedWith = code;
      this.onclose?.({ code: code ?? 1005, reason: "" });
    }
  }

  test("asks for surepush.v1, sends one message per frame, and closes with 1003 on a text message", async () => {
    const connector = webSocketConnector({ WebSocket: ScriptedSocket });
    const received: Uint8Array[] = [];
    const closes: Array<Error | undefined> = [];
    const opening = connector.connect("ws://gw/", { onData: (b) => received.push(b), onClose: (e) => closes.push(e) });
    const socket = ScriptedSocket.last!;
    assert.equal(socket.protocols, WEBSOCKET_SUBPROTOCOL);
    assert.equal(socket.binaryType, "arraybuffer");
    socket.protocol = WEBSOCKET_SUBPROTOCOL;
    socket.onopen?.({});
    const transport = await opening;
    transport.write([Uint8Array.of(1), Uint8Array.of(2, 3)]);
    assert.deepEqual(socket.sent, [Uint8Array.of(1), Uint8Array.of(2, 3)]);
    socket.onmessage?.({ data: Uint8Array.of(9, 8).buffer });
    assert.deepEqual(received, [Uint8Array.of(9, 8)]);
    socket.onmessage?.({ data: "text is not part of the mapping" });
    assert.equal(socket.closedWith, 1003);
    assert.equal(closes.length, 1, "closed once");
    assert.ok(closes[0] instanceof Error);
  });

  test("a server that picked no subprotocol is refused", async () => {
    const connector = webSocketConnector({ WebSocket: ScriptedSocket });
    const opening = connector.connect("ws://gw/", { onData: () => undefined, onClose: () => undefined });
    ScriptedSocket.last!.onopen?.({});
    await assert.rejects(opening, /subprotocol/);
  });
});

describe("backoff", () => {
  test("doubles from the initial delay up to the maximum, with half of each delay jittered", () => {
    const o = { initialMs: 100, maxMs: 1_000 };
    assert.deepEqual([0, 1, 2, 3, 4, 10].map((a) => backoffDelay(a, o, 0)), [50, 100, 200, 400, 500, 500]);
    assert.deepEqual([0, 1, 2, 3, 4, 10].map((a) => backoffDelay(a, o, 0.999_999)).map(Math.round), [100, 200, 400, 800, 1000, 1000]);
    assert.equal(backoffDelay(1_000, o, 0.5), 750, "no overflow after many attempts");
  });
});

test("the browser entry imports no Node module and no package", async () => {
  const root = resolve(dirname(fileURLToPath(import.meta.url)), "../../src");
  const seen = new Set<string>();
  const visit = async (file: string): Promise<void> => {
    if (seen.has(file)) return;
    seen.add(file);
    const code = await readFile(file, "utf8");
    for (const m of code.matchAll(/(?:import|export)[^;]*?from\s+"([^"]+)"|import\("([^"]+)"\)/g)) {
      const spec = m[1] ?? m[2]!;
      assert.ok(spec.startsWith("./") || spec.startsWith("../"), `${file} imports ${spec}`);
      await visit(join(dirname(file), spec));
    }
  };
  await visit(join(root, "index.js"));
  assert.ok(seen.size > 15, `walked ${seen.size} modules`);
  assert.ok(![...seen].some((f) => f.includes(`${join(root, "node")}`)), "no Node-only module reached");
});
