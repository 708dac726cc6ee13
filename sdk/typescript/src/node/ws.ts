/**
 * WebSocket in Node: Node 20 has no global `WebSocket`, so the optional
 * peer dependency `ws` provides one. It is imported here only, lazily, so
 * neither the browser build nor a TCP-only Node app needs it installed.
 *
 * @module
 */

import type { Connector, Transport, TransportHandlers } from "../transport/transport.js";
import { webSocketConnector, type WebSocketConstructor } from "../transport/websocket.js";

/** Connects to `ws://` / `wss://` URLs with the global `WebSocket` if Node has one, else with `ws`. */
export function nodeWebSocketConnector(): Connector {
  let inner: Promise<Connector> | undefined;
  const load = (): Promise<Connector> => {
    inner ??= resolveWebSocket().then((WebSocket) => webSocketConnector({ WebSocket }));
    return inner;
  };
  return {
    async connect(url: string, handlers: TransportHandlers): Promise<Transport> {
      return (await load()).connect(url, handlers);
    },
    redirect: (endpoint, hostPort) => webSocketConnector().redirect(endpoint, hostPort),
  };
}

async function resolveWebSocket(): Promise<WebSocketConstructor> {
  const global = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (global) return global;
  try {
    const ws = await import("ws");
    return ws.WebSocket as unknown as WebSocketConstructor;
  } catch (e) {
    throw new Error(`WebSocket in Node 20 needs the \`ws\` package (npm install ws): ${String(e)}`);
  }
}
