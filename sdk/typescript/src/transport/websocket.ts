/**
 * WebSocket transport for browsers (and any runtime with a WHATWG-style
 * `WebSocket`, such as Node's `ws` package): subprotocol `surepush.v1`,
 * each frame one binary message, binary messages in as `ArrayBuffer`s. A
 * text message is not part of the mapping and closes the connection with
 * 1003 (unsupported data).
 *
 * @module
 */

import { parseHostPort, type Connector, type Transport, type TransportHandlers } from "./transport.js";

/** The subprotocol the gateway's WebSocket listener speaks. */
export const WEBSOCKET_SUBPROTOCOL = "surepush.v1";

/** RFC 6455 close code: the endpoint got a data type it cannot accept. */
const CLOSE_UNSUPPORTED_DATA = 1003;
/** RFC 6455 close code: normal closure. */
const CLOSE_NORMAL = 1000;

/** The part of a WHATWG `WebSocket` this transport uses. */
export interface WebSocketLike {
  binaryType: string;
  readonly protocol: string;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
}

/** A `WebSocket` constructor (the browser's, or `ws`'s in Node). */
export type WebSocketConstructor = new (url: string, protocols: string | string[]) => WebSocketLike;

/** How to open WebSockets. */
export interface WebSocketConnectorOptions {
  /** The constructor; default `globalThis.WebSocket`. */
  readonly WebSocket?: WebSocketConstructor;
}

/** Connects to `ws://` / `wss://` URLs. */
export function webSocketConnector(options: WebSocketConnectorOptions = {}): Connector {
  return {
    connect(url, handlers) {
      const Ctor = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
      if (!Ctor) return Promise.reject(new Error("no WebSocket in this runtime; pass one (e.g. from `ws`)"));
      return openWebSocket(new Ctor(url, WEBSOCKET_SUBPROTOCOL), handlers);
    },
    redirect(endpoint, hostPort) {
      const { host, port } = parseHostPort(hostPort);
      const url = new URL(endpoint);
      url.hostname = host.includes(":") ? `[${host}]` : host;
      url.port = String(port);
      return url.toString();
    },
  };
}

function openWebSocket(ws: WebSocketLike, handlers: TransportHandlers): Promise<Transport> {
  ws.binaryType = "arraybuffer";
  return new Promise((resolve, reject) => {
    let open = false;
    let closed = false;
    const finish = (error?: Error): void => {
      if (closed) return;
      closed = true;
      if (open) handlers.onClose(error);
      else reject(error ?? new Error("WebSocket closed before it opened"));
    };
    ws.onopen = () => {
      if (ws.protocol !== WEBSOCKET_SUBPROTOCOL) {
        finish(new Error(`server did not agree to subprotocol ${WEBSOCKET_SUBPROTOCOL}`));
        ws.close(CLOSE_NORMAL, "subprotocol not agreed");
        return;
      }
      open = true;
      resolve({
        write(frames) {
          for (const f of frames) ws.send(f);
        },
        close() {
          ws.close(CLOSE_NORMAL);
        },
      });
    };
    ws.onmessage = (ev) => {
      if (closed) return;
      if (ev.data instanceof ArrayBuffer) {
        handlers.onData(new Uint8Array(ev.data));
        return;
      }
      finish(new Error("the server sent a non-binary WebSocket message"));
      ws.close(CLOSE_UNSUPPORTED_DATA, "binary messages only");
    };
    ws.onerror = () => finish(new Error("WebSocket error"));
    ws.onclose = (ev) => finish(ev.code === CLOSE_NORMAL ? undefined : new Error(`WebSocket closed: ${ev.code} ${ev.reason}`));
  });
}
